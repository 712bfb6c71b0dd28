//! The transactions domain: what the metastore keeps of each transactional id
//! ([`Transactions`]), and Kafka's transaction rules, which decide every request.
//!
//! Kafka's coordinator writes a decision to its log (PrepareCommit), answers, and only then
//! sends the markers to the partitions, one by one, over connections that may fail: a
//! reader may see some partitions' markers before others'. Here the end of a transaction —
//! every partition's marker, the move of its partitions' last stable offset, the
//! aborted-transaction rows, the transactional offset commits — is one metastore
//! transaction, so it is all or nothing by construction. The markers' bytes are uploaded
//! first as one object (a [`MarkerObject`]) and indexed by that transaction; an upload
//! whose transaction lost (the state moved on meanwhile) is an orphan, collected as any.
//! Kafka's Prepare* states never last here, so a transactional id is only ever in one of
//! [`TxnState`]'s four states.
//!
//! The rules follow Kafka's `TransactionCoordinator` for clients of the first transaction
//! protocol (EndTxn below v5; this server does not offer KIP-890's second part), and are
//! pure: both backends apply them under the transactional id's lock ([`init`], [`add`],
//! [`stage`], [`end`]), so a rule is written once and holds whichever gateway asked.

use std::collections::BTreeSet;

use async_trait::async_trait;
use uuid::Uuid;

use super::groups::CommittedOffset;
use crate::error::StoreError;
use crate::ids::ObjectId;

/// Transactional ids, their producers, open transactions and how they end.
#[async_trait]
pub trait Transactions: Send + Sync + 'static {
    /// What is recorded of one transactional id.
    async fn transaction(&self, transactional_id: &str) -> Result<Option<TxnRecord>, TxnError>;

    /// Every transactional id's record, by id.
    async fn list_transactions(&self) -> Result<Vec<TxnRecord>, TxnError>;

    /// The records whose open transaction has outlived its timeout at `now_ms`
    /// ([`expired`]).
    async fn expired_transactions(&self, now_ms: i64) -> Result<Vec<TxnRecord>, TxnError>;

    /// Forgets the transactional ids with no open transaction whose record last changed
    /// before `idle_before_ms` (Kafka's `transactional.id.expiration.ms`); returns them.
    /// An id with an open transaction is never forgotten: its timeout ends it first.
    async fn forget_idle_transactional_ids(
        &self,
        idle_before_ms: i64,
    ) -> Result<Vec<String>, TxnError>;

    /// InitProducerId with a transactional id, decided by [`init`]. When an earlier
    /// incarnation's transaction is open, it is aborted first, with `markers` if they are
    /// the ones [`TxnInitOutcome::NeedsMarkers`] asked for (else that is the answer again).
    async fn init_producer(
        &self,
        request: &InitRequest,
        markers: Option<&MarkerObject>,
    ) -> Result<TxnInitOutcome, TxnError>;

    /// AddPartitionsToTxn and AddOffsetsToTxn: adds partitions and consumer groups to the
    /// producer's transaction, opening one if none is, as decided by [`add`].
    async fn add_to_transaction(
        &self,
        producer: &TxnProducer<'_>,
        partitions: &[(Uuid, i32)],
        groups: &[String],
        now_ms: i64,
    ) -> Result<(), TxnError>;

    /// TxnOffsetCommit: keeps `offsets` of `group_id` with the transaction until it ends,
    /// as decided by [`stage`]; they replace earlier ones of the same partitions.
    async fn stage_offsets(
        &self,
        producer: &TxnProducer<'_>,
        group_id: &str,
        offsets: &[CommittedOffset],
        now_ms: i64,
    ) -> Result<(), TxnError>;

    /// EndTxn, or the abort of a transaction past its timeout: ends the transaction with
    /// `markers`, as decided by [`end`] (or [`expired`] for a timeout). Without markers,
    /// or with markers that do not cover what the end writes ([`MarkerObject::fits`]), the
    /// answer is [`EndOutcome::NeedsMarkers`] and nothing changes; markers of partitions
    /// the transaction does not hold are left unindexed.
    async fn end_transaction(
        &self,
        request: &EndRequest<'_>,
        markers: Option<&MarkerObject>,
    ) -> Result<EndOutcome, TxnError>;

    /// The partitions (topic name, partition) of `group_id` whose offsets an open
    /// transaction holds (OffsetFetch's `require_stable`), in order.
    async fn offsets_pending(&self, group_id: &str) -> Result<Vec<(String, i32)>, TxnError>;

    /// The aborted transactions of a partition whose range meets `from..until` (the abort
    /// marker at or after `from`, the first batch before `until`), by first offset: what a
    /// read_committed Fetch returning that range lists, as Kafka's transaction index.
    async fn aborted_transactions(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        from: i64,
        until: i64,
    ) -> Result<Vec<AbortedTxn>, TxnError>;

    /// [`Transactions::aborted_transactions`] of several ranges (topic id, partition,
    /// from, until), answered in their order: a read_committed Fetch asks once for every
    /// partition it returns transactional batches of, not once per partition.
    async fn aborted_transactions_of(
        &self,
        ranges: &[AbortedRange],
    ) -> Result<Vec<Vec<AbortedTxn>>, TxnError> {
        let mut answers = Vec::with_capacity(ranges.len());
        for &(topic_id, partition_index, from, until) in ranges {
            answers.push(
                self.aborted_transactions(topic_id, partition_index, from, until)
                    .await?,
            );
        }
        Ok(answers)
    }
}

