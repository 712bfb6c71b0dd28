//! The internal HTTP contract between roles.
//!
//! Roles talk HTTP/1.1 (hyper) with Kafka-encoded bodies where a Kafka message already says
//! what is needed, so there is one encoding, not two. `yaks dev` uses the same loopback HTTP
//! as a split deployment: one code path.
//!
//! Produce (`POST /v1/produce`): the body is a `ProduceRequest` at [`INTERNAL_PRODUCE_VERSION`]
//! (topic ids, no names). The writer answers with the status line and headers as soon as
//! the request is *accepted* into its buffer, and streams the `ProduceResponse` body once the
//! flush holding it has committed. The gateway sends a connection's next produce only after
//! the previous one was accepted, which keeps a connection's batches in order across the
//! HTTP hop while still letting many be in flight.
//!
//! Fetch (`POST /v1/fetch`): the body is a `FetchRequest` at [`INTERNAL_FETCH_VERSION`] holding
//! the partitions the gateway routed to that reader; the answer is the `FetchResponse` at the
//! same version, sent when `min_bytes` are available or `max_wait_ms` ran out.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::error::StartError;
use crate::shutdown::Shutdown;

/// Produce path on writers.
pub const PRODUCE_PATH: &str = "/v1/produce";
/// Fetch path on readers.
pub const FETCH_PATH: &str = "/v1/fetch";
/// Liveness, which a gateway probes to tell a gone writer from a slow one.
pub const HEALTH_PATH: &str = crate::ops::HEALTHZ_PATH;
/// Header of an internal produce: the time, in the metastore's clock (ms since the epoch),
/// after which its batches must not be committed, because the gateway answers the client
/// REQUEST_TIMED_OUT then.
pub const COMMIT_DEADLINE_HEADER: &str = "yaks-commit-deadline-ms";
/// Header on every writer response: an id the writer process draws at start, so a gateway
/// can tell a restarted writer (whose predecessor's requests died with it) from a live one.
pub const WRITER_INSTANCE_HEADER: &str = "yaks-writer-instance";
/// Version of the `ProduceRequest`/`ProduceResponse` bodies on [`PRODUCE_PATH`].
pub const INTERNAL_PRODUCE_VERSION: i16 = 13;

/// Version of the `FetchRequest`/`FetchResponse` bodies on [`FETCH_PATH`]: topic ids, no
/// names, every field a reader needs.
pub const INTERNAL_FETCH_VERSION: i16 = 16;

/// Failure of an internal call.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The peer did not accept the request: nothing happened, try another peer or later.
    #[error("peer unavailable: {0}")]
    Unavailable(String),
    /// The peer accepted the request but the answer was lost: the outcome is unknown.
    #[error("answer lost: {0}")]
    AnswerLost(String),
    /// The peer refused the request itself (a 4xx status: malformed, too large, no such
    /// path). Nothing happened, and any other peer would refuse it too: it is not a sign
    /// that this peer is down, and retrying it elsewhere is pointless.
    #[error("request refused with {status}: {detail}")]
    Rejected {
        /// The status the peer answered.
        status: StatusCode,
        /// The peer's explanation (its response body).
        detail: String,
    },
}

/// Why a liveness probe ([`RpcClient::get`]) got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeFailure {
    /// The connection was refused: nothing listens there, the process is gone.
    #[error("connection refused")]
    Refused,
    /// Anything else (a timeout, a reset, an address that does not resolve): the process
    /// may be alive but unreachable, or stopped.
    #[error("no answer")]
    Failed,
}

/// The deployment's shared token (`internal.token`), which internal requests carry as
/// `Authorization: Bearer <token>` and writers and readers check.
#[derive(Clone)]
pub struct PeerToken(Arc<str>);

impl std::fmt::Debug for PeerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerToken(..)")
    }
}

impl PeerToken {
    /// A token.
    pub fn new(token: &str) -> PeerToken {
        PeerToken(token.into())
    }

    /// Whether `headers` carry this token, compared in constant time.
    pub fn admits(&self, headers: &http::HeaderMap) -> bool {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return false;
        };
        let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") else {
            return false;
        };
        bool::from(subtle::ConstantTimeEq::ct_eq(given, self.0.as_bytes()))
    }
}

/// The 401 answer to an internal request without the deployment's token, if `token` is
/// set and `headers` lack it; logged, so a misconfigured role shows up.
pub fn refuse_unauthenticated<B: From<Bytes>>(
    token: Option<&PeerToken>,
    headers: &http::HeaderMap,
    path: &str,
) -> Option<Response<B>> {
    let token = token?;
    if token.admits(headers) {
        return None;
    }
    warn!(
        path,
        "internal request without the deployment's token (internal.token) refused"
    );
    Some(text_response(
        StatusCode::UNAUTHORIZED,
        "this endpoint needs the deployment's internal token",
    ))
}

