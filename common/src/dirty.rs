//! Which part of a compacted partition a pass may clean, and whether one is due: a pure
//! function of the partition's index entries, as Kafka's `LogCleanerManager` decides. The
//! compactor acts on it; the gateway's operations endpoint reports it (`yaks topic
//! describe`), so both say the same.
//!
//! The dirty part starts at the partition's `cleaned_through` and ends before the first
//! entry holding a record younger than `min.compaction.lag.ms` (Kafka also stops at the
//! active segment; yaks' entries are immutable once committed, so none is held back for
//! being written to). A pass is due when the dirty part's share of the bytes from the log
//! start reaches `min.cleanable.dirty.ratio`, or whatever the share when its oldest entry
//! has waited longer than `max.compaction.lag.ms`: the promise that a superseded value is
//! gone within that time. An entry's age is its largest timestamp, as Kafka judges a
//! segment for the minimum lag; for the maximum lag that errs late by the entry's own span,
//! at most one flush for entries no merge has touched.

use crate::metastore::IndexEntry;

/// A topic's compaction settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lags {
    /// `min.cleanable.dirty.ratio`.
    pub min_dirty_ratio: f64,
    /// `min.compaction.lag.ms`.
    pub min_lag_ms: i64,
    /// `max.compaction.lag.ms`.
    pub max_lag_ms: i64,
}

/// Why a pass is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The dirty share reached `min.cleanable.dirty.ratio`.
    Ratio,
    /// The oldest dirty entry waited past `max.compaction.lag.ms`.
    MaxLag,
}

/// A partition's dirty part as a pass would take it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dirty {
    /// Bytes already judged (from the log start to `cleaned_through`).
    pub clean_bytes: i64,
    /// Bytes a pass may judge now.
    pub dirty_bytes: i64,
    /// First offset of the dirty part.
    pub from: i64,
    /// One past its last offset: the first offset a pass may not judge yet.
    pub until: i64,
    /// Largest timestamp of the oldest dirty entry, if any.
    pub oldest_ms: Option<i64>,
    /// When the first entry held back by `min.compaction.lag.ms` may be judged, if one is:
    /// the dirty part grows then without anything being written.
    pub ripe_at_ms: Option<i64>,
}

impl Dirty {
    /// The dirty share of the bytes from the log start, 0 to 1.
    pub fn ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }

    /// Whether a pass is due, and why.
    pub fn due(&self, lags: &Lags, now_ms: i64) -> Option<Due> {
        if self.dirty_bytes == 0 {
            return None;
        }
        if self
            .oldest_ms
            .is_some_and(|oldest| now_ms.saturating_sub(oldest) > lags.max_lag_ms)
        {
            return Some(Due::MaxLag);
        }
        (self.ratio() >= lags.min_dirty_ratio).then_some(Due::Ratio)
    }
}

/// Where key compaction stands in one partition, as the gateway's operations endpoint
/// `GET /v1/topics/{topic}/compaction` answers it (JSON, one per partition) and
/// `yaks topic describe` shows it: the Kafka protocol has no field for it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartitionCompaction {
    /// Partition index.
    pub partition: i32,
    /// The first offset no key compaction has judged.
    pub cleaned_through: i64,
    /// Bytes judged, from the log start.
    pub clean_bytes: i64,
    /// Bytes a pass may judge now.
    pub dirty_bytes: i64,
    /// The dirty share, which `min.cleanable.dirty.ratio` is compared with.
    pub dirty_ratio: f64,
    /// Largest timestamp of the oldest dirty index entry, ms since the epoch.
    pub oldest_dirty_ms: Option<i64>,
}

/// The path of a topic's compaction status on a gateway's operations listener.
pub fn compaction_path(topic: &str) -> String {
    format!("/v1/topics/{topic}/compaction")
}

/// The topic a compaction status path names, if `path` is one.
pub fn topic_of_compaction_path(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/topics/")?
        .strip_suffix("/compaction")
        .filter(|topic| !topic.is_empty() && !topic.contains('/'))
}

