//! DeleteTopics (key 20), v1–v6 (by id from v6).
//!
//! Deleting a topic removes its partitions and index rows in one statement; its objects
//! become unreferenced and are collected by the compactor after the grace period.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use tracing::{info, warn};
use uuid::Uuid;
use yaks_common::acl::Operation;
use yaks_common::kafka::{str_bytes, topic_name};

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 1, max: 6 };

/// Answers DeleteTopics.
pub async fn handle(context: RequestContext, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let version = context.version;
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request
            .topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let (name, id, code, message) = delete_one(&context, name, id).await;
        let mut result = DeletableTopicResult::default()
            .with_name(name.as_deref().map(topic_name))
            .with_error_code(code);
        if version >= 6 {
            result.topic_id = id;
        }
        if version >= 5 {
            result.error_message = message.map(|m| str_bytes(&m));
        }
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

async fn delete_one(
    context: &RequestContext,
    name: Option<String>,
    id: Uuid,
) -> (Option<String>, Uuid, i16, Option<String>) {
    let state = &context.state;
    let denied = |name: Option<String>, id: Uuid| {
        let code = ResponseError::TopicAuthorizationFailed.code();
        (name, id, code, Some("Authorization failed.".into()))
    };
    // As Kafka: a topic named but not describable is denied before it is looked up, so
    // the answer says nothing of whether it exists.
    if let Some(name) = &name
        && !context.allowed_on_topic(Operation::Describe, name)
    {
        return denied(Some(name.clone()), id);
    }
    let found = match &name {
        Some(name) => {
            state
                .metastore
                .topics(Some(std::slice::from_ref(name)))
                .await
        }
        None => state.metastore.topics_by_id(&[id]).await,
    };
    let topic = match found {
        Ok(mut topics) if !topics.is_empty() => topics.remove(0),
        Ok(_) => {
            let code = if name.is_some() {
                ResponseError::UnknownTopicOrPartition
            } else {
                ResponseError::UnknownTopicId
            };
            return (name, id, code.code(), Some("topic does not exist".into()));
        }
        Err(e) => {
            warn!(error = %e, "reading topic failed");
            return (
                name,
                id,
                ResponseError::UnknownServerError.code(),
                Some(e.to_string()),
            );
        }
    };
    if !context.allowed_on_topic(Operation::Describe, &topic.name) {
        return denied(None, id);
    }
    if !context.allowed_on_topic(Operation::Delete, &topic.name) {
        return denied(Some(topic.name), topic.topic_id);
    }
    match state.metastore.delete_topic(topic.topic_id).await {
        Ok(true) => {
            info!(topic = %topic.name, "deleted topic");
            state.topics.invalidate(&topic.name);
            (Some(topic.name), topic.topic_id, 0, None)
        }
        Ok(false) => (
            Some(topic.name),
            topic.topic_id,
            ResponseError::UnknownTopicOrPartition.code(),
            Some("topic does not exist".into()),
        ),
        Err(e) => {
            warn!(topic = %topic.name, error = %e, "deleting topic failed");
            (
                Some(topic.name),
                topic.topic_id,
                ResponseError::UnknownServerError.code(),
                Some(e.to_string()),
            )
        }
    }
}
