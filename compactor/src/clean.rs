//! What key compaction keeps of each batch: Kafka's cleaner rules, as pure functions.
//!
//! A pass over a partition has two steps. [`index`] reads the dirty range's batches in
//! offset order into a [`KeyMap`] until it fills or the range ends; the map's last offset
//! is then how far the pass reaches. [`clean`] judges every batch from the log start up to
//! there, record by record (`Cleaner.shouldRetainRecord` in Kafka):
//!
//! - a record past the pass's reach ([`Rules::reach`]: the map's last offset) is kept (the
//!   next pass judges it);
//! - a record without a key is dropped (a compacted topic refuses them on produce; these
//!   predate a switch of `cleanup.policy`);
//! - a record older than its key's newest offset is dropped;
//! - a tombstone (null value) that is its key's newest is kept until its batch's delete
//!   horizon has passed. The first pass that keeps a tombstone sets that horizon to
//!   `now + delete.retention.ms`, so a consumer has that long to see the delete.
//!
//! A batch keeping every record, and needing no horizon, is left byte for byte. A batch
//! keeping none is dropped, except the last data batch of an idempotent producer, which is
//! kept empty so the producer's last sequence survives (Kafka's `RETAIN_EMPTY`).
//!
//! Transactions, as Kafka's cleaner treats them (the pass never reads past the last stable
//! offset, so every transaction it sees has ended):
//! - a batch of an aborted transaction ([`Aborted`]) is never indexed and loses all its
//!   records;
//! - a transaction marker stays while the pass saw data of its transaction since the
//!   producer's previous marker ([`TxnScan`]); once it saw none, the marker gets a delete
//!   horizon as a tombstone does, and goes when that has passed. An abort marker takes its
//!   aborted range with it ([`TxnScan::abort_markers_dropped`]).
//!
//! Readers find a batch's offsets by position: an index entry's batches follow each other,
//! each starting where the previous one's offsets end. So the compacted range keeps that
//! shape ([`lay_out`]): the offsets compaction emptied are covered by the kept batch before
//! them, whose last offset then passes its last record's (as Kafka's cleaner does), or by
//! an empty batch where that batch is an idempotent producer's (its last offset fixes its
//! last sequence) or where the range starts. The range keeps its first and last offsets, so
//! compaction never moves a log start, and a fetch from an emptied offset gets the next
//! kept record.

use std::collections::{HashMap, HashSet};

use bytes::{Bytes, BytesMut};
use yaks_common::metastore::transactions::AbortedTxn;
use yaks_common::records::{self, OpenBatch, RecordsError};

use crate::key_map::KeyMap;

/// What a pass knows when it judges a batch.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The newest offset of each key, up to the pass's reach.
    pub map: &'a KeyMap,
    /// The last offset the pass judges: the map's last offset, or, for a pass that read
    /// nothing new (only tombstones due), the end of the part judged before.
    pub reach: i64,
    /// The pass's clock.
    pub now_ms: i64,
    /// The topic's `delete.retention.ms`.
    pub delete_retention_ms: i64,
    /// The last offset of each idempotent producer's last data batch in the partition.
    pub last_batch_of_producer: &'a HashMap<i64, i64>,
    /// Most bytes a batch's records may decompress to.
    pub max_records_bytes: usize,
    /// The aborted transactions of the part judged.
    pub aborted: &'a Aborted,
}

/// The aborted transactions of the part of a partition a pass reads, by producer: which
/// transactional batches no read_committed consumer ever reads, and so compaction drops.
#[derive(Debug, Clone, Default)]
pub struct Aborted {
    /// (first offset, abort marker offset) of each producer's aborted transactions.
    by_producer: HashMap<i64, Vec<(i64, i64)>>,
}

impl Aborted {
    /// The aborted transactions `txns` (as the metastore lists them).
    pub fn new(txns: &[AbortedTxn]) -> Aborted {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for txn in txns {
            by_producer
                .entry(txn.producer_id)
                .or_default()
                .push((txn.first_offset, txn.last_offset));
        }
        Aborted { by_producer }
    }

