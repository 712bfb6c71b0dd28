//! InitProducerId (key 22), v0–v5: ids and epochs for idempotent producers.
//!
//! A producer without an id gets a fresh one at epoch 0 from this gateway's block
//! ([`crate::producer_ids`]); no PostgreSQL round trip in the common case. A producer that
//! sends its current id and epoch (v3+, KIP-360: it lost track of a sequence and must start
//! over) gets the same id at the next epoch, checked and recorded in PostgreSQL; if that
//! epoch is not current (a stale retry, an expired producer) or the epochs ran out, it gets a
//! fresh id instead, which is always safe for a producer without a transactional id.
//!
//! With a transactional id the transaction coordinator decides ([`crate::transactions`]):
//! the id's producer at its next epoch, after aborting what an earlier incarnation left
//! open, answered only by the gateway FindCoordinator names for the id.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::{debug, warn};
use yaks_common::acl::{Operation, ResourceType};
use yaks_common::metastore::transactions::InitRequest;

use super::{RequestContext, Versions};
use crate::transactions;

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 5 };

/// Answers InitProducerId.
pub async fn handle(
    context: RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let failed = |code: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(transactional_id) = &request.transactional_id {
        let id = transactional_id.0.as_str();
        if !context.allowed(Operation::Write, ResourceType::TransactionalId, id) {
            return failed(ResponseError::TransactionalIdAuthorizationFailed.code());
        }
        return match transactional(&context, &request, id).await {
            Ok((producer_id, producer_epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch),
            Err(code) => failed(code),
        };
    }
    // An idempotent producer, as Kafka since KIP-679: IDEMPOTENT_WRITE on the cluster,
    // or WRITE on some topic.
    let host = &context.connection.host;
    let principal = &context.connection.principal;
    if !context.state.authorizer.authorize_any(
        principal,
        host,
        Operation::Write,
        ResourceType::Topic,
    ) && !context.allowed_on_cluster(Operation::IdempotentWrite)
    {
        return failed(ResponseError::ClusterAuthorizationFailed.code());
    }
    let state = &context.state;
    let claimed_id = request.producer_id.0;
    let claimed_epoch = request.producer_epoch;
    if context.version >= 3 && claimed_id >= 0 && claimed_epoch >= 0 {
        if claimed_epoch < i16::MAX - 1 {
            let now_ms = state.clock.now_ms();
            match state
                .metastore
                .bump_producer_epoch(claimed_id, claimed_epoch, now_ms)
                .await
            {
                Ok(Some(epoch)) => {
                    debug!(producer_id = claimed_id, epoch, "producer epoch bumped");
                    return InitProducerIdResponse::default()
                        .with_producer_id(ProducerId(claimed_id))
                        .with_producer_epoch(epoch);
                }
                Ok(None) => {
                    debug!(
                        producer_id = claimed_id,
                        claimed_epoch, "epoch not current; new id"
                    );
                }
                Err(e) => {
                    warn!(error = %e, "bumping a producer epoch failed");
                    return failed(e.kafka_code());
                }
            }
        } else {
            debug!(producer_id = claimed_id, "epochs exhausted; new id");
        }
    }
    match state.producer_ids.next().await {
        Ok(producer_id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(0),
        Err(e) => {
            warn!(error = %e, "reserving producer ids failed");
            failed(e.kafka_code())
        }
    }
}

/// InitProducerId for the transactional id `id`: its producer, or the error code.
async fn transactional(
    context: &RequestContext,
    request: &InitProducerIdRequest,
    id: &str,
) -> Result<(i64, i16), i16> {
    let state = &context.state;
    if id.is_empty() {
        return Err(ResponseError::InvalidRequest.code());
    }
    // Both the producer id and epoch (v3+, KIP-360), or neither.
    let expected = match (request.producer_id.0, request.producer_epoch) {
        (-1, -1) => None,
        (producer_id, epoch) if producer_id >= 0 && epoch >= 0 => Some((producer_id, epoch)),
        _ => return Err(ResponseError::InvalidRequest.code()),
    };
    let timeout_ms = request.transaction_timeout_ms;
    if timeout_ms <= 0 || timeout_ms > state.config.transaction_max_timeout_ms {
        return Err(ResponseError::InvalidTransactionTimeout.code());
    }
    if !transactions::coordinates(state, id) {
        return Err(ResponseError::NotCoordinator.code());
    }
    let fresh_producer_id = state.producer_ids.next().await.map_err(|e| {
        warn!(error = %e, "reserving producer ids failed");
        transactions::error_code(&e.into(), ResponseError::ProducerFenced)
    })?;
    let init = InitRequest {
        transactional_id: id.to_owned(),
        timeout_ms,
        expected,
        fresh_producer_id,
        now_ms: state.server_clock.now_ms(),
    };
    state.transactions.init(&init).await.map_err(|e| {
        debug!(transactional_id = id, error = %e, "InitProducerId refused");
        transactions::error_code(&e, transactions::fenced_code(context.version, 4))
    })
}
