//! Fetch (key 1), v4–v16: validated here, served by readers.
//!
//! The gateway resolves topics (names before v13, ids from v13), answers unknown topics
//! and partitions and leader-epoch mismatches itself, and sends the rest to readers, each
//! partition to the reader its rendezvous ranking puts first (see [`crate::readers`]), all
//! readers at once. The internal request is a `FetchRequest` at
//! [`INTERNAL_FETCH_VERSION`] carrying the client's wait and byte limits, the response
//! budget split evenly between the readers involved.
//!
//! `min_bytes` is the client's: as soon as the readers that answered hold that many bytes,
//! the readers still long-polling are asked again with no wait, so their partitions' offsets
//! are current in the answer and nobody waits for an idle partition. A reader that fails is
//! skipped and its partitions go to the next reader in their ranking.
//!
//! Fetch sessions are not kept: every answer has session id 0, which tells clients to send
//! full fetch requests.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use yaks_common::clock::Instant;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tracing::warn;
use uuid::Uuid;
use yaks_common::acl::Operation;
use yaks_common::batch::spans;
use yaks_common::kafka::{self, topic_name};
use yaks_common::metrics::{TopicLabels, metrics};
use yaks_common::rpc::{INTERNAL_FETCH_VERSION, RpcError};

use super::{RequestContext, Versions};
use crate::GatewayState;

/// Supported versions. Advertising Fetch ≥ 4 is also what makes librdkafka produce magic-2
/// batches.
pub const VERSIONS: Versions = Versions { min: 4, max: 16 };

/// Every partition's leader epoch, as Metadata reports it.
pub const LEADER_EPOCH: i32 = 0;

/// The error for a request made with `current_leader_epoch` (-1: the client does not
/// check). [`LEADER_EPOCH`] is the only epoch there ever was, so no request is behind it
/// (FENCED_LEADER_EPOCH); one ahead of it comes from metadata yaks never gave.
pub fn epoch_error(current_leader_epoch: i32) -> Option<i16> {
    (current_leader_epoch > LEADER_EPOCH).then(|| ResponseError::UnknownLeaderEpoch.code())
}

/// One requested partition, in request order.
struct Wanted {
    topic: String,
    topic_id: Uuid,
    partition: i32,
    fetch_offset: i64,
    max_bytes: i32,
    /// Set when the gateway answers the partition itself.
    error: Option<i16>,
}

/// What the readers are asked, beside the partitions.
#[derive(Clone, Copy)]
struct Limits {
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
    isolation_level: i8,
}

/// Answers Fetch.
pub async fn handle(context: RequestContext, request: FetchRequest) -> FetchResponse {
    let state = &context.state;
    let version = context.version;
    let mut wanted = match resolve(&context, version, &request).await {
        Ok(wanted) => wanted,
        Err(code) => return FetchResponse::default().with_error_code(code),
    };
    let valid: Vec<usize> = (0..wanted.len())
        .filter(|&i| wanted[i].error.is_none())
        .collect();
    let mut answers: Vec<Option<PartitionData>> = (0..wanted.len()).map(|_| None).collect();
    if !valid.is_empty() {
        let limits = Limits {
            max_wait_ms: request.max_wait_ms,
            min_bytes: request.min_bytes,
            max_bytes: request.max_bytes,
            isolation_level: request.isolation_level,
        };
        gather(state, &wanted, &valid, limits, &mut answers).await;
    }
    for (w, answer) in wanted.iter_mut().zip(answers.iter_mut()) {
        if answer.is_none() {
            let code = w.error.unwrap_or(ResponseError::KafkaStorageError.code());
            *answer = Some(kafka::fetch_error(w.partition, code));
        }
    }
    build(version, &wanted, answers.into_iter().flatten().collect())
}

