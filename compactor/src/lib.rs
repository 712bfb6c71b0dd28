//! The compactor role: merges small objects, compacts compacted topics by key, enforces
//! retention, collects garbage.
//!
//! One pass plans merge jobs and works them, moves log starts by retention and collects
//! garbage; `yaks compactor` runs passes in a loop, `--once` runs one (a scheduled job).
//! Modules:
//! - [`planner`]: a pure function of a partition's index entries that picks runs of small
//!   entries into jobs.
//! - [`clean`]: Kafka's cleaner rules, as pure functions: which records of a batch key
//!   compaction keeps, and how the batch is rewritten.
//! - [`key_map`]: the newest offset of each key, in memory fixed in advance (key
//!   compaction).
//! - [`retention`]: a pure function of a partition's index entries that says how far
//!   retention.ms / retention.bytes move its log start.
//! - [`compact`]: a key compaction pass over one partition: the dirty part
//!   (`yaks_common::dirty`) into the key map, every batch up to the map's reach judged,
//!   changed chunks swapped by compare-and-swap.
//! - [`worker`]: runs a job: reads the inputs, writes one per-partition output, swaps the
//!   index rows by compare-and-swap.
//! - [`gc`]: drops entries below log starts, marks unreferenced objects, deletes marked and
//!   unrecorded objects after the grace period (with a dry run).
//! - [`queue`]: the job queue: SQS (dead-letter queue by redrive policy) or in-process.
//! - [`run`]: a pass (plan onto the queue, work it, retention, garbage) and the loop;
//!   `yaks compactor [--once]` runs them.

pub mod clean;
pub mod compact;
pub mod gc;
pub mod key_map;
pub mod planner;
pub mod queue;
pub mod retention;
pub mod run;
pub mod worker;
