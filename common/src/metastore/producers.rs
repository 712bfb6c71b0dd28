//! The producers domain: producer ids and epochs ([`Producers`]), and the idempotent-producer
//! rules, which batches a partition takes from a producer.
//!
//! Vocabulary: a producer is known by its *id* and *epoch* (InitProducerId hands them out);
//! every batch it sends to a partition carries the *sequence* numbers of its first and last
//! record, counting on from the previous batch. Per (producer, partition) the metastore keeps
//! the producer's [`ProducerState`]: its epoch and the sequence ranges and base offsets of the
//! last [`RECENT_BATCHES`] batches stored (as many as a client may have in flight).
//!
//! The rules follow Kafka's `ProducerAppendInfo` and `ProducerStateEntry`, for data batches
//! from clients:
//! - a batch of the current epoch whose exact sequence range is among the recent ones is a
//!   *duplicate*: a retry of something already stored, answered with its original offset;
//! - an epoch older than the state's is refused (INVALID_PRODUCER_EPOCH);
//! - a newer epoch must start at sequence 0 and forgets the recent batches of the old one;
//! - the current epoch must continue at the last sequence + 1 (wrapping after `i32::MAX`);
//!   a batch behind that is refused (OUT_OF_ORDER_SEQUENCE_NUMBER);
//! - with no state at all (first write, or state expired after
//!   `writer.producer_id_expiration_ms`), any sequence is taken, as Kafka does since KIP-360.
//!
//! One rule differs from Kafka's, on purpose: a batch *ahead* of the next sequence (a gap,
//! or a new epoch not starting at 0) is not refused as out of order but left [`Ahead`]:
//! not stored, retriable. In Kafka one leader judges a partition's batches in the order
//! they arrive, so a gap means the earlier batches are gone. Here an earlier batch may
//! still be stored after the later one was judged (it sits in a writer that is frozen, or
//! slow, or that a dead gateway sent it to), and the client's reading of
//! OUT_OF_ORDER_SEQUENCE_NUMBER — the earlier batches are lost, so bump the epoch and
//! re-send whatever is unconfirmed under it — stores records twice whenever one of them
//! was stored after all, in this partition or, since librdkafka bumps the epoch of the
//! whole producer, in any other. A verdict here never depends on a batch not seen yet:
//! refusals are final (a stale epoch, a sequence already passed), a gap only says "not
//! yet", and the client's retry of the earlier batch fills it. A client that gave up on a
//! batch moves to a new epoch itself (librdkafka and Java do, on their delivery timeouts).
//!
//! A transactional batch ahead of a gap is refused OUT_OF_ORDER_SEQUENCE_NUMBER, as Kafka
//! does: there the reading above costs no duplicate a read_committed consumer could see
//! (the client aborts the transaction, bumps its epoch, and an earlier batch landing late
//! lies in the aborted range or is refused as no longer in the transaction), while "not
//! yet" stalls it for its whole delivery timeout when the gap is its own: librdkafka
//! purges a request already built, with its sequence, when it aborts, and the next
//! transaction's first batch then skips that sequence for good.
//!
//! These functions are pure; the metastore applies them inside the commit transaction, where
//! they are right whichever writer the batch came through.
//!
//! [`Ahead`]: SequenceError::Ahead

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use uuid::Uuid;

use super::model::{ProducerBatch, SequenceError};
use crate::error::StoreError;

/// Producer ids are handed out in blocks this large, so a gateway asks the metastore once
/// per this many InitProducerId calls.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// Producer ids and epochs as InitProducerId hands them out, and their expiry. Per-partition
/// producer state is written by the log's commit ([`super::Log::commit_object`]).
#[async_trait]
pub trait Producers: Send + Sync + 'static {
    /// Reserves the next block of [`PRODUCER_ID_BLOCK`] producer ids; returns its first id.
    /// Blocks never overlap, whoever asks.
    async fn allocate_producer_ids(&self) -> Result<i64, StoreError>;

    /// Moves an allocated producer from `producer_epoch` to the next epoch (KIP-360) unless
    /// something newer is known (an earlier bump past it, a partition that saw a newer
    /// epoch) or the id was never handed out; then `None`, and the caller hands out a new id.
    /// A claim ahead of the recorded epoch is fine: clients may bump locally.
    async fn bump_producer_epoch(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: i64,
    ) -> Result<Option<i16>, StoreError>;

    /// Forgets producer state and epochs last written before `before_ms`; returns how many
    /// entries went.
    async fn expire_producers(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// The last offset of each producer's newest stored batch in a partition, by producer
    /// id: the batches key compaction keeps, if only empty, so that the producer's last
    /// sequence stays in the log as Kafka keeps it (its state here does not depend on it).
    async fn last_batches(
        &self,
        topic_id: Uuid,
        partition_index: i32,
    ) -> Result<HashMap<i64, i64>, StoreError>;
}