/// Resolves topics and checks partitions and leader epochs. An unusable request (a topic
/// id before v13) is a top-level error.
async fn resolve(
    context: &RequestContext,
    version: i16,
    request: &FetchRequest,
) -> Result<Vec<Wanted>, i16> {
    let state = &context.state;
    let by_name = version < 13;
    let topics = if by_name {
        let names: Vec<String> = request
            .topics
            .iter()
            .map(|t| t.topic.0.to_string())
            .collect();
        state
            .topics
            .get_many(&names)
            .await
            .map(|found| found.into_values().collect::<Vec<_>>())
    } else {
        let ids: Vec<Uuid> = request.topics.iter().map(|t| t.topic_id).collect();
        state
            .topics
            .get_by_ids(&ids)
            .await
            .map(|found| found.into_values().collect::<Vec<_>>())
    };
    let topics = match topics {
        Ok(topics) => topics,
        Err(e) => {
            warn!(error = %e, "reading topics failed");
            return Err(e.kafka_code());
        }
    };
    let mut wanted = Vec::new();
    for topic in &request.topics {
        let meta = topics.iter().find(|m| {
            if by_name {
                m.name == topic.topic.0.as_str()
            } else {
                m.topic_id == topic.topic_id
            }
        });
        // By name, authorized before the topic is looked up, so a denied client learns
        // nothing of which topics exist; by id, an unknown id has no name to authorize.
        let name = meta.map_or(topic.topic.0.as_str(), |m| m.name.as_str());
        let readable =
            (meta.is_none() && !by_name) || context.allowed_on_topic(Operation::Read, name);
        for partition in &topic.partitions {
            let error = match meta {
                _ if !readable => Some(ResponseError::TopicAuthorizationFailed.code()),
                None if by_name => Some(ResponseError::UnknownTopicOrPartition.code()),
                None => Some(ResponseError::UnknownTopicId.code()),
                Some(m) if partition.partition < 0 || partition.partition >= m.partition_count => {
                    Some(ResponseError::UnknownTopicOrPartition.code())
                }
                Some(_) => epoch_error(partition.current_leader_epoch),
            };
            wanted.push(Wanted {
                topic: meta.map_or_else(|| topic.topic.0.to_string(), |m| m.name.clone()),
                topic_id: meta.map_or(topic.topic_id, |m| m.topic_id),
                partition: partition.partition,
                fetch_offset: partition.fetch_offset,
                max_bytes: partition.partition_max_bytes,
                error,
            });
        }
    }
    Ok(wanted)
}

/// One internal fetch in flight.
struct Call {
    url: String,
    /// Indexes into `wanted`.
    partitions: Vec<usize>,
}

/// Asks the readers for the `valid` partitions and fills `answers`.
async fn gather(
    state: &GatewayState,
    wanted: &[Wanted],
    valid: &[usize],
    limits: Limits,
    answers: &mut [Option<PartitionData>],
) {
    let members = state.readers.members(&state.cluster);
    if members.is_empty() {
        warn!("no live reader to serve a fetch");
        return;
    }
    // Each partition's candidates, best first; a failed reader is popped off.
    let mut candidates: HashMap<usize, Vec<String>> = valid
        .iter()
        .map(|&i| {
            let mut ranking =
                state
                    .readers
                    .ranking(&members, wanted[i].topic_id, wanted[i].partition);
            ranking.reverse();
            (i, ranking)
        })
        .collect();
    let deadline =
        yaks_common::clock::now() + Duration::from_millis(limits.max_wait_ms.max(0) as u64);
    let groups = group(valid, &candidates);
    let share = |groups: usize| match limits.max_bytes {
        bytes if bytes <= 0 => i32::MAX,
        bytes => (bytes / groups.max(1) as i32).max(1),
    };
    let first_share = share(groups.len());
    let mut in_flight = FuturesUnordered::new();
    let mut pending: BTreeMap<usize, Call> = BTreeMap::new();
    let mut next_id = 0usize;
    for (url, partitions) in groups {
        let body = internal_request(wanted, &partitions, limits, first_share, limits.max_wait_ms);
        in_flight.push(call(state, next_id, url.clone(), body));
        pending.insert(next_id, Call { url, partitions });
        next_id += 1;
    }
    let min_bytes = limits.min_bytes.max(0) as usize;
    let mut total = 0usize;
    let mut satisfied = false;
    while let Some((id, result)) = in_flight.next().await {
        let Some(done) = pending.remove(&id) else {
            continue;
        };
        match result {
            Ok(response) => {
                let (bytes, any_error) = place(wanted, &done.partitions, response, answers);
                total += bytes;
                satisfied |= total >= min_bytes || any_error;
            }
            Err(e @ RpcError::Rejected { .. }) => {
                // Every reader would refuse it: its partitions are answered with an error.
                warn!(reader = %done.url, error = %e, "reader refused a fetch");
                for i in &done.partitions {
                    candidates.remove(i);
                }
            }
            Err(e) => {
                warn!(reader = %done.url, error = %e, "reader failed a fetch; trying the next");
                for &i in &done.partitions {
                    if let Some(ranking) = candidates.get_mut(&i) {
                        ranking.pop();
                    }
                }
                let wait = remaining_ms(deadline, satisfied);
                for (url, partitions) in group(&done.partitions, &candidates) {
                    let body = internal_request(wanted, &partitions, limits, first_share, wait);
                    in_flight.push(call(state, next_id, url.clone(), body));
                    pending.insert(next_id, Call { url, partitions });
                    next_id += 1;
                }
            }
        }
        if satisfied && !pending.is_empty() {
            break;
        }
    }
    if pending.is_empty() {
        return;
    }
    // Enough data: the readers still waiting are asked again, answering at once.
    drop(in_flight);
    let mut again = FuturesUnordered::new();
    let remaining: Vec<Call> = pending.into_values().collect();
    for (id, pending_call) in remaining.iter().enumerate() {
        let body = internal_request(wanted, &pending_call.partitions, limits, first_share, 0);
        again.push(call(state, id, pending_call.url.clone(), body));
    }
    while let Some((id, result)) = again.next().await {
        match result {
            Ok(response) => {
                place(wanted, &remaining[id].partitions, response, answers);
            }
            Err(e) => warn!(reader = %remaining[id].url, error = %e, "reader failed a fetch"),
        }
    }
}

