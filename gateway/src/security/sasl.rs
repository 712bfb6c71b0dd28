//! Authentication on `SASL_PLAINTEXT` and `SASL_SSL` listeners: what a connection goes
//! through before any other request is served.
//!
//! The client may ask ApiVersions, then SaslHandshake names a mechanism, then
//! SaslAuthenticate requests carry the mechanism's tokens until it succeeds (with a v0
//! handshake, as old clients do, the tokens come as bare length-prefixed frames instead).
//! Anything else before success closes the connection, and frames are at most
//! [`MAX_FRAME_BYTES`] (Kafka's `sasl.server.max.receive.size`) and checked before a byte is
//! allocated, so an unauthenticated client costs little. A failed authentication is answered
//! SASL_AUTHENTICATION_FAILED after `gateway.sasl.failed_authentication_delay_ms` and the
//! connection closed, counted in `yaks_gateway_sasl_authentications_total` and logged with
//! the user name, never the secret.
//!
//! Mechanisms: `PLAIN` checks the password against the user's stored SCRAM credential
//! (either mechanism); `SCRAM-SHA-256` and `SCRAM-SHA-512` run RFC 5802's exchange against
//! the credential of that mechanism ([`yaks_common::scram`]); `OAUTHBEARER` checks the
//! client's JWT against the identity provider's keys ([`super::oauth`]).

use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{info, warn};
use yaks_common::kafka::{self, str_bytes};
use yaks_common::metrics::{SaslLabels, metrics};
use yaks_common::scram::{self, ClientFirst, Credential, Mechanism, ScramError, ServerFirst};
use yaks_common::shutdown::Shutdown;

use super::{Principal, oauth};
use crate::GatewayState;
use crate::connection::{FrameRefusal, ResponseFrame, parse_head};
use crate::handlers::{api_versions, sasl_handshake};

/// Largest frame read before authentication (Kafka's `sasl.server.max.receive.size`).
pub const MAX_FRAME_BYTES: i32 = 512 * 1024;

/// How long a connection may take to authenticate before it is closed.
const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the authentication of a connection on a SASL listener. The principal on success;
/// `None` when the connection is to be closed (why is logged).
pub async fn authenticate<S>(
    state: &GatewayState,
    stream: &mut S,
    shutdown: &mut Shutdown,
) -> Option<Principal>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conversation = Conversation::default();
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(
            AUTHENTICATION_TIMEOUT,
            conversation.run(state, stream),
        ) => outcome,
        _ = shutdown.wait() => return None,
    };
    let (outcome, principal) = match outcome {
        Ok(Ok(principal)) => ("ok", Some(principal)),
        Ok(Err(Ending::Failed)) => ("failed", None),
        Ok(Err(Ending::Unavailable)) => ("error", None),
        Ok(Err(Ending::Refused)) => ("refused", None),
        Ok(Err(Ending::Gone)) => return None,
        Err(_) => {
            info!("client did not authenticate within 30 s; closing connection");
            ("refused", None)
        }
    };
    metrics()
        .gateway
        .sasl_authentications
        .get_or_create(&SaslLabels {
            mechanism: conversation.mechanism_name(),
            outcome,
        })
        .inc();
    principal
}

/// How an authentication ended without a principal.
enum Ending {
    /// Wrong credentials (answered, after the delay).
    Failed,
    /// The credentials could not be read (answered; the client may retry).
    Unavailable,
    /// The client broke the protocol (logged).
    Refused,
    /// The client went away.
    Gone,
}

/// Where one connection's authentication stands.
#[derive(Default)]
struct Conversation {
    /// The mechanism the handshake chose.
    mechanism: Option<Chosen>,
    /// Tokens come as bare frames (a v0 handshake).
    raw_tokens: bool,
    /// A SCRAM exchange after the server's first message.
    scram: Option<ServerFirst>,
}

#[derive(Clone, Copy)]
enum Chosen {
    Plain,
    Scram(Mechanism),
    OauthBearer,
}

/// The result of one token.
enum Step {
    /// Send this and wait for the next token.
    Continue(Vec<u8>),
    /// Authenticated: send this (possibly empty) last token.
    Done(Principal, Vec<u8>),
    /// Wrong credentials; the reason is for the log only.
    Failed(String),
    /// The store did not answer.
    Unavailable,
}

