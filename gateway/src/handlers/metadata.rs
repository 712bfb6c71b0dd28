//! Metadata (key 3), v0–v12: brokers, cluster id, controller, topics and partition leaders.
//!
//! Brokers are the live gateways; each partition is led by the gateway rendezvous hashing
//! picks, so clients spread over gateways and every gateway answers alike. There are no
//! replicas to speak of (S3 holds the data), so replicas and ISR are the leader alone.
//! Unknown topics are auto-created when `gateway.auto_create_topics` is on and the client
//! allows it (v4+ flag), otherwise answered UNKNOWN_TOPIC_OR_PARTITION.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use tracing::warn;
use uuid::Uuid;
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
    let Some(requested) = requested else {
        match state.metastore.topics(None).await {
            Ok(topics) => {
                response.topics = topics
                    .iter()
                    .map(|t| topic_entry(t, &brokers, listener, version))
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
    for name in &names {
        if known.contains_key(name) {
            continue;
        }
        if let Err(reason) = validate_name(name) {
            warn!(topic = %name, %reason, "metadata for an invalid topic name");
            continue;
        }
        if !allow_create {
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
        let entry = match known.get(name) {
            Some(topic) => topic_entry(topic, &brokers, listener, version),
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
                Some(topic) => response
                    .topics
                    .push(topic_entry(topic, &brokers, listener, version)),
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
