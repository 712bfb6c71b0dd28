//! The writer's internal HTTP endpoint.
//!
//! `POST /v1/produce` takes a Kafka-encoded `ProduceRequest` (topic ids, batches already
//! validated by a gateway), reserves buffer room for its content length before reading the
//! body, accepts it — the status line goes out at that moment — and streams the
//! `ProduceResponse` once the flush holding it has committed.
//! See `yaks_common::rpc` for why acceptance and answer are separate.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body as _, Frame, Incoming};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use tracing::{Instrument, warn};
use uuid::Uuid;
use yaks_common::batch::header_info;
use yaks_common::kafka;
use yaks_common::ops::{self, Readiness};
use yaks_common::rpc::{
    COMMIT_DEADLINE_HEADER, INTERNAL_PRODUCE_VERSION, PRODUCE_PATH, PeerToken,
    WRITER_INSTANCE_HEADER, refuse_unauthenticated, text_response,
};

use crate::batcher::{Batcher, PartitionBatch, PartitionOutcome};

/// Response body type of the writer's endpoints. A body that fails mid-way makes hyper cut
/// the connection, which is how a lost answer reaches the gateway.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Largest internal request body; gateways cap client frames well below this.
const MAX_BODY_BYTES: usize = 512 * 1024 * 1024;

/// Routes internal HTTP requests to the batcher.
#[derive(Clone)]
pub struct Handler {
    batcher: Arc<Batcher>,
    readiness: Readiness,
    /// Drawn at start; sent on every response ([`WRITER_INSTANCE_HEADER`]).
    instance: http::HeaderValue,
    /// What a produce must carry to be served.
    peer_token: Option<PeerToken>,
}

impl Handler {
    /// A handler feeding `batcher`, answering the operations endpoints with `readiness`.
    pub fn new(
        batcher: Arc<Batcher>,
        readiness: Readiness,
        peer_token: Option<PeerToken>,
    ) -> Handler {
        let instance =
            http::HeaderValue::from_str(&yaks_common::random::uuid().simple().to_string())
                .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"));
        Handler {
            batcher,
            readiness,
            instance,
            peer_token,
        }
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let mut response = if let Some(answer) = ops::respond(&request, &self.readiness).await {
            answer.map(|b| b.map_err(|never| match never {}).boxed())
        } else if let Some(refusal) = refuse_unauthenticated::<Full<Bytes>>(
            self.peer_token.as_ref(),
            request.headers(),
            PRODUCE_PATH,
        ) {
            refusal.map(|b| b.map_err(|never| match never {}).boxed())
        } else if request.method() == Method::POST && request.uri().path() == PRODUCE_PATH {
            let span = tracing::info_span!("produce", trace_id = tracing::field::Empty);
            yaks_common::telemetry::continue_trace(&span, request.headers());
            self.produce(request).instrument(span).await
        } else {
            plain(StatusCode::NOT_FOUND, "no such endpoint")
        };
        response
            .headers_mut()
            .insert(WRITER_INSTANCE_HEADER, self.instance.clone());
        response
    }

    async fn produce(&self, request: Request<Incoming>) -> Response<Body> {
        let commit_deadline_ms = match request.headers().get(COMMIT_DEADLINE_HEADER) {
            None => None,
            Some(value) => match value.to_str().ok().and_then(|v| v.parse::<i64>().ok()) {
                Some(deadline) => Some(deadline),
                None => return plain(StatusCode::BAD_REQUEST, "malformed commit deadline"),
            },
        };
        // Room first, body second: a request waiting for room is only its headers, and TCP
        // holds the rest back at the gateway.
        let Some(length) = request.body().size_hint().exact() else {
            return plain(
                StatusCode::LENGTH_REQUIRED,
                "produce bodies need a content length",
            );
        };
        if length > MAX_BODY_BYTES as u64 {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{length} bytes is over the {MAX_BODY_BYTES}-byte limit"),
            );
        }
        let room = match self.batcher.reserve(length as usize).await {
            Ok(room) => room,
            Err(closed) => return plain(StatusCode::SERVICE_UNAVAILABLE, closed.to_string()),
        };
        let body = match read_exactly(request.into_body(), length as usize).await {
            Ok(body) => body,
            Err(e) => return plain(StatusCode::BAD_REQUEST, format!("reading body: {e}")),
        };
        let produce: ProduceRequest = match kafka::decode(body, INTERNAL_PRODUCE_VERSION) {
            Ok(produce) => produce,
            Err(e) => {
                warn!(error = %e, "undecodable internal produce request");
                return plain(StatusCode::BAD_REQUEST, format!("decoding: {e}"));
            }
        };

