//! The transaction coordinator: InitProducerId with a transactional id, and the end of
//! every transaction (EndTxn, a new incarnation's, a timeout's).
//!
//! Any gateway can decide for any transactional id: the state is in the metastore and
//! every change is made under the id's lock there ([`Transactions`]), so two gateways that
//! disagree on who coordinates cannot both change it. Clients are still sent to one
//! gateway per id (rendezvous hashing, as groups), so its requests meet one lock holder
//! and spread over the gateways; a request that reaches another gateway is answered
//! NOT_COORDINATOR, as Kafka does, and the client looks again.
//!
//! Ending a transaction writes one control batch (marker) per partition, tens of bytes
//! each. They are one object whose body is kept in the metastore, not uploaded: the same
//! metastore transaction stores it, indexes each marker and ends the transaction, or finds
//! the state moved on and stores nothing. No marker is ever indexed without the end, nor
//! the end without every marker, and EndTxn waits for no S3 PUT.
//!
//! The markers an end needs are the partitions the metastore holds for the transaction.
//! The coordinator remembers the partitions it added itself, and an EndTxn sends markers
//! for them with its first call: when they cover the transaction (as they do whenever its
//! partitions were added through this gateway), the end is one metastore transaction;
//! when not, the metastore names the markers it needs and the end is asked again. The
//! metastore decides under its lock either way, so a stale memory costs a round trip,
//! never a wrong marker.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use tracing::{info, warn};
use uuid::Uuid;
use yaks_common::error::StoreError;
use yaks_common::ids::ObjectId;
use yaks_common::metastore::transactions::*;
use yaks_common::metrics::{TxnEndLabels, metrics};
use yaks_common::records::control_batch;
use yaks_common::shutdown::Shutdown;

use crate::{GatewayState, GatewayStore};