fn remaining_ms(deadline: Instant, satisfied: bool) -> i32 {
    if satisfied {
        return 0;
    }
    deadline
        .saturating_duration_since(yaks_common::clock::now())
        .as_millis()
        .min(i32::MAX as u128) as i32
}

/// Groups partitions by their current best reader; partitions with none left are dropped
/// (answered with an error by the caller).
fn group(
    partitions: &[usize],
    candidates: &HashMap<usize, Vec<String>>,
) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for &i in partitions {
        let Some(url) = candidates.get(&i).and_then(|c| c.last()) else {
            continue;
        };
        match groups.iter_mut().find(|(u, _)| u == url) {
            Some((_, members)) => members.push(i),
            None => groups.push((url.clone(), vec![i])),
        }
    }
    groups
}

async fn call(
    state: &GatewayState,
    id: usize,
    url: String,
    body: Result<Bytes, String>,
) -> (usize, Result<FetchResponse, RpcError>) {
    let body = match body {
        // Not the reader's doing, and no other reader would get a better request.
        Err(detail) => {
            let status = http::StatusCode::BAD_REQUEST;
            return (id, Err(RpcError::Rejected { status, detail }));
        }
        Ok(body) => body,
    };
    let result = match state.readers.fetch(&url, body).await {
        Ok(bytes) => kafka::decode::<FetchResponse>(bytes, INTERNAL_FETCH_VERSION)
            .map_err(|e| RpcError::AnswerLost(format!("undecodable reader answer: {e}"))),
        Err(e) => Err(e),
    };
    (id, result)
}

fn internal_request(
    wanted: &[Wanted],
    partitions: &[usize],
    limits: Limits,
    max_bytes: i32,
    max_wait_ms: i32,
) -> Result<Bytes, String> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for &i in partitions {
        let w = &wanted[i];
        let partition = FetchPartition::default()
            .with_partition(w.partition)
            .with_fetch_offset(w.fetch_offset)
            .with_partition_max_bytes(w.max_bytes)
            .with_current_leader_epoch(-1)
            .with_log_start_offset(-1);
        match topics.iter_mut().find(|t| t.topic_id == w.topic_id) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                FetchTopic::default()
                    .with_topic_id(w.topic_id)
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let request = FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(limits.min_bytes)
        .with_max_bytes(max_bytes)
        .with_isolation_level(limits.isolation_level)
        .with_topics(topics);
    kafka::encode(&request, INTERNAL_FETCH_VERSION).map_err(|e| e.to_string())
}

