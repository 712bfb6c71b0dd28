//! The gateway role: the Kafka wire-protocol front door.
//!
//! A gateway owns client connections and nothing else that must survive it: topics and
//! offsets live in PostgreSQL, records in S3. Modules, outside in:
//! - [`connection`]: framing (size cap before allocation), header decoding, pipelined
//!   requests answered in order, a span per request.
//! - [`handlers`]: one file per Kafka API with the versions it supports beside its code;
//!   the ApiVersions answer is generated from their table.
//! - [`cluster`]: this gateway's registration and the live gateways it reports as brokers.
//! - [`topics`]: a short-lived cache of topic metadata, topic-name and config validation.
//! - [`writers`]: which writer a connection's produce requests go to, with failover.
//! - [`readers`]: which reader serves a fetched partition, with failover.
//! - [`producer_ids`]: producer ids for InitProducerId, from blocks reserved in PostgreSQL.
//! - [`deadlines`]: the commit deadline each produce carries, in PostgreSQL's clock.
//! - [`groups`]: consumer group coordination for the groups this gateway owns.
//! - [`compaction_status`]: where key compaction stands in a topic's partitions, on the
//!   operations listener (`yaks topic describe` shows it).

pub mod cluster;
pub mod compaction_status;
pub mod connection;
pub mod deadlines;
pub mod groups;
pub mod handlers;
pub mod produce_order;
pub mod producer_ids;
pub mod readers;
pub mod topics;
pub mod writers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{info, warn};
use yaks_common::clock::SharedClock;
use yaks_common::config::{GatewayConfig, RegistryConfig};
use yaks_common::error::StartError;
use yaks_common::metastore::{Cluster, Groups, Log, Producers, Topics};
use yaks_common::objstore::SharedObjectStore;
use yaks_common::ops::{OpsServer, Readiness};
use yaks_common::shutdown::Shutdown;

use crate::cluster::ClusterView;
use crate::deadlines::ServerClock;
use crate::groups::Coordinator;
use crate::groups::state::GroupSettings;
use crate::producer_ids::ProducerIds;
use crate::readers::ReaderPool;
use crate::topics::TopicCache;
use crate::writers::WriterPool;

/// The metastore domains a gateway uses: every one but the compactor's objects.
pub trait GatewayStore: Cluster + Topics + Log + Producers + Groups {}

impl<T: Cluster + Topics + Log + Producers + Groups + ?Sized> GatewayStore for T {}

/// What every request handler can reach.
pub struct GatewayState {
    /// Gateway settings.
    pub config: GatewayConfig,
    /// Topics, offsets, registry.
    pub metastore: Arc<dyn GatewayStore>,
    /// Record data, read by ListOffsets time lookups.
    pub objects: SharedObjectStore,
    /// Who we are and who else is alive.
    pub cluster: ClusterView,
    /// Topic metadata cache.
    pub topics: TopicCache,
    /// Produce routing.
    pub writers: WriterPool,
    /// Fetch routing.
    pub readers: ReaderPool,
    /// Producer ids for InitProducerId.
    pub producer_ids: ProducerIds,
    /// Stamps producer epochs.
    pub clock: SharedClock,
    /// The metastore's clock, which produce commit deadlines are set in.
    pub server_clock: ServerClock,
    /// Consumer groups this gateway coordinates.
    pub groups: Arc<Coordinator>,
    /// Budget of request bytes read and not yet answered, over all connections, in KiB
    /// (`gateway.max_in_flight_bytes`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    next_connection_id: AtomicU64,
}

/// A bound, not yet serving gateway.
pub struct Gateway {
    listener: TcpListener,
    ops: OpsServer,
    state: Arc<GatewayState>,
}

impl Gateway {
    /// Binds the Kafka listener and registers this gateway in the service registry.
    pub async fn bind(
        config: GatewayConfig,
        registry: RegistryConfig,
        metastore: Arc<dyn GatewayStore>,
        objects: SharedObjectStore,
        clock: SharedClock,
    ) -> Result<Gateway, StartError> {
        let (listener, local) = yaks_common::rpc::bind(&config.listen_addr).await?;
        let ops = OpsServer::bind(&config.http_addr).await?;
        let advertised = advertised_addr(&config, local).await?;
        let cluster = ClusterView::register(metastore.clone(), registry, advertised).await?;
        let server_clock = ServerClock::sample(clock.clone(), metastore.as_ref()).await?;
        let groups = Arc::new(Coordinator::new(
            metastore.clone(),
            cluster.clone(),
            clock.clone(),
            GroupSettings {
                initial_rebalance_delay: std::time::Duration::from_millis(
                    config.group_initial_rebalance_delay_ms,
                ),
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
            },
        ));
        let in_flight = Arc::new(tokio::sync::Semaphore::new(
            (config.max_in_flight_bytes / 1024) as usize,
        ));
        let state = Arc::new(GatewayState {
            in_flight,
            server_clock,
            groups,
            topics: TopicCache::new(metastore.clone()),
            writers: WriterPool::new(config.writer_urls.clone(), cluster.clone()),
            readers: ReaderPool::new(config.reader_urls.clone()),
            producer_ids: ProducerIds::new(metastore.clone()),
            clock,
            config,
            metastore,
            objects,
            cluster,
            next_connection_id: AtomicU64::new(1),
        });
        Ok(Gateway {
            listener,
            ops,
            state,
        })
    }

