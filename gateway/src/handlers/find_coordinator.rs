//! FindCoordinator (key 10), v0–v6 (several keys at once from v4).
//!
//! A group's or transactional id's coordinator is the gateway presenting the live broker
//! the rendezvous hash of its id picks ([`crate::cluster::ClusterView::coordinator_of`]); any gateway answers,
//! and all answer the same. Share groups (key type 2) are not offered.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;
use yaks_common::acl::{Operation, ResourceType};
use yaks_common::kafka::str_bytes;

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 6 };

/// Key type of consumer groups.
const GROUP: i8 = 0;

/// Key type of transactional ids.
const TRANSACTION: i8 = 1;

/// Answers FindCoordinator.
pub async fn handle(
    context: RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys: Vec<StrBytes> = if context.version >= 4 {
        request.coordinator_keys.clone()
    } else {
        vec![request.key.clone()]
    };
    let found: Vec<Coordinator> = keys
        .into_iter()
        .map(|key| find(&context, request.key_type, key))
        .collect();
    if context.version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(found);
    }
    let one = found.into_iter().next().unwrap_or_default();
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(one.error_code)
        .with_node_id(one.node_id)
        .with_host(one.host)
        .with_port(one.port);
    if context.version >= 1 {
        response.error_message = one.error_message;
    }
    response
}

fn find(context: &RequestContext, key_type: i8, key: StrBytes) -> Coordinator {
    let failed = |key: StrBytes, error: ResponseError, message: &str| {
        Coordinator::default()
            .with_key(key)
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::default())
            .with_port(-1)
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)))
    };
    // Authorized first, as Kafka: DESCRIBE on the group or transactional id.
    if key_type == GROUP && !context.allowed_on_group(Operation::Describe, key.as_str()) {
        return failed(
            key,
            ResponseError::GroupAuthorizationFailed,
            "Group authorization failed.",
        );
    }
    if key_type == TRANSACTION
        && !context.allowed(
            Operation::Describe,
            ResourceType::TransactionalId,
            key.as_str(),
        )
    {
        return failed(
            key,
            ResponseError::TransactionalIdAuthorizationFailed,
            "Transactional Id authorization failed.",
        );
    }
    if key_type != GROUP && key_type != TRANSACTION {
        debug!(
            key_type,
            "FindCoordinator for a key type other than groups and transactions refused"
        );
        return failed(
            key,
            ResponseError::InvalidRequest,
            "only group and transaction coordinators are offered (no share groups)",
        );
    }
    let Some(broker) = context.state.cluster.coordinator_of(key.as_str()) else {
        return failed(
            key,
            ResponseError::CoordinatorNotAvailable,
            "no live gateway",
        );
    };
    // Kafka answers COORDINATOR_NOT_AVAILABLE when the coordinator has no endpoint on
    // the client's listener.
    let Some(endpoint) = broker.endpoint(&context.connection.listener) else {
        return failed(
            key,
            ResponseError::CoordinatorNotAvailable,
            "the coordinator has no endpoint on this listener",
        );
    };
    Coordinator::default()
        .with_key(key)
        .with_node_id(BrokerId(broker.node_id))
        .with_host(str_bytes(&endpoint.host))
        .with_port(endpoint.port)
}
