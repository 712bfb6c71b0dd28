//! DeleteRecords (key 21), v0–v2: moves partitions' log start offsets forward (-1: to the
//! high watermark). Fetches below the new log start get OFFSET_OUT_OF_RANGE and ListOffsets
//! earliest returns it (readers see the move within their tail TTL of 30 s); the compactor
//! collects objects left wholly below it.

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use tracing::{info, warn};
use yaks_common::acl::Operation;
use yaks_common::metastore::{LogStartMove, TopicMeta};

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 2 };

/// Answers DeleteRecords.
pub async fn handle(
    context: RequestContext,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let state = &context.state;
    let names: Vec<String> = request
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .collect();
    let topics: Result<HashMap<String, TopicMeta>, i16> = state
        .topics
        .get_many(&names)
        .await
        .map_err(|e| e.kafka_code());
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let deletable = context.allowed_on_topic(Operation::Delete, topic.name.0.as_str());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let index = partition.partition_index;
            let answer = |low_watermark: i64, code: i16| {
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(index)
                    .with_low_watermark(low_watermark)
                    .with_error_code(code)
            };
            if !deletable {
                partitions.push(answer(-1, ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let meta = match &topics {
                Err(code) => {
                    partitions.push(answer(-1, *code));
                    continue;
                }
                Ok(found) => found.get(topic.name.0.as_str()),
            };
            let Some(meta) = meta.filter(|m| index >= 0 && index < m.partition_count) else {
                partitions.push(answer(-1, ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let moved = state
                .metastore
                .advance_log_start(meta.topic_id, index, partition.offset)
                .await;
            partitions.push(match moved {
                Ok(LogStartMove::Moved { log_start_offset }) => {
                    info!(topic = %meta.name, partition = index, log_start_offset, "records deleted");
                    answer(log_start_offset, 0)
                }
                Ok(LogStartMove::BeyondHighWatermark { .. }) => {
                    answer(-1, ResponseError::OffsetOutOfRange.code())
                }
                Ok(LogStartMove::NoPartition) => {
                    answer(-1, ResponseError::UnknownTopicOrPartition.code())
                }
                Err(e) => {
                    warn!(topic = %meta.name, partition = index, error = %e, "deleting records failed");
                    answer(-1, e.kafka_code())
                }
            });
        }
        results.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(results)
}
