//! The reader role: serves Fetch from S3 through a hybrid memory/disk cache.
//!
//! Gateways route each fetched partition to one reader (rendezvous hashing of the partition
//! over the live readers), so an object tends to be cached by one reader. Modules, in the
//! order a fetch uses them:
//! - [`fetch`]: plans a fetch from the index, reads the byte ranges, patches base offsets,
//!   honours the byte limits and long-polls on commit notifications;
//! - [`tail`]: the in-memory index of recent commits, fed by PostgreSQL NOTIFY, so tailing
//!   consumers cost no query per fetch;
//! - [`cache`]: the foyer hybrid cache of aligned object blocks, one ranged GET per miss;
//! - [`clean`]: offset ranges known to hold no aborted transaction, so read_committed
//!   fetches over them ask PostgreSQL nothing.
//!
//! The internal HTTP endpoint (`POST /v1/fetch`, and `/healthz`, `/readyz`, `/metrics`) is
//! in this file; a reader registers in the service registry with a lease so gateways find it.

pub mod cache;
pub mod clean;
pub mod fetch;
pub mod tail;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use kafka_protocol::messages::FetchRequest;
use tokio::net::TcpListener;
use tracing::{Instrument, info, warn};
use yaks_common::advertise::advertised_url;
use yaks_common::config::{ReaderConfig, RegistryConfig};
use yaks_common::error::StartError;
use yaks_common::kafka;
use yaks_common::metastore::{Cluster, Log, Role, Topics, Transactions};
use yaks_common::metrics::metrics;
use yaks_common::objstore::SharedObjectStore;
use yaks_common::ops::{self, Readiness};
use yaks_common::registry::Lease;
use yaks_common::rpc::{
    FETCH_PATH, INTERNAL_FETCH_VERSION, PeerToken, refuse_unauthenticated, text_response,
};
use yaks_common::shutdown::Shutdown;

use crate::cache::BlockCache;
use crate::fetch::FetchService;
use crate::tail::TailIndex;

/// Largest internal fetch request body: partitions and offsets only, never records.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The metastore domains a reader uses: the log it serves (offsets, the index, the commit
/// feed), topic names for its metrics, and the cluster it registers in.
pub trait ReaderStore: Cluster + Topics + Log + Transactions {}

impl<T: Cluster + Topics + Log + Transactions + ?Sized> ReaderStore for T {}

/// A bound, registered, not yet serving reader.
pub struct Reader {
    listener: TcpListener,
    service: FetchService,
    cache: BlockCache,
    tail: Arc<TailIndex>,
    metastore: Arc<dyn ReaderStore>,
    feed: tokio::sync::mpsc::Receiver<yaks_common::metastore::CommitEvent>,
    lease: Arc<Lease>,
    objects: SharedObjectStore,
    peer_token: Option<PeerToken>,
}

impl Reader {
    /// Binds the internal listener, opens the cache, subscribes to commits and registers.
    pub async fn bind(
        config: ReaderConfig,
        registry: RegistryConfig,
        metastore: Arc<dyn ReaderStore>,
        objects: SharedObjectStore,
        peer_token: Option<PeerToken>,
    ) -> Result<Reader, StartError> {
        let (listener, local) = yaks_common::rpc::bind(&config.listen_addr).await?;
        let url = advertised_url(config.advertised_url.as_deref(), local, "reader").await?;
        let cache = BlockCache::open(&config, objects.clone()).await?;
        let tail = Arc::new(TailIndex::default());
        // Subscribe before serving: every commit after this point reaches the tail index.
        let feed = metastore.commit_feed().await?;
        let service = FetchService::new(metastore.clone(), cache.clone(), tail.clone());
        let lease = Arc::new(Lease::acquire(metastore.clone(), registry, Role::Reader, url).await?);
        Ok(Reader {
            listener,
            service,
            cache,
            tail,
            metastore,
            feed,
            lease,
            objects,
            peer_token,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The URL this reader registered.
    pub fn url(&self) -> &str {
        self.lease.address()
    }

    /// The cache, for its counters.
    pub fn cache(&self) -> &BlockCache {
        &self.cache
    }

    /// Serves until `shutdown`: leaves the registry at once so gateways stop routing here
    /// while open fetches finish, then closes the cache.
    pub async fn run(self, shutdown: Shutdown) {
        let Reader {
            listener,
            service,
            cache,
            tail,
            metastore,
            feed,
            lease,
            objects,
            peer_token,
        } = self;
        let held = lease.clone();
        let readiness = Readiness::new(
            metastore.clone(),
            objects,
            Some(Arc::new(move || held.is_held())),
            shutdown.clone(),
        );
        info!(addr = ?listener.local_addr().ok(), url = lease.address(), "reader listening");
        let follower = tokio::spawn(tail::follow(metastore, feed, tail, shutdown.clone()));
        // On shutdown the lease is released at once, while open fetches drain.
        let keeper = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                lease.keep(shutdown).await;
                lease.release().await;
            })
        };
        let server = yaks_common::rpc::serve(
            listener,
            move |request| {
                let service = service.clone();
                let readiness = readiness.clone();
                let peer_token = peer_token.clone();
                async move { handle(&service, &readiness, peer_token.as_ref(), request).await }
            },
            shutdown,
        );
        server.await;
        let _ = keeper.await;
        let _ = follower.await;
        cache.close().await;
        info!("reader stopped");
    }
}

async fn handle(
    service: &FetchService,
    readiness: &Readiness,
    peer_token: Option<&PeerToken>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if let Some(answer) = ops::respond(&request, readiness).await {
        return answer;
    }
    if let Some(refusal) = refuse_unauthenticated(peer_token, request.headers(), FETCH_PATH) {
        return refusal;
    }
    match (request.method(), request.uri().path()) {
        (&Method::POST, FETCH_PATH) => {
            let started = yaks_common::clock::now();
            let span = tracing::info_span!("fetch", trace_id = tracing::field::Empty);
            yaks_common::telemetry::continue_trace(&span, request.headers());
            let response = fetch(service, request).instrument(span).await;
            metrics()
                .reader
                .fetch_duration
                .observe(started.elapsed().as_secs_f64());
            response
        }
        _ => text_response(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

async fn fetch(service: &FetchService, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => return text_response(StatusCode::BAD_REQUEST, format!("reading body: {e}")),
    };
    let request: FetchRequest = match kafka::decode(body, INTERNAL_FETCH_VERSION) {
        Ok(request) => request,
        Err(e) => {
            warn!(error = %e, "undecodable internal fetch request");
            return text_response(StatusCode::BAD_REQUEST, format!("decoding: {e}"));
        }
    };
    let response = service.fetch(request).await;
    match kafka::encode(&response, INTERNAL_FETCH_VERSION) {
        Ok(bytes) => Response::new(Full::new(bytes)),
        Err(e) => {
            warn!(error = %e, "encoding an internal fetch response failed");
            text_response(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding: {e}"))
        }
    }
}