/// A range of one partition a read_committed Fetch returns: topic id, partition, the
/// fetch offset and the offset after the last record returned.
pub type AbortedRange = (Uuid, i32, i64, i64);

/// An aborted transaction's range in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// Its producer.
    pub producer_id: i64,
    /// The offset of its first batch in the partition.
    pub first_offset: i64,
    /// The offset of its abort marker.
    pub last_offset: i64,
}

/// The states a transactional id is in here. Kafka's PrepareCommit, PrepareAbort and
/// PrepareEpochFence last only inside one metastore transaction, and Dead (an expired id)
/// is a deleted row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnState {
    /// A producer holds the id; no transaction has started since.
    Empty,
    /// A transaction is open.
    Ongoing,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

impl TxnState {
    /// Every state, in Kafka's order.
    pub const ALL: [TxnState; 4] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];

    /// Kafka's name, as DescribeTransactions and ListTransactions show it.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// The state Kafka names so.
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|state| state.name() == name)
    }
}

/// What is recorded of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    /// The id the producer chose.
    pub transactional_id: String,
    /// The producer id that holds it.
    pub producer_id: i64,
    /// The producer's epoch: requests with an older one come from a fenced incarnation.
    pub producer_epoch: i16,
    /// The epoch before the last InitProducerId bump (-1 for none), so a retry of an
    /// InitProducerId that already succeeded gets the same answer (KIP-360).
    pub last_epoch: i16,
    /// The producer id before epochs ran out and a new one took over (-1 for none).
    pub previous_producer_id: i64,
    /// Its state.
    pub state: TxnState,
    /// The producer's `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// When the open transaction started (its first add), in the metastore's clock;
    /// -1 when none is open.
    pub start_ms: i64,
    /// When the record last changed.
    pub updated_ms: i64,
    /// Partitions in the open transaction, by topic id.
    pub partitions: BTreeSet<(Uuid, i32)>,
    /// Consumer groups whose offsets the open transaction may commit.
    pub groups: BTreeSet<String>,
}

/// A transactional request's producer, as the client names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnProducer<'a> {
    /// The transactional id.
    pub transactional_id: &'a str,
    /// The producer id InitProducerId gave.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
}

/// InitProducerId with a transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitRequest {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer's `transaction.timeout.ms` (already checked against the maximum).
    pub timeout_ms: i32,
    /// The producer id and epoch the client has (KIP-360, InitProducerId v3+), if any.
    pub expected: Option<(i64, i16)>,
    /// An unused producer id, taken if the id is new or its epochs ran out.
    pub fresh_producer_id: i64,
    /// The metastore's clock.
    pub now_ms: i64,
}

/// The answer to InitProducerId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnInitOutcome {
    /// The producer's id and epoch from now on.
    Ready {
        /// Producer id.
        producer_id: i64,
        /// Producer epoch.
        producer_epoch: i16,
    },
    /// An earlier incarnation's transaction is open: upload its abort markers and ask
    /// again with them.
    NeedsMarkers(Markers),
}

