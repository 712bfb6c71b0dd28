//! What committing one flushed object changes, worked out from the state it reads.
//!
//! A commit reads the partitions' offsets (locked) and the producer states of the
//! idempotent batches, then [`plan_commit`] decides, batch by batch in object order, which
//! are stored and at which offsets (see [`super::producers`] for the rules). Stored batches
//! that lie next to each other become one index row; a duplicate or refused batch between
//! them splits the partition's range, so its bytes stay in the object but are never indexed.
//! Offsets stay contiguous: only stored batches take offsets.
//!
//! A batch whose commit deadline (in the metastore's clock) is already near is *expired*:
//! not stored, whatever the producer rules say, because its gateway is about to give up on
//! it. The plan carries the earliest deadline among the batches it stores, which the
//! metastore enforces at COMMIT.
//!
//! Batches of transactional producers are checked against the producer's transaction as
//! the commit reads it, under the same partition locks an end of the transaction takes
//! (Kafka's KIP-890 verification, enforced where the offsets are assigned): a
//! transactional batch is stored only for a partition in its producer's open
//! transaction at its epoch, so nothing lands after the transaction's marker; the first
//! one stored in a partition records where the transaction starts there, which holds the
//! partition's last stable offset until it ends.
//!
//! Pure, so both metastores share it and it is tested without a database.

use std::collections::{BTreeSet, HashMap, HashSet};

use uuid::Uuid;

use super::model::{
    AppendResult, BatchOutcome, PartitionAppend, PartitionState, ProducerBatch, SequenceError,
};
use super::producers::{self, ProducerState, Verdict};

/// Identifies a [`ProducerState`]: (producer id, topic, partition).
pub type ProducerKey = (i64, Uuid, i32);

/// An index row to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEntry {
    /// Topic.
    pub topic_id: Uuid,
    /// Partition.
    pub partition_index: i32,
    /// First offset.
    pub base_offset: i64,
    /// Last offset.
    pub last_offset: i64,
    /// Largest max timestamp of its batches.
    pub max_timestamp: i64,
    /// Where it starts in the object.
    pub byte_offset: i64,
    /// Its length.
    pub byte_length: i64,
    /// Batches in it.
    pub batch_count: i32,
}

/// A producer's transaction as a commit reads it, for the producers of its batches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerTransaction {
    /// Its transactional id.
    pub transactional_id: String,
    /// The epoch that holds it.
    pub producer_epoch: i16,
    /// Whether a transaction is open.
    pub open: bool,
    /// The open transaction's partitions, each with the offset of its first stored batch
    /// there if the store read it. A store that reads none (`None` for every partition)
    /// gets a start for each partition this commit stores the transaction's data in, and
    /// keeps the first start of each: commits of a partition come in offset order.
    pub partitions: HashMap<(Uuid, i32), Option<i64>>,
}

/// Where an open transaction starts in a partition: the offset of its first stored batch,
/// which holds the partition's last stable offset until the transaction ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionStart {
    /// The transaction's transactional id.
    pub transactional_id: String,
    /// Its producer id.
    pub producer_id: i64,
    /// Topic.
    pub topic_id: Uuid,
    /// Partition.
    pub partition_index: i32,
    /// The offset of the transaction's first batch stored there.
    pub first_offset: i64,
}

/// Everything a commit writes.
#[derive(Debug, Default)]
pub struct CommitPlan {
    /// Index rows, in (partition, offset) order.
    pub entries: Vec<PlannedEntry>,
    /// Partitions whose next offset moved, with the new value.
    pub next_offsets: Vec<(Uuid, i32, i64)>,
    /// Producer states that changed.
    pub producer_states: Vec<(ProducerKey, ProducerState)>,
    /// The answer, one per partition that exists.
    pub results: Vec<AppendResult>,
    /// The earliest commit deadline among the stored batches: the commit must complete
    /// before it.
    pub commit_deadline_ms: Option<i64>,
    /// Where open transactions start in partitions they had stored nothing in, as far as
    /// the commit read.
    pub transaction_starts: Vec<TransactionStart>,
}

