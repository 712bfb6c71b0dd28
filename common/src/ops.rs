//! The operations endpoints every role serves on its HTTP port.
//!
//! - `GET /healthz`: the process is alive and its runtime answers (Kubernetes liveness).
//! - `GET /readyz`: the role can do its work: PostgreSQL answers with every migration of this
//!   build applied, the S3 bucket answers, the role holds its registry lease (gateways,
//!   readers), and it is not shutting down. 503 with the reason otherwise (readiness: a load
//!   balancer or Kubernetes stops sending work).
//! - `GET /metrics`: the process's metrics ([`crate::metrics`]).
//!
//! Writers and readers answer these on their internal HTTP listener beside the internal
//! API; gateways and the compactor loop, which have no HTTP API, bind a listener of their
//! own ([`OpsServer`]), where a role may add GET endpoints of its own ([`ExtraRoutes`]: the
//! gateway's key compaction status).

use crate::clock::Instant;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::error::StartError;
use crate::metastore::Cluster;
use crate::objstore::SharedObjectStore;
use crate::rpc::text_response;
use crate::shutdown::Shutdown;

/// Liveness.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness.
pub const READYZ_PATH: &str = "/readyz";
/// Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

/// A probe's answer is reused this long, so a burst of probes costs one round trip each to
/// PostgreSQL and S3.
const PROBE_REUSE: Duration = Duration::from_secs(1);
/// Longest a dependency may take to answer a readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether a role can do its work; see the module documentation.
#[derive(Clone)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
}

/// True while the role holds its registry lease.
pub type RegistrationCheck = Arc<dyn Fn() -> bool + Send + Sync>;

struct ReadinessInner {
    metastore: Arc<dyn Cluster>,
    objects: SharedObjectStore,
    registered: Option<RegistrationCheck>,
    shutdown: Shutdown,
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl Readiness {
    /// Readiness of a role using these backends; `registered` when the role must hold a
    /// registry lease to be found; not ready once `shutdown` fired.
    pub fn new(
        metastore: Arc<dyn Cluster>,
        objects: SharedObjectStore,
        registered: Option<RegistrationCheck>,
        shutdown: Shutdown,
    ) -> Readiness {
        Readiness {
            inner: Arc::new(ReadinessInner {
                metastore,
                objects,
                registered,
                shutdown,
                last: Mutex::new(None),
            }),
        }
    }

    /// `Ok` when ready, else why not.
    pub async fn check(&self) -> Result<(), String> {
        let inner = &self.inner;
        if inner.shutdown.is_triggered() {
            return Err("shutting down".into());
        }
        if let Some(registered) = &inner.registered
            && !registered()
        {
            return Err("registry lease not held".into());
        }
        let mut last = inner.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < PROBE_REUSE
        {
            return result.clone();
        }
        let result = self.probe().await;
        *last = Some((crate::clock::now(), result.clone()));
        result
    }

    async fn probe(&self) -> Result<(), String> {
        let inner = &self.inner;
        match tokio::time::timeout(PROBE_TIMEOUT, inner.metastore.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("postgres: {e}")),
            Err(_) => return Err("postgres: no answer within 3 s".into()),
        }
        match tokio::time::timeout(PROBE_TIMEOUT, inner.objects.probe()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("s3: {e}")),
            Err(_) => Err("s3: no answer within 3 s".into()),
        }
    }
}

/// Answers `request` if it is one of the operations endpoints, else `None`.
pub async fn respond<B>(
    request: &Request<B>,
    readiness: &Readiness,
) -> Option<Response<Full<Bytes>>> {
    if request.method() != Method::GET {
        return None;
    }
    let response = match request.uri().path() {
        HEALTHZ_PATH => text_response(StatusCode::OK, "ok\n"),
        READYZ_PATH => match readiness.check().await {
            Ok(()) => text_response(StatusCode::OK, "ready\n"),
            Err(why) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        METRICS_PATH => {
            let mut response = text_response(StatusCode::OK, crate::metrics::render());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            response
        }
        _ => return None,
    };
    Some(response)
}

/// A role's own GET endpoints on its operations listener: given a request's path, the
/// answer, or `None` when the path is not one of them.
pub type ExtraRoutes = Arc<
    dyn Fn(String) -> futures::future::BoxFuture<'static, Option<Response<Full<Bytes>>>>
        + Send
        + Sync,
>;

/// A listener serving only the operations endpoints, for roles without an HTTP API.
pub struct OpsServer {
    listener: TcpListener,
}

impl OpsServer {
    /// Binds `addr` (port 0 picks one).
    pub async fn bind(addr: &str) -> Result<OpsServer, StartError> {
        let (listener, _) = crate::rpc::bind(addr).await?;
        Ok(OpsServer { listener })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`.
    pub async fn run(self, readiness: Readiness, shutdown: Shutdown) {
        self.run_with(readiness, None, shutdown).await;
    }

    /// Serves until `shutdown`, with a role's own GET endpoints beside the common ones.
    pub async fn run_with(
        self,
        readiness: Readiness,
        extra: Option<ExtraRoutes>,
        shutdown: Shutdown,
    ) {
        crate::rpc::serve(
            self.listener,
            move |request| {
                let readiness = readiness.clone();
                let extra = extra.clone();
                async move {
                    if let Some(response) = respond(&request, &readiness).await {
                        return response;
                    }
                    if let Some(extra) = extra
                        && request.method() == Method::GET
                        && let Some(response) = extra(request.uri().path().to_owned()).await
                    {
                        return response;
                    }
                    text_response(StatusCode::NOT_FOUND, "no such endpoint\n")
                }
            },
            shutdown,
        )
        .await;
    }
}
