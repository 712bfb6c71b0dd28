//! AddOffsetsToTxn (key 25), v0–v4: a consumer group joins a producer's transaction, so
//! TxnOffsetCommit may then give the transaction that group's offsets.
//!
//! WRITE on the transactional id and READ on the group, as Kafka asks.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use yaks_common::acl::{Operation, ResourceType};
use yaks_common::metastore::transactions::TxnProducer;

use super::{RequestContext, Versions};
use crate::transactions::{coordinates, error_code, fenced_code};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 4 };

/// Answers AddOffsetsToTxn.
pub async fn handle(
    context: RequestContext,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let answer =
        |code: ResponseError| AddOffsetsToTxnResponse::default().with_error_code(code.code());
    let state = &context.state;
    let id = request.transactional_id.0.as_str();
    let group = request.group_id.0.as_str();
    if !context.allowed(Operation::Write, ResourceType::TransactionalId, id) {
        return answer(ResponseError::TransactionalIdAuthorizationFailed);
    }
    if !context.allowed_on_group(Operation::Read, group) {
        return answer(ResponseError::GroupAuthorizationFailed);
    }
    if id.is_empty() || group.is_empty() {
        return answer(ResponseError::InvalidRequest);
    }
    if !coordinates(state, id) {
        return answer(ResponseError::NotCoordinator);
    }
    let producer = TxnProducer {
        transactional_id: id,
        producer_id: request.producer_id.0,
        producer_epoch: request.producer_epoch,
    };
    let now_ms = state.server_clock.now_ms();
    let code = match state
        .metastore
        .add_to_transaction(&producer, &[], &[group.to_owned()], now_ms)
        .await
    {
        Ok(()) => 0,
        Err(e) => error_code(&e, fenced_code(context.version, 2)),
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
