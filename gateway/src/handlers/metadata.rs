//! Metadata (key 3), v0–v12: brokers, cluster id, controller, topics and partition leaders.
//!
//! Brokers are the live gateways' brokers (one per gateway unless `gateway.brokers` says
//! more); a topic's partitions are dealt out to them evenly
//! ([`ClusterView::leader_of`]), so clients spread over them and every gateway answers
//! alike. There are no
//! replicas to speak of (S3 holds the data), so replicas and ISR are the leader alone.
//! Unknown topics are auto-created when `gateway.auto_create_topics` is on and the client
//! allows it (v4+ flag), otherwise answered UNKNOWN_TOPIC_OR_PARTITION.
//!
//! Under ACLs, as Kafka: a request for every topic lists only those the principal may
//! DESCRIBE; a named topic it may not describe is answered TOPIC_AUTHORIZATION_FAILED
//! whether it exists or not, and one it may describe but that does not exist is
//! auto-created only with CREATE on it or on the cluster (else TOPIC_AUTHORIZATION_FAILED).
//! v8+ carry the operations the principal may do to each topic when asked.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use tracing::warn;
use uuid::Uuid;
use yaks_common::acl::Operation;
use yaks_common::kafka::{str_bytes, topic_name};
use yaks_common::metastore::TopicMeta;

use super::{RequestContext, Versions};
use crate::cluster::{Broker, ClusterView};
use crate::topics::validate_name;

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 12 };

/// Answers Metadata.
pub async fn handle(context: RequestContext, request: MetadataRequest) -> MetadataResponse {
    let version = context.version;
    let state = &context.state;
    let brokers = state.cluster.brokers();
    let listener = &*context.connection.listener;
    let entries: Vec<MetadataResponseBroker> = brokers
        .iter()
        .filter_map(|b| broker_entry(b, listener))
        .collect();
    let mut response = MetadataResponse::default()
        .with_controller_id(entries.first().map_or(BrokerId(-1), |b| b.node_id))
        .with_brokers(entries);
    if version >= 2 {
        response.cluster_id = Some(str_bytes(state.cluster.cluster_id()));
    }

    // v0: an empty list means every topic; v1+: null means every topic.
    let requested = match request.topics {
        None => None,
        Some(topics) if version == 0 && topics.is_empty() => None,
        Some(topics) => Some(topics),
    };
    let with_operations = version >= 8 && request.include_topic_authorized_operations;
    let entry = |topic: &TopicMeta| {
        let mut entry = topic_entry(topic, &brokers, listener, version);
        if with_operations {
            entry.topic_authorized_operations = topic_operations(&context, &topic.name);
        }
        entry
    };
    let describable = |name: &str| context.allowed_on_topic(Operation::Describe, name);
    let Some(requested) = requested else {
        match state.metastore.topics(None).await {
            Ok(topics) => {
                response.topics = topics
                    .iter()
                    .filter(|t| describable(&t.name))
                    .map(entry)
                    .collect();
            }
            Err(e) => warn!(error = %e, "listing topics failed"),
        }
        return response;
    };

    // By id (v10+, when the name is null) or by name.
    let mut by_id = Vec::new();
    let mut names = Vec::new();
    for topic in &requested {
        match &topic.name {
            Some(name) => names.push(name.0.to_string()),
            None => by_id.push(topic.topic_id),
        }
    }
    let mut known = match state.topics.get_many(&names).await {
        Ok(known) => known,
        Err(e) => {
            warn!(error = %e, "reading topics failed");
            for name in &names {
                response.topics.push(error_entry(
                    Some(name),
                    Uuid::nil(),
                    ResponseError::UnknownServerError.code(),
                    version,
                ));
            }
            return response;
        }
    };
    let allow_create =
        state.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let may_create = |name: &str| {
        context.allowed_on_cluster(Operation::Create)
            || context.allowed_on_topic(Operation::Create, name)
    };
    let mut create_denied = std::collections::HashSet::new();
    for name in &names {
        if known.contains_key(name) || !describable(name) {
            continue;
        }
        if let Err(reason) = validate_name(name) {
            warn!(topic = %name, %reason, "metadata for an invalid topic name");
            continue;
        }
        if !allow_create {
            continue;
        }
        if !may_create(name) {
            create_denied.insert(name.as_str());
            continue;
        }
        match state
            .metastore
            .create_topic(name, state.config.default_partitions, &Default::default())
            .await
        {
            Ok(Some(created)) => {
                tracing::info!(topic = %name, partitions = created.partition_count, "auto-created topic");
                state.topics.insert(created.clone());
                known.insert(name.clone(), created);
            }
            Ok(None) => {
                // Created concurrently by someone else: read it back.
                state.topics.invalidate(name);
                if let Ok(mut again) = state.topics.get_many(std::slice::from_ref(name)).await
                    && let Some(topic) = again.remove(name)
                {
                    known.insert(name.clone(), topic);
                }
            }
            Err(e) => warn!(topic = %name, error = %e, "auto-creating topic failed"),
        }
    }
    for name in &names {
        let denied = !describable(name) || create_denied.contains(name.as_str());
        let entry = match known.get(name) {
            _ if denied => error_entry(
                Some(name),
                Uuid::nil(),
                ResponseError::TopicAuthorizationFailed.code(),
                version,
            ),
            Some(topic) => entry(topic),
            None if validate_name(name).is_err() => error_entry(
                Some(name),
                Uuid::nil(),
                ResponseError::InvalidTopicException.code(),
                version,
            ),
            None => error_entry(
                Some(name),
                Uuid::nil(),
                ResponseError::UnknownTopicOrPartition.code(),
                version,
            ),
        };
        response.topics.push(entry);
    }
    if !by_id.is_empty() {
        let found = state
            .metastore
            .topics_by_id(&by_id)
            .await
            .unwrap_or_default();
        for id in by_id {
            match found.iter().find(|t| t.topic_id == id) {
                Some(topic) if !describable(&topic.name) => response.topics.push(error_entry(
                    None,
                    id,
                    ResponseError::TopicAuthorizationFailed.code(),
                    version,
                )),
                Some(topic) => response.topics.push(entry(topic)),
                None => response.topics.push(error_entry(
                    None,
                    id,
                    ResponseError::UnknownTopicId.code(),
                    version,
                )),
            }
        }
    }
    response
}

