//! Key compaction of one partition: a pass keeps the newest record of each key, reading
//! only what it must and holding a fixed amount of memory.
//!
//! A pass:
//! 1. takes the partition's dirty part ([`dirty`]) and does nothing unless a pass is due
//!    (by the dirty ratio, the maximum lag, or because tombstones a pass kept have reached
//!    their delete horizon: then the pass judges the clean part alone, with an empty map);
//! 2. reads the dirty part batch by batch into a [`KeyMap`] of `compactor.key_map_bytes`
//!    until the map fills or the part ends: the pass *reaches* the last offset read, and
//!    what lies beyond waits for the next pass (a partition with more keys than the map
//!    holds is compacted in several passes, never with more memory);
//! 3. judges every batch from the log start through the reach ([`clean`]), in chunks of
//!    entries of about `compactor.target_bytes`: a chunk where nothing changes is left
//!    alone (merging is the planner's business), any other is laid out as one object, put,
//!    and swapped for its entries;
//! 4. moves the partition's `cleaned_through` past the reach, and records the earliest
//!    delete horizon of the tombstones it kept.
//!
//! Every swap and the final move are compare-and-swaps on the entries read and on
//! `cleaned_through` being where the pass found it: when another compactor, a merge or
//! retention changed them first, the pass stops, deletes its pending output and reports
//! [`PassOutcome::Lost`]. Chunks swapped before that stay, and that is safe: a record is
//! only dropped for a newer record of its key at or below the reach, which every pass
//! keeps, so a log partly compacted by one pass is one any later pass continues from. A
//! crash leaves at most an output no entry refers to, which garbage collection deletes.

use bytes::Bytes;
use tracing::{info, warn};
use yaks_common::batch::{batch_times, offset_count, spans};
use yaks_common::dirty::{Dirty, Lags, dirty};
use yaks_common::error::StoreError;
use yaks_common::metastore::transactions::TxnError;
use yaks_common::metastore::{Cleaning, CompactionSwap, IndexEntry};
use yaks_common::objstore::ObjectStore;
use yaks_common::records::MAX_OPENED_BYTES;

use crate::clean::{self, Aborted, Counts, Outcome, Rules, TxnScan};
use crate::key_map::KeyMap;
use crate::run::CompactorStore;
use crate::worker::{JobTarget, put_and_swap, read_entry};

/// A compacted topic's settings, as its configs give them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeyCompaction {
    /// `min.cleanable.dirty.ratio`, `min.compaction.lag.ms`, `max.compaction.lag.ms`.
    pub lags: Lags,
    /// `delete.retention.ms`: how long a tombstone stays once a pass has seen it.
    pub delete_retention_ms: i64,
}

/// The compactor's bounds on one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassLimits {
    /// Memory of the key map.
    pub map_bytes: usize,
    /// Input bytes per output object.
    pub chunk_bytes: i64,
}

/// What a pass did.
#[derive(Debug, Clone, PartialEq)]
pub enum PassOutcome {
    /// No pass was due: the dirty part as found.
    NotDue(Dirty),
    /// The pass judged everything up to `reach`.
    Compacted {
        /// The dirty part it started from.
        dirty: Dirty,
        /// The last offset it judged; `cleaned_through` is now one past it.
        reach: i64,
        /// Records judged and kept.
        records: Counts,
        /// Bytes of the batches judged.
        bytes_in: u64,
        /// Bytes kept of them (fillers and rewritten headers included).
        bytes_out: u64,
        /// Objects written.
        outputs: usize,
    },
    /// Something else changed the partition first; the rest waits for the next pass.
    Lost,
}

