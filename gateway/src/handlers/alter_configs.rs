//! AlterConfigs (key 33), v0–v2: replaces a topic's configs (those not named go back to
//! their defaults, as in Kafka). Every value is validated first (INVALID_CONFIG with the
//! reason); `validate_only` stops there. Broker configs are not alterable here.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::{info, warn};
use yaks_common::acl::Operation;
use yaks_common::kafka::str_bytes;
use yaks_common::topic_config;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 2 };

/// Answers AlterConfigs.
pub async fn handle(context: RequestContext, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let configs: BTreeMap<String, Option<String>> = resource
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let (code, message) = alter(
            &context,
            resource.resource_type,
            &resource.resource_name,
            |_| Ok(configs),
            request.validate_only,
        )
        .await;
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message.map(|m| str_bytes(&m))),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Sets a topic's configs to what `change` makes of its current explicit ones, after
/// validating every value; returns the error code and message for the resource. Shared
/// with IncrementalAlterConfigs.
pub async fn alter(
    context: &RequestContext,
    resource_type: i8,
    resource_name: &StrBytes,
    change: impl FnOnce(
        &BTreeMap<String, Option<String>>,
    ) -> Result<BTreeMap<String, Option<String>>, String>,
    validate_only: bool,
) -> (i16, Option<String>) {
    // As Kafka: ALTER_CONFIGS on the topic, or on the cluster for a broker, before anything
    // else is looked at.
    if resource_type == RESOURCE_TOPIC
        && !context.allowed_on_topic(Operation::AlterConfigs, resource_name.as_str())
    {
        return (
            ResponseError::TopicAuthorizationFailed.code(),
            Some("Authorization failed.".into()),
        );
    }
    if resource_type == RESOURCE_BROKER && !context.allowed_on_cluster(Operation::AlterConfigs) {
        return (
            ResponseError::ClusterAuthorizationFailed.code(),
            Some("Cluster authorization failed.".into()),
        );
    }
    if resource_type != RESOURCE_TOPIC {
        return (
            ResponseError::InvalidRequest.code(),
            Some("only topic configs can be altered; gateway settings live in yaks.toml".into()),
        );
    }
    let state = &context.state;
    let name = resource_name.to_string();
    let topic = match state.topics.get_many(std::slice::from_ref(&name)).await {
        Ok(mut found) => match found.remove(&name) {
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
    let configs = match change(&topic.configs) {
        Ok(configs) => configs,
        Err(message) => return (ResponseError::InvalidConfig.code(), Some(message)),
    };
    for (key, value) in &configs {
        if let Err(message) = topic_config::validate(key, value.as_deref()) {
            return (ResponseError::InvalidConfig.code(), Some(message));
        }
    }
    // A null value means "the default": it is not stored.
    let configs: BTreeMap<String, Option<String>> =
        configs.into_iter().filter(|(_, v)| v.is_some()).collect();
    if validate_only {
        return (0, None);
    }
    match state
        .metastore
        .set_topic_configs(topic.topic_id, &configs)
        .await
    {
        Ok(true) => {
            state.topics.invalidate(&name);
            info!(topic = %name, ?configs, "topic configs altered");
            (0, None)
        }
        Ok(false) => (
            ResponseError::UnknownTopicOrPartition.code(),
            Some(format!("no topic named {name}")),
        ),
        Err(e) => {
            warn!(topic = %name, error = %e, "altering topic configs failed");
            (e.kafka_code(), Some(e.to_string()))
        }
    }
}
