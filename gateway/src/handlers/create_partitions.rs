//! CreatePartitions (key 37), v0–v3: grows topics. New partitions start empty at offset 0
//! and are served at once by this gateway, within [`crate::topics::CACHE_TTL`] by others.
//! Replica assignments are accepted and ignored: S3 holds every partition.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use tracing::{info, warn};
use yaks_common::acl::Operation;
use yaks_common::error::StoreError;
use yaks_common::kafka::str_bytes;

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 3 };

/// Answers CreatePartitions.
pub async fn handle(
    context: RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let (code, message) = grow(
            &context,
            topic.name.0.as_str(),
            topic.count,
            request.validate_only,
        )
        .await;
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(topic.name.clone())
                .with_error_code(code)
                .with_error_message(message.map(|m| str_bytes(&m))),
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}

async fn grow(
    context: &RequestContext,
    name: &str,
    count: i32,
    validate_only: bool,
) -> (i16, Option<String>) {
    let state = &context.state;
    // As Kafka: ALTER on the topic, checked before it is looked up.
    if !context.allowed_on_topic(Operation::Alter, name) {
        return (
            ResponseError::TopicAuthorizationFailed.code(),
            Some("Authorization failed.".into()),
        );
    }
    let limit = state.config.max_partitions_per_topic;
    if count > limit {
        return (
            ResponseError::InvalidPartitions.code(),
            Some(format!(
                "{count} partitions is more than the limit of {limit}"
            )),
        );
    }
    let topic = match state.topics.get_many(&[name.to_owned()]).await {
        Ok(mut found) => match found.remove(name) {
            Some(topic) => topic,
            None => {
                return (
                    ResponseError::UnknownTopicOrPartition.code(),
                    Some(format!("no topic named {name}")),
                );
            }
        },
        Err(e) => return (e.kafka_code(), Some(e.to_string())),
    };
    if count <= topic.partition_count {
        return (
            ResponseError::InvalidPartitions.code(),
            Some(format!(
                "topic {name} has {} partitions; {count} would not add any",
                topic.partition_count
            )),
        );
    }
    if validate_only {
        return (0, None);
    }
    match state.metastore.add_partitions(topic.topic_id, count).await {
        Ok(Some(before)) => {
            state.topics.invalidate(name);
            info!(topic = name, before, after = count, "partitions added");
            (0, None)
        }
        Ok(None) => (
            ResponseError::UnknownTopicOrPartition.code(),
            Some(format!("no topic named {name}")),
        ),
        Err(StoreError::Invalid(message)) => {
            (ResponseError::InvalidPartitions.code(), Some(message))
        }
        Err(e) => {
            warn!(topic = name, error = %e, "adding partitions failed");
            (e.kafka_code(), Some(e.to_string()))
        }
    }
}
