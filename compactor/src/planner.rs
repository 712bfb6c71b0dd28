//! The compaction planner: a pure function from a partition's index entries to jobs.
//!
//! Every flush leaves one small byte range per partition in a shared object; reading a
//! partition's history then costs a GET per flush. The planner walks a partition's entries
//! in offset order and groups runs of contiguous small entries into jobs, each of which a
//! worker rewrites as one per-partition object. A run is cut before it would exceed the
//! target output size, and before it would span more than the time window (so retention can
//! later drop whole outputs); a run of one entry is not worth a job. Entries already at
//! least `small_bytes` long (earlier outputs) are left alone and break runs.

use yaks_common::metastore::IndexEntry;

/// What the planner aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannerSettings {
    /// A job's inputs add up to at most this many bytes.
    pub target_bytes: i64,
    /// Entries shorter than this are worth merging.
    pub small_bytes: i64,
    /// A job's entries span at most this much record time (max timestamps).
    pub window_ms: i64,
}

/// One compaction job: contiguous entries of one partition to rewrite as one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The entries, in offset order, contiguous (each starts after the previous ends).
    pub inputs: Vec<IndexEntry>,
}

impl Job {
    /// Bytes the output will hold.
    pub fn bytes(&self) -> i64 {
        self.inputs.iter().map(|e| e.byte_length).sum()
    }

    /// First offset covered.
    pub fn base_offset(&self) -> i64 {
        self.inputs.first().map_or(-1, |e| e.base_offset)
    }

    /// Last offset covered.
    pub fn last_offset(&self) -> i64 {
        self.inputs.last().map_or(-1, |e| e.last_offset)
    }
}

/// Plans jobs for one partition from its entries in offset order.
pub fn plan_partition(entries: &[IndexEntry], settings: &PlannerSettings) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut run: Vec<IndexEntry> = Vec::new();
    let mut run_bytes = 0i64;
    let flush = |run: &mut Vec<IndexEntry>, jobs: &mut Vec<Job>| {
        if run.len() >= 2 {
            jobs.push(Job {
                inputs: std::mem::take(run),
            });
        } else {
            run.clear();
        }
    };
    for entry in entries {
        let small = entry.byte_length < settings.small_bytes;
        let contiguous = run
            .last()
            .is_none_or(|last| entry.base_offset == last.last_offset + 1);
        let fits = run_bytes + entry.byte_length <= settings.target_bytes;
        let in_window = run.first().is_none_or(|first| {
            let earliest = run
                .iter()
                .map(|e| e.max_timestamp)
                .min()
                .unwrap_or(first.max_timestamp);
            entry.max_timestamp.saturating_sub(earliest) <= settings.window_ms
        });
        if !(small && contiguous && fits && in_window) {
            flush(&mut run, &mut jobs);
            run_bytes = 0;
        }
        if small && entry.byte_length <= settings.target_bytes {
            run_bytes += entry.byte_length;
            run.push(entry.clone());
        }
    }
    flush(&mut run, &mut jobs);
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: PlannerSettings = PlannerSettings {
        target_bytes: 1_000,
        small_bytes: 400,
        window_ms: 60_000,
    };

    fn entry(base: i64, last: i64, bytes: i64, time: i64) -> IndexEntry {
        IndexEntry {
            base_offset: base,
            last_offset: last,
            max_timestamp: time,
            object_key: format!("objects/{base}"),
            byte_offset: 0,
            byte_length: bytes,
            object_size: bytes * 4,
            inline: None,
        }
    }

    fn offsets(jobs: &[Job]) -> Vec<(i64, i64)> {
        jobs.iter()
            .map(|j| (j.base_offset(), j.last_offset()))
            .collect()
    }

    #[test]
    fn small_contiguous_entries_merge_up_to_the_target_size() {
        let entries: Vec<IndexEntry> = (0..10)
            .map(|i| entry(i * 10, i * 10 + 9, 300, 1_000 + i))
            .collect();
        let jobs = plan_partition(&entries, &SETTINGS);
        // 300 bytes each, at most 1000 per job: runs of three, the last one alone is left.
        assert_eq!(offsets(&jobs), vec![(0, 29), (30, 59), (60, 89)]);
        assert!(jobs.iter().all(|j| j.bytes() <= SETTINGS.target_bytes));
    }

    #[test]
    fn large_entries_gaps_and_time_windows_break_runs() {
        let entries = vec![
            entry(0, 9, 100, 0),
            entry(10, 19, 100, 1),
            entry(20, 29, 900, 2), // already large: left alone
            entry(30, 39, 100, 3),
            entry(40, 49, 100, 4),
            entry(60, 69, 100, 5), // a gap (50..59 gone to retention): a new run
            entry(70, 79, 100, 6),
            entry(80, 89, 100, 100_000), // outside the window of the run before
            entry(90, 99, 100, 100_001),
        ];
        let jobs = plan_partition(&entries, &SETTINGS);
        assert_eq!(offsets(&jobs), vec![(0, 19), (30, 49), (60, 79), (80, 99)]);
    }

    #[test]
    fn nothing_to_do_for_a_single_or_no_entry() {
        assert!(plan_partition(&[], &SETTINGS).is_empty());
        assert!(plan_partition(&[entry(0, 9, 10, 0)], &SETTINGS).is_empty());
    }
}