/// How a transaction ends, and on whose word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRequest<'a> {
    /// The producer, as it names itself (a timeout names the recorded one).
    pub producer: TxnProducer<'a>,
    /// Commit, or abort.
    pub commit: bool,
    /// Why it ends.
    pub reason: EndReason,
    /// The metastore's clock.
    pub now_ms: i64,
}

/// Why a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The producer's EndTxn.
    Client,
    /// `transaction.timeout.ms` passed: the transaction is aborted and its producer fenced.
    Timeout,
    /// An operator's `yaks txn abort`: the open transaction is aborted and its producer
    /// fenced, whatever its age (a hung producer's, holding read_committed readers back).
    Operator,
}

/// The answer to an end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// Ended now.
    Ended,
    /// It had ended so already: a retry, answered with success.
    AlreadyEnded,
    /// Upload these markers and ask again with them.
    NeedsMarkers(Markers),
}

/// The control batches an end writes: one per partition of the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    /// The producer id they carry.
    pub producer_id: i64,
    /// The epoch they carry: the producer's, or the next one when the end fences it.
    pub producer_epoch: i16,
    /// COMMIT or ABORT.
    pub commit: bool,
    /// The partitions, each getting one marker.
    pub partitions: BTreeSet<(Uuid, i32)>,
}

/// An uploaded object holding [`Markers`]: one control batch per partition, each its own
/// byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerObject {
    /// What it holds.
    pub markers: Markers,
    /// The object's id.
    pub object: ObjectId,
    /// Its S3 key.
    pub object_key: String,
    /// Its size.
    pub size_bytes: i64,
    /// Each partition's marker: (topic, partition, byte offset, byte length), in
    /// partition order.
    pub ranges: Vec<(Uuid, i32, i64, i64)>,
    /// The markers' timestamp.
    pub timestamp_ms: i64,
    /// Its bytes, stored with the end in the metastore (`objects.body`), never uploaded:
    /// EndTxn waits for no PUT.
    pub body: bytes::Bytes,
}

impl MarkerObject {
    /// Whether these are the markers `wanted` asks for: the same producer, epoch and
    /// outcome, a marker for every partition. One for a partition no longer there (its
    /// topic deleted meanwhile) is left unindexed.
    pub fn fits(&self, wanted: &Markers) -> bool {
        let have = &self.markers;
        have.producer_id == wanted.producer_id
            && have.producer_epoch == wanted.producer_epoch
            && have.commit == wanted.commit
            && wanted.partitions.is_subset(&have.partitions)
            && self.ranges.len() == have.partitions.len()
            && self
                .ranges
                .iter()
                .all(|&(topic, partition, _, _)| have.partitions.contains(&(topic, partition)))
    }
}

/// Why a transactional request is refused, or could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// No producer holds the transactional id with this producer id
    /// (INVALID_PRODUCER_ID_MAPPING).
    #[error("the transactional id is not held by this producer id")]
    UnknownProducer,
    /// A newer incarnation of the producer holds the id (PRODUCER_FENCED, or
    /// INVALID_PRODUCER_EPOCH where the API version predates it).
    #[error("a newer producer epoch holds the transactional id")]
    Fenced,
    /// Not allowed in the transaction's state (INVALID_TXN_STATE).
    #[error("not allowed in the transaction's state")]
    InvalidState,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Epochs at or above this one are used up: the next bump takes a new producer id.
pub const LAST_USABLE_EPOCH: i16 = i16::MAX - 1;

/// What InitProducerId does, decided on the recorded state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitDecision {
    /// Record this (a new id, or a bumped epoch) and answer with its producer.
    Record(TxnRecord),
    /// A retry of an InitProducerId that already succeeded: answer the recorded producer.
    Unchanged,
    /// Abort the open transaction with these markers (fencing its producer), then decide
    /// again on what that leaves, the client's expectation being met.
    AbortFirst(Markers),
}