/// One key compaction pass over a partition whose index entries from its log start, in
/// offset order, are `entries`, and where compaction stands as `cleaning` says.
#[allow(clippy::too_many_arguments)]
pub async fn compact_partition(
    store: &dyn CompactorStore,
    objects: &dyn ObjectStore,
    target: &JobTarget<'_>,
    entries: &[IndexEntry],
    cleaning: Cleaning,
    settings: &KeyCompaction,
    limits: &PassLimits,
    now_ms: i64,
) -> Result<PassOutcome, StoreError> {
    let cleaned_through = cleaning.cleaned_through;
    let part = dirty(entries, cleaned_through, &settings.lags, now_ms);
    let tombstones_due = cleaning.tombstones_due_ms.is_some_and(|due| due <= now_ms);
    if part.due(&settings.lags, now_ms).is_none() && !tombstones_due {
        return Ok(PassOutcome::NotDue(part));
    }

    // The caller hands entries below the last stable offset only: every transaction met
    // here has ended, and the aborted ones are listed.
    let aborted = match entries.first() {
        Some(first) => store
            .aborted_transactions(
                target.topic_id,
                target.partition_index,
                first.base_offset,
                part.until,
            )
            .await
            .map_err(txn_store_error)?,
        None => Vec::new(),
    };
    let aborted = Aborted::new(&aborted);
    let mut map = KeyMap::with_memory(limits.map_bytes);
    'index: for entry in entries
        .iter()
        .filter(|e| e.last_offset >= part.from && e.base_offset < part.until)
    {
        let bytes = read_entry(objects, target, entry).await?;
        for (base, batch) in batches(&bytes, entry.base_offset) {
            let last = base + offset_count(&batch).unwrap_or(1) - 1;
            if last < part.from {
                continue;
            }
            match clean::index(
                &batch,
                base,
                part.from,
                &mut map,
                MAX_OPENED_BYTES,
                &aborted,
            ) {
                Ok(true) => {}
                Ok(false) => break 'index,
                Err(e) => {
                    // Its keys stay unknown, so nothing is dropped in its favour, and the
                    // judging step keeps it as it is.
                    warn!(topic = target.topic, partition = target.partition_index, base, error = %e, "a batch key compaction cannot open is kept as it is");
                    map.cover(last);
                }
            }
        }
    }
    // With nothing dirty read (a pass for tombstones alone), the pass judges the clean
    // part: every key there is already its newest, and only expired tombstones go.
    let reach = map.last_offset().unwrap_or(cleaned_through - 1);

    let last_batches = store
        .last_batches(target.topic_id, target.partition_index)
        .await?;
    let rules = Rules {
        map: &map,
        reach,
        now_ms,
        delete_retention_ms: settings.delete_retention_ms,
        last_batch_of_producer: &last_batches,
        max_records_bytes: MAX_OPENED_BYTES,
        aborted: &aborted,
    };
    let mut txns = TxnScan::default();
    let judged: Vec<&IndexEntry> = entries
        .iter()
        .take_while(|e| e.base_offset <= reach)
        .collect();
    let mut records = Counts::default();
    let (mut bytes_in, mut bytes_out, mut outputs) = (0u64, 0u64, 0usize);
    for chunk in chunks(&judged, limits.chunk_bytes) {
        let mut kept: Vec<(i64, Bytes)> = Vec::new();
        let mut changed = false;
        let mut chunk_in = 0u64;
        for entry in chunk {
            let bytes = read_entry(objects, target, entry).await?;
            for (base, batch) in batches(&bytes, entry.base_offset) {
                chunk_in += batch.len() as u64;
                let cleaned = clean::clean(&batch, base, &rules, &mut txns);
                let (outcome, counts) = cleaned.unwrap_or_else(|e| {
                    warn!(topic = target.topic, partition = target.partition_index, base, error = %e, "a batch key compaction cannot open is kept as it is");
                    txns.on_unopened(&batch);
                    (Outcome::Unchanged, Counts::default())
                });
                records.add(counts);
                match outcome {
                    Outcome::Unchanged => kept.push((base, batch)),
                    Outcome::Rewritten(rewritten) => {
                        changed = true;
                        kept.push((base, rewritten));
                    }
                    Outcome::Dropped => changed = true,
                }
            }
        }
        bytes_in += chunk_in;
        let abort_markers_dropped = txns.abort_markers_dropped();
        if !changed {
            bytes_out += chunk_in;
            continue;
        }
        let (first, last) = (chunk[0].base_offset, chunk[chunk.len() - 1].last_offset);
        let body = clean::lay_out(first, last, &kept).map_err(|e| {
            StoreError::Internal(format!(
                "laying out offsets {first}..={last} of {}/{}: {e}",
                target.topic, target.partition_index
            ))
        })?;
        bytes_out += body.len() as u64;
        let swap = ChunkSwap {
            chunk,
            body,
            cleaned_through,
            abort_markers_dropped,
        };
        if !swap_chunk(store, objects, target, swap, now_ms).await? {
            return Ok(PassOutcome::Lost);
        }
        outputs += 1;
    }
    if !store
        .advance_cleaned_through(
            target.topic_id,
            target.partition_index,
            cleaned_through,
            reach + 1,
            records.tombstones_due_ms,
        )
        .await?
    {
        return Ok(PassOutcome::Lost);
    }
    info!(
        topic = target.topic,
        partition = target.partition_index,
        from = part.from,
        reach,
        keys = map.len(),
        records_in = records.before,
        records_out = records.after,
        bytes_in,
        bytes_out,
        outputs,
        "key compaction pass done"
    );
    Ok(PassOutcome::Compacted {
        dirty: part,
        reach,
        records,
        bytes_in,
        bytes_out,
        outputs,
    })
}

