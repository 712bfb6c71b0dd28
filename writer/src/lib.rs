//! The writer role: produce buffering, one S3 object per flush, one commit per object.
//!
//! The write path of DESIGN.md, in the order bytes travel:
//! - [`server`]: the internal HTTP endpoint; decodes a `ProduceRequest` from a gateway,
//!   reserves buffer room before reading a body (back-pressure that also bounds memory),
//!   accepts it, and streams the answer after commit.
//! - [`batcher`]: the open buffer, flushed at `flush_bytes` or `flush_interval`; each flush
//!   becomes one object in which each partition's batches form one contiguous byte range.
//! - [`committer`]: uploads flushes (several may overlap), then commits them to PostgreSQL
//!   strictly in flush order, then answers every request with its real base offsets. The
//!   commit applies the idempotent-producer rules, so a retry is never stored twice,
//!   whichever writer it reaches.
//! - [`expiry`]: forgets idempotent-producer state after `producer_id_expiration_ms`, off
//!   the produce path.
//!
//! A produce is answered only after its object is uploaded and its offsets are committed.

pub mod batcher;
pub mod committer;
pub mod expiry;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::info;
use yaks_common::advertise::advertised_url;
use yaks_common::clock::SharedClock;
use yaks_common::config::{RegistryConfig, S3Config, WriterConfig};
use yaks_common::error::StartError;
use yaks_common::failpoint::FailPoints;
use yaks_common::metastore::{Cluster, Log, Producers, Role, Topics};
use yaks_common::objstore::SharedObjectStore;
use yaks_common::ops::Readiness;
use yaks_common::registry::Lease;
use yaks_common::shutdown::Shutdown;

/// The metastore domains a writer uses: the log it commits flushes to, the producer state
/// it expires, topic names for its metrics, and the cluster it registers in.
pub trait WriterStore: Cluster + Topics + Log + Producers {}

impl<T: Cluster + Topics + Log + Producers + ?Sized> WriterStore for T {}

/// What a writer needs to run.
#[derive(Clone)]
pub struct WriterContext {
    /// Writer settings.
    pub config: WriterConfig,
    /// For the key prefix.
    pub s3: S3Config,
    /// Offsets and the index.
    pub metastore: Arc<dyn WriterStore>,
    /// Where flushed objects go.
    pub objects: SharedObjectStore,
    /// Stamps object ids and producer state.
    pub clock: SharedClock,
    /// Failures tests inject between durability stages; none armed in production.
    pub fail_points: Arc<FailPoints>,
    /// The token produce requests must carry (`internal.token`); none: any peer is served.
    pub peer_token: Option<yaks_common::rpc::PeerToken>,
}

/// A bound, registered, not yet running writer; binding first lets callers learn the port.
pub struct Writer {
    listener: TcpListener,
    context: WriterContext,
    lease: Arc<Lease>,
}

impl Writer {
    /// Binds the internal HTTP listener and registers the writer, so gateways that
    /// discover writers in the registry send it produce requests.
    pub async fn bind(
        context: WriterContext,
        registry: RegistryConfig,
    ) -> Result<Writer, StartError> {
        let (listener, local) = yaks_common::rpc::bind(&context.config.listen_addr).await?;
        let url = advertised_url(context.config.advertised_url.as_deref(), local, "writer").await?;
        let lease =
            Arc::new(Lease::acquire(context.metastore.clone(), registry, Role::Writer, url).await?);
        Ok(Writer {
            listener,
            context,
            lease,
        })
    }

    /// The URL this writer registered.
    pub fn url(&self) -> &str {
        self.lease.address()
    }

    /// The writer's fail points, for tests that inject failures.
    pub fn fail_points(&self) -> Arc<FailPoints> {
        self.context.fail_points.clone()
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then stops accepting, flushes, commits, answers and returns.
    pub async fn run(self, shutdown: Shutdown) {
        let addr = self.listener.local_addr().ok();
        info!(?addr, "writer listening");
        let (committer, committer_task) = committer::Committer::start(self.context.clone());
        let (batcher, batcher_task) =
            batcher::Batcher::start(self.context.clone(), committer, shutdown.clone());
        let expiry_task = tokio::spawn(expiry::run(self.context.clone(), shutdown.clone()));
        let held = self.lease.clone();
        let readiness = Readiness::new(
            self.context.metastore.clone(),
            self.context.objects.clone(),
            Some(Arc::new(move || held.is_held())),
            shutdown.clone(),
        );
        // Leaves the registry as soon as shutdown starts, so gateways stop choosing this
        // writer while it drains.
        let keeper = {
            let lease = self.lease.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                lease.keep(shutdown).await;
                lease.release().await;
            })
        };
        let handler = server::Handler::new(
            Arc::new(batcher),
            readiness,
            self.context.peer_token.clone(),
        );
        yaks_common::rpc::serve(
            self.listener,
            move |request| {
                let handler = handler.clone();
                async move { handler.handle(request).await }
            },
            shutdown,
        )
        .await;
        // Every sender is gone once the server returned: the batcher drains and ends, then
        // the committer commits what is left and ends.
        let _ = batcher_task.await;
        let _ = committer_task.await;
        let _ = expiry_task.await;
        let _ = keeper.await;
        info!("writer stopped");
    }
}