/// Batches remembered per producer and partition: Kafka's, and the most a client keeps in
/// flight per partition (`max.in.flight.requests.per.connection` ≤ 5 with idempotence).
pub const RECENT_BATCHES: usize = 5;

/// One stored batch, as remembered for duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceRange {
    /// Sequence of its first record.
    pub first_sequence: i32,
    /// Sequence of its last record.
    pub last_sequence: i32,
    /// Offset its first record got.
    pub base_offset: i64,
}

/// What a partition remembers of one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    /// The newest epoch the producer wrote with.
    pub producer_epoch: i16,
    /// Batches of that epoch, oldest first, at most [`RECENT_BATCHES`], never empty.
    pub recent: VecDeque<SequenceRange>,
    /// When it was last written (writer clock, ms), for expiry.
    pub updated_ms: i64,
}

impl ProducerState {
    /// The last offset of the newest batch stored.
    pub fn last_offset(&self) -> Option<i64> {
        self.recent.back().map(|batch| {
            let span = i64::from(batch.last_sequence) - i64::from(batch.first_sequence);
            // A batch whose sequences wrapped past i32::MAX (they restart at 0).
            let span = if span < 0 {
                span + i64::from(i32::MAX) + 1
            } else {
                span
            };
            batch.base_offset + span
        })
    }
}

/// The decision for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Store it.
    Append,
    /// Already stored at this offset; do not store again.
    Duplicate {
        /// The original's base offset.
        base_offset: i64,
    },
    /// Refuse it.
    Reject(SequenceError),
}

/// Applies the rules to `batch` given the partition's state for its producer.
pub fn check(state: Option<&ProducerState>, batch: &ProducerBatch) -> Verdict {
    let Some(state) = state else {
        return Verdict::Append;
    };
    if batch.producer_epoch == state.producer_epoch
        && let Some(original) = state.recent.iter().find(|r| {
            r.first_sequence == batch.first_sequence && r.last_sequence == batch.last_sequence
        })
    {
        return Verdict::Duplicate {
            base_offset: original.base_offset,
        };
    }
    if batch.producer_epoch < state.producer_epoch {
        return Verdict::Reject(SequenceError::StaleEpoch);
    }
    if batch.producer_epoch > state.producer_epoch {
        // The new epoch's first batch is not stored yet, or this one is it.
        return if batch.first_sequence == 0 {
            Verdict::Append
        } else {
            Verdict::Reject(SequenceError::Ahead)
        };
    }
    let Some(last) = state.recent.back() else {
        return Verdict::Append;
    };
    match distance(last.last_sequence, batch.first_sequence) {
        0 => Verdict::Append,
        d if d < i64::from(i32::MAX) / 2 && !batch.transactional => {
            Verdict::Reject(SequenceError::Ahead)
        }
        _ => Verdict::Reject(SequenceError::OutOfOrder),
    }
}

/// The state after a batch was stored at `base_offset`, given the state before it.
pub fn record(
    state: Option<ProducerState>,
    batch: &ProducerBatch,
    base_offset: i64,
    now_ms: i64,
) -> ProducerState {
    let stored = SequenceRange {
        first_sequence: batch.first_sequence,
        last_sequence: batch.last_sequence,
        base_offset,
    };
    match state {
        Some(mut state) if state.producer_epoch == batch.producer_epoch => {
            state.recent.push_back(stored);
            while state.recent.len() > RECENT_BATCHES {
                state.recent.pop_front();
            }
            state.updated_ms = now_ms;
            state
        }
        // First write, or a new epoch: the old epoch's batches can never be retried again.
        _ => ProducerState {
            producer_epoch: batch.producer_epoch,
            recent: VecDeque::from([stored]),
            updated_ms: now_ms,
        },
    }
}