/// A chunk's output, for [`swap_chunk`].
struct ChunkSwap<'a> {
    /// The entries it replaces.
    chunk: &'a [&'a IndexEntry],
    /// Its bytes.
    body: Bytes,
    /// The partition's `cleaned_through` as the pass found it.
    cleaned_through: i64,
    /// The abort markers it leaves out.
    abort_markers_dropped: Vec<i64>,
}

/// Puts a chunk's output and swaps it for the chunk's entries, checking that the
/// partition's `cleaned_through` is still where the pass found it; false (output deleted)
/// if anything changed first.
async fn swap_chunk(
    store: &dyn CompactorStore,
    objects: &dyn ObjectStore,
    target: &JobTarget<'_>,
    swap: ChunkSwap<'_>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let ChunkSwap {
        chunk,
        body,
        cleaned_through,
        abort_markers_dropped,
    } = swap;
    let batches = spans(&body);
    let batch_count = i32::try_from(batches.len()).unwrap_or(i32::MAX);
    // Fillers and batches emptied of records hold no timestamp a lookup could find.
    // (`batch::header_info` would refuse them: their offsets outnumber their records.)
    let max_timestamp = batches
        .iter()
        .filter_map(|&(at, len)| {
            let batch = &body[at..at + len];
            let records = i32::from_be_bytes(batch.get(57..61)?.try_into().ok()?);
            (records > 0).then(|| batch_times(batch).map(|t| t.max_timestamp))?
        })
        .max()
        .unwrap_or(-1);
    let compaction = CompactionSwap {
        batch_count,
        max_timestamp,
        cleaned_from: cleaned_through,
        cleaned_through,
        abort_markers_dropped,
    };
    let swapped = put_and_swap(
        store,
        objects,
        target,
        chunk,
        body,
        Some(compaction),
        now_ms,
    );
    Ok(swapped.await?.is_some())
}

/// A metastore failure reading the aborted transactions, as the compactor's error.
fn txn_store_error(e: TxnError) -> StoreError {
    match e {
        TxnError::Store(e) => e,
        other => StoreError::Internal(other.to_string()),
    }
}

/// The batches of an entry's bytes with the offset each starts at: stored batches follow
/// each other, each where the previous one's offsets end.
fn batches(bytes: &Bytes, first_offset: i64) -> impl Iterator<Item = (i64, Bytes)> + '_ {
    let mut next = first_offset;
    spans(bytes).into_iter().map(move |(at, len)| {
        let batch = bytes.slice(at..at + len);
        let base = next;
        next += offset_count(&batch).unwrap_or(1);
        (base, batch)
    })
}