/// InitProducerId (Kafka's `handleInitProducerId` for clients of the first protocol).
pub fn init(existing: Option<&TxnRecord>, request: &InitRequest) -> Result<InitDecision, TxnError> {
    let Some(record) = existing else {
        return Ok(InitDecision::Record(TxnRecord {
            transactional_id: request.transactional_id.clone(),
            producer_id: request.fresh_producer_id,
            producer_epoch: 0,
            last_epoch: -1,
            previous_producer_id: -1,
            state: TxnState::Empty,
            timeout_ms: request.timeout_ms,
            start_ms: -1,
            updated_ms: request.now_ms,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
        }));
    };
    if let Some((producer_id, epoch)) = request.expected {
        // A client that knows its producer may only move that producer on: the current one,
        // or the one before a rotation when it retries the rotating request.
        let rotated = producer_id == record.previous_producer_id && epoch >= LAST_USABLE_EPOCH;
        if producer_id != record.producer_id && !rotated {
            return Err(TxnError::Fenced);
        }
        // A retry of a bump that succeeded: only a bump asked for by a client naming its
        // producer records the epoch it came from (see `last_epoch` below).
        let retry = record.last_epoch >= 0
            && epoch == record.last_epoch
            && (rotated || epoch != record.producer_epoch);
        if retry {
            return Ok(InitDecision::Unchanged);
        }
        if rotated || epoch != record.producer_epoch {
            return Err(TxnError::Fenced);
        }
    }
    if record.state == TxnState::Ongoing {
        return Ok(InitDecision::AbortFirst(fence_markers(record)));
    }
    let (producer_id, producer_epoch, previous_producer_id) = next_epoch(record, request);
    Ok(InitDecision::Record(TxnRecord {
        producer_id,
        producer_epoch,
        // The epoch a retry of this bump may come back with, as Kafka's
        // `lastProducerEpoch`: only when the client named its producer (KIP-360). A new
        // incarnation's bump records none, or the incarnation it fences, asking with its
        // own epoch, would be answered with the new one's and write beside it.
        last_epoch: if request.expected.is_some() {
            record.producer_epoch
        } else {
            -1
        },
        previous_producer_id,
        state: TxnState::Empty,
        timeout_ms: request.timeout_ms,
        start_ms: -1,
        updated_ms: request.now_ms,
        partitions: BTreeSet::new(),
        groups: BTreeSet::new(),
        ..record.clone()
    }))
}

/// The producer after a bump: the next epoch, or a new producer id at epoch 0 when the
/// epochs are used up.
fn next_epoch(record: &TxnRecord, request: &InitRequest) -> (i64, i16, i64) {
    if record.producer_epoch >= LAST_USABLE_EPOCH {
        (request.fresh_producer_id, 0, record.producer_id)
    } else {
        (
            record.producer_id,
            record.producer_epoch + 1,
            record.previous_producer_id,
        )
    }
}

/// The abort markers of an open transaction whose producer is being fenced: they carry
/// the next epoch, so nothing the fenced incarnation still sends is taken.
pub fn fence_markers(record: &TxnRecord) -> Markers {
    Markers {
        producer_id: record.producer_id,
        producer_epoch: record.producer_epoch.saturating_add(1),
        commit: false,
        partitions: record.partitions.clone(),
    }
}

/// The record once its open transaction ended with `markers`.
pub fn ended(record: &TxnRecord, markers: &Markers, now_ms: i64) -> TxnRecord {
    let fenced = markers.producer_epoch != record.producer_epoch;
    TxnRecord {
        producer_epoch: markers.producer_epoch,
        // The fenced incarnation may not come back through a KIP-360 retry.
        last_epoch: if fenced { -1 } else { record.last_epoch },
        state: if markers.commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        },
        // Kept, as Kafka keeps `txnStartTimestamp` in the complete states: DescribeTransactions
        // shows when the ended transaction began, and ListTransactions' duration filter
        // leaves out one that began within it.
        start_ms: record.start_ms,
        updated_ms: now_ms,
        partitions: BTreeSet::new(),
        groups: BTreeSet::new(),
        ..record.clone()
    }
}

/// The record as a request of `producer` may change it: held by that producer id, at
/// that epoch.
pub fn held<'r>(
    record: Option<&'r TxnRecord>,
    producer: &TxnProducer<'_>,
) -> Result<&'r TxnRecord, TxnError> {
    let record = record
        .filter(|record| record.producer_id == producer.producer_id)
        .ok_or(TxnError::UnknownProducer)?;
    if record.producer_epoch != producer.producer_epoch {
        return Err(TxnError::Fenced);
    }
    Ok(record)
}