/// How often each gateway looks for transactions past their timeout (Kafka's
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms` is 10 s).
const EXPIRY_SCAN: Duration = Duration::from_secs(5);

/// How often each gateway forgets transactional ids idle past
/// `gateway.transactional_id_expiration_ms` (Kafka checks hourly; a minute keeps a short
/// expiration, as tests set, close to its word at the cost of one statement a minute).
const FORGET_SCAN: Duration = Duration::from_secs(60);

/// How many times a decision is asked again with the markers it named, when the state moved
/// on meanwhile (another request of the same id won the lock).
const MARKER_ROUNDS: usize = 3;

/// Transactional ids remembered at most; past that the memory starts over (their ends
/// then take the round trip that asks which markers they need).
const MAX_REMEMBERED: usize = 65_536;

/// Decides transactional ids' requests that write markers.
pub struct TxnCoordinator {
    metastore: Arc<dyn GatewayStore>,
    key_prefix: String,
    /// The partitions this gateway added to each open transaction, by transactional id.
    added: Mutex<HashMap<String, Added>>,
}

/// Partitions a producer incarnation added through this gateway since its last end here.
struct Added {
    producer_id: i64,
    producer_epoch: i16,
    partitions: BTreeSet<(Uuid, i32)>,
}

impl TxnCoordinator {
    /// A coordinator naming its marker objects under `key_prefix`, as writers name theirs
    /// (their bodies are in the metastore; the key only names them in logs and listings).
    pub fn new(metastore: Arc<dyn GatewayStore>, key_prefix: String) -> TxnCoordinator {
        TxnCoordinator {
            metastore,
            key_prefix,
            added: Mutex::new(HashMap::new()),
        }
    }

    /// The metastore added `partitions` to `producer`'s transaction: its end will need
    /// their markers.
    pub fn note_added(&self, producer: &TxnProducer<'_>, partitions: &[(Uuid, i32)]) {
        let mut added = self.added.lock().unwrap_or_else(|p| p.into_inner());
        if added.len() >= MAX_REMEMBERED && !added.contains_key(producer.transactional_id) {
            added.clear();
        }
        let fresh = || Added {
            producer_id: producer.producer_id,
            producer_epoch: producer.producer_epoch,
            partitions: BTreeSet::new(),
        };
        let entry = added
            .entry(producer.transactional_id.to_owned())
            .or_insert_with(fresh);
        if (entry.producer_id, entry.producer_epoch)
            != (producer.producer_id, producer.producer_epoch)
        {
            *entry = fresh();
        }
        entry.partitions.extend(partitions.iter().copied());
    }

    /// The markers a client's end of `request` most likely needs: those of the partitions
    /// this gateway added for the same producer incarnation. Forgets them either way.
    fn expected_markers(&self, request: &EndRequest<'_>) -> Option<MarkerObject> {
        let producer = &request.producer;
        let added = self
            .added
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(producer.transactional_id)?;
        // A timeout's abort fences the producer: its markers carry the next epoch, which
        // only the metastore's answer names.
        if request.reason != EndReason::Client
            || (added.producer_id, added.producer_epoch)
                != (producer.producer_id, producer.producer_epoch)
        {
            return None;
        }
        Some(self.marker_object(
            Markers {
                producer_id: added.producer_id,
                producer_epoch: added.producer_epoch,
                commit: request.commit,
                partitions: added.partitions,
            },
            request.now_ms,
        ))
    }

    /// InitProducerId: the producer's id and epoch, after aborting what an earlier
    /// incarnation left open.
    pub async fn init(&self, request: &InitRequest) -> Result<(i64, i16), TxnError> {
        let mut markers = None;
        for _ in 0..MARKER_ROUNDS {
            match self
                .metastore
                .init_producer(request, markers.as_ref())
                .await?
            {
                TxnInitOutcome::Ready {
                    producer_id,
                    producer_epoch,
                } => {
                    if markers.is_some() {
                        count_end(false, "fence");
                    }
                    return Ok((producer_id, producer_epoch));
                }
                TxnInitOutcome::NeedsMarkers(wanted) => {
                    info!(transactional_id = %request.transactional_id,
                          "aborting the transaction a previous incarnation left open");
                    markers = Some(self.marker_object(wanted, request.now_ms));
                }
            }
        }
        Err(moving(&request.transactional_id))
    }

    /// Ends a transaction: EndTxn, or a timeout's abort.
    pub async fn end(&self, request: &EndRequest<'_>) -> Result<EndOutcome, TxnError> {
        let mut markers = self.expected_markers(request);
        for _ in 0..MARKER_ROUNDS {
            match self
                .metastore
                .end_transaction(request, markers.as_ref())
                .await?
            {
                EndOutcome::NeedsMarkers(wanted) => {
                    markers = Some(self.marker_object(wanted, request.now_ms));
                }
                done => return Ok(done),
            }
        }
        Err(moving(request.producer.transactional_id))
    }

    /// `markers` as one object, one control batch per partition in order.
    fn marker_object(&self, markers: Markers, now_ms: i64) -> MarkerObject {
        let object = ObjectId::new(now_ms);
        let object_key = object.key(&self.key_prefix);
        let batch = control_batch(
            markers.producer_id,
            markers.producer_epoch,
            markers.commit,
            0,
            now_ms,
        );
        let mut body = BytesMut::with_capacity(batch.len() * markers.partitions.len());
        let mut ranges = Vec::with_capacity(markers.partitions.len());
        for &(topic_id, partition_index) in &markers.partitions {
            ranges.push((
                topic_id,
                partition_index,
                body.len() as i64,
                batch.len() as i64,
            ));
            body.extend_from_slice(&batch);
        }
        MarkerObject {
            markers,
            object,
            object_key,
            size_bytes: body.len() as i64,
            ranges,
            timestamp_ms: now_ms,
            body: body.freeze(),
        }
    }

    /// Aborts transactions past their timeout, fencing their producers, every
    /// 5 seconds until `shutdown`. Every gateway scans; the metastore's lock makes
    /// each abort happen once. Once a minute it also forgets transactional ids idle past
    /// their expiration.
    pub async fn abort_expired(self: Arc<Self>, state: Arc<GatewayState>, mut shutdown: Shutdown) {
        let mut forgot_at = yaks_common::clock::now();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = yaks_common::clock::sleep(EXPIRY_SCAN) => {}
            }
            let now_ms = state.server_clock.now_ms();
            if forgot_at.elapsed() >= FORGET_SCAN {
                forgot_at = yaks_common::clock::now();
                let idle_before = now_ms - state.config.transactional_id_expiration_ms;
                match self
                    .metastore
                    .forget_idle_transactional_ids(idle_before)
                    .await
                {
                    Ok(forgotten) if !forgotten.is_empty() => info!(
                        count = forgotten.len(),
                        first = %forgotten[0],
                        "transactional ids idle past their expiration forgotten"
                    ),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "forgetting idle transactional ids failed"),
                }
            }
            let expired = match self.metastore.expired_transactions(now_ms).await {
                Ok(expired) => expired,
                Err(e) => {
                    warn!(error = %e, "looking for expired transactions failed");
                    continue;
                }
            };
            for record in expired {
                let request = EndRequest {
                    producer: TxnProducer {
                        transactional_id: &record.transactional_id,
                        producer_id: record.producer_id,
                        producer_epoch: record.producer_epoch,
                    },
                    commit: false,
                    reason: EndReason::Timeout,
                    now_ms,
                };
                match self.end(&request).await {
                    Ok(EndOutcome::Ended) => {
                        info!(transactional_id = %record.transactional_id,
                              timeout_ms = record.timeout_ms,
                              "transaction aborted after its timeout; its producer is fenced");
                        count_end(false, "timeout");
                    }
                    Ok(_) => {}
                    Err(e) => warn!(transactional_id = %record.transactional_id, error = %e,
                                    "aborting an expired transaction failed"),
                }
            }
        }
    }
}

/// Counts a transaction ended.
pub fn count_end(commit: bool, reason: &'static str) {
    metrics()
        .gateway
        .transactions_ended
        .get_or_create(&TxnEndLabels {
            outcome: if commit { "commit" } else { "abort" },
            reason,
        })
        .inc();
}

/// The answer when a decision kept changing under the markers written for it.
fn moving(transactional_id: &str) -> TxnError {
    TxnError::Store(StoreError::Retriable(format!(
        "transaction {transactional_id} changed while its markers were written"
    )))
}

/// Whether this gateway coordinates `transactional_id` (the one FindCoordinator names).
pub fn coordinates(state: &GatewayState, transactional_id: &str) -> bool {
    state
        .cluster
        .coordinator_of(transactional_id)
        .is_some_and(|broker| state.cluster.is_local(broker.node_id))
}

/// The Kafka error code for a refused or undecided transactional request. `fenced` is the
/// code the API version knows for a fenced producer: PRODUCER_FENCED where it exists,
/// INVALID_PRODUCER_EPOCH before.
pub fn error_code(error: &TxnError, fenced: ResponseError) -> i16 {
    match error {
        TxnError::UnknownProducer => ResponseError::InvalidProducerIdMapping.code(),
        TxnError::Fenced => fenced.code(),
        TxnError::InvalidState => ResponseError::InvalidTxnState.code(),
        // Retriable for every client, which may find the coordinator again: as Kafka
        // answers when its transaction log cannot be written. A retried end whose first
        // try did commit is answered with success.
        TxnError::Store(StoreError::Retriable(_) | StoreError::OutcomeUnknown(_)) => {
            ResponseError::CoordinatorNotAvailable.code()
        }
        TxnError::Store(other) => other.kafka_code(),
    }
}

/// PRODUCER_FENCED from `since` on, INVALID_PRODUCER_EPOCH before, as each API's
/// versions know it.
pub fn fenced_code(version: i16, since: i16) -> ResponseError {
    if version >= since {
        ResponseError::ProducerFenced
    } else {
        ResponseError::InvalidProducerEpoch
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use yaks_common::metastore::memory::MemoryMetastore;
    use yaks_common::metastore::{Log, Topics};

    use super::*;

    /// A coordinator over a memory metastore holding a topic of three partitions, and the
    /// producer `app`'s incarnation there.
    async fn setup() -> (TxnCoordinator, Arc<MemoryMetastore>, Uuid, (i64, i16)) {
        let metastore = Arc::new(MemoryMetastore::default());
        let topic = metastore
            .create_topic("t", 3, &BTreeMap::new())
            .await
            .expect("create")
            .expect("new");
        let coordinator = TxnCoordinator::new(metastore.clone(), String::new());
        let producer = coordinator
            .init(&InitRequest {
                transactional_id: "app".into(),
                timeout_ms: 60_000,
                expected: None,
                fresh_producer_id: 7,
                now_ms: 1,
            })
            .await
            .expect("init");
        (coordinator, metastore, topic.topic_id, producer)
    }

    /// The partitions' high watermarks: a marker takes an offset of its own.
    async fn next_offsets(metastore: &MemoryMetastore, topic: Uuid) -> Vec<i64> {
        let partitions: Vec<(Uuid, i32)> = (0..3).map(|p| (topic, p)).collect();
        metastore
            .partition_states(&partitions)
            .await
            .expect("states")
            .iter()
            .map(|s| s.next_offset)
            .collect()
    }

    /// Adds `added` to `app`'s transaction in the metastore; this gateway remembers
    /// `noted` of them (another gateway added the rest, or none).
    async fn end_after(added: &[i32], noted: &[i32]) -> Vec<i64> {
        let (coordinator, metastore, topic, (producer_id, producer_epoch)) = setup().await;
        let producer = TxnProducer {
            transactional_id: "app",
            producer_id,
            producer_epoch,
        };
        let added: Vec<(Uuid, i32)> = added.iter().map(|&p| (topic, p)).collect();
        metastore
            .add_to_transaction(&producer, &added, &[], 2)
            .await
            .expect("add");
        let noted: Vec<(Uuid, i32)> = noted.iter().map(|&p| (topic, p)).collect();
        coordinator.note_added(&producer, &noted);
        let outcome = coordinator
            .end(&EndRequest {
                producer,
                commit: true,
                reason: EndReason::Client,
                now_ms: 3,
            })
            .await
            .expect("end");
        assert_eq!(outcome, EndOutcome::Ended);
        next_offsets(&metastore, topic).await
    }

    #[tokio::test]
    async fn an_end_marks_exactly_the_transactions_partitions_whatever_the_gateway_noted() {
        // All noted here: the markers sent with the first call fit.
        assert_eq!(end_after(&[0, 2], &[0, 2]).await, vec![1, 0, 1]);
        // One added through another gateway: the metastore names the markers it needs.
        assert_eq!(end_after(&[0, 2], &[0]).await, vec![1, 0, 1]);
        // Noted more than the transaction holds (an earlier transaction ended elsewhere):
        // no marker where the transaction has no partition.
        assert_eq!(end_after(&[2], &[0, 1, 2]).await, vec![0, 0, 1]);
        // Nothing noted.
        assert_eq!(end_after(&[1], &[]).await, vec![0, 1, 0]);
    }

    #[tokio::test]
    async fn partitions_noted_for_an_earlier_incarnation_are_not_taken_for_its_successors() {
        let (coordinator, _, topic, (producer_id, producer_epoch)) = setup().await;
        let earlier = TxnProducer {
            transactional_id: "app",
            producer_id,
            producer_epoch,
        };
        let end = |producer, reason| EndRequest {
            producer,
            commit: true,
            reason,
            now_ms: 3,
        };
        let successor = TxnProducer {
            producer_epoch: producer_epoch + 1,
            ..earlier
        };
        coordinator.note_added(&earlier, &[(topic, 0)]);
        let request = end(successor, EndReason::Client);
        assert!(coordinator.expected_markers(&request).is_none());
        // A timeout's abort carries the next epoch: never taken from what was noted.
        coordinator.note_added(&earlier, &[(topic, 0)]);
        assert!(
            coordinator
                .expected_markers(&end(earlier, EndReason::Timeout))
                .is_none()
        );
        // The same incarnation's client end is, once.
        coordinator.note_added(&earlier, &[(topic, 0)]);
        let client = end(earlier, EndReason::Client);
        let markers = coordinator.expected_markers(&client).expect("noted");
        assert_eq!(markers.markers.partitions, BTreeSet::from([(topic, 0)]));
        assert!(coordinator.expected_markers(&client).is_none());
    }
}
