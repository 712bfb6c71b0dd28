//! ListOffsets (key 2), v1–v8: offsets by position or by time.
//!
//! - earliest (-2) and earliest-local (-4): the log start offset;
//! - latest (-1): the high watermark, or for read_committed (isolation level 1) the last
//!   stable offset: where the partition's earliest open transaction starts;
//! - max timestamp (-3, v7+): the record with the largest timestamp;
//! - a timestamp t ≥ 0: the first offset whose record timestamp is at least t.
//!
//! Time lookups narrow down with the per-index-entry max timestamps (PostgreSQL), then the
//! batch headers of that entry's byte range (one ranged GET), then the record timestamps of
//! the batch (`yaks_common::records`, decompressing it if it is compressed, at most 64 MiB
//! of records). Only a batch that cannot be opened is answered by its header: its first
//! offset (its last for max timestamp), never past the record asked for. Under
//! read_committed, a record found at or past the last stable offset is not answered
//! (offset -1), as Kafka.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use tracing::warn;
use uuid::Uuid;
use yaks_common::acl::Operation;
use yaks_common::batch::{batch_times, spans};
use yaks_common::error::StoreError;
use yaks_common::metastore::{IndexEntry, PartitionState};
use yaks_common::metrics::metrics;
use yaks_common::records::{MAX_OPENED_BYTES, OpenBatch};

use super::fetch::{LEADER_EPOCH, epoch_error};
use super::{RequestContext, Versions};
use crate::GatewayState;

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 1, max: 8 };

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// An offset and the timestamp of its record (-1 when the lookup is not by time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Found {
    offset: i64,
    timestamp: i64,
}

/// Answers ListOffsets.
pub async fn handle(context: RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let state = &context.state;
    let version = context.version;
    let names: Vec<String> = request
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .collect();
    let topics = match state.topics.get_many(&names).await {
        Ok(topics) => topics,
        Err(e) => {
            warn!(error = %e, "reading topics failed");
            return error_response(&request, e.kafka_code());
        }
    };
    let keys: Vec<(Uuid, i32)> = request
        .topics
        .iter()
        .filter_map(|t| topics.get(t.name.0.as_str()).map(|m| (t, m.topic_id)))
        .flat_map(|(t, id)| t.partitions.iter().map(move |p| (id, p.partition_index)))
        .collect();
    let states = match state.metastore.partition_states(&keys).await {
        Ok(states) => states,
        Err(e) => {
            warn!(error = %e, "reading partition offsets failed");
            return error_response(&request, e.kafka_code());
        }
    };
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let meta = topics.get(topic.name.0.as_str());
        let describable = context.allowed_on_topic(Operation::Describe, topic.name.0.as_str());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let mut answer = ListOffsetsPartitionResponse::default()
                .with_partition_index(partition.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            if !describable {
                answer.error_code = ResponseError::TopicAuthorizationFailed.code();
                partitions.push(answer);
                continue;
            }
            let ps = meta.and_then(|m| {
                states.iter().find(|s| {
                    s.topic_id == m.topic_id && s.partition_index == partition.partition_index
                })
            });
            let Some(ps) = ps else {
                answer.error_code = ResponseError::UnknownTopicOrPartition.code();
                partitions.push(answer);
                continue;
            };
            if let Some(code) = epoch_error(partition.current_leader_epoch) {
                answer.error_code = code;
                partitions.push(answer);
                continue;
            }
            let bound = if request.isolation_level == 1 {
                ps.last_stable_offset()
            } else {
                ps.next_offset
            };
            match lookup(
                state,
                version,
                topic.name.0.as_str(),
                ps,
                partition.timestamp,
            )
            .await
            {
                Ok(Some(found)) => {
                    if let Some(found) = settle(partition.timestamp, found, bound) {
                        found.fill(&mut answer, version);
                    }
                }
                Ok(None) => {}
                Err(code) => answer.error_code = code,
            }
            partitions.push(answer);
        }
        responses.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(responses)
}