/// The sequence of the last record of a batch occupying `offset_count` offsets from
/// `first_sequence` (Kafka counts by last offset delta); sequences wrap from `i32::MAX`
/// to 0, as Kafka's do.
pub fn last_sequence(first_sequence: i32, offset_count: i64) -> i32 {
    let last = i64::from(first_sequence) + offset_count.max(1) - 1;
    (last % (i64::from(i32::MAX) + 1)) as i32
}

/// What the store knows of a producer id when a client asks to move past an epoch
/// (InitProducerId with the id and epoch it has, KIP-360).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochRecord {
    /// The id lies in a block the store handed out.
    pub handed_out: bool,
    /// The epoch an earlier bump moved it to, if it was bumped and not expired since.
    pub bumped_to: Option<i16>,
    /// The newest epoch any partition stored a batch with, if any.
    pub newest_written: Option<i16>,
}

/// The epoch a bump past `claim` moves the producer to, or `None` when the claim is stale
/// and the client must be given a new producer id instead: the id was never handed out,
/// an earlier bump or a partition already went past `claim`, or the epochs ran out. A
/// claim ahead of what the store knows is fine: clients such as Java's bump locally. Two
/// bumps with the same claim: the first moves the record past it, the second is stale.
pub fn bump_epoch(claim: i16, record: EpochRecord) -> Option<i16> {
    let newer_known = record.bumped_to.is_some_and(|e| e > claim)
        || record.newest_written.is_some_and(|e| e > claim);
    if !record.handed_out || newer_known {
        return None;
    }
    claim.checked_add(1)
}

