//! Fetch (key 1), v4–v12, served by the gateway straight from the index and S3.
//!
//! This is the plain read path: index entries from PostgreSQL, ranged GETs from S3,
//! batches below the fetch offset dropped, base offsets patched on the way out (the
//! producer's bytes are otherwise untouched), partition and response byte limits honoured
//! (the first batch is always returned whole, as Kafka does), OFFSET_OUT_OF_RANGE outside
//! [log start, high watermark]. Waiting for data re-checks every [`POLL_INTERVAL`] until
//! `max_wait_ms`. The reader role (cache, NOTIFY wake-ups, topic ids from v13) replaces
//! this module's data access; the protocol handling stays here.
//!
//! Fetch sessions are not kept: every answer has session id 0, which tells clients to send
//! full fetch requests.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tracing::warn;
use uuid::Uuid;
use yaks_common::batch::{LOG_OVERHEAD, offset_count, spans};
use yaks_common::error::StoreError;
use yaks_common::kafka::topic_name;

use super::{RequestContext, Versions};
use crate::GatewayState;

/// Supported versions. Advertising Fetch ≥ 4 is also what makes librdkafka produce magic-2
/// batches.
pub const VERSIONS: Versions = Versions { min: 4, max: 12 };

/// How often a waiting fetch looks for new data.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Longest wait granted, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Index entries read per partition per fetch.
const ENTRIES_PER_FETCH: i64 = 64;

struct Wanted {
    topic: String,
    topic_id: Option<Uuid>,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
}

