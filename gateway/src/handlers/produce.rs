//! Produce (key 0), v3–v11.
//!
//! Each partition's records must be exactly one valid magic-2 RecordBatch (length, CRC32C,
//! counts): a bad one is answered CORRUPT_MESSAGE or INVALID_RECORD for that partition only,
//! an unknown topic or partition UNKNOWN_TOPIC_OR_PARTITION, a batch over the topic's
//! `max.message.bytes` MESSAGE_TOO_LARGE, a record without a key in a compacted topic
//! INVALID_RECORD with the record's index (as Kafka refuses it). The valid batches go, byte for byte, to the
//! connection's writer in one internal `ProduceRequest` (topic ids); the answer comes back
//! once their object is in S3 and their offsets are committed. acks=0 gets no response, but
//! its batches take the same path. acks=1 and acks=all both wait for the commit: S3 is the
//! only copy to wait for.
//!
//! Batches of idempotent producers (producer id ≥ 0; epoch and base sequence must then be set,
//! else INVALID_RECORD) are judged at commit, where a retry is answered with its original
//! offset, a sequence already passed gets OUT_OF_ORDER_SEQUENCE_NUMBER, a stale epoch
//! INVALID_PRODUCER_EPOCH, and a gap NOT_ENOUGH_REPLICAS (retriable: the batch it misses may
//! still be stored; see `yaks_common::metastore::producers`). Transactional batches are
//! refused.
//!
//! A produce not answered within `gateway.writer_timeout_ms` gets REQUEST_TIMED_OUT, and
//! it carries a commit deadline that ends before then (see [`crate::deadlines`]), so a
//! client told "timed out" can rely on the attempt never being stored later. The order of a
//! connection's produces on their way to writers is kept by [`crate::produce_order`].

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tracing::{debug, warn};
use uuid::Uuid;
use yaks_common::acl::{Operation, ResourceType};
use yaks_common::batch::{BatchError, header_info, validate_produce_batch, with_log_append_time};
use yaks_common::error::produce_error_message;
use yaks_common::kafka::{self, str_bytes};
use yaks_common::metrics::{TopicLabels, metrics};
use yaks_common::records::{MAX_OPENED_BYTES, OpenBatch};
use yaks_common::rpc::{INTERNAL_PRODUCE_VERSION, RpcError, WRITER_INSTANCE_HEADER, read_body};
use yaks_common::topic_config::TopicConfigs;

use super::{Outcome, RequestContext, Versions, encode_response};
use crate::produce_order::{Lead, Outbound, Place, Turn};

/// Supported versions. Clients pick their message format from this range: librdkafka
/// writes magic-2 batches only when Produce ≥ 3 and Fetch ≥ 4 are both advertised.
pub const VERSIONS: Versions = Versions { min: 3, max: 11 };

/// Where a partition's batch was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The offset of the batch's first record.
    pub base_offset: i64,
    /// The partition's log start offset at the time.
    pub log_start_offset: i64,
}

/// Why a partition's batch was not stored (or may not have been): a Kafka error code, with
/// the message Produce v8 and later carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The Kafka error code.
    pub code: i16,
    /// What the client is told beside it, where the code alone would mislead or say little.
    pub message: Option<String>,
    /// The records of the batch that caused it, by index in the batch (Produce v8+'s
    /// `record_errors`), each with what was wrong with it.
    pub record_errors: Vec<(i32, String)>,
}

impl Refusal {
    /// An error code with no message.
    pub fn new(error: ResponseError) -> Refusal {
        Refusal {
            code: error.code(),
            message: None,
            record_errors: Vec::new(),
        }
    }

    /// An error code with a message.
    pub fn with_message(error: ResponseError, message: impl Into<String>) -> Refusal {
        Refusal {
            code: error.code(),
            message: Some(message.into()),
            record_errors: Vec::new(),
        }
    }
}

/// One partition's answer.
pub type PartitionAnswer = Result<Stored, Refusal>;

/// The answers to an internal request, by partition.
pub type Answers = HashMap<(Uuid, i32), PartitionAnswer>;

/// What became of an internal request: the writer's answers, or the refusal every partition
/// in it gets.
pub type Answer = Result<Arc<Answers>, Refusal>;

/// One partition's answer before it is shaped for the client's version.
#[derive(Debug, Clone)]
struct Slot {
    topic: String,
    partition: i32,
    result: PartitionAnswer,
    /// The append time stamped on the batch (LogAppendTime topics), else -1.
    log_append_time_ms: i64,
    /// Size and record count of the forwarded batch, counted in the metrics once stored.
    bytes: usize,
    records: i32,
}