/// What a lookup's position becomes in the answer, given `bound` (the high watermark, or
/// the last stable offset under read_committed). Latest is the bound itself. The earliest
/// positions are the log start even with nothing above it: an empty partition's earliest
/// offset is its start, as Kafka answers, and a -1 there leaves a Java consumer resetting
/// its position only after a request timeout. A record found by time counts only below
/// the bound, as Kafka's `lastFetchableOffset` filter does.
fn settle(timestamp: i64, found: Found, bound: i64) -> Option<Found> {
    match timestamp {
        LATEST => Some(Found {
            offset: bound,
            ..found
        }),
        EARLIEST | EARLIEST_LOCAL => Some(found),
        _ if found.offset >= bound => None,
        _ => Some(found),
    }
}

async fn lookup(
    state: &GatewayState,
    version: i16,
    topic: &str,
    ps: &PartitionState,
    timestamp: i64,
) -> Result<Option<Found>, i16> {
    let at_position = |offset| {
        Some(Found {
            offset,
            timestamp: -1,
        })
    };
    let by_time = match timestamp {
        LATEST => return Ok(at_position(ps.next_offset)),
        EARLIEST => return Ok(at_position(ps.log_start_offset)),
        EARLIEST_LOCAL if version >= 8 => return Ok(at_position(ps.log_start_offset)),
        MAX_TIMESTAMP if version >= 7 => {
            state
                .metastore
                .entry_with_max_timestamp(ps.topic_id, ps.partition_index)
                .await
        }
        t if t >= 0 => {
            state
                .metastore
                .entry_at_time(ps.topic_id, ps.partition_index, t)
                .await
        }
        _ => return Err(ResponseError::UnsupportedVersion.code()),
    };
    let entry = match by_time {
        Ok(Some(entry)) => entry,
        Ok(None) => return Ok(None),
        Err(e) => {
            warn!(error = %e, "time lookup in the index failed");
            return Err(e.kafka_code());
        }
    };
    let found = match search_entry(state, topic, &entry, timestamp).await {
        Ok(found) => found,
        Err(e) => {
            warn!(error = %e, object = %entry.object_key, "reading batches for a time lookup failed");
            return Err(ResponseError::KafkaStorageError.code());
        }
    };
    Ok(found.map(|f| Found {
        offset: f.offset.max(ps.log_start_offset),
        ..f
    }))
}

/// Finds, in one index entry, the first record with timestamp ≥ `timestamp`, or for
/// [`MAX_TIMESTAMP`] the first record holding the entry's max timestamp.
async fn search_entry(
    state: &GatewayState,
    topic: &str,
    entry: &IndexEntry,
    timestamp: i64,
) -> Result<Option<Found>, StoreError> {
    let start = entry.byte_offset as u64;
    let length = entry.byte_length as u64;
    let bytes = match &entry.inline {
        // Markers kept in the metastore: no record has a timestamp there, but the walk
        // below must still count their offsets.
        Some(bytes) => bytes.clone(),
        None => {
            metrics()
                .gateway
                .s3
                .measure(
                    "get",
                    &[(topic, length)],
                    state
                        .objects
                        .get_range(entry.object_key.clone(), start..start + length),
                )
                .await?
        }
    };
    let target = if timestamp == MAX_TIMESTAMP {
        entry.max_timestamp
    } else {
        timestamp
    };
    let mut base = entry.base_offset;
    for (at, len) in spans(&bytes) {
        let batch = &bytes[at..at + len];
        let Some(times) = batch_times(batch) else {
            break;
        };
        let batch_base = base;
        base += times.offset_count;
        if times.max_timestamp < target {
            continue;
        }
        let opened = OpenBatch::open(bytes.slice(at..at + len), MAX_OPENED_BYTES)
            .inspect_err(|e| warn!(error = %e, "opening a batch for a time lookup"))
            .ok();
        let Some(records) = opened.as_ref().and_then(|o| o.records().ok()) else {
            // Not to be opened: the batch's bounds are all the header tells.
            let offset = if timestamp == MAX_TIMESTAMP {
                base - 1
            } else {
                batch_base
            };
            // A delete horizon in the base timestamp field is no record's time; the
            // largest one is then the only time the header gives.
            let timestamp = if timestamp == MAX_TIMESTAMP || times.has_delete_horizon {
                times.max_timestamp
            } else {
                times.base_timestamp
            };
            return Ok(Some(Found { offset, timestamp }));
        };
        let hit = if timestamp == MAX_TIMESTAMP {
            records.iter().find(|r| r.timestamp == target)
        } else {
            records.iter().find(|r| r.timestamp >= target)
        };
        if let Some(record) = hit {
            return Ok(Some(Found {
                offset: batch_base + i64::from(record.offset_delta),
                timestamp: record.timestamp,
            }));
        }
    }
    Ok(None)
}

