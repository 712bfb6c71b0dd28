//! DescribeConfigs (key 32), v1–v4: a topic's effective configs (set or default), with
//! synonyms, types and documentation when asked; the documentation says whether yaks
//! enforces the config ([`yaks_common::topic_config`]). Broker resources answer with no
//! configs: a gateway's settings live in `yaks.toml`, not in Kafka broker configs.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use tracing::warn;
use yaks_common::acl::Operation;
use yaks_common::kafka::str_bytes;
use yaks_common::topic_config::{Effective, TopicConfigs};

use super::{RequestContext, Versions};
use crate::topics::{SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 1, max: 4 };

/// Kafka's `ConfigResource.Type` of topics.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's `ConfigResource.Type` of brokers.
pub const RESOURCE_BROKER: i8 = 4;

/// Answers DescribeConfigs.
pub async fn handle(
    context: RequestContext,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut results = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let denied = match resource.resource_type {
            RESOURCE_TOPIC => (!context
                .allowed_on_topic(Operation::DescribeConfigs, resource.resource_name.as_str()))
            .then_some((
                ResponseError::TopicAuthorizationFailed,
                "Authorization failed.",
            )),
            RESOURCE_BROKER => {
                (!context.allowed_on_cluster(Operation::DescribeConfigs)).then_some((
                    ResponseError::ClusterAuthorizationFailed,
                    "Cluster authorization failed.",
                ))
            }
            _ => None,
        };
        if let Some((error, message)) = denied {
            result.error_code = error.code();
            result.error_message = Some(str_bytes(message));
            results.push(result);
            continue;
        }
        match resource.resource_type {
            RESOURCE_TOPIC => {
                let name = resource.resource_name.to_string();
                match context
                    .state
                    .topics
                    .get_many(std::slice::from_ref(&name))
                    .await
                {
                    Ok(found) => match found.get(&name) {
                        Some(topic) => {
                            let wanted = |key: &str| {
                                resource
                                    .configuration_keys
                                    .as_ref()
                                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == key))
                            };
                            result.configs = TopicConfigs::new(&topic.configs)
                                .effective()
                                .into_iter()
                                .filter(|effective| wanted(effective.config.name))
                                .map(|effective| describe(context.version, &request, effective))
                                .collect();
                        }
                        None => {
                            result.error_code = ResponseError::UnknownTopicOrPartition.code();
                            result.error_message =
                                Some(str_bytes(&format!("no topic named {name}")));
                        }
                    },
                    Err(e) => {
                        warn!(error = %e, "reading a topic's configs failed");
                        result.error_code = e.kafka_code();
                        result.error_message = Some(str_bytes(&e.to_string()));
                    }
                }
            }
            RESOURCE_BROKER => {}
            other => {
                result.error_code = ResponseError::InvalidRequest.code();
                result.error_message = Some(str_bytes(&format!(
                    "resource type {other} is not described here (topics: 2, brokers: 4)"
                )));
            }
        }
        results.push(result);
    }
    DescribeConfigsResponse::default().with_results(results)
}

fn describe(
    version: i16,
    request: &DescribeConfigsRequest,
    effective: Effective,
) -> DescribeConfigsResourceResult {
    let Effective {
        config,
        value,
        explicit,
    } = effective;
    let key = config.name;
    let source = if explicit {
        SOURCE_DYNAMIC_TOPIC
    } else {
        SOURCE_DEFAULT
    };
    let mut described = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(key))
        .with_value(Some(str_bytes(&value)))
        .with_read_only(false)
        .with_config_source(source)
        .with_is_sensitive(false);
    if request.include_synonyms {
        let mut synonyms = Vec::new();
        if explicit {
            synonyms.push(
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(key))
                    .with_value(Some(str_bytes(&value)))
                    .with_source(SOURCE_DYNAMIC_TOPIC),
            );
        }
        synonyms.push(
            DescribeConfigsSynonym::default()
                .with_name(str_bytes(key))
                .with_value(Some(str_bytes(config.default)))
                .with_source(SOURCE_DEFAULT),
        );
        described.synonyms = synonyms;
    }
    if version >= 3 {
        described.config_type = config.kind.config_type();
        // Null unless asked for, as Kafka answers.
        described.documentation = request
            .include_documentation
            .then(|| str_bytes(&config.documentation()));
    }
    described
}