impl Slot {
    fn new(topic: String, partition: i32, result: PartitionAnswer) -> Slot {
        Slot {
            topic,
            partition,
            result,
            log_append_time_ms: -1,
            bytes: 0,
            records: 0,
        }
    }
}

/// Decodes, answers, encodes. Kept raw (not through `run`) because acks=0 sends nothing.
pub async fn handle_raw(mut context: RequestContext, body: Bytes) -> Outcome {
    // The connection gives every produce its turn as the frame arrives.
    let Some(turn) = context.turn.take() else {
        return Outcome::Close("a produce reached its handler without a turn".into());
    };
    let version = context.version;
    let request: ProduceRequest = match kafka::decode(body, version) {
        Ok(request) => request,
        Err(e) => return Outcome::Close(format!("malformed produce request: {e}")),
    };
    let acks = request.acks;
    let response = produce(&context, request, turn).await;
    if acks == 0 {
        return Outcome::NoResponse;
    }
    encode_response(&response, version)
}

async fn produce(context: &RequestContext, request: ProduceRequest, turn: Turn) -> ProduceResponse {
    let state = &context.state;
    let acks = request.acks;
    if let Some(id) = &request.transactional_id
        && !context.allowed(Operation::Write, ResourceType::TransactionalId, id)
    {
        turn.pass().await;
        let refusal = Refusal::new(ResponseError::TransactionalIdAuthorizationFailed);
        return shape(context.version, fail_all(&request, refusal));
    }
    let names: Vec<String> = request
        .topic_data
        .iter()
        .map(|t| t.name.0.to_string())
        .collect();
    let topics = match state.topics.get_many(&names).await {
        Ok(topics) => topics,
        Err(e) => {
            warn!(error = %e, "reading topics for produce failed");
            turn.pass().await;
            return shape(
                context.version,
                fail_all(&request, Refusal::new(ResponseError::KafkaStorageError)),
            );
        }
    };

    let mut slots: Vec<Slot> = Vec::new();
    let mut forward: Vec<TopicProduceData> = Vec::new();
    // Which slot each forwarded partition fills.
    let mut forwarded: HashMap<(Uuid, i32), usize> = HashMap::new();
    let has_transactional_id = request.transactional_id.is_some();
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let meta = topics.get(&name);
        // Authorized before the topic is looked up, so a denied client learns nothing of
        // which topics exist.
        let writable = context.allowed_on_topic(Operation::Write, &name);
        let mut valid = Vec::new();
        for partition in topic.partition_data {
            let slot_index = slots.len();
            let mut refusal = if writable {
                refuse(
                    acks,
                    has_transactional_id,
                    &name,
                    meta.map(|m| (m.partition_count, &m.configs)),
                    &partition,
                )
            } else {
                Some(Refusal::new(ResponseError::TopicAuthorizationFailed))
            };
            if let (None, Some(meta)) = (&refusal, meta)
                && forwarded.contains_key(&(meta.topic_id, partition.index))
            {
                refusal = Some(Refusal::with_message(
                    ResponseError::InvalidRequest,
                    "partition appears twice in one produce request",
                ));
            }
            // Until the writer answers, a forwarded partition counts as unanswered.
            let unanswered = Refusal::new(ResponseError::UnknownServerError);
            slots.push(Slot::new(
                name.clone(),
                partition.index,
                Err(refusal.clone().unwrap_or(unanswered)),
            ));
            if refusal.is_some() {
                continue;
            }
            if let Some(meta) = meta {
                let mut partition = partition;
                if TopicConfigs::new(&meta.configs).log_append_time()
                    && let Some(records) = &partition.records
                {
                    let now_ms = state.clock.now_ms();
                    partition.records = Some(with_log_append_time(records, now_ms));
                    slots[slot_index].log_append_time_ms = now_ms;
                }
                if let Some(records) = &partition.records {
                    slots[slot_index].bytes = records.len();
                    slots[slot_index].records = header_info(records).map_or(0, |i| i.record_count);
                }
                forwarded.insert((meta.topic_id, partition.index), slot_index);
                valid.push(partition);
            }
        }
        if let (Some(meta), false) = (meta, valid.is_empty()) {
            forward.push(
                TopicProduceData::default()
                    .with_topic_id(meta.topic_id)
                    .with_partition_data(valid),
            );
        }
    }

    if forward.is_empty() {
        turn.pass().await;
        return shape(context.version, slots);
    }
    let outbound = Outbound {
        acks,
        timeout_ms: request.timeout_ms,
        topics: forward,
        bytes: slots.iter().map(|s| s.bytes).sum(),
    };
    let answer = match turn.wait(outbound).await {
        Place::Carried(answer) => answer,
        Place::Lead(outbound, lead) => {
            let answer = send(context, outbound, &lead).await;
            lead.answer(answer)
        }
    };
    match answer {
        Ok(answers) => {
            for (key, &index) in &forwarded {
                if let Some(answer) = answers.get(key) {
                    slots[index].result = answer.clone();
                }
            }
        }
        Err(refusal) => {
            for &index in forwarded.values() {
                slots[index].result = Err(refusal.clone());
            }
        }
    }
    debug!(partitions = slots.len(), "produce answered");
    shape(context.version, slots)
}