    /// Whether the transactional batch of `producer` at `base` belongs to an aborted
    /// transaction: one of the producer's, begun at or before it and ended after it.
    pub fn holds(&self, producer: i64, base: i64) -> bool {
        self.by_producer.get(&producer).is_some_and(|ranges| {
            ranges
                .iter()
                .any(|&(first, marker)| first <= base && base < marker)
        })
    }

    fn drops(&self, open: &OpenBatch, base: i64) -> bool {
        open.is_transactional() && !open.is_control() && self.holds(open.producer_id(), base)
    }
}

/// What a pass has seen of transactions so far, walking a partition in offset order from
/// its log start (Kafka's `CleanedTransactionMetadata`): whose transactions still have
/// data, so that their markers stay.
#[derive(Debug, Default)]
pub struct TxnScan {
    /// Producers with data of a committed transaction seen since their last marker.
    committed: HashSet<i64>,
    /// Producers with data of an aborted transaction seen (and dropped) since their last
    /// marker.
    aborted: HashSet<i64>,
    /// The offsets of the abort markers dropped and not yet taken.
    dropped: Vec<i64>,
}

impl TxnScan {
    /// The offsets of the abort markers dropped since the last call: the swap that writes
    /// the output without them deletes their aborted ranges in the same transaction.
    pub fn abort_markers_dropped(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.dropped)
    }

    /// Notes a batch the pass could not open (kept as it is): if its header says it is
    /// transactional data, the marker that ends its transaction stays, commit or abort.
    /// Were it aborted data and its abort marker dropped, with the marker's aborted range
    /// deleted with it, read_committed consumers would be served the records.
    pub fn on_unopened(&mut self, batch: &[u8]) {
        if let Ok(info) = yaks_common::batch::header_info(batch)
            && info.is_transactional
            && !info.is_control
        {
            self.aborted.insert(info.producer_id);
            self.committed.insert(info.producer_id);
        }
    }

    /// Notes a data batch; true when it is aborted and goes.
    fn on_data(&mut self, open: &OpenBatch, base: i64, aborted: &Aborted) -> bool {
        if !open.is_transactional() {
            return false;
        }
        let producer = open.producer_id();
        if aborted.drops(open, base) {
            self.aborted.insert(producer);
            true
        } else {
            self.committed.insert(producer);
            false
        }
    }

    /// Notes a marker whose control record's key is `key`; true when no data of its
    /// transaction was seen, so that the marker may go.
    fn on_marker(&mut self, producer: i64, key: Option<&[u8]>) -> bool {
        let committed = self.committed.remove(&producer);
        let aborted = self.aborted.remove(&producer);
        match key.and_then(|k| k.get(2..4)) {
            Some([0, 0]) => !aborted,
            Some([0, 1]) => !committed,
            // Not a marker type Kafka writes: kept.
            _ => false,
        }
    }
}

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Kept as it was.
    Unchanged,
    /// Replaced by these bytes: the same offsets, fewer records or a delete horizon.
    Rewritten(Bytes),
    /// Nothing of it is kept.
    Dropped,
}

/// Records of a batch (or of a pass) before and after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records the batch held.
    pub before: u64,
    /// Records kept.
    pub after: u64,
    /// The delete horizon of the tombstones kept, if any: when a pass may remove them.
    pub tombstones_due_ms: Option<i64>,
}

