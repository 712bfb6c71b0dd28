//! CreateTopics (key 19), v2–v7.
//!
//! Validates names (INVALID_TOPIC_EXCEPTION), partition counts (INVALID_PARTITIONS),
//! replication factors (INVALID_REPLICATION_FACTOR: any positive value or -1 is accepted,
//! since S3 does the replicating) and configs (INVALID_CONFIG), answers
//! TOPIC_ALREADY_EXISTS, and with `validate_only` checks without creating. From v5 the
//! answer carries the topic's effective configs.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use tracing::{info, warn};
use uuid::Uuid;
use yaks_common::acl::Operation;
use yaks_common::kafka::str_bytes;
use yaks_common::topic_config::{self, TopicConfigs};

use super::{RequestContext, Versions};
use crate::topics::{SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC, validate_name};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 2, max: 7 };

/// Answers CreateTopics.
pub async fn handle(context: RequestContext, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let version = context.version;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for topic in &request.topics {
        *seen.entry(topic.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    // As Kafka: CREATE on the cluster, or on each topic.
    let cluster_create = context.allowed_on_cluster(Operation::Create);
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let result = if seen[&name] > 1 {
            failure(
                topic,
                ResponseError::InvalidRequest,
                format!("topic {name} appears more than once in the request"),
            )
        } else if !cluster_create && !context.allowed_on_topic(Operation::Create, &name) {
            failure(
                topic,
                ResponseError::TopicAuthorizationFailed,
                "Authorization failed.".into(),
            )
        } else {
            let mut result = create_one(&context, topic, request.validate_only).await;
            // The created topic's configs only to those who may describe them.
            if result.error_code == 0
                && !context.allowed_on_topic(Operation::DescribeConfigs, &name)
            {
                result.configs = None;
                result.topic_config_error_code = ResponseError::TopicAuthorizationFailed.code();
            }
            result
        };
        results.push(shape_for_version(result, version));
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn create_one(
    context: &RequestContext,
    topic: &CreatableTopic,
    validate_only: bool,
) -> CreatableTopicResult {
    let state = &context.state;
    let name = topic.name.0.as_str();
    if let Err(reason) = validate_name(name) {
        return failure(topic, ResponseError::InvalidTopicException, reason);
    }
    let partitions = if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return failure(
                topic,
                ResponseError::InvalidRequest,
                "with replica assignments, numPartitions and replicationFactor must be -1".into(),
            );
        }
        let mut indexes: Vec<i32> = topic
            .assignments
            .iter()
            .map(|a| a.partition_index)
            .collect();
        indexes.sort_unstable();
        if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
            return failure(
                topic,
                ResponseError::InvalidReplicaAssignment,
                "replica assignments must cover partitions 0..n exactly once".into(),
            );
        }
        indexes.len() as i32
    } else if topic.num_partitions == -1 {
        state.config.default_partitions
    } else {
        topic.num_partitions
    };
    if partitions < 1 || partitions > state.config.max_partitions_per_topic {
        return failure(
            topic,
            ResponseError::InvalidPartitions,
            format!(
                "number of partitions must be between 1 and {}",
                state.config.max_partitions_per_topic
            ),
        );
    }
    if topic.replication_factor == 0 || topic.replication_factor < -1 {
        return failure(
            topic,
            ResponseError::InvalidReplicationFactor,
            "replication factor must be positive or -1".into(),
        );
    }
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let key = config.name.to_string();
        let value = config.value.as_ref().map(|v| v.to_string());
        if let Err(reason) = topic_config::validate(&key, value.as_deref()) {
            return failure(topic, ResponseError::InvalidConfig, reason);
        }
        if value.is_some() {
            configs.insert(key, value);
        }
    }

    if validate_only {
        match state.metastore.topics(Some(&[name.to_owned()])).await {
            Ok(existing) if !existing.is_empty() => {
                return failure(
                    topic,
                    ResponseError::TopicAlreadyExists,
                    format!("topic {name} already exists"),
                );
            }
            Ok(_) => {}
            Err(e) => return failure(topic, ResponseError::UnknownServerError, e.to_string()),
        }
        return success(topic, Uuid::nil(), partitions, &configs);
    }
    match state
        .metastore
        .create_topic(name, partitions, &configs)
        .await
    {
        Ok(Some(created)) => {
            info!(topic = %name, partitions, "created topic");
            state.topics.insert(created.clone());
            success(topic, created.topic_id, partitions, &configs)
        }
        Ok(None) => failure(
            topic,
            ResponseError::TopicAlreadyExists,
            format!("topic {name} already exists"),
        ),
        Err(e) => {
            warn!(topic = %name, error = %e, "creating topic failed");
            failure(topic, ResponseError::UnknownServerError, e.to_string())
        }
    }
}

