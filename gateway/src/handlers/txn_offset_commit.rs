//! TxnOffsetCommit (key 28), v0–v4: a consumer group's offsets, given to a producer's
//! transaction; they become the group's committed offsets if the transaction commits and
//! are dropped if it aborts (in the same metastore transaction as its markers).
//!
//! Sent to the group's coordinator, which checks the member as for OffsetCommit. Under
//! ACLs, as Kafka: WRITE on the transactional id, READ on the group, READ on each topic.
//! A fenced producer gets INVALID_PRODUCER_EPOCH (this API never had PRODUCER_FENCED); a
//! group not added with AddOffsetsToTxn, INVALID_TXN_STATE.

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use tracing::warn;
use yaks_common::acl::{Operation, ResourceType};
use yaks_common::metastore::CommittedOffset;
use yaks_common::metastore::transactions::TxnProducer;

use super::offset_commit::MAX_METADATA_BYTES;
use super::{RequestContext, Versions};
use crate::groups::CommitMember;
use crate::transactions::error_code;

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 4 };

/// Answers TxnOffsetCommit.
pub async fn handle(
    context: RequestContext,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let state = &context.state;
    let id = request.transactional_id.0.as_str();
    let group = request.group_id.0.as_str();
    if !context.allowed(Operation::Write, ResourceType::TransactionalId, id) {
        return answer(&request, |_, _| {
            ResponseError::TransactionalIdAuthorizationFailed.code()
        });
    }
    if !context.allowed_on_group(Operation::Read, group) {
        return answer(&request, |_, _| {
            ResponseError::GroupAuthorizationFailed.code()
        });
    }
    if group.is_empty() {
        return answer(&request, |_, _| ResponseError::InvalidGroupId.code());
    }
    let names: Vec<String> = request
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .collect();
    let topics = match state.topics.get_many(&names).await {
        Ok(topics) => topics,
        Err(e) => {
            warn!(error = %e, "reading topics for a transactional offset commit failed");
            return answer(&request, |_, _| {
                ResponseError::CoordinatorNotAvailable.code()
            });
        }
    };
    let mut decided: HashMap<(usize, usize), i16> = HashMap::new();
    let mut offsets = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let name = topic.name.0.as_str();
        let known = topics.get(name);
        let readable = context.allowed_on_topic(Operation::Read, name);
        for (p, partition) in topic.partitions.iter().enumerate() {
            let index = partition.partition_index;
            let metadata = partition.committed_metadata.as_ref().map(|m| m.to_string());
            let refusal = if !readable {
                Some(ResponseError::TopicAuthorizationFailed)
            } else if known.is_none_or(|k| index < 0 || index >= k.partition_count) {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
            {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                None
            };
            if let Some(refusal) = refusal {
                decided.insert((t, p), refusal.code());
                continue;
            }
            offsets.push(CommittedOffset {
                topic: name.to_owned(),
                partition_index: index,
                offset: partition.committed_offset,
                leader_epoch: if context.version >= 2 {
                    partition.committed_leader_epoch
                } else {
                    -1
                },
                metadata,
            });
        }
    }
    let member = CommitMember {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        generation: request.generation_id,
    };
    let staged = match state
        .groups
        .check_transactional_commit(group, &member)
        .await
    {
        Err(code) => code.code(),
        Ok(()) if offsets.is_empty() => 0,
        Ok(()) => {
            let producer = TxnProducer {
                transactional_id: id,
                producer_id: request.producer_id.0,
                producer_epoch: request.producer_epoch,
            };
            let now_ms = state.server_clock.now_ms();
            match state
                .metastore
                .stage_offsets(&producer, group, &offsets, now_ms)
                .await
            {
                Ok(()) => 0,
                Err(e) => error_code(&e, ResponseError::InvalidProducerEpoch),
            }
        }
    };
    answer(&request, |t, p| {
        decided.get(&(t, p)).copied().unwrap_or(staged)
    })
}

/// The response with `code(topic index, partition index)` for each requested partition.
fn answer(
    request: &TxnOffsetCommitRequest,
    code: impl Fn(usize, usize) -> i16,
) -> TxnOffsetCommitResponse {
    TxnOffsetCommitResponse::default().with_topics(
        request
            .topics
            .iter()
            .enumerate()
            .map(|(t, topic)| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .enumerate()
                            .map(|(p, partition)| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(partition.partition_index)
                                    .with_error_code(code(t, p))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
