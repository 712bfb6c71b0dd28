//! OffsetFetch (key 9), v1–v9 (all topics from v2, several groups from v8).
//!
//! Committed offsets are read from PostgreSQL by the group's coordinator; a partition
//! without a commit gets offset -1, as in Kafka. With `require_stable` (v7+), a partition
//! whose offset an open transaction holds gets UNSTABLE_OFFSET_COMMIT, and the client asks
//! again once the transaction ended.
//!
//! Under ACLs, as Kafka: DESCRIBE on the group (else GROUP_AUTHORIZATION_FAILED); a topic
//! asked for by name without DESCRIBE on it gets TOPIC_AUTHORIZATION_FAILED for its
//! partitions, and a request for all topics leaves such topics out.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use yaks_common::acl::Operation;
use yaks_common::kafka::{str_bytes, topic_name};
use yaks_common::metastore::CommittedOffset;

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 1, max: 9 };

/// One partition's answer.
struct Fetched {
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
    error: i16,
}

/// One group's answer: a group-level error, or offsets by topic.
type GroupAnswer = Result<BTreeMap<String, Vec<Fetched>>, i16>;

/// Answers OffsetFetch.
pub async fn handle(context: RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if context.version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for group in &request.groups {
            let wanted: Option<Vec<(String, Vec<i32>)>> = group.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                    .collect()
            });
            let answer = fetch(
                &context,
                group.group_id.0.as_str(),
                wanted,
                request.require_stable,
            )
            .await;
            let (error, topics) = match answer {
                Err(code) => (code, BTreeMap::new()),
                Ok(topics) => (0, topics),
            };
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id.clone())
                    .with_error_code(error)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(name, partitions)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(topic_name(&name))
                                    .with_partitions(
                                        partitions
                                            .into_iter()
                                            .map(|f| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(f.partition)
                                                    .with_committed_offset(f.offset)
                                                    .with_committed_leader_epoch(f.leader_epoch)
                                                    .with_metadata(Some(str_bytes(&f.metadata)))
                                                    .with_error_code(f.error)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let answer = fetch(
        &context,
        request.group_id.0.as_str(),
        wanted.clone(),
        context.version >= 7 && request.require_stable,
    )
    .await;
    let (error, topics) = match answer {
        Ok(topics) => (0, topics),
        // v1 has no group-level error: every requested partition carries it.
        Err(code) if context.version < 2 => (
            code,
            wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(name, partitions)| {
                    let fetched = partitions
                        .into_iter()
                        .map(|partition| Fetched {
                            partition,
                            offset: -1,
                            leader_epoch: -1,
                            metadata: String::new(),
                            error: code,
                        })
                        .collect();
                    (name, fetched)
                })
                .collect(),
        ),
        Err(code) => (code, BTreeMap::new()),
    };
    let mut response = OffsetFetchResponse::default().with_topics(
        topics
            .into_iter()
            .map(|(name, partitions)| {
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(
                        partitions
                            .into_iter()
                            .map(|f| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(f.partition)
                                    .with_committed_offset(f.offset)
                                    // From v5 only; an older response carrying one
                                    // (committed by a newer client) fails to encode.
                                    .with_committed_leader_epoch(if context.version >= 5 {
                                        f.leader_epoch
                                    } else {
                                        -1
                                    })
                                    .with_metadata(Some(str_bytes(&f.metadata)))
                                    .with_error_code(f.error)
                            })
                            .collect(),
                    )
            })
            .collect(),
    );
    if context.version >= 2 {
        response.error_code = error;
    }
    response
}

/// A group's committed offsets for `wanted` (all of them when `None`).
async fn fetch(
    context: &RequestContext,
    group_id: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> GroupAnswer {
    if !context.allowed_on_group(Operation::Describe, group_id) {
        return Err(ResponseError::GroupAuthorizationFailed.code());
    }
    let describable = |topic: &str| context.allowed_on_topic(Operation::Describe, topic);
    let partitions: Option<Vec<(String, i32)>> = wanted.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|(name, partitions)| partitions.iter().map(|p| (name.clone(), *p)))
            .collect()
    });
    let stored = context
        .state
        .groups
        .fetch_offsets(group_id, partitions.as_deref())
        .await
        .map_err(|e| e.code())?;
    let found = |o: &CommittedOffset| Fetched {
        partition: o.partition_index,
        offset: o.offset,
        leader_epoch: o.leader_epoch,
        metadata: o.metadata.clone().unwrap_or_default(),
        error: 0,
    };
    let mut topics: BTreeMap<String, Vec<Fetched>> = BTreeMap::new();
    match wanted {
        None => {
            for offset in stored.iter().filter(|o| describable(&o.topic)) {
                topics
                    .entry(offset.topic.clone())
                    .or_default()
                    .push(found(offset));
            }
        }
        Some(wanted) => {
            for (name, partitions) in wanted {
                let denied = !describable(&name);
                let entry = topics.entry(name.clone()).or_default();
                for partition in partitions {
                    if denied {
                        entry.push(Fetched {
                            partition,
                            offset: -1,
                            leader_epoch: -1,
                            metadata: String::new(),
                            error: ResponseError::TopicAuthorizationFailed.code(),
                        });
                        continue;
                    }
                    entry.push(
                        stored
                            .iter()
                            .find(|o| o.topic == name && o.partition_index == partition)
                            .map(found)
                            .unwrap_or(Fetched {
                                partition,
                                offset: -1,
                                leader_epoch: -1,
                                metadata: String::new(),
                                error: 0,
                            }),
                    );
                }
            }
        }
    }
    if require_stable {
        // A partition whose offset an open transaction holds is not stable yet: the
        // client asks again (librdkafka does, for read_committed consumers).
        let pending = context
            .state
            .metastore
            .offsets_pending(group_id)
            .await
            .map_err(|e| crate::transactions::error_code(&e, ResponseError::ProducerFenced))?;
        for (topic, partition) in pending {
            if let Some(fetched) = topics
                .get_mut(&topic)
                .and_then(|list| list.iter_mut().find(|f| f.partition == partition))
                .filter(|f| f.error == 0)
            {
                fetched.offset = -1;
                fetched.error = ResponseError::UnstableOffsetCommit.code();
            }
        }
    }
    Ok(topics)
}