    /// The bound Kafka address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound address of `/healthz`, `/readyz` and `/metrics`.
    pub fn ops_addr(&self) -> std::io::Result<SocketAddr> {
        self.ops.local_addr()
    }

    /// Shared state, for tests and the dev harness.
    pub fn state(&self) -> Arc<GatewayState> {
        self.state.clone()
    }

    /// Serves clients until `shutdown`; then stops accepting, lets in-flight requests
    /// finish, and leaves the registry.
    pub async fn run(self, mut shutdown: Shutdown) {
        let Gateway {
            listener,
            ops,
            state,
        } = self;
        info!(addr = ?listener.local_addr().ok(), ops = ?ops.local_addr().ok(),
              node_id = state.cluster.node_id(), "gateway listening");
        // The operations endpoints outlive the Kafka listener: /readyz says "shutting down"
        // while connections drain, /healthz stays up until the gateway is gone.
        let cluster = state.cluster.clone();
        let readiness = Readiness::new(
            state.metastore.clone(),
            state.objects.clone(),
            Some(Arc::new(move || cluster.lease_held())),
            shutdown.clone(),
        );
        let (ops_trigger, ops_shutdown) = Shutdown::new();
        let status = compaction_status::routes(state.metastore.clone(), state.clock.clone());
        let ops_task = tokio::spawn(ops.run_with(readiness, Some(status), ops_shutdown));
        let heartbeat = tokio::spawn(state.cluster.clone().heartbeat(shutdown.clone()));
        let clock_state = state.clone();
        let clock_shutdown = shutdown.clone();
        let sampling = tokio::spawn(async move {
            clock_state
                .server_clock
                .keep(clock_state.metastore.clone(), clock_shutdown)
                .await
        });
        let ownership = tokio::spawn(state.groups.clone().keep_ownership(shutdown.clone()));
        let lag = tokio::spawn(groups::lag::report(
            state.groups.clone(),
            state.metastore.clone(),
            shutdown.clone(),
        ));
        let mut connections = JoinSet::new();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = yaks_common::rpc::accept(&listener) => accepted,
                _ = shutdown.wait() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let id = state.next_connection_id.fetch_add(1, Ordering::Relaxed);
            connections.spawn(connection::serve(
                state.clone(),
                stream,
                peer,
                id,
                shutdown.clone(),
            ));
        }
        drop(listener);
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(std::time::Duration::from_secs(30), drain)
            .await
            .is_err()
        {
            warn!("connections still open after 30 s; closing them");
        }
        let _ = heartbeat.await;
        let _ = sampling.await;
        let _ = ownership.await;
        let _ = lag.await;
        state.groups.shutdown().await;
        state.cluster.deregister().await;
        ops_trigger.trigger();
        let _ = ops_task.await;
        info!("gateway stopped");
    }
}

async fn advertised_addr(
    config: &GatewayConfig,
    local: SocketAddr,
) -> Result<(String, u16), StartError> {
    let text = match &config.advertised_addr {
        Some(addr) => addr.clone(),
        None => match yaks_common::advertise::reachable_ip(local).await? {
            Some(ip) => SocketAddr::new(ip, local.port()).to_string(),
            None => {
                return Err(StartError::Config(
                    "`gateway.advertised_addr` must be set when listening on all interfaces \
                     (clients need an address to connect to)"
                        .into(),
                ));
            }
        },
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(|| {
        StartError::Config(format!(
            "`gateway.advertised_addr` {text:?} is not host:port"
        ))
    })?;
    let port = port.parse::<u16>().map_err(|_| {
        StartError::Config(format!("`gateway.advertised_addr` {text:?} has a bad port"))
    })?;
    let port = if port == 0 { local.port() } else { port };
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}