/// A pooled HTTP/1.1 client for internal calls.
#[derive(Clone, Debug)]
pub struct RpcClient {
    client: Client<HttpConnector, Full<Bytes>>,
    token: Option<PeerToken>,
}

impl Default for RpcClient {
    fn default() -> Self {
        Self::new()
    }
}

impl RpcClient {
    /// A client with keep-alive connections.
    pub fn new() -> RpcClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        RpcClient {
            client,
            token: None,
        }
    }

    /// A client whose POSTs carry `token` (none: they carry nothing).
    pub fn with_token(token: Option<PeerToken>) -> RpcClient {
        RpcClient {
            token,
            ..RpcClient::new()
        }
    }

    /// POSTs `body` to `base_url` + `path` and returns once the peer answered with its
    /// status and headers. A 4xx status is [`RpcError::Rejected`], any other non-2xx
    /// status (the peer is overloaded, shutting down, failing) [`RpcError::Unavailable`].
    pub async fn post(
        &self,
        base_url: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Response<Incoming>, RpcError> {
        self.post_with(base_url, path, body, &[]).await
    }

    /// [`RpcClient::post`] with extra request headers.
    pub async fn post_with(
        &self,
        base_url: &str,
        path: &str,
        body: Bytes,
        headers: &[(&'static str, String)],
    ) -> Result<Response<Incoming>, RpcError> {
        let mut request = Request::post(format!("{base_url}{path}"))
            .header(http::header::CONTENT_TYPE, "application/x-kafka");
        for (name, value) in headers.iter().chain(&crate::telemetry::trace_headers()) {
            request = request.header(*name, value.as_str());
        }
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {}", token.0));
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| RpcError::Unavailable(format!("bad request to {base_url}: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| RpcError::Unavailable(format!("{base_url}: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let detail = read_body(response).await.unwrap_or_default();
            let detail = String::from_utf8_lossy(&detail).into_owned();
            if status.is_client_error() {
                return Err(RpcError::Rejected { status, detail });
            }
            return Err(RpcError::Unavailable(format!(
                "{base_url} answered {status}: {detail}"
            )));
        }
        Ok(response)
    }

    /// GETs `base_url` + `path`, whatever status the peer answers.
    pub async fn get(
        &self,
        base_url: &str,
        path: &str,
    ) -> Result<Response<Incoming>, ProbeFailure> {
        let request = Request::get(format!("{base_url}{path}"))
            .body(Full::new(Bytes::new()))
            .map_err(|_| ProbeFailure::Failed)?;
        self.client.request(request).await.map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(error) = source {
                if let Some(io) = error.downcast_ref::<std::io::Error>() {
                    if io.kind() == std::io::ErrorKind::ConnectionRefused {
                        return ProbeFailure::Refused;
                    }
                    return ProbeFailure::Failed;
                }
                source = error.source();
            }
            ProbeFailure::Failed
        })
    }
}

/// Reads a whole response body. Failing here means the answer was lost.
pub async fn read_body(response: Response<Incoming>) -> Result<Bytes, RpcError> {
    response
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| RpcError::AnswerLost(e.to_string()))
}

/// A plain-text response.
pub fn text_response<B>(status: StatusCode, text: impl Into<String>) -> Response<B>
where
    B: From<Bytes>,
{
    let mut response = Response::new(B::from(Bytes::from(text.into())));
    *response.status_mut() = status;
    response
}

/// Binds a listener on `addr`, returning it with the address it got (port 0 picks one).
pub async fn bind(addr: &str) -> Result<(TcpListener, std::net::SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

/// Accepts the next connection. Accept errors (out of file descriptors, a connection reset
/// before it was accepted) are logged and waited out briefly instead of ending the server.
pub async fn accept(listener: &TcpListener) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e) => {
                warn!(error = %e, "accept failed");
                crate::clock::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Largest read buffer of one internal HTTP connection. A writer holds a connection per
/// produce in flight (thousands at full load, each waiting for its flush to commit), and
/// at hyper's default (~400 KiB, kept for the connection's life) those buffers alone came
/// to more than the writer's whole produce buffer; 16 KiB keeps 3,000 of them under 50 MiB.
const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Serves HTTP/1.1 on `listener` until `shutdown`, then lets open requests finish.
pub async fn serve<S, F, B>(listener: TcpListener, handler: S, mut shutdown: Shutdown)
where
    S: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = shutdown.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |request| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(request).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .max_buf_size(READ_BUFFER_BYTES)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        warn!("http connections still open after 30 s, closing them");
    }
}
