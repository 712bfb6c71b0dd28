//! ListTransactions (key 66), v0–v1: the transactional ids this gateway coordinates, as
//! `kafka-transactions.sh list` gathers them from every broker.
//!
//! Filters as Kafka's: states by name (an unknown name is echoed back in
//! `unknown_state_filters` and matches nothing), producer ids, and (v1) transactions
//! open longer than `duration_filter` ms. Only ids the principal may DESCRIBE are listed.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use yaks_common::acl::{Operation, ResourceType};
use yaks_common::metastore::transactions::TxnState;

use super::{RequestContext, Versions};
use crate::transactions::{coordinates, error_code};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 1 };

/// Answers ListTransactions.
pub async fn handle(
    context: RequestContext,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let state = &context.state;
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for name in &request.state_filters {
        match TxnState::from_name(name.as_str()) {
            Some(known) => states.push(known),
            None if is_kafka_state(name.as_str()) => {}
            None => unknown.push(name.clone()),
        }
    }
    let records = match state.metastore.list_transactions().await {
        Ok(records) => records,
        Err(e) => {
            return ListTransactionsResponse::default()
                .with_error_code(error_code(&e, ResponseError::ProducerFenced));
        }
    };
    let now_ms = state.server_clock.now_ms();
    let filtered_by_state = !request.state_filters.is_empty();
    let listed = records
        .into_iter()
        .filter(|record| !filtered_by_state || states.contains(&record.state))
        .filter(|record| {
            request.producer_id_filters.is_empty()
                || request
                    .producer_id_filters
                    .contains(&ProducerId(record.producer_id))
        })
        .filter(|record| {
            // Kafka's rule, quirk included: a transaction never started passes.
            request.duration_filter < 0 || now_ms - record.start_ms > request.duration_filter
        })
        .filter(|record| coordinates(state, &record.transactional_id))
        .filter(|record| {
            context.allowed(
                Operation::Describe,
                ResourceType::TransactionalId,
                &record.transactional_id,
            )
        })
        .map(|record| {
            TransactionState::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(
                    record.transactional_id,
                )))
                .with_producer_id(ProducerId(record.producer_id))
                .with_transaction_state(StrBytes::from_static_str(record.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}

/// Kafka's states that never last here: a filter naming one is known, and matches nothing.
fn is_kafka_state(name: &str) -> bool {
    matches!(
        name,
        "PrepareCommit" | "PrepareAbort" | "PrepareEpochFence" | "Dead"
    )
}
