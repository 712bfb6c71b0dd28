//! AddPartitionsToTxn (key 24), v0–v5: partitions join a producer's transaction before it
//! writes to them.
//!
//! v0–v3 come from producers: one transaction, WRITE on the transactional id and on each
//! topic. v4+ are KIP-890's batched form, which Kafka's partition leaders send to ask
//! whether a partition is in a transaction (`verify_only`) and which needs CLUSTER_ACTION;
//! yaks checks that itself where transactional batches are committed, but answers the
//! form as Kafka does. As in Kafka, a partition that is refused (unauthorized, unknown)
//! keeps its error and the others get OPERATION_NOT_ATTEMPTED: nothing is added.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, TransactionalId,
};
use tracing::warn;
use yaks_common::acl::{Operation, ResourceType};
use yaks_common::metastore::transactions::{TxnProducer, TxnState, held};

use super::{RequestContext, Versions};
use crate::transactions::{coordinates, error_code, fenced_code};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 5 };

/// Answers AddPartitionsToTxn.
pub async fn handle(
    context: RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if context.version < 4 {
        let results = add(
            &context,
            &request.v3_and_below_transactional_id,
            request.v3_and_below_producer_id,
            request.v3_and_below_producer_epoch,
            &request.v3_and_below_topics,
            false,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    if !context.allowed_on_cluster(Operation::ClusterAction) {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut results = Vec::with_capacity(request.transactions.len());
    for transaction in &request.transactions {
        let topic_results = add(
            &context,
            &transaction.transactional_id,
            transaction.producer_id,
            transaction.producer_epoch,
            &transaction.topics,
            transaction.verify_only,
        )
        .await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(transaction.transactional_id.clone())
                .with_topic_results(topic_results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// One transaction's partitions: added, or (`verify_only`) checked.
async fn add(
    context: &RequestContext,
    transactional_id: &TransactionalId,
    producer_id: ProducerId,
    producer_epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let state = &context.state;
    let id = transactional_id.0.as_str();
    let from_client = context.version < 4;
    if from_client && !context.allowed(Operation::Write, ResourceType::TransactionalId, id) {
        return answer(topics, |_, _| {
            ResponseError::TransactionalIdAuthorizationFailed.code()
        });
    }
    if id.is_empty() {
        return answer(topics, |_, _| ResponseError::InvalidRequest.code());
    }
    let names: Vec<String> = topics.iter().map(|t| t.name.0.to_string()).collect();
    let known = match state.topics.get_many(&names).await {
        Ok(known) => known,
        Err(e) => {
            warn!(error = %e, "reading topics for AddPartitionsToTxn failed");
            return answer(topics, |_, _| ResponseError::CoordinatorNotAvailable.code());
        }
    };
    // Refusals per partition first: any of them and nothing is added.
    let mut partitions = Vec::new();
    let mut refused = false;
    let decided: Vec<Vec<Option<i16>>> = topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let writable = !from_client || context.allowed_on_topic(Operation::Write, name);
            topic
                .partitions
                .iter()
                .map(|&index| {
                    let code = if !writable {
                        Some(ResponseError::TopicAuthorizationFailed.code())
                    } else {
                        match known.get(name) {
                            Some(meta) if index >= 0 && index < meta.partition_count => {
                                partitions.push((meta.topic_id, index));
                                None
                            }
                            _ => Some(ResponseError::UnknownTopicOrPartition.code()),
                        }
                    };
                    refused |= code.is_some();
                    code
                })
                .collect()
        })
        .collect();
    if refused {
        return answer(topics, |t, p| {
            decided[t][p].unwrap_or(ResponseError::OperationNotAttempted.code())
        });
    }
    if !coordinates(state, id) {
        return answer(topics, |_, _| ResponseError::NotCoordinator.code());
    }
    let producer = TxnProducer {
        transactional_id: id,
        producer_id: producer_id.0,
        producer_epoch,
    };
    let fenced = fenced_code(context.version, 2);
    if verify_only {
        let record = match state.metastore.transaction(id).await {
            Ok(record) => record,
            Err(e) => return answer(topics, |_, _| error_code(&e, fenced)),
        };
        let open: BTreeSet<(uuid::Uuid, i32)> = match held(record.as_ref(), &producer) {
            Ok(record) if record.state == TxnState::Ongoing => record.partitions.clone(),
            Ok(_) => BTreeSet::new(),
            Err(e) => return answer(topics, |_, _| error_code(&e, fenced)),
        };
        let absent = if context.version >= 5 {
            ResponseError::TransactionAbortable.code()
        } else {
            ResponseError::InvalidTxnState.code()
        };
        let mut at = 0;
        return answer(topics, |_, _| {
            let code = if open.contains(&partitions[at]) {
                0
            } else {
                absent
            };
            at += 1;
            code
        });
    }
    let now_ms = state.server_clock.now_ms();
    let code = match state
        .metastore
        .add_to_transaction(&producer, &partitions, &[], now_ms)
        .await
    {
        Ok(()) => {
            state.transactions.note_added(&producer, &partitions);
            0
        }
        Err(e) => error_code(&e, fenced),
    };
    answer(topics, |_, _| code)
}

/// The per-partition results, `code(topic index, partition index)` each, in request order.
fn answer(
    topics: &[AddPartitionsToTxnTopic],
    mut code: impl FnMut(usize, usize) -> i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .enumerate()
        .map(|(t, topic)| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(
                    topic
                        .partitions
                        .iter()
                        .enumerate()
                        .map(|(p, &index)| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(index)
                                .with_partition_error_code(code(t, p))
                        })
                        .collect(),
                )
        })
        .collect()
}
