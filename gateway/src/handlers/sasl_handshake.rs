//! SaslHandshake (key 17), v0–v1: which SASL mechanism a connection will authenticate with.
//!
//! On a `SASL_*` listener the handshake happens before anything else is served, in
//! [`crate::security::sasl`], which answers it with [`answer`]. Here is the answer to a
//! handshake anywhere else (a plaintext or TLS listener, or a connection already
//! authenticated): ILLEGAL_SASL_STATE, as Kafka answers it.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use yaks_common::kafka::str_bytes;

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 1 };

/// Answers a handshake outside authentication.
pub async fn handle(
    context: RequestContext,
    request: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let _ = request;
    SaslHandshakeResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_mechanisms(
            context
                .state
                .config
                .sasl
                .mechanisms
                .iter()
                .map(|m| str_bytes(m))
                .collect(),
        )
}

/// The answer to a handshake asking for `requested` when `enabled` are offered: NONE, or
/// UNSUPPORTED_SASL_MECHANISM; the enabled mechanisms either way.
pub fn answer(enabled: &[String], requested: &str) -> SaslHandshakeResponse {
    let error = if enabled.iter().any(|m| m == requested) {
        0
    } else {
        ResponseError::UnsupportedSaslMechanism.code()
    };
    SaslHandshakeResponse::default()
        .with_error_code(error)
        .with_mechanisms(enabled.iter().map(|m| str_bytes(m)).collect())
}