/// The operations on a topic Kafka reports (`AclOperation` codes as bits of a bit field).
const TOPIC_OPERATIONS: [Operation; 8] = [
    Operation::Read,
    Operation::Write,
    Operation::Create,
    Operation::Delete,
    Operation::Alter,
    Operation::Describe,
    Operation::DescribeConfigs,
    Operation::AlterConfigs,
];

/// The bit field of what the principal may do to `topic`, as Kafka's
/// `topic_authorized_operations`.
fn topic_operations(context: &RequestContext, topic: &str) -> i32 {
    TOPIC_OPERATIONS
        .iter()
        .filter(|op| context.allowed_on_topic(**op, topic))
        .fold(0, |bits, op| bits | (1 << op.code()))
}

/// `broker` as a client on `listener` reaches it; `None` if it has no such listener.
fn broker_entry(broker: &Broker, listener: &str) -> Option<MetadataResponseBroker> {
    let endpoint = broker.endpoint(listener)?;
    Some(
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(broker.node_id))
            .with_host(str_bytes(&endpoint.host))
            .with_port(endpoint.port),
    )
}

/// A partition whose leader has no endpoint on the client's listener is answered
/// LISTENER_NOT_FOUND, as Kafka does: the leader is the same for every listener, so
/// clients on different listeners never disagree on it.
fn topic_entry(
    topic: &TopicMeta,
    brokers: &[Broker],
    listener: &str,
    version: i16,
) -> MetadataResponseTopic {
    let partitions = (0..topic.partition_count)
        .map(|index| {
            let leader_id = ClusterView::leader_of(brokers, topic.topic_id, index);
            let reachable = brokers
                .iter()
                .any(|b| b.node_id == leader_id && b.endpoint(listener).is_some());
            let (leader, error) = if reachable {
                (BrokerId(leader_id), 0)
            } else {
                (BrokerId(-1), ResponseError::ListenerNotFound.code())
            };
            let mut partition = MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index)
                .with_leader_id(leader)
                .with_replica_nodes(vec![leader])
                .with_isr_nodes(vec![leader]);
            if version >= 7 {
                partition.leader_epoch = 0;
            }
            partition
        })
        .collect();
    let mut entry = MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_partitions(partitions);
    if version >= 10 {
        entry.topic_id = topic.topic_id;
    }
    entry
}