impl Conversation {
    fn mechanism_name(&self) -> &'static str {
        match self.mechanism {
            None => "none",
            Some(Chosen::Plain) => "PLAIN",
            Some(Chosen::Scram(mechanism)) => mechanism.name(),
            Some(Chosen::OauthBearer) => "OAUTHBEARER",
        }
    }

    async fn run<S>(&mut self, state: &GatewayState, stream: &mut S) -> Result<Principal, Ending>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let delay = Duration::from_millis(state.config.sasl.failed_authentication_delay_ms);
        loop {
            let mut frame = read_frame(stream).await?;
            if self.raw_tokens {
                // Old clients (a v0 handshake): bare tokens, and a failure is a close.
                match self.step(state, &frame).await {
                    Step::Continue(token) => write_raw(stream, &token).await?,
                    Step::Done(principal, token) => {
                        write_raw(stream, &token).await?;
                        return Ok(principal);
                    }
                    Step::Failed(reason) => {
                        warn!(mechanism = self.mechanism_name(), %reason, "sasl authentication failed");
                        yaks_common::clock::sleep(delay).await;
                        return Err(Ending::Failed);
                    }
                    Step::Unavailable => return Err(Ending::Unavailable),
                }
                continue;
            }
            let head = match parse_head(&mut frame) {
                Ok(head) => head,
                Err(FrameRefusal::ApiVersionsTooNew { correlation_id }) => {
                    let body = api_versions::unsupported_version_body();
                    respond_raw(stream, ResponseFrame::new(correlation_id, 0, body)).await?;
                    continue;
                }
                Err(refusal) => {
                    warn!(%refusal, "closing connection before authentication");
                    return Err(Ending::Refused);
                }
            };
            let correlation_id = head.correlation_id;
            let version = head.version;
            let header_version = head.api_key.response_header_version(version);
            let answer = |body: Bytes| ResponseFrame::new(correlation_id, header_version, body);
            match head.api_key {
                ApiKey::ApiVersions => {
                    let response = api_versions::response();
                    respond(stream, &response, version, answer).await?;
                }
                ApiKey::SaslHandshake => {
                    let request: SaslHandshakeRequest = decode(frame, version)?;
                    if self.mechanism.is_some() {
                        warn!("second sasl handshake; closing connection");
                        return Err(Ending::Refused);
                    }
                    let requested = request.mechanism.as_str();
                    let enabled = &state.config.sasl.mechanisms;
                    let response = sasl_handshake::answer(enabled, requested);
                    respond(stream, &response, version, answer).await?;
                    if response.error_code != 0 {
                        info!(
                            mechanism = requested,
                            "sasl mechanism not offered; closing connection"
                        );
                        return Err(Ending::Refused);
                    }
                    self.mechanism = Some(match requested {
                        "OAUTHBEARER" => Chosen::OauthBearer,
                        "PLAIN" => Chosen::Plain,
                        other => match Mechanism::from_name(other) {
                            Some(mechanism) => Chosen::Scram(mechanism),
                            None => return Err(Ending::Refused),
                        },
                    });
                    self.raw_tokens = version == 0;
                }
                ApiKey::SaslAuthenticate => {
                    let request: SaslAuthenticateRequest = decode(frame, version)?;
                    if self.mechanism.is_none() {
                        let response = SaslAuthenticateResponse::default()
                            .with_error_code(ResponseError::IllegalSaslState.code())
                            .with_error_message(Some(str_bytes(
                                "SaslAuthenticate before SaslHandshake",
                            )));
                        respond(stream, &response, version, answer).await?;
                        return Err(Ending::Refused);
                    }
                    let response = SaslAuthenticateResponse::default();
                    match self.step(state, &request.auth_bytes).await {
                        Step::Continue(token) => {
                            let response = response.with_auth_bytes(token.into());
                            respond(stream, &response, version, answer).await?;
                        }
                        Step::Done(principal, token) => {
                            // A session lifetime of 0: no re-authentication is asked for.
                            let response = response.with_auth_bytes(token.into());
                            respond(stream, &response, version, answer).await?;
                            return Ok(principal);
                        }
                        Step::Failed(reason) => {
                            warn!(mechanism = self.mechanism_name(), %reason, "sasl authentication failed");
                            yaks_common::clock::sleep(delay).await;
                            let response = response
                                .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                                .with_error_message(Some(str_bytes(&self.failure_message())));
                            respond(stream, &response, version, answer).await?;
                            return Err(Ending::Failed);
                        }
                        Step::Unavailable => {
                            let response = response
                                .with_error_code(ResponseError::UnknownServerError.code())
                                .with_error_message(Some(str_bytes(
                                    "credentials could not be read; try again",
                                )));
                            respond(stream, &response, version, answer).await?;
                            return Err(Ending::Unavailable);
                        }
                    }
                }
                other => {
                    warn!(api = ?other, "request before authentication; closing connection");
                    return Err(Ending::Refused);
                }
            }
        }
    }

    /// What the client is told, in Kafka's words.
    fn failure_message(&self) -> String {
        match self.mechanism {
            Some(Chosen::Scram(mechanism)) => format!(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism {}",
                mechanism.name()
            ),
            Some(Chosen::OauthBearer) => {
                "Authentication failed: the bearer token is invalid or expired".into()
            }
            _ => "Authentication failed: Invalid username or password".into(),
        }
    }

    /// Takes one token of the chosen mechanism.
    async fn step(&mut self, state: &GatewayState, token: &[u8]) -> Step {
        match self.mechanism {
            None => Step::Failed("no mechanism chosen".into()),
            Some(Chosen::OauthBearer) => {
                let token = match oauth::bearer_token(token) {
                    Ok(token) => token,
                    Err(e) => return Step::Failed(e.into()),
                };
                let Some(verifier) = &state.oauth else {
                    return Step::Failed("OAUTHBEARER is not configured".into());
                };
                match verifier.verify(&token).await {
                    Ok(principal) => Step::Done(Principal::user(principal), Vec::new()),
                    Err(reason) => Step::Failed(reason),
                }
            }
            Some(Chosen::Plain) => {
                let (user, password) = match scram::parse_plain(token) {
                    Ok(parsed) => parsed,
                    Err(e) => return Step::Failed(e.to_string()),
                };
                let credentials = match state.metastore.scram_credentials(&user).await {
                    Ok(credentials) => credentials,
                    Err(e) => {
                        warn!(user, error = %e, "reading credentials failed");
                        return Step::Unavailable;
                    }
                };
                if credentials.iter().any(|c| c.verify_password(&password)) {
                    Step::Done(Principal::user(user), Vec::new())
                } else {
                    Step::Failed(format!("user {user:?}: invalid credentials"))
                }
            }
            Some(Chosen::Scram(mechanism)) => match self.scram.take() {
                None => {
                    let first = match ClientFirst::parse(token) {
                        Ok(first) => first,
                        Err(e) => return Step::Failed(e.to_string()),
                    };
                    let credential = match credential_for(state, &first.user, mechanism).await {
                        Ok(Some(credential)) => credential,
                        Ok(None) => {
                            return Step::Failed(format!(
                                "user {:?} has no {} credential",
                                first.user,
                                mechanism.name()
                            ));
                        }
                        Err(()) => return Step::Unavailable,
                    };
                    let server = ServerFirst::new(first, credential, &server_nonce());
                    let message = server.message().to_vec();
                    self.scram = Some(server);
                    Step::Continue(message)
                }
                Some(server) => match server.finish(token) {
                    Ok(last) => Step::Done(Principal::user(server.user()), last),
                    Err(ScramError::InvalidCredentials) => {
                        Step::Failed(format!("user {:?}: invalid credentials", server.user()))
                    }
                    Err(e) => Step::Failed(format!("user {:?}: {e}", server.user())),
                },
            },
        }
    }
}

