//! DescribeTransactions (key 65), v0: the state of transactional ids this gateway
//! coordinates, as `kafka-transactions.sh describe` shows it.
//!
//! Per id, as Kafka: DESCRIBE on it (else TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
//! NOT_COORDINATOR when another gateway coordinates it, TRANSACTIONAL_ID_NOT_FOUND when
//! nothing is recorded; the partitions of topics the principal may not describe are left
//! out.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use yaks_common::acl::{Operation, ResourceType};

use super::{RequestContext, Versions};
use crate::transactions::{coordinates, error_code};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 0 };

/// Answers DescribeTransactions.
pub async fn handle(
    context: RequestContext,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let state = &context.state;
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for transactional_id in &request.transactional_ids {
        let id = transactional_id.0.as_str();
        let failed = |code: i16| {
            TransactionState::default()
                .with_transactional_id(transactional_id.clone())
                .with_error_code(code)
                .with_transaction_state(StrBytes::from_static_str(""))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1)
        };
        if !context.allowed(Operation::Describe, ResourceType::TransactionalId, id) {
            states.push(failed(
                ResponseError::TransactionalIdAuthorizationFailed.code(),
            ));
            continue;
        }
        if id.is_empty() {
            states.push(failed(ResponseError::InvalidRequest.code()));
            continue;
        }
        if !coordinates(state, id) {
            states.push(failed(ResponseError::NotCoordinator.code()));
            continue;
        }
        let record = match state.metastore.transaction(id).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                states.push(failed(ResponseError::TransactionalIdNotFound.code()));
                continue;
            }
            Err(e) => {
                states.push(failed(error_code(&e, ResponseError::ProducerFenced)));
                continue;
            }
        };
        let ids: Vec<_> = record.partitions.iter().map(|(topic, _)| *topic).collect();
        let names = state.topics.get_by_ids(&ids).await.unwrap_or_default();
        let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic_id, partition) in &record.partitions {
            if let Some(meta) = names.get(topic_id)
                && context.allowed_on_topic(Operation::Describe, &meta.name)
            {
                topics
                    .entry(meta.name.clone())
                    .or_default()
                    .push(*partition);
            }
        }
        states.push(
            TransactionState::default()
                .with_transactional_id(transactional_id.clone())
                .with_transaction_state(StrBytes::from_static_str(record.state.name()))
                .with_transaction_timeout_ms(record.timeout_ms)
                .with_transaction_start_time_ms(record.start_ms)
                .with_producer_id(ProducerId(record.producer_id))
                .with_producer_epoch(record.producer_epoch)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, partitions)| {
                            TopicData::default()
                                .with_topic(TopicName(StrBytes::from_string(name)))
                                .with_partitions(partitions)
                        })
                        .collect(),
                ),
        );
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
