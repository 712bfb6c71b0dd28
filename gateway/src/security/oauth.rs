//! SASL `OAUTHBEARER` (RFC 7628, KIP-255/KIP-768): a client presents a JWT its identity
//! provider signed; the gateway checks it as Kafka's broker does with
//! `sasl.oauthbearer.jwks.endpoint.url`.
//!
//! The checks: the token's header names an asymmetric algorithm (a JWKS holds public keys,
//! so `HS*` tokens cannot be checked and are refused) and a key (`kid`) of the provider's
//! key set; the signature verifies with that key; `exp` is in the future and `nbf`, if
//! present, in the past (both within `clock_skew_s`); `iss` and `aud` match when configured;
//! the principal claim (`sub` by default) is a non-empty string, which becomes `User:<it>`.
//!
//! The key set is fetched at the first login, then again once it is `jwks_refresh_ms` old or
//! a token names a key not in it (a provider rotating keys publishes the new one before
//! using it); fetches are at least 10 s apart, so made-up key ids or a provider that is down
//! do not make every login fetch, and a stale set keeps serving while the provider is away.

use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tracing::{info, warn};
use yaks_common::clock::Instant;
use yaks_common::config::OauthBearerConfig;

/// Shortest time between two fetches of the key set for unknown key ids.
const REFETCH_GAP: Duration = Duration::from_secs(10);

/// Largest key set accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Checks OAUTHBEARER tokens against the provider's keys.
pub struct TokenVerifier {
    config: OauthBearerConfig,
    url: String,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    keys: RwLock<Option<(JwkSet, Instant)>>,
    /// When a fetch was last started.
    attempted: std::sync::Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
}

impl TokenVerifier {
    /// A verifier for `config`; the keys are fetched on first use.
    pub fn new(config: OauthBearerConfig) -> Result<TokenVerifier, String> {
        let url = config
            .jwks_url
            .clone()
            .ok_or("gateway.sasl.oauthbearer.jwks_url is not set")?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("reading the system's certificate authorities: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(TokenVerifier {
            config,
            url,
            client,
            keys: RwLock::new(None),
            attempted: std::sync::Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The principal name `token` proves, or why it proves nothing (for the log).
    pub async fn verify(&self, token: &str) -> Result<String, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(format!(
                "{:?} tokens cannot be checked against a JWKS",
                header.alg
            ));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.config.clock_skew_s;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &self.config.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &self.config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| format!("token refused: {e}"))?;
        let claim = &self.config.principal_claim;
        match data.claims.get(claim).and_then(|v| v.as_str()) {
            Some(principal) if !principal.is_empty() => Ok(principal.to_owned()),
            _ => Err(format!("token has no {claim:?} claim naming the principal")),
        }
    }

    /// The key `kid` names (or the only key, for a token without `kid`), fetching the key
    /// set when it is stale or lacks it.
    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, String> {
        let refresh = Duration::from_millis(self.config.jwks_refresh_ms.max(1_000));
        let mut fetched_now = false;
        loop {
            let (found, age) = {
                let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
                match &*keys {
                    Some((set, at)) => (pick(set, kid), Some(at.elapsed())),
                    None => (None, None),
                }
            };
            let stale = age.is_none_or(|age| age >= refresh);
            // Fetches, failed ones included, are at least REFETCH_GAP apart, so neither
            // unknown key ids nor a provider that is down make every login fetch.
            let may_fetch = self
                .attempted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none_or(|at| at.elapsed() >= REFETCH_GAP);
            let fetch = !fetched_now && may_fetch && (stale || found.is_none());
            if !fetch {
                return found
                    .unwrap_or_else(|| Err(format!("no key {kid:?} in the provider's key set")));
            }
            *self.attempted.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(yaks_common::clock::now());
            match self.fetch().await {
                Ok(()) => fetched_now = true,
                // A stale set still serves the keys it has while the provider is away.
                Err(e) => return found.unwrap_or(Err(e)),
            }
        }
    }

    async fn fetch(&self) -> Result<(), String> {
        let _one_at_a_time = self.fetching.lock().await;
        let fresh = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() < Duration::from_secs(1));
        if fresh {
            // Another connection fetched while this one waited.
            return Ok(());
        }
        let url: http::Uri = self
            .url
            .parse()
            .map_err(|e| format!("jwks_url {}: {e}", self.url))?;
        let got = tokio::time::timeout(Duration::from_secs(10), self.client.get(url)).await;
        let response = match got {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(self.failed(format!("fetching the key set: {e}"))),
            Err(_) => return Err(self.failed("fetching the key set timed out".into())),
        };
        if !response.status().is_success() {
            return Err(self.failed(format!("key set answered {}", response.status())));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| self.failed(format!("reading the key set: {e}")))?
            .to_bytes();
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| self.failed(format!("the key set does not parse: {e}")))?;
        info!(url = %self.url, keys = set.keys.len(), "oauthbearer keys fetched");
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) =
            Some((set, yaks_common::clock::now()));
        Ok(())
    }

    fn failed(&self, problem: String) -> String {
        warn!(url = %self.url, %problem, "oauthbearer key set unavailable");
        problem
    }
}

/// The decoding key for `kid` in `set`; a token without `kid` may use a set of one key.
fn pick(set: &JwkSet, kid: Option<&str>) -> Option<Result<DecodingKey, String>> {
    let jwk = match kid {
        Some(kid) => set.find(kid)?,
        None if set.keys.len() == 1 => &set.keys[0],
        None => return None,
    };
    Some(DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid:?} is unusable: {e}")))
}

/// The token in an OAUTHBEARER client message (RFC 7628 §3.1):
/// `gs2-header 0x01 auth=Bearer <token> 0x01 [key=value 0x01]* 0x01`.
pub fn bearer_token(message: &[u8]) -> Result<String, &'static str> {
    let text = std::str::from_utf8(message).map_err(|_| "not UTF-8")?;
    let (gs2, rest) = text.split_once('\u{1}').ok_or("no GS2 header")?;
    if !gs2.starts_with("n,") && !gs2.starts_with("y,") {
        return Err("channel binding is not supported");
    }
    let mut token = None;
    for pair in rest.split('\u{1}') {
        if let Some(value) = pair.strip_prefix("auth=") {
            let (scheme, value) = value.split_once(' ').ok_or("bad auth value")?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err("not a bearer token");
            }
            token = Some(value.trim().to_owned());
        }
    }
    token
        .filter(|t| !t.is_empty())
        .ok_or("no auth=Bearer token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_the_rfc_7628_message() {
        let message = b"n,,\x01host=h\x01auth=Bearer abc.def.ghi\x01ext=1\x01\x01";
        assert_eq!(bearer_token(message).expect("parses"), "abc.def.ghi");
        assert!(bearer_token(b"n,,\x01\x01").is_err());
        assert!(bearer_token(b"p=tls,,\x01auth=Bearer x\x01\x01").is_err());
        assert!(bearer_token(b"n,,\x01auth=Basic x\x01\x01").is_err());
        assert!(bearer_token(b"\xff").is_err());
    }
}