/// Answers Fetch.
pub async fn handle(context: RequestContext, request: FetchRequest) -> FetchResponse {
    let state = &context.state;
    let names: Vec<String> = request
        .topics
        .iter()
        .map(|t| t.topic.0.to_string())
        .collect();
    let topics = state.topics.get_many(&names).await.unwrap_or_default();
    let mut wanted = Vec::new();
    for topic in &request.topics {
        let name = topic.topic.0.to_string();
        let meta = topics.get(&name);
        for partition in &topic.partitions {
            let topic_id = meta
                .filter(|m| partition.partition >= 0 && partition.partition < m.partition_count)
                .map(|m| m.topic_id);
            wanted.push(Wanted {
                topic: name.clone(),
                topic_id,
                partition: partition.partition,
                fetch_offset: partition.fetch_offset,
                max_bytes: partition.partition_max_bytes.max(0) as usize,
            });
        }
    }
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes <= 0 {
        usize::MAX
    } else {
        request.max_bytes as usize
    };
    loop {
        let (partitions, total) = read_once(state, &wanted, max_bytes).await;
        let any_error = partitions.iter().any(|p| p.error_code != 0);
        if total >= min_bytes.max(1) || any_error || Instant::now() + POLL_INTERVAL > deadline {
            return build(context.version, &wanted, partitions);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn read_once(
    state: &GatewayState,
    wanted: &[Wanted],
    max_bytes: usize,
) -> (Vec<PartitionData>, usize) {
    let keys: Vec<(Uuid, i32)> = wanted
        .iter()
        .filter_map(|w| w.topic_id.map(|id| (id, w.partition)))
        .collect();
    let states = match state.metastore.partition_states(&keys).await {
        Ok(states) => states,
        Err(e) => {
            warn!(error = %e, "reading partition states failed");
            let partitions = wanted
                .iter()
                .map(|w| error_partition(w.partition, ResponseError::UnknownServerError.code()))
                .collect();
            return (partitions, 0);
        }
    };
    let mut total = 0usize;
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let Some(topic_id) = w.topic_id else {
            out.push(error_partition(
                w.partition,
                ResponseError::UnknownTopicOrPartition.code(),
            ));
            continue;
        };
        let Some(ps) = states
            .iter()
            .find(|s| s.topic_id == topic_id && s.partition_index == w.partition)
        else {
            out.push(error_partition(
                w.partition,
                ResponseError::UnknownTopicOrPartition.code(),
            ));
            continue;
        };
        let mut data = PartitionData::default()
            .with_partition_index(w.partition)
            .with_high_watermark(ps.next_offset)
            .with_last_stable_offset(ps.next_offset)
            .with_log_start_offset(ps.log_start_offset)
            .with_aborted_transactions(Some(Vec::new()));
        if w.fetch_offset < ps.log_start_offset || w.fetch_offset > ps.next_offset {
            data.error_code = ResponseError::OffsetOutOfRange.code();
            data.high_watermark = ps.next_offset;
            out.push(data);
            continue;
        }
        if w.fetch_offset == ps.next_offset || total >= max_bytes {
            data.records = Some(Bytes::new());
            out.push(data);
            continue;
        }
        let budget = w.max_bytes.min(max_bytes - total);
        match read_records(state, topic_id, w, budget, total == 0).await {
            Ok(records) => {
                total += records.len();
                data.records = Some(records);
            }
            Err(e) => {
                warn!(topic = %w.topic, partition = w.partition, error = %e, "reading records failed");
                data.error_code = ResponseError::KafkaStorageError.code();
            }
        }
        out.push(data);
    }
    (out, total)
}

/// Batches of one partition from `w.fetch_offset`, at most `budget` bytes unless the first
/// batch alone is larger and `first_in_response` is set.
async fn read_records(
    state: &GatewayState,
    topic_id: Uuid,
    w: &Wanted,
    budget: usize,
    first_in_response: bool,
) -> Result<Bytes, StoreError> {
    let entries = state
        .metastore
        .index_entries(topic_id, w.partition, w.fetch_offset, ENTRIES_PER_FETCH)
        .await?;
    let mut out = BytesMut::new();
    for entry in entries {
        let start = entry.byte_offset as u64;
        let range = state
            .objects
            .get_range(
                entry.object_key.clone(),
                start..start + entry.byte_length as u64,
            )
            .await?;
        let mut base = entry.base_offset;
        for (at, len) in spans(&range) {
            let batch = &range[at..at + len];
            let Some(offset_count) = offset_count(batch) else {
                break;
            };
            let batch_base = base;
            base += offset_count;
            if batch_base + offset_count <= w.fetch_offset {
                continue;
            }
            let allowed = out.len() + len <= budget || (out.is_empty() && first_in_response);
            if !allowed {
                return Ok(out.freeze());
            }
            let at_out = out.len();
            out.extend_from_slice(batch);
            out[at_out..at_out + 8].copy_from_slice(&batch_base.to_be_bytes());
            debug_assert!(len >= LOG_OVERHEAD);
        }
    }
    Ok(out.freeze())
}

fn error_partition(partition: i32, code: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
}

fn build(version: i16, wanted: &[Wanted], partitions: Vec<PartitionData>) -> FetchResponse {
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    for (w, data) in wanted.iter().zip(partitions) {
        match responses.last_mut() {
            Some(last) if last.topic.0.as_str() == w.topic => last.partitions.push(data),
            _ => responses.push(
                FetchableTopicResponse::default()
                    .with_topic(topic_name(&w.topic))
                    .with_partitions(vec![data]),
            ),
        }
    }
    let _ = version;
    FetchResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use yaks_common::kafka;

    #[test]
    fn every_version_encodes_records_and_errors() {
        let wanted = vec![
            Wanted {
                topic: "t".into(),
                topic_id: Some(Uuid::from_u128(1)),
                partition: 0,
                fetch_offset: 0,
                max_bytes: 1024,
            },
            Wanted {
                topic: "t".into(),
                topic_id: None,
                partition: 9,
                fetch_offset: 0,
                max_bytes: 1024,
            },
        ];
        let records = Bytes::from(yaks_common::batch::testing::batch(&[b"x"], 0));
        for version in VERSIONS.min..=VERSIONS.max {
            let partitions = vec![
                PartitionData::default()
                    .with_partition_index(0)
                    .with_high_watermark(1)
                    .with_last_stable_offset(1)
                    .with_log_start_offset(0)
                    .with_aborted_transactions(Some(Vec::new()))
                    .with_records(Some(records.clone())),
                error_partition(9, ResponseError::UnknownTopicOrPartition.code()),
            ];
            let response = build(version, &wanted, partitions);
            let bytes = kafka::encode(&response, version).expect("encodes");
            let decoded: FetchResponse = kafka::decode(bytes, version).expect("decodes");
            let got = &decoded.responses[0].partitions;
            assert_eq!(got[0].records.as_deref(), Some(&records[..]), "v{version}");
            assert_eq!(
                got[1].error_code,
                ResponseError::UnknownTopicOrPartition.code()
            );
        }
    }
}