/// The dirty part of a partition whose entries, from its log start in offset order, are
/// `entries`, judged up to `cleaned_through`.
pub fn dirty(entries: &[IndexEntry], cleaned_through: i64, lags: &Lags, now_ms: i64) -> Dirty {
    let mut out = Dirty {
        clean_bytes: 0,
        dirty_bytes: 0,
        from: cleaned_through,
        until: cleaned_through,
        oldest_ms: None,
        ripe_at_ms: None,
    };
    for entry in entries {
        if entry.last_offset < cleaned_through {
            out.clean_bytes += entry.byte_length;
            continue;
        }
        if now_ms.saturating_sub(entry.max_timestamp) < lags.min_lag_ms {
            out.ripe_at_ms = Some(entry.max_timestamp.saturating_add(lags.min_lag_ms));
            break;
        }
        out.dirty_bytes += entry.byte_length;
        out.until = entry.last_offset + 1;
        out.oldest_ms.get_or_insert(entry.max_timestamp);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;
    const MINUTE: i64 = 60_000;

    /// Entries of 10 offsets and 100 bytes each, with the given ages in minutes.
    fn entries(ages: &[i64]) -> Vec<IndexEntry> {
        ages.iter()
            .enumerate()
            .map(|(i, age)| IndexEntry {
                base_offset: i as i64 * 10,
                last_offset: i as i64 * 10 + 9,
                max_timestamp: NOW - age * MINUTE,
                object_key: format!("o{i}"),
                byte_offset: 0,
                byte_length: 100,
                object_size: 100,
                inline: None,
            })
            .collect()
    }

    fn lags(min_lag_minutes: i64, max_lag_minutes: i64) -> Lags {
        Lags {
            min_dirty_ratio: 0.5,
            min_lag_ms: min_lag_minutes * MINUTE,
            max_lag_ms: max_lag_minutes * MINUTE,
        }
    }

    #[test]
    fn the_dirty_share_makes_a_pass_due() {
        let log = entries(&[50, 40, 30, 20]);
        let some = dirty(&log, 30, &lags(0, i64::MAX / MINUTE), NOW);
        assert_eq!((some.clean_bytes, some.dirty_bytes), (300, 100));
        assert_eq!((some.from, some.until), (30, 40));
        assert_eq!(some.due(&lags(0, i64::MAX / MINUTE), NOW), None, "25 %");
        let half = dirty(&log, 20, &lags(0, i64::MAX / MINUTE), NOW);
        assert_eq!(half.due(&lags(0, i64::MAX / MINUTE), NOW), Some(Due::Ratio));
        let none = dirty(&log, 40, &lags(0, i64::MAX / MINUTE), NOW);
        assert_eq!((none.dirty_bytes, none.ratio()), (0, 0.0));
        assert_eq!(none.due(&lags(0, 0), NOW), None, "nothing to clean");
    }

    #[test]
    fn young_records_wait_out_the_minimum_lag() {
        let log = entries(&[50, 40, 3, 1]);
        let part = dirty(&log, 0, &lags(5, i64::MAX / MINUTE), NOW);
        assert_eq!((part.from, part.until, part.dirty_bytes), (0, 20, 200));
        assert_eq!(
            part.ripe_at_ms,
            Some(NOW + 2 * MINUTE),
            "the 3-minute-old entry, at 5"
        );
        // An old entry behind a young one waits too: the dirty part is contiguous.
        let log = entries(&[50, 3, 40]);
        let part = dirty(&log, 0, &lags(5, i64::MAX / MINUTE), NOW);
        assert_eq!(part.until, 10);
    }

    #[test]
    fn the_maximum_lag_makes_a_pass_due_whatever_the_share() {
        let log = entries(&[600, 500, 400, 300, 61]);
        let part = dirty(&log, 40, &lags(0, 60), NOW);
        assert!(part.ratio() < 0.5);
        assert_eq!(part.due(&lags(0, 60), NOW), Some(Due::MaxLag));
        assert_eq!(part.due(&lags(0, 62), NOW), None);
        assert_eq!(part.oldest_ms, Some(NOW - 61 * MINUTE));
    }

    #[test]
    fn status_paths_name_their_topic() {
        let path = compaction_path("orders.v2");
        assert_eq!(topic_of_compaction_path(&path), Some("orders.v2"));
        assert_eq!(topic_of_compaction_path("/v1/topics//compaction"), None);
        assert_eq!(topic_of_compaction_path("/v1/topics/a/b/compaction"), None);
        assert_eq!(topic_of_compaction_path("/metrics"), None);
    }

    #[test]
    fn an_entry_cleaned_in_part_counts_as_dirty() {
        let log = entries(&[50, 40]);
        let part = dirty(&log, 15, &lags(0, i64::MAX / MINUTE), NOW);
        assert_eq!((part.clean_bytes, part.dirty_bytes), (100, 100));
        assert_eq!((part.from, part.until), (15, 20));
    }
}