/// Runs of contiguous entries of at most `max_bytes` each (an entry larger than that alone).
fn chunks<'a>(entries: &'a [&'a IndexEntry], max_bytes: i64) -> Vec<&'a [&'a IndexEntry]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, entry) in entries.iter().enumerate() {
        let contiguous = i == start || entry.base_offset == entries[i - 1].last_offset + 1;
        if i > start && (!contiguous || bytes + entry.byte_length > max_bytes) {
            out.push(&entries[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += entry.byte_length;
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(base: i64, last: i64, bytes: i64) -> IndexEntry {
        IndexEntry {
            base_offset: base,
            last_offset: last,
            max_timestamp: 0,
            object_key: format!("o{base}"),
            byte_offset: 0,
            byte_length: bytes,
            object_size: bytes,
            inline: None,
        }
    }

    #[test]
    fn chunks_are_contiguous_and_bounded() {
        let entries = [
            entry(0, 9, 40),
            entry(10, 19, 40),
            entry(20, 29, 40),
            entry(30, 39, 200),
            entry(50, 59, 10), // after a gap
            entry(60, 69, 10),
        ];
        let refs: Vec<&IndexEntry> = entries.iter().collect();
        let bases: Vec<Vec<i64>> = chunks(&refs, 100)
            .iter()
            .map(|c| c.iter().map(|e| e.base_offset).collect())
            .collect();
        assert_eq!(bases, vec![vec![0, 10], vec![20], vec![30], vec![50, 60]]);
        assert!(chunks(&[], 100).is_empty());
    }
}

#[cfg(test)]
mod pass_tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;
    use yaks_common::batch::testing::keyed_batch;
    use yaks_common::ids::ObjectId;
    use yaks_common::metastore::{
        AppendBatch, Log, MemoryMetastore, ObjectCommit, PartitionAppend, Topics,
    };
    use yaks_common::objstore::MemoryObjectStore;
    use yaks_common::records::OpenBatch;

    use super::*;

    const NOW: i64 = 1_700_000_000_000;
    const DAY: i64 = 86_400_000;

    /// A one-partition topic with `rounds` batches of 20 keyed records (`k0`..`k19`, value
    /// `r{round}`), each flushed in an object of its own, then one batch of tombstones for
    /// `k0`..`k4`: offsets 0..20 × rounds + 5.
    async fn changelog(
        store: &MemoryMetastore,
        objects: &MemoryObjectStore,
        rounds: usize,
    ) -> Uuid {
        let topic = store
            .create_topic("changelog", 1, &BTreeMap::new())
            .await
            .expect("create")
            .expect("new");
        let keys: Vec<String> = (0..20).map(|k| format!("k{k}")).collect();
        for round in 0..=rounds {
            let value = format!("r{round}");
            let records: Vec<_> = if round == rounds {
                keys[..5]
                    .iter()
                    .map(|k| (Some(k.as_bytes()), None))
                    .collect()
            } else {
                keys.iter()
                    .map(|k| (Some(k.as_bytes()), Some(value.as_bytes())))
                    .collect()
            };
            let batch = keyed_batch(&records, NOW - DAY, -1, -1, -1);
            let key = format!("flush-{round}");
            let object = ObjectId::new(round as i64 + 1);
            objects
                .put(key.clone(), Bytes::from(batch.clone()))
                .await
                .expect("put");
            let appends = vec![PartitionAppend {
                topic_id: topic.topic_id,
                partition_index: 0,
                batches: vec![AppendBatch {
                    byte_offset: 0,
                    byte_length: batch.len() as i64,
                    offset_count: records.len() as i64,
                    max_timestamp: NOW - DAY,
                    producer: None,
                    commit_deadline_ms: None,
                }],
            }];
            store
                .commit_object(ObjectCommit {
                    object,
                    object_key: &key,
                    size_bytes: batch.len() as i64,
                    appends: &appends,
                    now_ms: NOW - DAY,
                    producers_expire_before_ms: 0,
                })
                .await
                .expect("commit");
        }
        topic.topic_id
    }

    /// What a consumer reads from offset 0: (offset, key, value).
    async fn read(
        store: &MemoryMetastore,
        objects: &MemoryObjectStore,
        topic_id: Uuid,
    ) -> Vec<(i64, String, Option<String>)> {
        let entries = store
            .index_entries(&[(topic_id, 0, 0)], 1000)
            .await
            .expect("entries")
            .remove(0);
        let mut out = Vec::new();
        for entry in &entries {
            let bytes = read_entry(objects, &target(topic_id), entry)
                .await
                .expect("read");
            for (base, batch) in batches(&bytes, entry.base_offset) {
                let open = OpenBatch::open(batch, MAX_OPENED_BYTES).expect("open");
                for record in open.records().expect("records") {
                    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                    out.push((
                        base + i64::from(record.offset_delta),
                        record.key.map(text).unwrap_or_default(),
                        record.value.map(text),
                    ));
                }
            }
        }
        out
    }

    fn target(topic_id: Uuid) -> JobTarget<'static> {
        JobTarget {
            topic_id,
            topic: "changelog",
            partition_index: 0,
            key_prefix: "c/",
        }
    }

    fn settings(min_dirty_ratio: f64) -> KeyCompaction {
        KeyCompaction {
            lags: Lags {
                min_dirty_ratio,
                min_lag_ms: 0,
                max_lag_ms: i64::MAX,
            },
            delete_retention_ms: DAY,
        }
    }

    /// A pass with a map of `map_bytes`, due whenever anything is dirty.
    async fn pass(
        store: &MemoryMetastore,
        objects: &MemoryObjectStore,
        topic_id: Uuid,
        map_bytes: usize,
        now_ms: i64,
    ) -> PassOutcome {
        let entries = store
            .index_entries(&[(topic_id, 0, 0)], 1000)
            .await
            .expect("entries")
            .remove(0);
        let cleaning = store.cleaning(topic_id, 0).await.expect("cleaning");
        let limits = PassLimits {
            map_bytes,
            chunk_bytes: 1 << 20,
        };
        compact_partition(
            store,
            objects,
            &target(topic_id),
            &entries,
            cleaning,
            &settings(0.0),
            &limits,
            now_ms,
        )
        .await
        .expect("pass")
    }

    /// The newest value of `k5`..`k19` (round `rounds - 1`) at its original offset.
    fn live(rounds: usize) -> Vec<(i64, String, Option<String>)> {
        let last = (rounds - 1) as i64 * 20;
        (5..20)
            .map(|k| (last + k, format!("k{k}"), Some(format!("r{}", rounds - 1))))
            .collect()
    }

    #[tokio::test]
    async fn a_pass_keeps_the_newest_value_per_key_and_tombstones_until_their_horizon() {
        let (store, objects) = (MemoryMetastore::default(), MemoryObjectStore::default());
        let topic_id = changelog(&store, &objects, 10).await;
        let PassOutcome::Compacted { reach, records, .. } =
            pass(&store, &objects, topic_id, 1 << 20, NOW).await
        else {
            panic!("a pass is due: everything is dirty");
        };
        assert_eq!(reach, 204);
        assert_eq!((records.before, records.after), (205, 20));
        assert_eq!(records.tombstones_due_ms, Some(NOW + DAY));
        let tombstones: Vec<_> = (0..5).map(|k| (200 + k, format!("k{k}"), None)).collect();
        assert_eq!(
            read(&store, &objects, topic_id).await,
            [live(10), tombstones].concat()
        );
        let state = &store
            .partition_states(&[(topic_id, 0)])
            .await
            .expect("states")[0];
        assert_eq!(
            (state.log_start_offset, state.next_offset),
            (0, 205),
            "compaction moves neither end of the log"
        );

        // Nothing new and the tombstones not due: no pass. Once due, they go.
        assert!(matches!(
            pass(&store, &objects, topic_id, 1 << 20, NOW + DAY - 1).await,
            PassOutcome::NotDue(_)
        ));
        assert!(matches!(
            pass(&store, &objects, topic_id, 1 << 20, NOW + DAY).await,
            PassOutcome::Compacted { .. }
        ));
        assert_eq!(read(&store, &objects, topic_id).await, live(10));
        let cleaning = store.cleaning(topic_id, 0).await.expect("cleaning");
        assert_eq!(
            (cleaning.cleaned_through, cleaning.tombstones_due_ms),
            (205, None)
        );
    }

    #[tokio::test]
    async fn a_map_smaller_than_the_keys_compacts_in_several_passes() {
        let (store, objects) = (MemoryMetastore::default(), MemoryObjectStore::default());
        let topic_id = changelog(&store, &objects, 6).await;
        // 10 slots, 9 keys at most: each pass reaches less than one round of 20 keys.
        let mut passes = 0;
        let mut reaches = Vec::new();
        while let PassOutcome::Compacted { reach, .. } =
            pass(&store, &objects, topic_id, 240, NOW).await
        {
            passes += 1;
            reaches.push(reach);
            assert!(passes < 50, "passes end");
        }
        assert!(passes > 10, "{passes} passes: {reaches:?}");
        assert!(reaches.windows(2).all(|w| w[0] < w[1]));
        let tombstones: Vec<_> = (0..5).map(|k| (120 + k, format!("k{k}"), None)).collect();
        assert_eq!(
            read(&store, &objects, topic_id).await,
            [live(6), tombstones].concat()
        );
    }
}
