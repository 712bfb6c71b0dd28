//! The compactor role: merges small objects, enforces retention, collects garbage.
//!
//! Being built (issue "The compactor"). Modules:
//! - [`planner`]: a pure function of a partition's index entries that picks runs of small
//!   entries into jobs.
//!
//! Still planned:
//! - `worker`: reads inputs, writes per-partition outputs, swaps index rows by
//!   compare-and-swap;
//! - `retention`: moves log start offsets (retention.ms, retention.bytes, DeleteRecords);
//! - `gc`: deletes marked and orphaned objects after the grace period.

pub mod planner;
