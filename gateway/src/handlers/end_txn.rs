//! EndTxn (key 26), v0–v4: commits or aborts a producer's transaction.
//!
//! The transaction coordinator ([`crate::transactions`]) writes every partition's marker
//! and the transaction's offsets in one metastore transaction before answering, so a
//! success means the outcome is visible everywhere. A retry of an end that already
//! happened is answered with success, the other outcome with INVALID_TXN_STATE, as
//! Kafka's first transaction protocol. v5 (KIP-890's epoch bump per transaction) is not
//! offered, and no `transaction.version` feature is advertised, so clients keep to it.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use tracing::debug;
use yaks_common::acl::{Operation, ResourceType};
use yaks_common::metastore::transactions::{EndOutcome, EndReason, EndRequest, TxnProducer};
use yaks_common::metrics::metrics;

use super::{RequestContext, Versions};
use crate::transactions::{coordinates, count_end, error_code, fenced_code};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 4 };

/// Answers EndTxn.
pub async fn handle(context: RequestContext, request: EndTxnRequest) -> EndTxnResponse {
    let answer = |code: i16| EndTxnResponse::default().with_error_code(code);
    let state = &context.state;
    let id = request.transactional_id.0.as_str();
    if !context.allowed(Operation::Write, ResourceType::TransactionalId, id) {
        return answer(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    if id.is_empty() {
        return answer(ResponseError::InvalidRequest.code());
    }
    if !coordinates(state, id) {
        return answer(ResponseError::NotCoordinator.code());
    }
    let end = EndRequest {
        producer: TxnProducer {
            transactional_id: id,
            producer_id: request.producer_id.0,
            producer_epoch: request.producer_epoch,
        },
        commit: request.committed,
        reason: EndReason::Client,
        now_ms: state.server_clock.now_ms(),
    };
    let started = yaks_common::clock::now();
    let outcome = state.transactions.end(&end).await;
    metrics()
        .gateway
        .transaction_end_seconds
        .observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok(EndOutcome::Ended) => {
            count_end(request.committed, "client");
            answer(0)
        }
        Ok(_) => answer(0),
        Err(e) => {
            debug!(transactional_id = id, error = %e, "EndTxn refused");
            answer(error_code(&e, fenced_code(context.version, 2)))
        }
    }
}