fn error_response(request: &ListOffsetsRequest, code: i16) -> ListOffsetsResponse {
    let topics = request
        .topics
        .iter()
        .map(|t| {
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                                .with_timestamp(-1)
                                .with_offset(-1)
                                .with_leader_epoch(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

impl Found {
    /// Puts the position into `answer`; the leader epoch only from v4, where it exists (an
    /// older response carrying one fails to encode).
    fn fill(&self, answer: &mut ListOffsetsPartitionResponse, version: i16) {
        answer.offset = self.offset;
        answer.timestamp = self.timestamp;
        if version >= 4 {
            answer.leader_epoch = LEADER_EPOCH;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use yaks_common::kafka::{self, topic_name};

    #[test]
    fn earliest_is_the_log_start_even_with_nothing_above_it() {
        let at = |offset| Found {
            offset,
            timestamp: -1,
        };
        // An empty partition: start and high watermark are both 7.
        assert_eq!(settle(EARLIEST, at(7), 7).map(|f| f.offset), Some(7));
        assert_eq!(settle(EARLIEST_LOCAL, at(7), 7).map(|f| f.offset), Some(7));
        assert_eq!(settle(LATEST, at(7), 7).map(|f| f.offset), Some(7));
        // read_committed with a transaction open at the start: latest is the bound.
        assert_eq!(settle(LATEST, at(9), 7).map(|f| f.offset), Some(7));
        // A record found by time at or past the bound is not yet readable.
        assert_eq!(settle(1_700_000_000_000, at(7), 7).map(|f| f.offset), None);
        assert_eq!(settle(MAX_TIMESTAMP, at(6), 7).map(|f| f.offset), Some(6));
    }

    #[test]
    fn every_version_encodes() {
        let request = ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![
                    ListOffsetsPartition::default().with_partition_index(3),
                ]),
        ]);
        for version in VERSIONS.min..=VERSIONS.max {
            let response = error_response(&request, 3);
            let bytes = kafka::encode(&response, version).expect("encodes");
            let decoded: ListOffsetsResponse = kafka::decode(bytes, version).expect("decodes");
            assert_eq!(decoded.topics[0].partitions[0].error_code, 3, "v{version}");
        }
    }

    #[test]
    fn every_version_encodes_a_found_offset() {
        let found = Found {
            offset: 42,
            timestamp: 1_700_000_000_000,
        };
        for version in VERSIONS.min..=VERSIONS.max {
            let mut answer = ListOffsetsPartitionResponse::default()
                .with_partition_index(3)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(-1);
            found.fill(&mut answer, version);
            let response = ListOffsetsResponse::default().with_topics(vec![
                ListOffsetsTopicResponse::default()
                    .with_name(topic_name("t"))
                    .with_partitions(vec![answer]),
            ]);
            let bytes = kafka::encode(&response, version).expect("encodes");
            let decoded: ListOffsetsResponse = kafka::decode(bytes, version).expect("decodes");
            let partition = &decoded.topics[0].partitions[0];
            assert_eq!(partition.offset, 42, "v{version}");
            assert_eq!(
                partition.leader_epoch,
                if version >= 4 { LEADER_EPOCH } else { -1 },
                "v{version}"
            );
        }
    }
}
