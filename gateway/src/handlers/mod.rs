//! One file per Kafka API, each with the versions it supports beside its code.
//!
//! [`HANDLERS`] is the table of supported APIs; the ApiVersions answer is generated from it
//! and the connection checks versions against it, so a version range is written once.

pub mod acls;
pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod reported;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod txn_offset_commit;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tracing::warn;
use yaks_common::acl::{Operation, ResourceType};
use yaks_common::kafka;

use crate::GatewayState;
use crate::connection::ConnectionState;
use crate::handlers::reported::Reported;
use crate::security::authorizer::CLUSTER;

/// An inclusive version range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// Oldest supported version.
    pub min: i16,
    /// Newest supported version.
    pub max: i16,
}

/// Declares the APIs answered by a plain handler (`module::handle(context, request)`)
/// once: the table of supported versions, the dispatch and the fuzz target's decoding all
/// come from this list. Produce, which handles its own body, is added by hand.
macro_rules! plain_apis {
    ($($key:ident => $module:ident, $request:ident;)*) => {
        /// The supported APIs. Order is the order of the ApiVersions answer.
        pub const HANDLERS: &[(ApiKey, Versions)] = &[
            (ApiKey::Produce, produce::VERSIONS),
            $((ApiKey::$key, $module::VERSIONS),)*
        ];

        async fn dispatch_plain(context: RequestContext, body: Bytes) -> Outcome {
            match context.api_key {
                $(ApiKey::$key => run(context, body, $module::handle).await,)*
                other => Outcome::Close(format!("no handler for {other:?}")),
            }
        }

        fn decode_plain(api_key: ApiKey, version: i16, body: Bytes) -> Result<usize, String> {
            match api_key {
                $(ApiKey::$key => {
                    kafka::decode::<kafka_protocol::messages::$request>(body, version)
                        .map(|_| 0)
                        .map_err(|e| e.to_string())
                })*
                other => Err(format!("no handler for {other:?}")),
            }
        }
    };
}

plain_apis! {
    Fetch => fetch, FetchRequest;
    ListOffsets => list_offsets, ListOffsetsRequest;
    Metadata => metadata, MetadataRequest;
    OffsetCommit => offset_commit, OffsetCommitRequest;
    OffsetFetch => offset_fetch, OffsetFetchRequest;
    FindCoordinator => find_coordinator, FindCoordinatorRequest;
    JoinGroup => join_group, JoinGroupRequest;
    Heartbeat => heartbeat, HeartbeatRequest;
    LeaveGroup => leave_group, LeaveGroupRequest;
    SyncGroup => sync_group, SyncGroupRequest;
    DescribeGroups => describe_groups, DescribeGroupsRequest;
    ListGroups => list_groups, ListGroupsRequest;
    ApiVersions => api_versions, ApiVersionsRequest;
    CreateTopics => create_topics, CreateTopicsRequest;
    DeleteTopics => delete_topics, DeleteTopicsRequest;
    DeleteRecords => delete_records, DeleteRecordsRequest;
    OffsetForLeaderEpoch => offset_for_leader_epoch, OffsetForLeaderEpochRequest;
    InitProducerId => init_producer_id, InitProducerIdRequest;
    AddPartitionsToTxn => add_partitions_to_txn, AddPartitionsToTxnRequest;
    AddOffsetsToTxn => add_offsets_to_txn, AddOffsetsToTxnRequest;
    EndTxn => end_txn, EndTxnRequest;
    TxnOffsetCommit => txn_offset_commit, TxnOffsetCommitRequest;
    DescribeConfigs => describe_configs, DescribeConfigsRequest;
    AlterConfigs => alter_configs, AlterConfigsRequest;
    CreatePartitions => create_partitions, CreatePartitionsRequest;
    DeleteGroups => delete_groups, DeleteGroupsRequest;
    IncrementalAlterConfigs => incremental_alter_configs, IncrementalAlterConfigsRequest;
    OffsetDelete => offset_delete, OffsetDeleteRequest;
    SaslHandshake => sasl_handshake, SaslHandshakeRequest;
    SaslAuthenticate => sasl_authenticate, SaslAuthenticateRequest;
    DescribeUserScramCredentials => describe_user_scram_credentials, DescribeUserScramCredentialsRequest;
    AlterUserScramCredentials => alter_user_scram_credentials, AlterUserScramCredentialsRequest;
    DescribeAcls => describe_acls, DescribeAclsRequest;
    CreateAcls => create_acls, CreateAclsRequest;
    DeleteAcls => delete_acls, DeleteAclsRequest;
    DescribeTransactions => describe_transactions, DescribeTransactionsRequest;
    ListTransactions => list_transactions, ListTransactionsRequest;
}

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
    pub turn: Option<crate::produce_order::Turn>,
}

impl RequestContext {
    /// Whether the connection's principal may do `operation` to the resource `name` of
    /// `resource_type` (always, with authorization off).
    pub fn allowed(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        self.state.authorizer.authorize(
            &self.connection.principal,
            &self.connection.host,
            operation,
            resource_type,
            name,
        )
    }

    /// Whether the principal may do `operation` to the cluster.
    pub fn allowed_on_cluster(&self, operation: Operation) -> bool {
        self.allowed(operation, ResourceType::Cluster, CLUSTER)
    }

    /// Whether the principal may do `operation` to the topic `topic`.
    pub fn allowed_on_topic(&self, operation: Operation, topic: &str) -> bool {
        self.allowed(operation, ResourceType::Topic, topic)
    }

    /// Whether the principal may do `operation` to the group `group`.
    pub fn allowed_on_group(&self, operation: Operation, group: &str) -> bool {
        self.allowed(operation, ResourceType::Group, group)
    }
}

/// What the connection should do with a request's result.
pub enum Outcome {
    /// Send this response body, which reports this error code (for the metrics).
    Respond(Bytes, i16),
    /// Send nothing (acks=0 produce).
    NoResponse,
    /// Close the connection, logging why.
    Close(String),
}

/// Runs the handler for `context.api_key` on the request body.
pub async fn dispatch(context: RequestContext, body: Bytes) -> Outcome {
    match context.api_key {
        ApiKey::Produce => produce::handle_raw(context, body).await,
        _ => dispatch_plain(context, body).await,
    }
}

/// Decodes the request at the negotiated version, runs `handler`, encodes its response at
/// the same version. A body that does not decode closes the connection, as in Kafka.
async fn run<Req, Resp, F, Fut>(context: RequestContext, body: Bytes, handler: F) -> Outcome
where
    Req: Decodable,
    Resp: Encodable + Reported,
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
pub fn encode_response<T: Encodable + Reported>(response: &T, version: i16) -> Outcome {
    match kafka::encode(response, version) {
        Ok(bytes) => Outcome::Respond(bytes, response.reported_error()),
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
    if api_key != ApiKey::Produce {
        return decode_plain(api_key, version, body);
    }
    let request = kafka::decode::<kafka_protocol::messages::ProduceRequest>(body, version)
        .map_err(|e| e.to_string())?;
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