/// How far `first` lies past the sequence that follows `last`, counting in the circle of
/// sequences (they wrap from `i32::MAX` to 0): 0 when it follows; a small distance is a gap
/// ahead, one of more than half the circle a sequence already passed.
fn distance(last: i32, first: i32) -> i64 {
    let circle = i64::from(i32::MAX) + 1;
    (i64::from(first) - (i64::from(last) + 1)).rem_euclid(circle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, first: i32, count: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: 7,
            producer_epoch: epoch,
            first_sequence: first,
            last_sequence: last_sequence(first, i64::from(count)),
            transactional: false,
        }
    }

    /// Runs batches through check-then-record, storing appended ones at consecutive
    /// offsets of `count` records each; returns the verdicts.
    fn run(batches: &[ProducerBatch]) -> (Vec<Verdict>, Option<ProducerState>) {
        let mut state = None;
        let mut next_offset = 100;
        let mut verdicts = Vec::new();
        for b in batches {
            let verdict = check(state.as_ref(), b);
            if verdict == Verdict::Append {
                state = Some(record(state, b, next_offset, 1));
                next_offset += i64::from(b.last_sequence - b.first_sequence + 1);
            }
            verdicts.push(verdict);
        }
        (verdicts, state)
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        let (verdicts, state) = run(&[
            batch(0, 0, 3),
            batch(0, 3, 2),
            batch(0, 0, 3),
            batch(0, 3, 2),
        ]);
        assert_eq!(
            verdicts,
            vec![
                Verdict::Append,
                Verdict::Append,
                Verdict::Duplicate { base_offset: 100 },
                Verdict::Duplicate { base_offset: 103 },
            ]
        );
        assert_eq!(state.expect("state").recent.len(), 2);
    }

    #[test]
    fn a_gap_waits_a_passed_sequence_is_out_of_order_and_an_older_epoch_is_stale() {
        let (verdicts, _) = run(&[
            batch(1, 0, 2),
            batch(1, 3, 1),
            batch(1, 2, 1),
            batch(1, 3, 1),
            batch(1, 1, 1),
            batch(0, 4, 1),
        ]);
        assert_eq!(
            verdicts,
            vec![
                Verdict::Append,
                // 2 is missing: 3 is not refused for good, only not stored yet...
                Verdict::Reject(SequenceError::Ahead),
                // ...and once 2 arrives, 3's retry follows it.
                Verdict::Append,
                Verdict::Append,
                // 1 lies behind the last stored batch and is not one of the recent ones.
                Verdict::Reject(SequenceError::OutOfOrder),
                Verdict::Reject(SequenceError::StaleEpoch),
            ]
        );
    }

    #[test]
    fn a_transactional_batch_ahead_of_a_gap_is_out_of_order_as_in_kafka() {
        let transactional = |first, count| ProducerBatch {
            transactional: true,
            ..batch(0, first, count)
        };
        let (verdicts, _) = run(&[transactional(0, 2), transactional(3, 1)]);
        assert_eq!(
            verdicts,
            vec![Verdict::Append, Verdict::Reject(SequenceError::OutOfOrder)]
        );
    }

    #[test]
    fn a_new_epoch_starts_at_zero_and_forgets_the_old_batches() {
        let (verdicts, state) = run(&[
            batch(0, 0, 1),
            batch(0, 1, 1),
            batch(1, 5, 1),
            batch(1, 0, 1),
            batch(1, 1, 1),
        ]);
        assert_eq!(
            verdicts,
            vec![
                Verdict::Append,
                Verdict::Append,
                // The new epoch's first batch is still to come.
                Verdict::Reject(SequenceError::Ahead),
                Verdict::Append,
                Verdict::Append,
            ]
        );
        let state = state.expect("state");
        assert_eq!(state.producer_epoch, 1);
        assert_eq!(state.recent.len(), 2);
    }

    #[test]
    fn without_state_any_sequence_is_taken() {
        let (verdicts, _) = run(&[batch(3, 42, 1), batch(3, 43, 1)]);
        assert_eq!(verdicts, vec![Verdict::Append, Verdict::Append]);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let batches: Vec<_> = (0..7).map(|i| batch(0, i, 1)).collect();
        let (_, state) = run(&batches);
        let state = state.expect("state");
        assert_eq!(state.recent.len(), RECENT_BATCHES);
        assert_eq!(state.recent.front().map(|r| r.first_sequence), Some(2));
        // The oldest two are forgotten: a retry of one is out of order, not a duplicate.
        assert_eq!(
            check(Some(&state), &batch(0, 0, 1)),
            Verdict::Reject(SequenceError::OutOfOrder)
        );
        assert_eq!(
            check(Some(&state), &batch(0, 2, 1)),
            Verdict::Duplicate { base_offset: 102 }
        );
    }

    #[test]
    fn a_bump_moves_past_the_claim_unless_something_newer_is_known() {
        let fresh = EpochRecord {
            handed_out: true,
            bumped_to: None,
            newest_written: None,
        };
        assert_eq!(bump_epoch(0, fresh), Some(1));
        let claim_ahead = EpochRecord {
            bumped_to: Some(1),
            newest_written: Some(1),
            ..fresh
        };
        assert_eq!(bump_epoch(3, claim_ahead), Some(4), "clients bump locally");
        let bumped = EpochRecord {
            bumped_to: Some(1),
            ..fresh
        };
        assert_eq!(bump_epoch(0, bumped), None, "the same claim twice");
        let written = EpochRecord {
            newest_written: Some(2),
            ..fresh
        };
        assert_eq!(bump_epoch(1, written), None, "a partition saw epoch 2");
        let unknown = EpochRecord {
            handed_out: false,
            ..fresh
        };
        assert_eq!(bump_epoch(0, unknown), None);
        assert_eq!(bump_epoch(i16::MAX, fresh), None, "epochs ran out");
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        assert_eq!(last_sequence(i32::MAX - 1, 3), 0);
        assert_eq!(last_sequence(5, 1), 5);
        let (verdicts, _) = run(&[batch(0, i32::MAX - 1, 2), batch(0, 0, 1)]);
        assert_eq!(verdicts, vec![Verdict::Append, Verdict::Append]);
        // Across the wrap, a gap is still ahead and a passed sequence still behind.
        assert_eq!(distance(i32::MAX, 3), 3);
        assert_eq!(distance(2, i32::MAX), i64::from(i32::MAX) - 3);
        let (verdicts, _) = run(&[
            batch(0, i32::MAX - 1, 1),
            batch(0, 1, 1),
            batch(0, i32::MAX - 5, 1),
        ]);
        assert_eq!(
            verdicts,
            vec![
                Verdict::Append,
                Verdict::Reject(SequenceError::Ahead),
                Verdict::Reject(SequenceError::OutOfOrder),
            ]
        );
    }
}
