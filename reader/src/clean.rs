//! Offset ranges known to hold no aborted transaction, so that read_committed fetches over
//! them need not ask PostgreSQL.
//!
//! A read_committed fetch returns data below the partition's last stable offset (LSO) and
//! lists the aborted transactions whose range meets what it returns; the list comes from
//! PostgreSQL, a query per fetch (1.5 ms on average with a loaded `yaks dev`, on top of a
//! warm fetch's own work). Once a query finds no aborted transaction meeting `[from, lso)`,
//! none ever will:
//! - every transaction that began below the LSO had ended when the LSO was read, and an
//!   aborted one's row is written by the same PostgreSQL transaction that ends it, so the
//!   query saw it;
//! - every transaction still open then, or begun later, starts at or above the LSO;
//! - rows only go away afterwards (retention, key compaction), which keeps a range clean.
//!
//! So only "none" is remembered. A list of aborted transactions never is: key compaction
//! may drop an abort marker with its records, and a client told of an aborted transaction
//! whose marker is gone skips that producer's later batches until an abort marker it never
//! sees.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;

use crate::tail::PartitionKey;

/// Partitions remembered at most; past that the memory starts over (a reader serving more
/// read_committed partitions than this asks PostgreSQL again, as it did before).
const MAX_PARTITIONS: usize = 65_536;

/// One clean range per partition: the last one learned, grown while consumers read on.
#[derive(Debug, Default)]
pub struct CleanRanges {
    ranges: Mutex<HashMap<PartitionKey, Range<i64>>>,
}

impl CleanRanges {
    /// Whether `range` of `key` is known to meet no aborted transaction.
    pub fn covers(&self, key: PartitionKey, range: &Range<i64>) -> bool {
        let ranges = self.ranges.lock().unwrap_or_else(|p| p.into_inner());
        ranges
            .get(&key)
            .is_some_and(|clean| clean.start <= range.start && range.end <= clean.end)
    }

    /// `range` of `key` meets no aborted transaction and ends at or below the LSO it was
    /// asked under (see the module's documentation). Joins the range already known when
    /// the two meet, else replaces it: a consumer reading on extends one range.
    pub fn learn(&self, key: PartitionKey, range: Range<i64>) {
        if range.is_empty() {
            return;
        }
        let mut ranges = self.ranges.lock().unwrap_or_else(|p| p.into_inner());
        if ranges.len() >= MAX_PARTITIONS && !ranges.contains_key(&key) {
            ranges.clear();
        }
        let joined = match ranges.get(&key) {
            Some(known) if known.start <= range.end && range.start <= known.end => {
                known.start.min(range.start)..known.end.max(range.end)
            }
            _ => range,
        };
        ranges.insert(key, joined);
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    const KEY: PartitionKey = (Uuid::nil(), 0);

    #[test]
    fn nothing_is_clean_until_learned() {
        let clean = CleanRanges::default();
        assert!(!clean.covers(KEY, &(0..1)));
        clean.learn(KEY, 10..20);
        assert!(clean.covers(KEY, &(10..20)));
        assert!(clean.covers(KEY, &(12..15)));
        assert!(!clean.covers(KEY, &(9..15)));
        assert!(!clean.covers(KEY, &(15..21)));
        assert!(!clean.covers((Uuid::nil(), 1), &(12..15)));
    }

    #[test]
    fn a_consumer_reading_on_extends_one_range() {
        let clean = CleanRanges::default();
        clean.learn(KEY, 0..100);
        clean.learn(KEY, 100..250);
        clean.learn(KEY, 50..300);
        assert!(clean.covers(KEY, &(0..300)));
    }

    #[test]
    fn a_range_apart_from_the_known_one_replaces_it() {
        let clean = CleanRanges::default();
        clean.learn(KEY, 0..100);
        clean.learn(KEY, 500..600);
        assert!(clean.covers(KEY, &(500..600)));
        assert!(!clean.covers(KEY, &(0..100)));
        // An empty range teaches nothing.
        clean.learn(KEY, 700..700);
        assert!(clean.covers(KEY, &(500..600)));
    }
}