        let mut order = Vec::new();
        let mut seen = HashSet::new();
        let mut refused = Vec::new();
        let mut batches = Vec::new();
        for topic in produce.topic_data {
            for partition in topic.partition_data {
                if !seen.insert((topic.topic_id, partition.index)) {
                    // Gateways never send a partition twice; answers are keyed by partition.
                    return plain(StatusCode::BAD_REQUEST, "a partition appears twice");
                }
                order.push((topic.topic_id, partition.index));
                let records = partition.records.unwrap_or_default();
                match header_info(&records) {
                    Ok(info) => batches.push(PartitionBatch {
                        topic_id: topic.topic_id,
                        partition_index: partition.index,
                        records,
                        info,
                        commit_deadline_ms,
                    }),
                    Err(e) => {
                        warn!(topic_id = %topic.topic_id, partition = partition.index, error = %e,
                              "gateway sent an invalid batch");
                        refused.push(PartitionOutcome {
                            topic_id: topic.topic_id,
                            partition_index: partition.index,
                            result: Err(ResponseError::CorruptMessage.code()),
                        });
                    }
                }
            }
        }

        let answer = if batches.is_empty() {
            None
        } else {
            match self.batcher.accept(batches, room).await {
                Ok(answer) => Some(answer),
                Err(closed) => return plain(StatusCode::SERVICE_UNAVAILABLE, closed.to_string()),
            }
        };
        // Accepted: the status line leaves now, the body after commit.
        let body = futures::stream::once(async move {
            let mut outcomes = refused;
            if let Some(answer) = answer {
                match answer.await {
                    Ok(committed) => outcomes.extend(committed),
                    Err(_) => {
                        // The flush's answer was dropped (the committed-not-acked fail point,
                        // or a bug): the outcome is unknown, so say nothing rather than
                        // something that may be false. The gateway reports a retriable error.
                        warn!("a produce's answer was lost; cutting the connection");
                        return Err(std::io::Error::other("produce answer lost"));
                    }
                }
            }
            let response = produce_response(&order, &outcomes);
            let encoded = kafka::encode(&response, INTERNAL_PRODUCE_VERSION).unwrap_or_else(|e| {
                warn!(error = %e, "encoding internal produce response");
                Bytes::new()
            });
            Ok(Frame::data(encoded))
        });
        let mut response = Response::new(StreamBody::new(body).boxed());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-kafka"),
        );
        response
    }
}

/// Reads a body of `length` bytes into one buffer, frame by frame, so the frames are freed
/// as they are copied rather than all held until the end.
async fn read_exactly(mut body: Incoming, length: usize) -> Result<Bytes, String> {
    let mut buffer = BytesMut::with_capacity(length);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref() {
            if buffer.len() + data.len() > length {
                return Err(format!("body longer than its {length}-byte content length"));
            }
            buffer.extend_from_slice(data);
        }
    }
    if buffer.len() != length {
        return Err(format!("body ended at {} of {length} bytes", buffer.len()));
    }
    Ok(buffer.freeze())
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let response: Response<Full<Bytes>> = text_response(status, text);
    response.map(|b| b.map_err(|never| match never {}).boxed())
}

/// Builds the response in the request's topic and partition order.
fn produce_response(order: &[(Uuid, i32)], outcomes: &[PartitionOutcome]) -> ProduceResponse {
    let by_partition: HashMap<(Uuid, i32), &PartitionOutcome> = outcomes
        .iter()
        .map(|o| ((o.topic_id, o.partition_index), o))
        .collect();
    let mut topics: Vec<TopicProduceResponse> = Vec::new();
    for &(topic_id, partition_index) in order {
        let outcome = by_partition.get(&(topic_id, partition_index));
        let mut partition = PartitionProduceResponse::default()
            .with_index(partition_index)
            .with_log_append_time_ms(-1);
        match outcome.map(|o| o.result) {
            Some(Ok((base_offset, log_start_offset))) => {
                partition = partition
                    .with_base_offset(base_offset)
                    .with_log_start_offset(log_start_offset);
            }
            Some(Err(code)) => {
                partition = partition
                    .with_error_code(code)
                    .with_base_offset(-1)
                    .with_log_start_offset(-1);
            }
            None => {
                partition = partition
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_base_offset(-1)
                    .with_log_start_offset(-1);
            }
        }
        match topics.last_mut() {
            Some(last) if last.topic_id == topic_id => last.partition_responses.push(partition),
            _ => topics.push(
                TopicProduceResponse::default()
                    .with_topic_id(topic_id)
                    .with_partition_responses(vec![partition]),
            ),
        }
    }
    ProduceResponse::default().with_responses(topics)
}