impl Counts {
    /// Adds another batch's counts (the earliest horizon wins).
    pub fn add(&mut self, other: Counts) {
        self.before += other.before;
        self.after += other.after;
        self.tombstones_due_ms = match (self.tombstones_due_ms, other.tombstones_due_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// Puts the keys of `batch`, whose first offset is `base` (stored batches keep the
/// producer's base offset field; the index says where they are), into `map`, which then
/// covers the whole batch. Records below `from` (judged by an earlier pass, in a batch the
/// dirty part starts inside) are left out, as are aborted ones. `false` once the map is
/// full: the pass reaches the last offset put, and records after it wait for the next pass.
pub fn index(
    batch: &Bytes,
    base: i64,
    from: i64,
    map: &mut KeyMap,
    max_records_bytes: usize,
    aborted: &Aborted,
) -> Result<bool, RecordsError> {
    let open = OpenBatch::open(batch.clone(), max_records_bytes)?;
    if !open.is_control() && !aborted.drops(&open, base) {
        for record in open.records()? {
            let offset = base + i64::from(record.offset_delta);
            if offset < from {
                continue;
            }
            if let Some(key) = record.key
                && !map.put(key, offset)
            {
                return Ok(false);
            }
        }
    }
    map.cover(base + (open.last_offset() - open.base_offset()));
    Ok(true)
}

/// What the pass keeps of `batch`, whose first offset is `base` (see the module's
/// documentation). `txns` carries what the pass saw of transactions before this batch.
pub fn clean(
    batch: &Bytes,
    base: i64,
    rules: &Rules<'_>,
    txns: &mut TxnScan,
) -> Result<(Outcome, Counts), RecordsError> {
    let open = OpenBatch::open(batch.clone(), rules.max_records_bytes)?;
    let records = open.records()?;
    let mut counts = Counts {
        before: records.len() as u64,
        after: records.len() as u64,
        tombstones_due_ms: None,
    };
    if open.is_control() {
        let key = records.first().and_then(|r| r.key);
        if !txns.on_marker(open.producer_id(), key) || base > rules.reach {
            return Ok((Outcome::Unchanged, counts));
        }
        return match open.delete_horizon_ms() {
            Some(horizon) if rules.now_ms >= horizon => {
                if key.and_then(|k| k.get(2..4)) == Some(&[0, 0]) {
                    txns.dropped.push(base);
                }
                counts.after = 0;
                Ok((Outcome::Dropped, counts))
            }
            Some(horizon) => {
                counts.tombstones_due_ms = Some(horizon);
                Ok((Outcome::Unchanged, counts))
            }
            None => {
                let horizon = rules.now_ms.saturating_add(rules.delete_retention_ms);
                counts.tombstones_due_ms = Some(horizon);
                Ok((
                    Outcome::Rewritten(open.rewrite(&records, Some(horizon))?),
                    counts,
                ))
            }
        };
    }
    let aborted = txns.on_data(&open, base, rules.aborted);
    let reach = rules.reach;
    let tombstones_expired = open
        .delete_horizon_ms()
        .is_some_and(|horizon| rules.now_ms >= horizon);
    let kept: Vec<_> = records
        .iter()
        .copied()
        .filter(|_| !aborted)
        .filter(|record| {
            let offset = base + i64::from(record.offset_delta);
            if offset > reach {
                return true;
            }
            let Some(key) = record.key else {
                return false;
            };
            let newest = rules.map.get(key).is_none_or(|newest| offset >= newest);
            newest && (record.value.is_some() || !tombstones_expired)
        })
        .collect();
    counts.after = kept.len() as u64;

    let producer = open.producer_id();
    let last = base + (open.last_offset() - open.base_offset());
    let holds_producer_state =
        producer >= 0 && rules.last_batch_of_producer.get(&producer) == Some(&last);
    if kept.is_empty() && !holds_producer_state {
        return Ok((Outcome::Dropped, counts));
    }
    let keeps_tombstones = kept.iter().any(|record| record.value.is_none());
    let needs_horizon = open.delete_horizon_ms().is_none() && keeps_tombstones;
    let horizon = needs_horizon.then(|| rules.now_ms.saturating_add(rules.delete_retention_ms));
    if keeps_tombstones {
        counts.tombstones_due_ms = open.delete_horizon_ms().or(horizon);
    }
    if kept.len() == records.len() && !needs_horizon {
        return Ok((Outcome::Unchanged, counts));
    }
    Ok((Outcome::Rewritten(open.rewrite(&kept, horizon)?), counts))
}

/// The bytes of a compacted range of offsets `first..=last`: the `kept` batches (each with
/// its first offset, in order, inside the range) with every offset between them covered, so
/// that a reader walking the bytes from `first` finds each batch at its offset (see the
/// module's documentation).
pub fn lay_out(first: i64, last: i64, kept: &[(i64, Bytes)]) -> Result<Bytes, RecordsError> {
    let mut out = BytesMut::new();
    let mut covered = first;
    let mut pending: Option<(i64, &Bytes)> = None;
    for (base, batch) in kept {
        if *base < first {
            return Err(RecordsError::Corrupt(format!(
                "a batch at offset {base}, before the range's first {first}"
            )));
        }
        place(&mut out, pending, covered, *base)?;
        covered = *base;
        pending = Some((*base, batch));
    }
    place(&mut out, pending, covered, last + 1)?;
    Ok(out.freeze())
}

/// Writes `pending` (the batch at its offset, or nothing) and covers every offset from
/// `covered` to `until`.
fn place(
    out: &mut BytesMut,
    pending: Option<(i64, &Bytes)>,
    covered: i64,
    until: i64,
) -> Result<(), RecordsError> {
    let mut covered = covered;
    if let Some((base, batch)) = pending {
        let count = yaks_common::batch::offset_count(batch)
            .ok_or_else(|| RecordsError::Corrupt("not a batch".into()))?;
        let own_end = base + count;
        if own_end > until {
            return Err(RecordsError::Corrupt(format!(
                "the batch at offset {base} runs into offset {until}"
            )));
        }
        let producer = i64::from_be_bytes(batch[43..51].try_into().unwrap_or([0xff; 8]));
        if own_end < until && producer < 0 {
            out.extend_from_slice(&records::with_offset_count(batch, until - base)?);
            return Ok(());
        }
        out.extend_from_slice(batch);
        covered = own_end;
    }
    if covered < until {
        out.extend_from_slice(&records::filler(until - covered)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use yaks_common::batch::testing::{KeyValue, keyed_batch};

    use super::*;

    const MAX: usize = 1 << 20;
    const NOW: i64 = 1_700_000_000_000;
    const DAY: i64 = 86_400_000;

    /// Batches of a partition and their first offsets, from record specs per batch.
    fn partition(batches: &[&[KeyValue<'_>]], producer: i64) -> Vec<(Bytes, i64)> {
        let mut base = 0;
        let mut sequence = 0;
        batches
            .iter()
            .map(|records| {
                let epoch = if producer >= 0 { 0 } else { -1 };
                let first = if producer >= 0 { sequence } else { -1 };
                let batch = Bytes::from(keyed_batch(records, NOW - DAY, producer, epoch, first));
                let at = base;
                base += records.len() as i64;
                sequence += records.len() as i32;
                (batch, at)
            })
            .collect()
    }

    /// (offset, key, value) of records, as a consumer reads them.
    type Read = Vec<(i64, Vec<u8>, Option<Vec<u8>>)>;

    /// What a consumer would read: (offset, key, value) of every record kept.
    fn read(batches: &[(Bytes, i64)]) -> Read {
        let mut out = Vec::new();
        for (batch, base) in batches {
            let open = OpenBatch::open(batch.clone(), MAX).expect("open");
            for r in open.records().expect("records") {
                out.push((
                    base + i64::from(r.offset_delta),
                    r.key.unwrap_or_default().to_vec(),
                    r.value.map(<[u8]>::to_vec),
                ));
            }
        }
        out
    }

    /// One pass over `batches` with a map of `map_bytes`: what it leaves.
    fn pass(
        batches: &[(Bytes, i64)],
        map_bytes: usize,
        now_ms: i64,
        producers: &HashMap<i64, i64>,
    ) -> (Vec<(Bytes, i64)>, Vec<Outcome>) {
        let (kept, outcomes, _) = txn_pass(batches, map_bytes, now_ms, producers, &[]);
        (kept, outcomes)
    }

    /// [`pass`] over a partition with these aborted transactions; also the abort markers
    /// dropped.
    fn txn_pass(
        batches: &[(Bytes, i64)],
        map_bytes: usize,
        now_ms: i64,
        producers: &HashMap<i64, i64>,
        aborted: &[AbortedTxn],
    ) -> (Vec<(Bytes, i64)>, Vec<Outcome>, Vec<i64>) {
        let aborted = Aborted::new(aborted);
        let mut map = KeyMap::with_memory(map_bytes);
        for (batch, base) in batches {
            if !index(batch, *base, 0, &mut map, MAX, &aborted).expect("index") {
                break;
            }
        }
        let rules = Rules {
            map: &map,
            reach: map.last_offset().unwrap_or(-1),
            now_ms,
            delete_retention_ms: DAY,
            last_batch_of_producer: producers,
            max_records_bytes: MAX,
            aborted: &aborted,
        };
        let mut txns = TxnScan::default();
        let mut kept = Vec::new();
        let mut outcomes = Vec::new();
        for (batch, base) in batches {
            let (outcome, _) = clean(batch, *base, &rules, &mut txns).expect("clean");
            match &outcome {
                Outcome::Unchanged => kept.push((batch.clone(), *base)),
                Outcome::Rewritten(bytes) => kept.push((bytes.clone(), *base)),
                Outcome::Dropped => {}
            }
            outcomes.push(outcome);
        }
        (kept, outcomes, txns.abort_markers_dropped())
    }

    fn v(s: &str) -> Option<&[u8]> {
        Some(s.as_bytes())
    }

    #[test]
    fn the_newest_value_per_key_stays_at_its_offset() {
        let batches = partition(
            &[
                &[(v("a"), v("a0")), (v("b"), v("b0"))],
                &[(v("a"), v("a1")), (v("c"), v("c0"))],
                &[(v("b"), v("b1"))],
            ],
            -1,
        );
        let (kept, outcomes) = pass(&batches, MAX, NOW, &HashMap::new());
        assert_eq!(
            read(&kept),
            vec![
                (2, b"a".to_vec(), Some(b"a1".to_vec())),
                (3, b"c".to_vec(), Some(b"c0".to_vec())),
                (4, b"b".to_vec(), Some(b"b1".to_vec())),
            ]
        );
        assert_eq!(outcomes[0], Outcome::Dropped);
        assert_eq!(outcomes[1], Outcome::Unchanged);
        assert_eq!(outcomes[2], Outcome::Unchanged);
    }

    #[test]
    fn a_tombstone_stays_for_delete_retention_then_goes() {
        let batches = partition(
            &[&[(v("a"), v("a0"))], &[(v("a"), None), (v("b"), v("b0"))]],
            -1,
        );
        let (first, _) = pass(&batches, MAX, NOW, &HashMap::new());
        assert_eq!(
            read(&first),
            vec![
                (1, b"a".to_vec(), None),
                (2, b"b".to_vec(), Some(b"b0".to_vec()))
            ]
        );
        let horizon = OpenBatch::open(first[0].0.clone(), MAX)
            .expect("open")
            .delete_horizon_ms();
        assert_eq!(horizon, Some(NOW + DAY), "the first pass sets the horizon");

        let (before, _) = pass(&first, MAX, NOW + DAY - 1, &HashMap::new());
        assert_eq!(read(&before).len(), 2, "kept until the horizon");
        let (after, _) = pass(&first, MAX, NOW + DAY, &HashMap::new());
        assert_eq!(read(&after), vec![(2, b"b".to_vec(), Some(b"b0".to_vec()))]);
    }

    #[test]
    fn records_without_a_key_are_dropped_and_records_past_the_reach_kept() {
        // A map of 4 slots holds 3 keys: the pass reaches offset 2 (keys a, b, c).
        let batches = partition(
            &[
                &[(v("a"), v("a0")), (None, v("keyless")), (v("b"), v("b0"))],
                &[(v("c"), v("c0")), (v("d"), v("d0")), (v("a"), v("a1"))],
            ],
            -1,
        );
        let (kept, _) = pass(&batches, 4 * 24, NOW, &HashMap::new());
        assert_eq!(
            read(&kept),
            vec![
                // a0 is older than nothing the map knows within reach: kept; a1 is past it.
                (0, b"a".to_vec(), Some(b"a0".to_vec())),
                (2, b"b".to_vec(), Some(b"b0".to_vec())),
                (3, b"c".to_vec(), Some(b"c0".to_vec())),
                (4, b"d".to_vec(), Some(b"d0".to_vec())),
                (5, b"a".to_vec(), Some(b"a1".to_vec())),
            ]
        );
    }

    #[test]
    fn a_pass_reaches_the_end_of_every_batch_it_read_whole() {
        // The last batch has no key: read whole, it is within reach and dropped.
        let batches = partition(&[&[(v("a"), v("a0"))], &[(None, v("keyless"))]], -1);
        let (kept, outcomes) = pass(&batches, MAX, NOW, &HashMap::new());
        assert_eq!(read(&kept), vec![(0, b"a".to_vec(), Some(b"a0".to_vec()))]);
        assert_eq!(outcomes[1], Outcome::Dropped);
    }

    #[test]
    fn a_producers_last_batch_stays_empty_with_its_offsets() {
        let batches = partition(
            &[
                &[(v("a"), v("a0"))],
                &[(v("a"), v("a1"))],
                &[(v("a"), v("a2"))],
            ],
            9,
        );
        // Producer 9's last data batch ends at offset 1; offset 2 came from elsewhere in
        // this test, so the map supersedes both of the producer's records.
        let producers = HashMap::from([(9, 1)]);
        let (kept, outcomes) = pass(&batches, MAX, NOW, &producers);
        assert_eq!(outcomes[0], Outcome::Dropped);
        let Outcome::Rewritten(empty) = &outcomes[1] else {
            panic!("the producer's last batch was {:?}", outcomes[1]);
        };
        let empty = OpenBatch::open(empty.clone(), MAX).expect("open");
        assert!(empty.records().expect("records").is_empty());
        assert_eq!(empty.producer_id(), 9);
        assert_eq!(empty.last_offset() - empty.base_offset(), 0);
        assert_eq!(read(&kept), vec![(2, b"a".to_vec(), Some(b"a2".to_vec()))]);
    }

    #[test]
    fn a_small_map_compacts_in_several_passes_to_the_same_result() {
        // 200 batches of 5 records over 40 keys, then passes with a map of 16 slots (14 keys).
        let keys: Vec<String> = (0..40).map(|k| format!("key-{k}")).collect();
        let values: Vec<String> = (0..1000).map(|i| format!("v{i}")).collect();
        let specs: Vec<Vec<KeyValue<'_>>> = (0..200)
            .map(|b| {
                (0..5)
                    .map(|r| {
                        let i = b * 5 + r;
                        (
                            Some(keys[(i * 7) % 40].as_bytes()),
                            Some(values[i].as_bytes()),
                        )
                    })
                    .collect()
            })
            .collect();
        let spec_refs: Vec<&[KeyValue<'_>]> = specs.iter().map(Vec::as_slice).collect();
        let batches = partition(&spec_refs, -1);

        let (whole, _) = pass(&batches, MAX, NOW, &HashMap::new());
        let expected = read(&whole);
        assert_eq!(expected.len(), 40);

        // Each pass indexes from where the previous one reached, and cleans everything.
        let mut current = batches.clone();
        let mut dirty_from = 0i64;
        let mut passes = 0;
        while dirty_from < 1000 {
            passes += 1;
            assert!(passes < 1000, "passes make no progress");
            let mut map = KeyMap::with_memory(16 * 24);
            let aborted = Aborted::default();
            for (batch, base) in &current {
                let open = OpenBatch::open(batch.clone(), MAX).expect("open");
                let last = base + open.last_offset() - open.base_offset();
                if last < dirty_from {
                    continue;
                }
                if !index(batch, *base, dirty_from, &mut map, MAX, &aborted).expect("index") {
                    break;
                }
            }
            let reach = map.last_offset().expect("indexed something");
            let rules = Rules {
                map: &map,
                reach,
                now_ms: NOW,
                delete_retention_ms: DAY,
                last_batch_of_producer: &HashMap::new(),
                max_records_bytes: MAX,
                aborted: &aborted,
            };
            let mut txns = TxnScan::default();
            current = current
                .iter()
                .filter_map(|(batch, base)| {
                    match clean(batch, *base, &rules, &mut txns).expect("clean").0 {
                        Outcome::Unchanged => Some((batch.clone(), *base)),
                        Outcome::Rewritten(bytes) => Some((bytes, *base)),
                        Outcome::Dropped => None,
                    }
                })
                .collect();
            dirty_from = reach + 1;
        }
        assert!(passes > 10, "{passes} passes");
        let left = read(&current);
        assert_eq!(left.len(), expected.len(), "records left");
        assert!(
            left == expected,
            "the passes left other records than one pass"
        );
    }

    /// Walks laid-out bytes as a reader does (each batch where the previous one's offsets
    /// end), patching base offsets as a fetch answer carries them, and decodes the result
    /// with kafka-protocol's decoder: (offset, key, value) per record, and the end offset.
    fn walk(first: i64, bytes: &Bytes) -> (Read, i64, usize) {
        let mut patched = BytesMut::from(&bytes[..]);
        let mut base = first;
        let mut batches = 0;
        for (at, len) in yaks_common::batch::spans(bytes) {
            patched[at..at + 8].copy_from_slice(&base.to_be_bytes());
            base += yaks_common::batch::offset_count(&bytes[at..at + len]).expect("batch");
            batches += 1;
        }
        let mut buf = patched.freeze();
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf)
            .expect("decodes, CRCs included");
        let records = sets
            .iter()
            .flat_map(|set| &set.records)
            .map(|r| {
                (
                    r.offset,
                    r.key.as_deref().unwrap_or_default().to_vec(),
                    r.value.as_deref().map(<[u8]>::to_vec),
                )
            })
            .collect();
        (records, base, batches)
    }

    /// One pass over `batches` (offsets 0..=`last`), laid out, then walked as a reader
    /// does: the bytes, where the walk ended and how many batches it crossed. The walk must
    /// find exactly the records the pass kept, at their offsets.
    fn laid_out_pass(
        batches: &[(Bytes, i64)],
        last: i64,
        producers: &HashMap<i64, i64>,
    ) -> (Bytes, i64, usize) {
        let (kept, _) = pass(batches, MAX, NOW, producers);
        let by_offset: Vec<_> = kept
            .iter()
            .map(|(batch, base)| (*base, batch.clone()))
            .collect();
        let laid = lay_out(0, last, &by_offset).expect("lay out");
        let (records, end, count) = walk(0, &laid);
        assert_eq!(records, read(&kept));
        (laid, end, count)
    }

    #[test]
    fn a_compacted_range_keeps_every_kept_record_at_its_offset() {
        // Offsets 0..=1 emptied at the start: an empty batch covers them.
        let batches = partition(
            &[
                &[(v("a"), v("a0")), (v("b"), v("b0"))],
                &[(v("a"), v("a1")), (v("c"), v("c0"))],
                &[(v("b"), v("b1"))],
            ],
            -1,
        );
        let (_, end, count) = laid_out_pass(&batches, 4, &HashMap::new());
        assert_eq!((end, count), (5, 3), "a filler, then the two kept batches");

        // Offset 1 emptied after a batch of no producer: that batch stretches over it.
        let batches = partition(
            &[
                &[(v("x"), v("x0"))],
                &[(v("a"), v("a0"))],
                &[(v("a"), v("a1"))],
            ],
            -1,
        );
        let (_, end, count) = laid_out_pass(&batches, 2, &HashMap::new());
        assert_eq!((end, count), (3, 2), "no filler");

        // After an idempotent producer's batch the gap gets its own empty batch.
        let batches = partition(
            &[
                &[(v("x"), v("x0"))],
                &[(v("a"), v("a0"))],
                &[(v("a"), v("a1"))],
            ],
            9,
        );
        let (laid, end, count) = laid_out_pass(&batches, 2, &HashMap::from([(9, 2)]));
        assert_eq!((end, count), (3, 3));
        // The producer's batches keep their last offsets, so their last sequences.
        for (at, len) in yaks_common::batch::spans(&laid) {
            let batch = &laid[at..at + len];
            if i64::from_be_bytes(batch[43..51].try_into().expect("8")) == 9 {
                assert_eq!(yaks_common::batch::offset_count(batch), Some(1));
            }
        }

        // Everything emptied: the range is one empty batch.
        let laid = lay_out(10, 19, &[]).expect("lay out");
        let (records, end, count) = walk(10, &laid);
        assert!(records.is_empty());
        assert_eq!((end, count), (20, 1));
    }

    #[test]
    fn batches_out_of_place_are_refused() {
        let batches = partition(&[&[(v("a"), v("a0")), (v("b"), v("b0"))]], -1);
        let batch = batches[0].0.clone();
        assert!(
            lay_out(0, 0, &[(0, batch.clone())]).is_err(),
            "past the range"
        );
        assert!(
            lay_out(5, 9, &[(3, batch.clone())]).is_err(),
            "before the range"
        );
        assert!(
            lay_out(0, 9, &[(0, batch.clone()), (1, batch)]).is_err(),
            "overlapping"
        );
    }

    /// (offset, key, value) of the data records of `batches`, markers left out.
    fn data(batches: &[(Bytes, i64)]) -> Read {
        let data: Vec<(Bytes, i64)> = batches
            .iter()
            .filter(|(batch, _)| {
                !OpenBatch::open(batch.clone(), MAX)
                    .expect("open")
                    .is_control()
            })
            .cloned()
            .collect();
        read(&data)
    }

    /// The offsets of the markers in `batches`.
    fn markers(batches: &[(Bytes, i64)]) -> Vec<i64> {
        batches
            .iter()
            .filter(|(batch, _)| {
                OpenBatch::open(batch.clone(), MAX)
                    .expect("open")
                    .is_control()
            })
            .map(|(_, base)| *base)
            .collect()
    }

    #[test]
    fn aborted_records_and_then_spent_markers_go() {
        use yaks_common::batch::testing::transactional;
        let txn = |records: &[KeyValue<'_>], sequence: i32| {
            Bytes::from(transactional(keyed_batch(
                records,
                NOW - DAY,
                7,
                0,
                sequence,
            )))
        };
        let marker = |commit: bool| records::control_batch(7, 0, commit, 0, NOW - DAY);
        let batches = vec![
            (txn(&[(v("a"), v("a0")), (v("b"), v("b0"))], 0), 0),
            (marker(true), 2),
            (
                txn(&[(v("a"), v("a-aborted")), (v("c"), v("c-aborted"))], 2),
                3,
            ),
            (marker(false), 5),
            (txn(&[(v("b"), v("b1"))], 4), 6),
            (marker(true), 7),
            (
                Bytes::from(keyed_batch(&[(v("a"), v("a2"))], NOW - DAY, -1, -1, -1)),
                8,
            ),
        ];
        let aborted = [AbortedTxn {
            producer_id: 7,
            first_offset: 3,
            last_offset: 5,
        }];
        let committed_view = vec![
            (6, b"b".to_vec(), Some(b"b1".to_vec())),
            (8, b"a".to_vec(), Some(b"a2".to_vec())),
        ];

        // The aborted values never win their keys, and go; every marker stays while the
        // pass saw its transaction's data.
        let (kept, outcomes, dropped) = txn_pass(&batches, MAX, NOW, &HashMap::new(), &aborted);
        assert_eq!(data(&kept), committed_view);
        assert_eq!(markers(&kept), vec![2, 5, 7]);
        assert_eq!(outcomes[2], Outcome::Dropped, "the aborted batch");
        assert!(dropped.is_empty());

        // The next pass finds the first two transactions without data: their markers get
        // a delete horizon; the last one's data is still there.
        let (kept, outcomes, dropped) = txn_pass(&kept, MAX, NOW, &HashMap::new(), &aborted);
        assert!(matches!(outcomes[0], Outcome::Rewritten(_)));
        assert!(matches!(outcomes[1], Outcome::Rewritten(_)));
        assert_eq!(outcomes[3], Outcome::Unchanged);
        assert!(dropped.is_empty());
        let again = txn_pass(&kept, MAX, NOW + DAY - 1, &HashMap::new(), &aborted);
        assert_eq!(markers(&again.0), vec![2, 5, 7], "not before the horizon");

        // Past the horizon they go, and the abort marker's range with it.
        let (kept, _, dropped) = txn_pass(&kept, MAX, NOW + DAY, &HashMap::new(), &aborted);
        assert_eq!(markers(&kept), vec![7]);
        assert_eq!(dropped, vec![5]);
        assert_eq!(data(&kept), committed_view);
    }

    #[test]
    fn a_transactional_batch_the_pass_cannot_open_keeps_its_marker() {
        use yaks_common::batch::testing::transactional;
        let data = transactional(keyed_batch(&[(v("a"), v("a0"))], NOW, 7, 0, 0));
        for key in [[0u8, 0, 0, 0], [0, 0, 0, 1]] {
            let mut txns = TxnScan::default();
            txns.on_unopened(&data);
            assert!(!txns.on_marker(7, Some(&key)), "marker {key:?} stays");
            // Once past it, the next transaction's marker is judged on its own.
            assert!(txns.on_marker(7, Some(&key)));
        }
        // Data of no transaction says nothing about markers.
        let mut txns = TxnScan::default();
        txns.on_unopened(&keyed_batch(&[(v("a"), v("a0"))], NOW, 7, 0, 0));
        assert!(txns.on_marker(7, Some(&[0, 0, 0, 0])));
    }
}