/// A batch whose deadline is less than this far ahead of the metastore's clock is not
/// worth committing: the rest of the commit would likely outlast it.
pub const DEADLINE_SLACK_MS: i64 = 250;

/// The producer keys whose state a commit of `appends` must read.
pub fn producer_keys(appends: &[PartitionAppend]) -> Vec<ProducerKey> {
    let mut keys = Vec::new();
    let mut seen = HashSet::new();
    for append in appends {
        for batch in &append.batches {
            if let Some(producer) = &batch.producer {
                let key = (
                    producer.producer_id,
                    append.topic_id,
                    append.partition_index,
                );
                if seen.insert(key) {
                    keys.push(key);
                }
            }
        }
    }
    keys
}

/// The producer ids whose transaction a commit of `appends` must read: those with a
/// transactional batch, and idempotent ones (a plain batch of a producer whose transaction
/// is open in the partition is refused, as Kafka does).
pub fn transactional_producers(appends: &[PartitionAppend]) -> Vec<i64> {
    let mut ids: Vec<i64> = appends
        .iter()
        .flat_map(|append| append.batches.iter())
        .filter_map(|batch| batch.producer.map(|p| p.producer_id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Why the producer's transaction refuses `producer`'s batch for `partition`, if it does.
fn transaction_refusal(
    transactions: &HashMap<i64, ProducerTransaction>,
    producer: &ProducerBatch,
    partition: (Uuid, i32),
) -> Option<SequenceError> {
    let transaction = transactions.get(&producer.producer_id);
    if !producer.transactional {
        return transaction
            .filter(|t| t.open && t.partitions.contains_key(&partition))
            .map(|_| SequenceError::NotInTransaction);
    }
    let Some(transaction) = transaction else {
        return Some(SequenceError::NotInTransaction);
    };
    if producer.producer_epoch < transaction.producer_epoch {
        return Some(SequenceError::StaleEpoch);
    }
    let in_it = transaction.open
        && producer.producer_epoch == transaction.producer_epoch
        && transaction.partitions.contains_key(&partition);
    (!in_it).then_some(SequenceError::NotInTransaction)
}

/// The clocks a commit is decided with.
#[derive(Debug, Clone, Copy)]
pub struct CommitClocks {
    /// The writer's clock, stamped on producer state.
    pub now_ms: i64,
    /// Producer state last written before this counts as absent.
    pub expire_before_ms: i64,
    /// The metastore's clock, which commit deadlines are in.
    pub server_now_ms: i64,
}

/// Decides the commit of `appends`. Partitions absent from `partitions` (deleted topics)
/// are skipped.
pub fn plan_commit(
    appends: &[PartitionAppend],
    partitions: &HashMap<(Uuid, i32), PartitionState>,
    mut producers: HashMap<ProducerKey, ProducerState>,
    mut transactions: HashMap<i64, ProducerTransaction>,
    clocks: CommitClocks,
) -> CommitPlan {
    let CommitClocks {
        now_ms,
        expire_before_ms,
        server_now_ms,
    } = clocks;
    producers.retain(|_, state| state.updated_ms >= expire_before_ms);
    // Ordered, so states are written in key order whatever order the batches came in.
    let mut changed: BTreeSet<ProducerKey> = BTreeSet::new();
    let mut plan = CommitPlan::default();
    for append in appends {
        let (topic_id, partition_index) = (append.topic_id, append.partition_index);
        let Some(partition) = partitions.get(&(topic_id, partition_index)) else {
            continue;
        };
        let mut next_offset = partition.next_offset;
        let mut run: Option<PlannedEntry> = None;
        let mut outcomes = Vec::with_capacity(append.batches.len());
        for batch in &append.batches {
            let producer = batch
                .producer
                .map(|p| (p, (p.producer_id, topic_id, partition_index)));
            let expired = batch
                .commit_deadline_ms
                .is_some_and(|deadline| deadline <= server_now_ms + DEADLINE_SLACK_MS);
            let refusal = producer.as_ref().and_then(|(producer, _)| {
                transaction_refusal(&transactions, producer, (topic_id, partition_index))
            });
            let verdict = match (&producer, refusal) {
                _ if expired => None,
                (_, Some(refusal)) => Some(Verdict::Reject(refusal)),
                (None, None) => Some(Verdict::Append),
                (Some((producer, key)), None) => {
                    Some(producers::check(producers.get(key), producer))
                }
            };
            let outcome = match verdict {
                None => {
                    plan.entries.extend(run.take());
                    BatchOutcome::Expired
                }
                Some(Verdict::Append) => {
                    if let Some(deadline) = batch.commit_deadline_ms {
                        let earliest = plan.commit_deadline_ms.get_or_insert(deadline);
                        *earliest = (*earliest).min(deadline);
                    }
                    let base_offset = next_offset;
                    next_offset += batch.offset_count;
                    if let Some((producer, key)) = producer {
                        let before = producers.remove(&key);
                        let after = producers::record(before, &producer, base_offset, now_ms);
                        producers.insert(key, after);
                        changed.insert(key);
                        if producer.transactional
                            && let Some(transaction) = transactions.get_mut(&producer.producer_id)
                            && let Some(first @ None) =
                                transaction.partitions.get_mut(&(topic_id, partition_index))
                        {
                            *first = Some(base_offset);
                            plan.transaction_starts.push(TransactionStart {
                                transactional_id: transaction.transactional_id.clone(),
                                producer_id: producer.producer_id,
                                topic_id,
                                partition_index,
                                first_offset: base_offset,
                            });
                        }
                    }
                    match &mut run {
                        Some(entry) => {
                            debug_assert_eq!(
                                entry.byte_offset + entry.byte_length,
                                batch.byte_offset,
                                "a partition's batches are contiguous in the object"
                            );
                            entry.last_offset = next_offset - 1;
                            entry.max_timestamp = entry.max_timestamp.max(batch.max_timestamp);
                            entry.byte_length += batch.byte_length;
                            entry.batch_count += 1;
                        }
                        None => {
                            run = Some(PlannedEntry {
                                topic_id,
                                partition_index,
                                base_offset,
                                last_offset: next_offset - 1,
                                max_timestamp: batch.max_timestamp,
                                byte_offset: batch.byte_offset,
                                byte_length: batch.byte_length,
                                batch_count: 1,
                            });
                        }
                    }
                    BatchOutcome::Appended { base_offset }
                }
                Some(Verdict::Duplicate { base_offset }) => {
                    plan.entries.extend(run.take());
                    BatchOutcome::Duplicate { base_offset }
                }
                Some(Verdict::Reject(error)) => {
                    plan.entries.extend(run.take());
                    BatchOutcome::Rejected(error)
                }
            };
            outcomes.push(outcome);
        }
        plan.entries.extend(run.take());
        if next_offset != partition.next_offset {
            plan.next_offsets
                .push((topic_id, partition_index, next_offset));
        }
        plan.results.push(AppendResult {
            topic_id,
            partition_index,
            log_start_offset: partition.log_start_offset,
            batches: outcomes,
        });
    }
    for key in changed {
        if let Some(state) = producers.remove(&key) {
            plan.producer_states.push((key, state));
        }
    }
    plan
}

/// Whether a compaction swap still applies: every input entry, named by its base offset and
/// object key, is indexed at that offset over that object. Anything else means another
/// compaction, retention or a topic deletion changed the partition since the compactor read
/// it, and the swap loses. `indexed` is what the store found at the inputs' base offsets.
pub fn swap_inputs_current<'a>(
    inputs: &[(i64, String)],
    indexed: impl IntoIterator<Item = (i64, &'a str)>,
) -> bool {
    let indexed: std::collections::HashMap<i64, &str> = indexed.into_iter().collect();
    inputs
        .iter()
        .all(|(base, key)| indexed.get(base) == Some(&key.as_str()))
}

/// Checks the entries a compaction swaps out, as `(base, last, byte length)` in the order
/// their bytes were concatenated: contiguous offsets, lengths adding up to `size_bytes` for
/// a merge, at least `size_bytes` (and more than none) for a key compaction (`compacted`).
/// Returns the merged entry's first and last offsets.
pub fn merge_swapped(
    rows: impl Iterator<Item = (i64, i64, i64)>,
    size_bytes: i64,
    compacted: bool,
) -> Result<(i64, i64), String> {
    let mut merged: Option<(i64, i64)> = None;
    let mut total = 0;
    for (base, last, length) in rows {
        merged = match merged {
            None => Some((base, last)),
            Some((first, previous)) if base == previous + 1 => Some((first, last)),
            Some((_, previous)) => {
                return Err(format!(
                    "entry at {base} does not follow the one ending at {previous}"
                ));
            }
        };
        total += length;
    }
    let merged = merged.ok_or_else(|| "no entries to swap".to_owned())?;
    // A merge moves bytes; a key compaction leaves fewer, never none (its range keeps at
    // least a batch covering its offsets).
    if (!compacted && total != size_bytes) || size_bytes <= 0 || size_bytes > total {
        return Err(format!(
            "entries hold {total} bytes, the new object {size_bytes}"
        ));
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metastore::model::{AppendBatch, ProducerBatch, SequenceError};

    const TOPIC: Uuid = Uuid::from_u128(1);

    fn batch(byte_offset: i64, producer: Option<(i16, i32)>) -> AppendBatch {
        AppendBatch {
            byte_offset,
            byte_length: 10,
            offset_count: 2,
            max_timestamp: byte_offset,
            producer: producer.map(|(epoch, first)| ProducerBatch {
                producer_id: 9,
                producer_epoch: epoch,
                first_sequence: first,
                last_sequence: first + 1,
                transactional: false,
            }),
            commit_deadline_ms: None,
        }
    }

    fn clocks(now_ms: i64, expire_before_ms: i64) -> CommitClocks {
        CommitClocks {
            now_ms,
            expire_before_ms,
            server_now_ms: now_ms,
        }
    }

    fn partitions(next_offset: i64) -> HashMap<(Uuid, i32), PartitionState> {
        HashMap::from([(
            (TOPIC, 0),
            PartitionState {
                topic_id: TOPIC,
                partition_index: 0,
                next_offset,
                log_start_offset: 3,
                open_start: None,
            },
        )])
    }

    #[test]
    fn a_swap_applies_only_while_every_input_is_indexed_as_named() {
        let inputs = vec![(0, "k/a".to_owned()), (2, "k/b".to_owned())];
        assert!(swap_inputs_current(&inputs, [(0, "k/a"), (2, "k/b")]));
        assert!(
            !swap_inputs_current(&inputs, [(0, "k/a"), (2, "k/merged")]),
            "another compaction replaced an input"
        );
        assert!(
            !swap_inputs_current(&inputs, [(2, "k/b")]),
            "retention dropped an input"
        );
    }

    #[test]
    fn a_duplicate_inside_one_flush_splits_the_range_and_takes_no_offsets() {
        // The producer's batch 0..=1, then its retry, then 2..=3, then a plain batch.
        let appends = vec![PartitionAppend {
            topic_id: TOPIC,
            partition_index: 0,
            batches: vec![
                batch(0, Some((0, 0))),
                batch(10, Some((0, 0))),
                batch(20, Some((0, 2))),
                batch(30, None),
            ],
        }];
        let plan = plan_commit(
            &appends,
            &partitions(50),
            HashMap::new(),
            HashMap::new(),
            clocks(1, 0),
        );
        assert_eq!(
            plan.results[0].batches,
            vec![
                BatchOutcome::Appended { base_offset: 50 },
                BatchOutcome::Duplicate { base_offset: 50 },
                BatchOutcome::Appended { base_offset: 52 },
                BatchOutcome::Appended { base_offset: 54 },
            ]
        );
        assert_eq!(plan.results[0].log_start_offset, 3);
        let ranges: Vec<_> = plan
            .entries
            .iter()
            .map(|e| {
                (
                    e.base_offset,
                    e.last_offset,
                    e.byte_offset,
                    e.byte_length,
                    e.batch_count,
                )
            })
            .collect();
        assert_eq!(ranges, vec![(50, 51, 0, 10, 1), (52, 55, 20, 20, 2)]);
        assert_eq!(plan.next_offsets, vec![(TOPIC, 0, 56)]);
        assert_eq!(plan.producer_states.len(), 1);
        assert_eq!(plan.producer_states[0].1.recent.len(), 2);
    }

    #[test]
    fn stored_state_decides_and_expired_state_is_ignored() {
        let appends = vec![PartitionAppend {
            topic_id: TOPIC,
            partition_index: 0,
            batches: vec![batch(0, Some((0, 5)))],
        }];
        let mut first = plan_commit(
            &appends,
            &partitions(0),
            HashMap::new(),
            HashMap::new(),
            clocks(100, 0),
        );
        let stored: HashMap<_, _> = first.producer_states.drain(..).collect();
        // A retry of the same batch later is a duplicate and writes nothing.
        let retry = plan_commit(
            &appends,
            &partitions(2),
            stored.clone(),
            HashMap::new(),
            clocks(200, 0),
        );
        assert_eq!(
            retry.results[0].batches,
            vec![BatchOutcome::Duplicate { base_offset: 0 }]
        );
        assert!(retry.entries.is_empty() && retry.next_offsets.is_empty());
        assert!(retry.producer_states.is_empty());
        // A gap is not stored: the batch before it is still to come.
        let gap = vec![PartitionAppend {
            topic_id: TOPIC,
            partition_index: 0,
            batches: vec![batch(0, Some((0, 9)))],
        }];
        let refused = plan_commit(
            &gap,
            &partitions(2),
            stored.clone(),
            HashMap::new(),
            clocks(200, 0),
        );
        assert_eq!(
            refused.results[0].batches,
            vec![BatchOutcome::Rejected(SequenceError::Ahead)]
        );
        assert!(refused.entries.is_empty() && refused.producer_states.is_empty());
        // Once the state expired, the same batch is taken as a first write.
        let expired = plan_commit(
            &gap,
            &partitions(2),
            stored,
            HashMap::new(),
            clocks(200, 150),
        );
        assert_eq!(
            expired.results[0].batches,
            vec![BatchOutcome::Appended { base_offset: 2 }]
        );
    }

    #[test]
    fn missing_partitions_are_skipped() {
        let appends = vec![PartitionAppend {
            topic_id: Uuid::from_u128(2),
            partition_index: 0,
            batches: vec![batch(0, None)],
        }];
        let plan = plan_commit(
            &appends,
            &partitions(0),
            HashMap::new(),
            HashMap::new(),
            clocks(1, 0),
        );
        assert!(plan.results.is_empty() && plan.entries.is_empty());
    }

    #[test]
    fn a_batch_past_its_deadline_is_not_stored_and_the_plan_carries_the_earliest_other() {
        let mut late = batch(10, None);
        late.commit_deadline_ms = Some(1_000 + DEADLINE_SLACK_MS);
        let mut soon = batch(20, None);
        soon.commit_deadline_ms = Some(5_000);
        let mut later = batch(30, None);
        later.commit_deadline_ms = Some(9_000);
        let appends = [PartitionAppend {
            topic_id: TOPIC,
            partition_index: 0,
            batches: vec![batch(0, None), late, soon, later],
        }];
        let plan = plan_commit(
            &appends,
            &partitions(0),
            HashMap::new(),
            HashMap::new(),
            clocks(1_000, 0),
        );
        assert_eq!(
            plan.results[0].batches,
            vec![
                BatchOutcome::Appended { base_offset: 0 },
                BatchOutcome::Expired,
                BatchOutcome::Appended { base_offset: 2 },
                BatchOutcome::Appended { base_offset: 4 },
            ]
        );
        assert_eq!(plan.entries.len(), 2, "the expired batch splits the range");
        assert_eq!(plan.next_offsets, vec![(TOPIC, 0, 6)]);
        assert_eq!(plan.commit_deadline_ms, Some(5_000));
    }
}
