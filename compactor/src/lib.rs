//! The compactor role: merges small objects, enforces retention, collects garbage.
//!
//! Not built yet (issue "The compactor"). Planned modules:
//! - `planner`: a pure function of the index that picks small objects into jobs;
//! - `worker`: reads inputs, writes per-partition outputs, swaps index rows by
//!   compare-and-swap;
//! - `retention`: moves log start offsets (retention.ms, retention.bytes, DeleteRecords);
//! - `gc`: deletes marked and orphaned objects after the grace period.