/// Puts a reader's answers where they belong; returns the record bytes and whether any
/// partition carries an error.
fn place(
    wanted: &[Wanted],
    partitions: &[usize],
    response: FetchResponse,
    answers: &mut [Option<PartitionData>],
) -> (usize, bool) {
    let mut bytes = 0;
    let mut any_error = false;
    for topic in response.responses {
        for data in topic.partitions {
            let Some(&i) = partitions.iter().find(|&&i| {
                wanted[i].topic_id == topic.topic_id && wanted[i].partition == data.partition_index
            }) else {
                continue;
            };
            bytes += data.records.as_ref().map_or(0, Bytes::len);
            any_error |= data.error_code != 0;
            answers[i] = Some(data);
        }
    }
    (bytes, any_error)
}

/// The client's answer: partitions grouped by topic in request order, topics named (before
/// v13) or identified (from v13).
fn build(version: i16, wanted: &[Wanted], partitions: Vec<PartitionData>) -> FetchResponse {
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    let mut last: Option<(&str, Uuid)> = None;
    for (w, data) in wanted.iter().zip(partitions) {
        count_fetched(&w.topic, data.records.as_ref());
        let key = (w.topic.as_str(), w.topic_id);
        if let (Some(topic), true) = (responses.last_mut(), last == Some(key)) {
            topic.partitions.push(data);
            continue;
        }
        let mut topic = FetchableTopicResponse::default().with_partitions(vec![data]);
        if version >= 13 {
            topic.topic_id = w.topic_id;
        } else {
            topic.topic = topic_name(&w.topic);
        }
        responses.push(topic);
        last = Some(key);
    }
    FetchResponse::default().with_responses(responses)
}

/// Adds what a partition returns to the per-topic fetch metrics.
fn count_fetched(topic: &str, records: Option<&Bytes>) {
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return;
    };
    let labels = TopicLabels {
        topic: topic.to_owned(),
    };
    let gateway = &metrics().gateway;
    gateway
        .fetch_bytes
        .get_or_create(&labels)
        .inc_by(records.len() as u64);
    gateway
        .fetch_batches
        .get_or_create(&labels)
        .inc_by(spans(records).len() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(topic: &str, id: u128, partition: i32) -> Wanted {
        Wanted {
            topic: topic.into(),
            topic_id: Uuid::from_u128(id),
            partition,
            fetch_offset: 0,
            max_bytes: 1024,
            error: None,
        }
    }

    #[test]
    fn every_version_encodes_records_and_errors() {
        let wanted = vec![wanted("t", 1, 0), wanted("t", 1, 9), wanted("u", 2, 0)];
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
                kafka::fetch_error(9, ResponseError::UnknownTopicOrPartition.code()),
                kafka::fetch_error(0, ResponseError::UnknownTopicId.code()),
            ];
            let response = build(version, &wanted, partitions);
            let bytes = kafka::encode(&response, version).expect("encodes");
            let decoded: FetchResponse = kafka::decode(bytes, version).expect("decodes");
            assert_eq!(decoded.responses.len(), 2, "v{version}");
            let got = &decoded.responses[0].partitions;
            assert_eq!(got[0].records.as_deref(), Some(&records[..]), "v{version}");
            assert_eq!(
                got[1].error_code,
                ResponseError::UnknownTopicOrPartition.code()
            );
            if version >= 13 {
                assert_eq!(decoded.responses[1].topic_id, Uuid::from_u128(2));
            } else {
                assert_eq!(decoded.responses[1].topic.0.as_str(), "u");
            }
        }
    }

    #[test]
    fn partitions_group_by_their_best_reader() {
        let mut candidates = HashMap::new();
        candidates.insert(0, vec!["b".to_owned(), "a".to_owned()]);
        candidates.insert(1, vec!["a".to_owned(), "b".to_owned()]);
        candidates.insert(2, vec!["b".to_owned(), "a".to_owned()]);
        candidates.insert(3, Vec::new());
        let groups = group(&[0, 1, 2, 3], &candidates);
        assert_eq!(
            groups,
            vec![("a".to_owned(), vec![0, 2]), ("b".to_owned(), vec![1])]
        );
    }
}
