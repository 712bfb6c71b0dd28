//! OffsetCommit (key 8), v2–v9: committed offsets, checked against the group's membership.
//!
//! Commits of a group member are checked for its member id and generation by the group's
//! coordinator; standalone commits (generation -1, no member id) are accepted while the
//! group has no members, as in Kafka. Partitions of unknown topics get
//! UNKNOWN_TOPIC_OR_PARTITION, metadata over [`MAX_METADATA_BYTES`]
//! OFFSET_METADATA_TOO_LARGE; the rest are stored together in one statement.
//!
//! Under ACLs, as Kafka: READ on the group (else every partition gets
//! GROUP_AUTHORIZATION_FAILED) and READ on each topic (else TOPIC_AUTHORIZATION_FAILED for
//! its partitions, the others are stored).

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use tracing::warn;
use yaks_common::acl::Operation;
use yaks_common::metastore::CommittedOffset;

use super::{RequestContext, Versions};
use crate::groups::CommitMember;

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 2, max: 9 };

/// Kafka's `offset.metadata.max.bytes` default.
pub const MAX_METADATA_BYTES: usize = 4096;

/// Answers OffsetCommit.
pub async fn handle(context: RequestContext, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let state = &context.state;
    if !context.allowed_on_group(Operation::Read, request.group_id.0.as_str()) {
        return every_partition(&request, ResponseError::GroupAuthorizationFailed.code());
    }
    let names: Vec<String> = request
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .collect();
    let topics = match state.topics.get_many(&names).await {
        Ok(topics) => topics,
        Err(e) => {
            warn!(error = %e, "reading topics for an offset commit failed");
            return every_partition(&request, ResponseError::CoordinatorNotAvailable.code());
        }
    };
    // Per (topic index, partition index): the error decided before storing, if any.
    let mut decided: HashMap<(usize, usize), i16> = HashMap::new();
    let mut offsets = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let known = topics.get(topic.name.0.as_str());
        let readable = context.allowed_on_topic(Operation::Read, topic.name.0.as_str());
        for (p, partition) in topic.partitions.iter().enumerate() {
            let index = partition.partition_index;
            if !readable {
                decided.insert((t, p), ResponseError::TopicAuthorizationFailed.code());
                continue;
            }
            if known.is_none_or(|k| index < 0 || index >= k.partition_count) {
                decided.insert((t, p), ResponseError::UnknownTopicOrPartition.code());
                continue;
            }
            let metadata = partition.committed_metadata.as_ref().map(|m| m.to_string());
            if metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
            {
                decided.insert((t, p), ResponseError::OffsetMetadataTooLarge.code());
                continue;
            }
            offsets.push(CommittedOffset {
                topic: topic.name.0.to_string(),
                partition_index: index,
                offset: partition.committed_offset,
                leader_epoch: if context.version >= 6 {
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
        generation: request.generation_id_or_member_epoch,
    };
    let stored = state
        .groups
        .commit_offsets(request.group_id.0.as_str(), &member, &offsets)
        .await
        .err()
        .map_or(0, |e| e.code());
    answer(&request, |t, p| {
        decided.get(&(t, p)).copied().unwrap_or(stored)
    })
}

fn every_partition(request: &OffsetCommitRequest, code: i16) -> OffsetCommitResponse {
    answer(request, |_, _| code)
}

/// The response with `code(topic index, partition index)` for each requested partition.
fn answer(
    request: &OffsetCommitRequest,
    code: impl Fn(usize, usize) -> i16,
) -> OffsetCommitResponse {
    OffsetCommitResponse::default().with_topics(
        request
            .topics
            .iter()
            .enumerate()
            .map(|(t, topic)| {
                OffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .enumerate()
                            .map(|(p, partition)| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(partition.partition_index)
                                    .with_error_code(code(t, p))
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