/// Sends a produce (or several carried together, which `lead` leads) to the connection's
/// writer as one internal request and waits for the answer. The connection's next produce
/// may go once a writer accepted it, or none would. Acceptance and answer share one
/// deadline, so a stopped writer holds neither this request nor the connection's next ones
/// past it.
async fn send(context: &RequestContext, outbound: Outbound, lead: &Lead) -> Answer {
    let state = &context.state;
    let Outbound {
        acks,
        timeout_ms,
        topics,
        ..
    } = outbound;
    let deadline = lead.deadline().at;
    let commit_deadline_ms = lead.deadline().commit_ms;
    let internal = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topics);
    let body = match kafka::encode(&internal, INTERNAL_PRODUCE_VERSION) {
        Ok(body) => body,
        Err(e) => {
            warn!(error = %e, "encoding internal produce failed");
            lead.accepted();
            return Err(Refusal::new(ResponseError::UnknownServerError));
        }
    };
    let accepted = state
        .writers
        .produce(
            &context.connection.writer,
            body,
            deadline,
            commit_deadline_ms,
            &lead.previous_settled(),
        )
        .await;
    lead.accepted();
    let (writer, answer) = match accepted {
        Ok(accepted) => accepted,
        Err(RpcError::AnswerLost(e)) => {
            // The writer may hold the request: the outcome is unknown.
            return Err(Refusal::with_message(ResponseError::RequestTimedOut, e));
        }
        Err(RpcError::Rejected { status, detail }) => {
            // Nothing was stored, and no writer would take it: not worth a retry.
            let error = if status == http::StatusCode::PAYLOAD_TOO_LARGE {
                ResponseError::MessageTooLarge
            } else {
                ResponseError::UnknownServerError
            };
            let message = format!("the writer refused the request ({status}): {detail}");
            return Err(Refusal::with_message(error, message));
        }
        Err(e @ RpcError::Unavailable(_)) => {
            warn!(error = %e, "no writer accepted the produce");
            return Err(Refusal::with_message(
                ResponseError::KafkaStorageError,
                e.to_string(),
            ));
        }
    };
    if acks == 0 {
        // Nobody waits for the answer, but reading it keeps the HTTP connection reusable.
        tokio::spawn(async move {
            let _ = read_body(answer).await;
        });
        return Err(Refusal::new(ResponseError::UnknownServerError));
    }

    let instance = answer
        .headers()
        .get(WRITER_INSTANCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match tokio::time::timeout_at(deadline, read_body(answer)).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            warn!(error = %e, "writer accepted a produce but its answer was lost");
            state
                .writers
                .settle_lost(&writer, instance.as_deref(), deadline)
                .await;
            // Skipped from the answer on, so the client's retry goes elsewhere.
            state.writers.skip(&writer, "a produce answer was lost");
            return Err(Refusal::with_message(
                ResponseError::RequestTimedOut,
                e.to_string(),
            ));
        }
        Err(_) => {
            warn!("writer did not answer a produce in time");
            state
                .writers
                .skip(&writer, "a produce answer did not come in time");
            return Err(Refusal::new(ResponseError::RequestTimedOut));
        }
    };
    let answered: ProduceResponse = match kafka::decode(body, INTERNAL_PRODUCE_VERSION) {
        Ok(answered) => answered,
        Err(e) => {
            warn!(error = %e, "undecodable answer from writer");
            return Err(Refusal::new(ResponseError::RequestTimedOut));
        }
    };
    let mut answers = Answers::new();
    for topic in answered.responses {
        for partition in topic.partition_responses {
            let code = partition.error_code;
            let answer = if code == 0 {
                Ok(Stored {
                    base_offset: partition.base_offset,
                    log_start_offset: partition.log_start_offset,
                })
            } else {
                Err(Refusal {
                    code,
                    message: produce_error_message(code),
                    record_errors: Vec::new(),
                })
            };
            answers.insert((topic.topic_id, partition.index), answer);
        }
    }
    Ok(Arc::new(answers))
}