async fn credential_for(
    state: &GatewayState,
    user: &str,
    mechanism: Mechanism,
) -> Result<Option<Credential>, ()> {
    match state.metastore.scram_credentials(user).await {
        Ok(credentials) => Ok(credentials.into_iter().find(|c| c.mechanism == mechanism)),
        Err(e) => {
            warn!(user, error = %e, "reading credentials failed");
            Err(())
        }
    }
}

/// A fresh server nonce: 18 random bytes in base64 (printable, no commas).
fn server_nonce() -> String {
    let mut bytes = [0u8; 18];
    bytes[..16].copy_from_slice(&yaks_common::random::u128().to_le_bytes());
    bytes[16..].copy_from_slice(&yaks_common::random::u64().to_le_bytes()[..2]);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads one size-prefixed frame of at most [`MAX_FRAME_BYTES`].
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Bytes, Ending> {
    let length = match stream.read_i32().await {
        Ok(length) => length,
        Err(_) => return Err(Ending::Gone),
    };
    if !(0..=MAX_FRAME_BYTES).contains(&length) {
        warn!(
            length,
            max = MAX_FRAME_BYTES,
            "frame size out of bounds before authentication; closing connection"
        );
        return Err(Ending::Refused);
    }
    let mut frame = BytesMut::zeroed(length as usize);
    if stream.read_exact(&mut frame).await.is_err() {
        return Err(Ending::Gone);
    }
    Ok(frame.freeze())
}

fn decode<T: kafka_protocol::protocol::Decodable>(body: Bytes, version: i16) -> Result<T, Ending> {
    kafka::decode(body, version).map_err(|e| {
        warn!(error = %e, "malformed request before authentication; closing connection");
        Ending::Refused
    })
}

async fn respond<S, T>(
    stream: &mut S,
    response: &T,
    version: i16,
    answer: impl Fn(Bytes) -> ResponseFrame,
) -> Result<(), Ending>
where
    S: AsyncWrite + Unpin,
    T: kafka_protocol::protocol::Encodable,
{
    let body = kafka::encode(response, version).map_err(|e| {
        warn!(error = %e, "encoding a sasl response failed");
        Ending::Refused
    })?;
    respond_raw(stream, answer(body)).await
}

async fn respond_raw<S: AsyncWrite + Unpin>(
    stream: &mut S,
    frame: ResponseFrame,
) -> Result<(), Ending> {
    frame.write_to(stream).await.map_err(|_| Ending::Gone)
}

async fn write_raw<S: AsyncWrite + Unpin>(stream: &mut S, token: &[u8]) -> Result<(), Ending> {
    let mut frame = Vec::with_capacity(4 + token.len());
    frame.extend_from_slice(&(token.len() as i32).to_be_bytes());
    frame.extend_from_slice(token);
    stream.write_all(&frame).await.map_err(|_| Ending::Gone)?;
    stream.flush().await.map_err(|_| Ending::Gone)
}
