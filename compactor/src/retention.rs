//! Retention: how far a partition's log start offset may move, from its index entries.
//!
//! A pure function, as Kafka applies retention to segments: with `retention.ms`, the
//! oldest entries whose newest record is older than the limit go; with `retention.bytes`,
//! the oldest entries go while what remains without them is still at least the limit. Only
//! whole entries go, oldest first, so the new log start is always an entry's end + 1. The
//! caller moves the log start (`Metastore::advance_log_start`); objects no entry above it
//! refers to are then collected after the grace period.

use yaks_common::metastore::IndexEntry;

/// A topic's retention limits; `None` (Kafka's -1) means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `retention.ms`.
    pub max_age_ms: Option<i64>,
    /// `retention.bytes`.
    pub max_bytes: Option<i64>,
}

/// The new log start offset for `entries` (in offset order, from the current log start),
/// or `None` when nothing expires.
pub fn new_log_start(entries: &[IndexEntry], retention: Retention, now_ms: i64) -> Option<i64> {
    let mut expired = 0usize;
    if let Some(max_age) = retention.max_age_ms {
        expired = entries
            .iter()
            .take_while(|e| e.max_timestamp < now_ms.saturating_sub(max_age))
            .count();
    }
    if let Some(max_bytes) = retention.max_bytes {
        let mut remaining: i64 = entries.iter().map(|e| e.byte_length).sum();
        let mut by_size = 0usize;
        for entry in entries {
            if remaining - entry.byte_length < max_bytes {
                break;
            }
            remaining -= entry.byte_length;
            by_size += 1;
        }
        expired = expired.max(by_size);
    }
    expired
        .checked_sub(1)
        .and_then(|last| entries.get(last))
        .map(|e| e.last_offset + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base: i64, last: i64, bytes: i64, time: i64) -> IndexEntry {
        IndexEntry {
            base_offset: base,
            last_offset: last,
            max_timestamp: time,
            object_key: format!("objects/{base}"),
            byte_offset: 0,
            byte_length: bytes,
            object_size: bytes,
            inline: None,
        }
    }

    fn log() -> Vec<IndexEntry> {
        vec![
            entry(0, 9, 100, 1_000),
            entry(10, 19, 100, 2_000),
            entry(20, 29, 100, 5_000),
            entry(30, 39, 100, 9_000),
        ]
    }

    #[test]
    fn old_entries_expire_by_age_oldest_first() {
        let keep_3s = Retention {
            max_age_ms: Some(3_000),
            max_bytes: None,
        };
        assert_eq!(new_log_start(&log(), keep_3s, 6_000), Some(20));
        assert_eq!(new_log_start(&log(), keep_3s, 3_500), None);
        assert_eq!(
            new_log_start(&log(), keep_3s, 100_000),
            Some(40),
            "all of it"
        );
    }

    #[test]
    fn a_size_limit_drops_the_oldest_while_enough_remains() {
        let keep_250 = Retention {
            max_age_ms: None,
            max_bytes: Some(250),
        };
        // 400 bytes: dropping one leaves 300 ≥ 250, dropping two would leave 200 < 250.
        assert_eq!(new_log_start(&log(), keep_250, 0), Some(10));
        let both = Retention {
            max_age_ms: Some(3_000),
            max_bytes: Some(250),
        };
        assert_eq!(
            new_log_start(&log(), both, 6_000),
            Some(20),
            "the further one wins"
        );
        let unlimited = Retention {
            max_age_ms: None,
            max_bytes: None,
        };
        assert_eq!(new_log_start(&log(), unlimited, i64::MAX), None);
    }
}