/// Why a partition is refused before it reaches a writer, if it is.
fn refuse(
    acks: i16,
    transactional_id: bool,
    topic_name: &str,
    topic: Option<(i32, &std::collections::BTreeMap<String, Option<String>>)>,
    partition: &PartitionProduceData,
) -> Option<Refusal> {
    if !matches!(acks, -1..=1) {
        return Some(Refusal::new(ResponseError::InvalidRequiredAcks));
    }
    let Some((partition_count, configs)) = topic else {
        return Some(Refusal::new(ResponseError::UnknownTopicOrPartition));
    };
    if partition.index < 0 || partition.index >= partition_count {
        return Some(Refusal::new(ResponseError::UnknownTopicOrPartition));
    }
    let Some(records) = &partition.records else {
        return Some(Refusal::with_message(
            ResponseError::CorruptMessage,
            "records are null",
        ));
    };
    let info = match validate_produce_batch(records) {
        Ok(info) => info,
        Err(BatchError::Corrupt(reason)) => {
            warn!(partition = partition.index, %reason, "corrupt batch refused");
            return Some(Refusal::with_message(ResponseError::CorruptMessage, reason));
        }
        Err(BatchError::Invalid(reason)) => {
            warn!(partition = partition.index, %reason, "invalid batch refused");
            return Some(Refusal::with_message(ResponseError::InvalidRecord, reason));
        }
    };
    // Whether the partition is in the producer's transaction is checked where the batch
    // is committed (`common/src/metastore/plan.rs`), under the partition's lock.
    if info.is_transactional {
        if !transactional_id {
            // As Kafka: transactional records need a transactional id it may write.
            return Some(Refusal::new(
                ResponseError::TransactionalIdAuthorizationFailed,
            ));
        }
        if info.producer_id < 0 {
            return Some(Refusal::with_message(
                ResponseError::InvalidRecord,
                "a transactional batch needs a producer id",
            ));
        }
    }
    let configs = TopicConfigs::new(configs);
    let limit = configs.max_message_bytes();
    if records.len() as i64 > limit {
        return Some(Refusal::with_message(
            ResponseError::MessageTooLarge,
            format!(
                "batch of {} bytes exceeds max.message.bytes {limit}",
                records.len()
            ),
        ));
    }
    if configs.compacts() {
        return refuse_keyless(topic_name, partition.index, records);
    }
    None
}

/// Kafka's rule for compacted topics (`LogValidator.validateKey`): every record needs a key,
/// since compaction keeps one record per key. The batch is opened (decompressed) to check.
fn refuse_keyless(topic: &str, partition: i32, records: &Bytes) -> Option<Refusal> {
    let open = match OpenBatch::open(records.clone(), MAX_OPENED_BYTES) {
        Ok(open) => open,
        Err(e) => {
            warn!(partition, error = %e, "batch for a compacted topic does not open");
            return Some(Refusal::with_message(
                ResponseError::CorruptMessage,
                e.to_string(),
            ));
        }
    };
    if open.is_control() {
        return None;
    }
    let records = match open.records() {
        Ok(records) => records,
        Err(e) => {
            warn!(partition, error = %e, "batch for a compacted topic does not parse");
            return Some(Refusal::with_message(
                ResponseError::CorruptMessage,
                e.to_string(),
            ));
        }
    };
    let message = format!(
        "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
    );
    let record_errors: Vec<(i32, String)> = records
        .iter()
        .enumerate()
        .filter(|(_, record)| record.key.is_none())
        .map(|(index, _)| (index as i32, message.clone()))
        .collect();
    if record_errors.is_empty() {
        return None;
    }
    Some(Refusal {
        code: ResponseError::InvalidRecord.code(),
        message: Some(message),
        record_errors,
    })
}

fn fail_all(request: &ProduceRequest, refusal: Refusal) -> Vec<Slot> {
    let mut slots = Vec::new();
    for topic in &request.topic_data {
        for partition in &topic.partition_data {
            slots.push(Slot::new(
                topic.name.0.to_string(),
                partition.index,
                Err(refusal.clone()),
            ));
        }
    }
    slots
}