fn success(
    topic: &CreatableTopic,
    topic_id: Uuid,
    partitions: i32,
    configs: &BTreeMap<String, Option<String>>,
) -> CreatableTopicResult {
    let described = TopicConfigs::new(configs)
        .effective()
        .into_iter()
        .map(|effective| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(effective.config.name))
                .with_value(Some(str_bytes(&effective.value)))
                .with_config_source(if effective.explicit {
                    SOURCE_DYNAMIC_TOPIC
                } else {
                    SOURCE_DEFAULT
                })
        })
        .collect();
    let replication = if topic.replication_factor == -1 {
        1
    } else {
        topic.replication_factor
    };
    CreatableTopicResult::default()
        .with_name(topic.name.clone())
        .with_topic_id(topic_id)
        .with_num_partitions(partitions)
        .with_replication_factor(replication)
        .with_configs(Some(described))
}

fn failure(topic: &CreatableTopic, error: ResponseError, message: String) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(topic.name.clone())
        .with_error_code(error.code())
        .with_error_message(Some(str_bytes(&message)))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_configs(None)
}

/// Clears fields the negotiated version does not carry.
fn shape_for_version(mut result: CreatableTopicResult, version: i16) -> CreatableTopicResult {
    if version < 7 {
        result.topic_id = Uuid::nil();
    }
    if version < 5 {
        result.num_partitions = -1;
        result.replication_factor = -1;
        result.configs = Some(Vec::new());
        result.topic_config_error_code = 0;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    use yaks_common::kafka::{self, topic_name};

    #[test]
    fn every_version_encodes_successes_and_failures() {
        let topic = CreatableTopic::default()
            .with_name(topic_name("t"))
            .with_num_partitions(3)
            .with_replication_factor(-1)
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(str_bytes("retention.ms"))
                    .with_value(Some(str_bytes("1000"))),
            ]);
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_owned(), Some("1000".to_owned()));
        for version in VERSIONS.min..=VERSIONS.max {
            let results = vec![
                shape_for_version(success(&topic, Uuid::from_u128(9), 3, &configs), version),
                shape_for_version(
                    failure(&topic, ResponseError::TopicAlreadyExists, "exists".into()),
                    version,
                ),
            ];
            let response = CreateTopicsResponse::default().with_topics(results);
            let bytes = kafka::encode(&response, version).expect("encodes");
            let decoded: CreateTopicsResponse = kafka::decode(bytes, version).expect("decodes");
            assert_eq!(
                decoded.topics[1].error_code,
                ResponseError::TopicAlreadyExists.code()
            );
            if version >= 5 {
                assert_eq!(decoded.topics[0].num_partitions, 3, "v{version}");
                let described = decoded.topics[0].configs.as_ref().expect("configs");
                assert!(described.iter().any(|c| c.name.as_str() == "retention.ms"
                    && c.value.as_deref() == Some("1000")
                    && c.config_source == SOURCE_DYNAMIC_TOPIC));
            }
        }
    }
}
