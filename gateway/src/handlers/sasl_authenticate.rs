//! SaslAuthenticate (key 36), v0–v2: the SASL tokens of an authentication, wrapped in
//! Kafka frames.
//!
//! Authentication itself runs before anything else is served on a `SASL_*` listener, in
//! [`crate::security::sasl`]. Here is the answer to SaslAuthenticate anywhere else (a
//! plaintext or TLS listener, or after authentication: yaks does not offer
//! re-authentication, and says so with a session lifetime of 0): ILLEGAL_SASL_STATE.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
use yaks_common::kafka::str_bytes;

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 2 };

/// Answers SaslAuthenticate outside authentication.
pub async fn handle(
    context: RequestContext,
    request: SaslAuthenticateRequest,
) -> SaslAuthenticateResponse {
    let _ = (context, request);
    SaslAuthenticateResponse::default()
        .with_error_code(ResponseError::IllegalSaslState.code())
        .with_error_message(Some(str_bytes(
            "SaslAuthenticate request received after successful authentication or on a \
             listener without SASL",
        )))
}