/// AddPartitionsToTxn and AddOffsetsToTxn: the record with `partitions` and `groups` in
/// its transaction, opened now if none is; `None` when they all are already.
pub fn add(
    record: Option<&TxnRecord>,
    producer: &TxnProducer<'_>,
    partitions: &[(Uuid, i32)],
    groups: &[String],
    now_ms: i64,
) -> Result<Option<TxnRecord>, TxnError> {
    let record = held(record, producer)?;
    let mut next = record.clone();
    if record.state != TxnState::Ongoing {
        next.state = TxnState::Ongoing;
        next.start_ms = now_ms;
        next.partitions.clear();
        next.groups.clear();
    }
    next.partitions.extend(partitions.iter().copied());
    next.groups.extend(groups.iter().cloned());
    if next == *record {
        return Ok(None);
    }
    next.updated_ms = now_ms;
    Ok(Some(next))
}

/// TxnOffsetCommit: offsets may be kept for a group that AddOffsetsToTxn added to the
/// open transaction.
pub fn stage(
    record: Option<&TxnRecord>,
    producer: &TxnProducer<'_>,
    group_id: &str,
) -> Result<(), TxnError> {
    let record = held(record, producer)?;
    if record.state != TxnState::Ongoing || !record.groups.contains(group_id) {
        return Err(TxnError::InvalidState);
    }
    Ok(())
}

/// What an end does, decided on the recorded state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndDecision {
    /// Write these markers and end the transaction.
    Write(Markers),
    /// It ended so already.
    AlreadyEnded,
}

/// EndTxn (Kafka's `endTransaction` for clients of the first protocol), or the abort of a
/// transaction past its timeout.
pub fn end(record: Option<&TxnRecord>, request: &EndRequest<'_>) -> Result<EndDecision, TxnError> {
    let record = held(record, &request.producer)?;
    let forced = match request.reason {
        EndReason::Client => None,
        EndReason::Timeout => Some(expired(record, request.now_ms)),
        EndReason::Operator => Some(record.state == TxnState::Ongoing),
    };
    if let Some(open) = forced {
        return if open {
            Ok(EndDecision::Write(fence_markers(record)))
        } else {
            // Ended or moved on meanwhile: nothing is left to abort.
            Ok(EndDecision::AlreadyEnded)
        };
    }
    match (record.state, request.commit) {
        (TxnState::Ongoing, commit) => Ok(EndDecision::Write(Markers {
            producer_id: record.producer_id,
            producer_epoch: record.producer_epoch,
            commit,
            partitions: record.partitions.clone(),
        })),
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
            Ok(EndDecision::AlreadyEnded)
        }
        _ => Err(TxnError::InvalidState),
    }
}