fn error_entry(
    name: Option<&str>,
    topic_id: Uuid,
    code: i16,
    version: i16,
) -> MetadataResponseTopic {
    let mut entry = MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name.map(topic_name));
    if version >= 10 {
        entry.topic_id = topic_id;
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listeners::Endpoint;
    use yaks_common::kafka;

    #[test]
    fn every_version_encodes_what_it_carries() {
        let brokers = vec![Broker {
            node_id: 3,
            endpoints: vec![Endpoint {
                listener: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
            }],
        }];
        let topic = TopicMeta {
            topic_id: Uuid::from_u128(7),
            name: "t".into(),
            partition_count: 2,
            configs: Default::default(),
        };
        for version in VERSIONS.min..=VERSIONS.max {
            let mut response = MetadataResponse::default()
                .with_brokers(
                    brokers
                        .iter()
                        .filter_map(|b| broker_entry(b, "PLAINTEXT"))
                        .collect(),
                )
                .with_controller_id(BrokerId(3))
                .with_topics(vec![
                    topic_entry(&topic, &brokers, "PLAINTEXT", version),
                    error_entry(Some("gone"), Uuid::nil(), 3, version),
                ]);
            if version >= 2 {
                response.cluster_id = Some(str_bytes("c"));
            }
            let bytes = kafka::encode(&response, version).expect("encodes");
            let decoded: MetadataResponse = kafka::decode(bytes, version).expect("decodes");
            assert_eq!(
                decoded.topics[0].partitions[1].leader_id,
                BrokerId(3),
                "v{version}"
            );
            assert_eq!(decoded.topics[1].error_code, 3);
            if version >= 10 {
                assert_eq!(decoded.topics[0].topic_id, topic.topic_id);
            }
        }
    }

    #[test]
    fn a_client_is_told_the_addresses_of_its_listener_and_never_an_unreachable_leader() {
        let endpoint = |listener: &str, host: &str| Endpoint {
            listener: listener.into(),
            host: host.into(),
            port: 9092,
        };
        let brokers = vec![
            Broker {
                node_id: 1,
                endpoints: vec![
                    endpoint("INTERNAL", "10.0.0.1"),
                    endpoint("EXTERNAL", "a.example"),
                ],
            },
            Broker {
                node_id: 2,
                endpoints: vec![endpoint("INTERNAL", "10.0.0.2")],
            },
        ];
        let external = broker_entry(&brokers[0], "EXTERNAL").expect("listed");
        assert_eq!(external.host.as_str(), "a.example");
        assert!(broker_entry(&brokers[1], "EXTERNAL").is_none());

        let topic = TopicMeta {
            topic_id: Uuid::from_u128(9),
            name: "t".into(),
            partition_count: 16,
            configs: Default::default(),
        };
        let inside = topic_entry(&topic, &brokers, "INTERNAL", 12);
        let outside = topic_entry(&topic, &brokers, "EXTERNAL", 12);
        for (i, o) in inside.partitions.iter().zip(&outside.partitions) {
            assert_eq!(i.error_code, 0);
            if i.leader_id == BrokerId(1) {
                assert_eq!(o.leader_id, BrokerId(1));
                assert_eq!(o.error_code, 0);
            } else {
                assert_eq!(o.leader_id, BrokerId(-1));
                assert_eq!(o.error_code, ResponseError::ListenerNotFound.code());
            }
        }
    }
}