/// Builds the client response for its version, topics in request order.
fn shape(version: i16, slots: Vec<Slot>) -> ProduceResponse {
    let mut topics: Vec<TopicProduceResponse> = Vec::new();
    for slot in slots {
        let mut partition = PartitionProduceResponse::default()
            .with_index(slot.partition)
            .with_log_append_time_ms(-1);
        match slot.result {
            Ok(Stored {
                base_offset,
                log_start_offset,
            }) => {
                let labels = TopicLabels {
                    topic: slot.topic.clone(),
                };
                let gateway = &metrics().gateway;
                gateway
                    .produce_bytes
                    .get_or_create(&labels)
                    .inc_by(slot.bytes as u64);
                gateway
                    .produce_records
                    .get_or_create(&labels)
                    .inc_by(slot.records.max(0) as u64);
                partition.base_offset = base_offset;
                partition.log_append_time_ms = slot.log_append_time_ms;
                if version >= 5 {
                    partition.log_start_offset = log_start_offset;
                }
            }
            Err(Refusal {
                code,
                message,
                record_errors,
            }) => {
                partition.error_code = code;
                partition.base_offset = -1;
                if version >= 8 {
                    partition.error_message = message.map(|m| str_bytes(&m));
                    partition.record_errors = record_errors
                        .into_iter()
                        .map(|(index, message)| {
                            BatchIndexAndErrorMessage::default()
                                .with_batch_index(index)
                                .with_batch_index_error_message(Some(str_bytes(&message)))
                        })
                        .collect();
                }
            }
        }
        match topics.last_mut() {
            Some(last) if last.name.0.as_str() == slot.topic => {
                last.partition_responses.push(partition)
            }
            _ => topics.push(
                TopicProduceResponse::default()
                    .with_name(kafka::topic_name(&slot.topic))
                    .with_partition_responses(vec![partition]),
            ),
        }
    }
    ProduceResponse::default().with_responses(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(base_offset: i64) -> Stored {
        Stored {
            base_offset,
            log_start_offset: 0,
        }
    }

    #[test]
    fn every_version_encodes_offsets_and_errors() {
        for version in VERSIONS.min..=VERSIONS.max {
            let slots = vec![
                Slot::new("a".into(), 0, Ok(stored(42))),
                Slot::new(
                    "a".into(),
                    1,
                    Err(Refusal::with_message(ResponseError::CorruptMessage, "crc")),
                ),
                Slot::new("b".into(), 0, Ok(stored(7))),
            ];
            let response = shape(version, slots);
            assert_eq!(response.responses.len(), 2, "grouped by topic");
            let bytes = kafka::encode(&response, version).expect("encodes");
            let decoded: ProduceResponse = kafka::decode(bytes, version).expect("decodes");
            let a = &decoded.responses[0].partition_responses;
            assert_eq!((a[0].error_code, a[0].base_offset), (0, 42), "v{version}");
            assert_eq!(a[1].error_code, ResponseError::CorruptMessage.code());
            assert_eq!(decoded.responses[1].partition_responses[0].base_offset, 7);
        }
    }

    #[test]
    fn a_compacted_topic_refuses_records_without_a_key_and_names_them() {
        use yaks_common::batch::testing::{KeyValue, keyed_batch};
        let batch = |records: &[KeyValue<'_>]| Bytes::from(keyed_batch(records, 1_000, -1, -1, -1));
        let keyed = batch(&[(Some(b"k"), Some(b"v")), (Some(b"k"), None)]);
        assert_eq!(
            refuse_keyless("t", 0, &keyed),
            None,
            "a tombstone has a key"
        );
        let mixed = batch(&[(Some(b"k"), Some(b"v")), (None, Some(b"v")), (None, None)]);
        let refusal = refuse_keyless("t", 3, &mixed).expect("refused");
        assert_eq!(refusal.code, ResponseError::InvalidRecord.code());
        let message = "Compacted topic cannot accept message without key in topic partition t-3.";
        assert_eq!(refusal.message.as_deref(), Some(message));
        assert_eq!(
            refusal.record_errors,
            vec![(1, message.to_owned()), (2, message.to_owned())]
        );
        for version in [7, 8] {
            let response = shape(
                version,
                vec![Slot::new("t".into(), 3, Err(refusal.clone()))],
            );
            let bytes = kafka::encode(&response, version).expect("encodes");
            let decoded: ProduceResponse = kafka::decode(bytes, version).expect("decodes");
            let errors = &decoded.responses[0].partition_responses[0].record_errors;
            let indexes: Vec<i32> = errors.iter().map(|e| e.batch_index).collect();
            let expected: &[i32] = if version >= 8 { &[1, 2] } else { &[] };
            assert_eq!(indexes, expected, "record_errors from v8");
        }
    }
}