/// Whether the record's transaction has outlived its timeout at `now_ms`.
pub fn expired(record: &TxnRecord, now_ms: i64) -> bool {
    record.state == TxnState::Ongoing
        && record.start_ms >= 0
        && record.start_ms + i64::from(record.timeout_ms) < now_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "app-1";

    fn request(expected: Option<(i64, i16)>) -> InitRequest {
        InitRequest {
            transactional_id: ID.into(),
            timeout_ms: 60_000,
            expected,
            fresh_producer_id: 9000,
            now_ms: 1000,
        }
    }

    fn record(producer_id: i64, epoch: i16, state: TxnState) -> TxnRecord {
        TxnRecord {
            transactional_id: ID.into(),
            producer_id,
            producer_epoch: epoch,
            last_epoch: -1,
            previous_producer_id: -1,
            state,
            timeout_ms: 60_000,
            start_ms: if state == TxnState::Ongoing { 500 } else { -1 },
            updated_ms: 500,
            partitions: if state == TxnState::Ongoing {
                [(Uuid::nil(), 0)].into()
            } else {
                BTreeSet::new()
            },
            groups: BTreeSet::new(),
        }
    }

    fn producer(producer_id: i64, producer_epoch: i16) -> TxnProducer<'static> {
        TxnProducer {
            transactional_id: ID,
            producer_id,
            producer_epoch,
        }
    }

    fn new_record(decision: InitDecision) -> TxnRecord {
        match decision {
            InitDecision::Record(record) => record,
            other => panic!("expected a record, got {other:?}"),
        }
    }

    fn recorded(decision: InitDecision) -> (i64, i16) {
        let record = new_record(decision);
        (record.producer_id, record.producer_epoch)
    }

    #[test]
    fn a_new_id_gets_the_fresh_producer_and_a_known_one_the_next_epoch() {
        assert_eq!(
            recorded(init(None, &request(None)).expect("decided")),
            (9000, 0)
        );
        let known = record(7, 3, TxnState::CompleteCommit);
        assert_eq!(
            recorded(init(Some(&known), &request(None)).expect("decided")),
            (7, 4)
        );
        // KIP-360: the producer that knows itself moves on; a retry of that is answered alike.
        let bumped = new_record(init(Some(&known), &request(Some((7, 3)))).expect("decided"));
        assert_eq!((bumped.producer_epoch, bumped.last_epoch), (4, 3));
        assert_eq!(
            init(Some(&bumped), &request(Some((7, 3)))).expect("decided"),
            InitDecision::Unchanged
        );
    }

    #[test]
    fn a_stale_or_foreign_producer_is_fenced() {
        let known = record(7, 3, TxnState::Empty);
        assert!(matches!(
            init(Some(&known), &request(Some((7, 1)))),
            Err(TxnError::Fenced)
        ));
        assert!(matches!(
            init(Some(&known), &request(Some((8, 3)))),
            Err(TxnError::Fenced)
        ));
    }

    #[test]
    fn the_incarnation_a_new_one_fenced_cannot_take_its_epoch() {
        // Kafka's testInitProducerIdStaleCurrentEpochProvided: a new incarnation takes the
        // id (3 → 4) while the old one is between transactions; the old one's KIP-360 bump,
        // naming (7, 3), must not be answered with epoch 4.
        let known = record(7, 3, TxnState::CompleteCommit);
        let taken = new_record(init(Some(&known), &request(None)).expect("decided"));
        assert_eq!((taken.producer_epoch, taken.last_epoch), (4, -1));
        assert!(matches!(
            init(Some(&taken), &request(Some((7, 3)))),
            Err(TxnError::Fenced)
        ));
        // Likewise after a rotation a new incarnation caused: the old producer id's used-up
        // epoch is no retry of it.
        let used_up = record(7, LAST_USABLE_EPOCH, TxnState::CompleteCommit);
        let rotated = new_record(init(Some(&used_up), &request(None)).expect("decided"));
        assert_eq!(
            (rotated.producer_id, rotated.previous_producer_id),
            (9000, 7)
        );
        assert!(matches!(
            init(Some(&rotated), &request(Some((7, LAST_USABLE_EPOCH)))),
            Err(TxnError::Fenced)
        ));
    }

    #[test]
    fn used_up_epochs_move_to_a_new_producer_id() {
        let old = record(7, LAST_USABLE_EPOCH, TxnState::CompleteAbort);
        let new =
            new_record(init(Some(&old), &request(Some((7, LAST_USABLE_EPOCH)))).expect("decided"));
        assert_eq!((new.producer_id, new.producer_epoch), (9000, 0));
        assert_eq!(new.previous_producer_id, 7);
        // The rotating request, retried, is not fenced.
        assert_eq!(
            init(Some(&new), &request(Some((7, LAST_USABLE_EPOCH)))).expect("decided"),
            InitDecision::Unchanged
        );
    }

    #[test]
    fn an_open_transaction_is_aborted_under_the_next_epoch_before_a_new_incarnation() {
        let open = record(7, 3, TxnState::Ongoing);
        let InitDecision::AbortFirst(markers) = init(Some(&open), &request(None)).expect("decided")
        else {
            panic!("not aborted first")
        };
        assert_eq!((markers.producer_epoch, markers.commit), (4, false));
        let aborted = ended(&open, &markers, 2000);
        assert_eq!(aborted.state, TxnState::CompleteAbort);
        // The fenced incarnation cannot retry its way back in.
        assert!(matches!(
            init(Some(&aborted), &request(Some((7, 3)))),
            Err(TxnError::Fenced)
        ));
        assert_eq!(
            recorded(init(Some(&aborted), &request(None)).expect("decided")),
            (7, 5)
        );
    }

    #[test]
    fn adding_opens_a_transaction_and_stays_quiet_when_nothing_is_new() {
        let empty = record(7, 0, TxnState::Empty);
        let partition = (Uuid::nil(), 2);
        let open = add(Some(&empty), &producer(7, 0), &[partition], &[], 5000)
            .expect("decided")
            .expect("decided");
        assert_eq!((open.state, open.start_ms), (TxnState::Ongoing, 5000));
        assert!(
            add(Some(&open), &producer(7, 0), &[partition], &[], 6000)
                .expect("decided")
                .is_none()
        );
        assert!(matches!(
            add(Some(&open), &producer(7, 1), &[partition], &[], 6000),
            Err(TxnError::Fenced)
        ));
        assert!(matches!(
            add(Some(&open), &producer(8, 0), &[partition], &[], 6000),
            Err(TxnError::UnknownProducer)
        ));
        assert!(matches!(
            add(None, &producer(7, 0), &[partition], &[], 6000),
            Err(TxnError::UnknownProducer)
        ));
    }

    #[test]
    fn offsets_are_staged_only_for_a_group_in_the_open_transaction() {
        let empty = record(7, 0, TxnState::Empty);
        assert!(matches!(
            stage(Some(&empty), &producer(7, 0), "g"),
            Err(TxnError::InvalidState)
        ));
        let open = add(Some(&empty), &producer(7, 0), &[], &["g".into()], 10)
            .expect("decided")
            .expect("decided");
        stage(Some(&open), &producer(7, 0), "g").expect("decided");
        assert!(matches!(
            stage(Some(&open), &producer(7, 0), "other"),
            Err(TxnError::InvalidState)
        ));
    }

    #[test]
    fn ends_follow_kafkas_table() {
        let end_request = |commit| EndRequest {
            producer: producer(7, 3),
            commit,
            reason: EndReason::Client,
            now_ms: 1000,
        };
        let open = record(7, 3, TxnState::Ongoing);
        let EndDecision::Write(markers) = end(Some(&open), &end_request(true)).expect("decided")
        else {
            panic!("not written")
        };
        assert_eq!((markers.producer_epoch, markers.commit), (3, true));
        let committed = ended(&open, &markers, 1000);
        assert_eq!(
            committed.producer_epoch, 3,
            "EndTxn below v5 bumps no epoch"
        );
        assert_eq!(committed.start_ms, open.start_ms, "the start is kept");
        assert_eq!(
            end(Some(&committed), &end_request(true)).expect("decided"),
            EndDecision::AlreadyEnded
        );
        assert!(matches!(
            end(Some(&committed), &end_request(false)),
            Err(TxnError::InvalidState)
        ));
        for state in [TxnState::Empty, TxnState::CompleteAbort] {
            assert!(matches!(
                end(Some(&record(7, 3, state)), &end_request(true)),
                Err(TxnError::InvalidState)
            ));
        }
    }

    #[test]
    fn a_timeout_aborts_only_an_expired_transaction_and_fences_its_producer() {
        let open = record(7, 3, TxnState::Ongoing);
        let timeout = |now_ms| EndRequest {
            producer: producer(7, 3),
            commit: false,
            reason: EndReason::Timeout,
            now_ms,
        };
        assert_eq!(
            end(Some(&open), &timeout(60_000)).expect("decided"),
            EndDecision::AlreadyEnded
        );
        let EndDecision::Write(markers) = end(Some(&open), &timeout(60_501)).expect("decided")
        else {
            panic!("not aborted")
        };
        assert_eq!((markers.producer_epoch, markers.commit), (4, false));
        let aborted = ended(&open, &markers, 60_501);
        assert!(matches!(
            end(
                Some(&aborted),
                &EndRequest {
                    reason: EndReason::Client,
                    ..timeout(60_600)
                }
            ),
            Err(TxnError::Fenced)
        ));
    }

    #[test]
    fn an_operator_aborts_an_open_transaction_at_any_age_and_fences_its_producer() {
        let operator = |record: &TxnRecord| {
            end(
                Some(record),
                &EndRequest {
                    producer: producer(7, 3),
                    commit: false,
                    reason: EndReason::Operator,
                    now_ms: 0,
                },
            )
            .expect("decided")
        };
        let EndDecision::Write(markers) = operator(&record(7, 3, TxnState::Ongoing)) else {
            panic!("not aborted")
        };
        assert_eq!((markers.producer_epoch, markers.commit), (4, false));
        for state in [TxnState::Empty, TxnState::CompleteCommit] {
            assert_eq!(operator(&record(7, 3, state)), EndDecision::AlreadyEnded);
        }
    }

    #[test]
    fn state_names_are_kafkas() {
        for state in TxnState::ALL {
            assert_eq!(TxnState::from_name(state.name()), Some(state));
        }
        assert_eq!(TxnState::from_name("PrepareCommit"), None);
    }
}
