//! OffsetForLeaderEpoch (key 23), v0–v4: where a leader epoch ends.
//!
//! Clients call it after a leader change to check that what they fetched was not truncated
//! (KIP-320). Every yaks partition has one epoch, [`LEADER_EPOCH`], which Metadata reports
//! and fetched batches carry, and no log is ever truncated: epoch 0 ends at the high
//! watermark, and any other epoch is unknown (-1, -1), as Kafka answers for an epoch it
//! has no record of.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use tracing::warn;
use uuid::Uuid;
use yaks_common::acl::Operation;

use super::fetch::{LEADER_EPOCH, epoch_error};
use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 4 };

/// Answers OffsetForLeaderEpoch.
pub async fn handle(
    context: RequestContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let state = &context.state;
    let names: Vec<String> = request
        .topics
        .iter()
        .map(|t| t.topic.0.to_string())
        .collect();
    let looked_up = match state.topics.get_many(&names).await {
        Ok(topics) => {
            let keys: Vec<(Uuid, i32)> = request
                .topics
                .iter()
                .filter_map(|t| topics.get(t.topic.0.as_str()).map(|m| (t, m.topic_id)))
                .flat_map(|(t, id)| t.partitions.iter().map(move |p| (id, p.partition)))
                .collect();
            state
                .metastore
                .partition_states(&keys)
                .await
                .map(|states| (topics, states))
        }
        Err(e) => Err(e),
    };
    let (topics, states, failure) = match looked_up {
        Ok((topics, states)) => (topics, states, None),
        Err(e) => {
            warn!(error = %e, "reading partition offsets failed");
            (Default::default(), Vec::new(), Some(e.kafka_code()))
        }
    };
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let meta = topics.get(topic.topic.0.as_str());
        let describable = context.allowed_on_topic(Operation::Describe, topic.topic.0.as_str());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let mut answer = EpochEndOffset::default()
                .with_partition(partition.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            let ps = meta.and_then(|m| {
                states
                    .iter()
                    .find(|s| s.topic_id == m.topic_id && s.partition_index == partition.partition)
            });
            if !describable {
                answer.error_code = ResponseError::TopicAuthorizationFailed.code();
            } else if let Some(code) = failure {
                answer.error_code = code;
            } else if let Some(ps) = ps {
                if let Some(code) = epoch_error(partition.current_leader_epoch) {
                    answer.error_code = code;
                } else if partition.leader_epoch == LEADER_EPOCH {
                    if context.version >= 1 {
                        // v0 answers carry no epoch.
                        answer.leader_epoch = LEADER_EPOCH;
                    }
                    answer.end_offset = ps.next_offset;
                }
            } else {
                answer.error_code = ResponseError::UnknownTopicOrPartition.code();
            }
            partitions.push(answer);
        }
        results.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(results)
}
