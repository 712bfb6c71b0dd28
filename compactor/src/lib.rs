//! The compactor role: merges small objects, enforces retention, collects garbage.
//!
//! Being built (issue "The compactor"). Modules:
//! - [`planner`]: a pure function of a partition's index entries that picks runs of small
//!   entries into jobs.
//! - [`retention`]: a pure function of a partition's index entries that says how far
//!   retention.ms / retention.bytes move its log start.
//! - [`worker`]: runs a job: reads the inputs, writes one per-partition output, swaps the
//!   index rows by compare-and-swap.
//! - [`gc`]: drops entries below log starts, marks unreferenced objects, deletes marked and
//!   unrecorded objects after the grace period (with a dry run).
//!
//! Still planned: the job queue (SQS, in-process for `yaks dev`), the retention pass that
//! applies [`retention`] to every partition, and `yaks compactor [--once]`.

pub mod gc;
pub mod planner;
pub mod retention;
pub mod worker;
