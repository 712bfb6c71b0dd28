//! One file per Kafka API, each with the versions it supports beside its code.
//!
//! [`HANDLERS`] is the table of supported APIs; the ApiVersions answer is generated from it
//! and the connection checks versions against it, so a version range is written once.

pub mod api_versions;
pub mod create_topics;
pub mod delete_topics;
pub mod fetch;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::sync::oneshot;
use tracing::warn;
use yaks_common::kafka;

use crate::GatewayState;
use crate::connection::ConnectionState;

/// An inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// Oldest supported version.
    pub min: i16,
    /// Newest supported version.
    pub max: i16,
}

/// The supported APIs. Order is the order of the ApiVersions answer.
pub const HANDLERS: &[(ApiKey, Versions)] = &[
    (ApiKey::Produce, produce::VERSIONS),
    (ApiKey::Fetch, fetch::VERSIONS),
    (ApiKey::ListOffsets, list_offsets::VERSIONS),
    (ApiKey::Metadata, metadata::VERSIONS),
    (ApiKey::ApiVersions, api_versions::VERSIONS),
    (ApiKey::CreateTopics, create_topics::VERSIONS),
    (ApiKey::DeleteTopics, delete_topics::VERSIONS),
    (
        ApiKey::OffsetForLeaderEpoch,
        offset_for_leader_epoch::VERSIONS,
    ),
    (ApiKey::InitProducerId, init_producer_id::VERSIONS),
];

/// The versions of `api_key` this gateway speaks, if any.
pub fn supported_versions(api_key: ApiKey) -> Option<Versions> {
    HANDLERS
        .iter()
        .find(|(key, _)| *key == api_key)
        .map(|(_, versions)| *versions)
}

/// Everything a handler may need about its request.
pub struct RequestContext {
    /// Gateway-wide state.
    pub state: Arc<GatewayState>,
    /// Connection-wide state.
    pub connection: Arc<ConnectionState>,
    /// The API.
    pub api_key: ApiKey,
    /// The negotiated version.
    pub version: i16,
    /// The parsed request header.
    pub header: RequestHeader,
    /// For Produce: the place in the connection's produce order.
    pub turn: Option<ProduceTurn>,
}

/// A produce request's place in its connection's order.
pub struct ProduceTurn {
    /// Fires when the previous produce of the connection was accepted by a writer.
    pub wait_for: Option<oneshot::Receiver<()>>,
    /// Fire when this one was accepted (dropping it counts too).
    pub done: oneshot::Sender<()>,
}

/// What the connection should do with a request's result.
pub enum Outcome {
    /// Send this response body.
    Respond(Bytes),
    /// Send nothing (acks=0 produce).
    NoResponse,
    /// Close the connection, logging why.
    Close(String),
}

/// Runs the handler for `context.api_key` on the request body.
pub async fn dispatch(context: RequestContext, body: Bytes) -> Outcome {
    match context.api_key {
        ApiKey::ApiVersions => run(context, body, api_versions::handle).await,
        ApiKey::Metadata => run(context, body, metadata::handle).await,
        ApiKey::CreateTopics => run(context, body, create_topics::handle).await,
        ApiKey::DeleteTopics => run(context, body, delete_topics::handle).await,
        ApiKey::Fetch => run(context, body, fetch::handle).await,
        ApiKey::ListOffsets => run(context, body, list_offsets::handle).await,
        ApiKey::OffsetForLeaderEpoch => run(context, body, offset_for_leader_epoch::handle).await,
        ApiKey::InitProducerId => run(context, body, init_producer_id::handle).await,
        ApiKey::Produce => produce::handle_raw(context, body).await,
        other => Outcome::Close(format!("no handler for {other:?}")),
    }
}

/// Decodes the request at the negotiated version, runs `handler`, encodes its response at
/// the same version. A body that does not decode closes the connection, as in Kafka.
async fn run<Req, Resp, F, Fut>(context: RequestContext, body: Bytes, handler: F) -> Outcome
where
    Req: Decodable,
    Resp: Encodable,
    F: FnOnce(RequestContext, Req) -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    let version = context.version;
    let request: Req = match kafka::decode(body, version) {
        Ok(request) => request,
        Err(e) => return Outcome::Close(format!("malformed request body: {e}")),
    };
    let response = handler(context, request).await;
    encode_response(&response, version)
}

/// Encodes a response, or closes the connection if the handler built one that the version
/// cannot carry (a bug, logged).
pub fn encode_response<T: Encodable>(response: &T, version: i16) -> Outcome {
    match kafka::encode(response, version) {
        Ok(bytes) => Outcome::Respond(bytes),
        Err(e) => {
            warn!(error = %e, version, "encoding response failed");
            Outcome::Close(format!("response encoding failed: {e}"))
        }
    }
}

/// Decodes a request body the way its handler does, without running the handler; Produce
/// batches also go through the gateway's batch validation. Returns how many bytes of
/// records were checked. For the fuzz target (`fuzz/`), which feeds it arbitrary bytes:
/// whatever the input, this returns, never panics, never allocates more than the input
/// can justify.
pub fn decode_body(api_key: ApiKey, version: i16, body: Bytes) -> Result<usize, String> {
    use kafka_protocol::messages::{
        ApiVersionsRequest, CreateTopicsRequest, DeleteTopicsRequest, FetchRequest,
        InitProducerIdRequest, ListOffsetsRequest, MetadataRequest, OffsetForLeaderEpochRequest,
        ProduceRequest,
    };
    fn check<T: Decodable>(body: Bytes, version: i16) -> Result<T, String> {
        kafka::decode(body, version).map_err(|e| e.to_string())
    }
    match api_key {
        ApiKey::ApiVersions => check::<ApiVersionsRequest>(body, version).map(|_| 0),
        ApiKey::Metadata => check::<MetadataRequest>(body, version).map(|_| 0),
        ApiKey::CreateTopics => check::<CreateTopicsRequest>(body, version).map(|_| 0),
        ApiKey::DeleteTopics => check::<DeleteTopicsRequest>(body, version).map(|_| 0),
        ApiKey::Fetch => check::<FetchRequest>(body, version).map(|_| 0),
        ApiKey::ListOffsets => check::<ListOffsetsRequest>(body, version).map(|_| 0),
        ApiKey::OffsetForLeaderEpoch => {
            check::<OffsetForLeaderEpochRequest>(body, version).map(|_| 0)
        }
        ApiKey::InitProducerId => check::<InitProducerIdRequest>(body, version).map(|_| 0),
        ApiKey::Produce => {
            let request = check::<ProduceRequest>(body, version)?;
            let mut checked = 0;
            for topic in &request.topic_data {
                for partition in &topic.partition_data {
                    if let Some(records) = &partition.records {
                        // The verdict does not matter here, only that it is reached.
                        let _ = yaks_common::batch::validate_produce_batch(records);
                        checked += records.len();
                    }
                }
            }
            Ok(checked)
        }
        other => Err(format!("no handler for {other:?}")),
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    #[test]
    fn every_supported_api_decodes_an_empty_body_or_refuses_it_without_panicking() {
        for (api_key, versions) in HANDLERS {
            for version in versions.min..=versions.max {
                let _ = decode_body(*api_key, version, Bytes::new());
                let _ = decode_body(*api_key, version, Bytes::from_static(&[0xff; 64]));
            }
        }
    }
}
