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

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use tracing::{info, warn};
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

/// How many times a decision is asked again with the markers it named, when the state moved
/// on meanwhile (another request of the same id won the lock).
const MARKER_ROUNDS: usize = 3;

/// Decides transactional ids' requests that write markers.
pub struct TxnCoordinator {
    metastore: Arc<dyn GatewayStore>,
    key_prefix: String,
}

impl TxnCoordinator {
    /// A coordinator naming its marker objects under `key_prefix`, as writers name theirs
    /// (their bodies are in the metastore; the key only names them in logs and listings).
    pub fn new(metastore: Arc<dyn GatewayStore>, key_prefix: String) -> TxnCoordinator {
        TxnCoordinator {
            metastore,
            key_prefix,
        }
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
        let mut markers = None;
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
    /// each abort happen once.
    pub async fn abort_expired(self: Arc<Self>, state: Arc<GatewayState>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = yaks_common::clock::sleep(EXPIRY_SCAN) => {}
            }
            let now_ms = state.server_clock.now_ms();
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
