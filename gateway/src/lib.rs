//! The gateway role: the Kafka wire-protocol front door.
//!
//! A gateway owns client connections and nothing else that must survive it: topics and
//! offsets live in PostgreSQL, records in S3. Modules, outside in:
//! - [`listeners`]: the named Kafka listeners and the addresses advertised for each.
//! - [`security`]: principals, and TLS with certificates read again when they change.
//! - [`connection`]: the TLS handshake on TLS listeners, framing (size cap before
//!   allocation), header decoding, pipelined requests answered in order, a span per request.
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
pub mod listeners;
pub mod produce_order;
pub mod producer_ids;
pub mod readers;
pub mod security;
pub mod topics;
pub mod transactions;
pub mod writers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{info, warn};
use yaks_common::clock::SharedClock;
use yaks_common::config::{GatewayConfig, RegistryConfig};
use yaks_common::error::StartError;
use yaks_common::metastore::{
    AclBindings, Cluster, Credentials, Groups, Log, Producers, Topics, Transactions,
};
use yaks_common::objstore::SharedObjectStore;
use yaks_common::ops::{OpsServer, Readiness};
use yaks_common::rpc::{PeerToken, RpcClient};
use yaks_common::shutdown::Shutdown;

use crate::cluster::ClusterView;
use crate::connection::Entrance;
use crate::deadlines::ServerClock;
use crate::groups::Coordinator;
use crate::groups::state::GroupSettings;
use crate::listeners::Listener;
use crate::producer_ids::ProducerIds;
use crate::readers::ReaderPool;
use crate::security::authorizer::Authorizer;
use crate::security::oauth::TokenVerifier;
use crate::security::tls::Tls;
use crate::topics::TopicCache;
use crate::transactions::TxnCoordinator;
use crate::writers::WriterPool;

/// The metastore domains a gateway uses: every one but the compactor's objects.
pub trait GatewayStore:
    Cluster + Topics + Log + Producers + Groups + Credentials + AclBindings + Transactions
{
}

impl<T> GatewayStore for T where
    T: Cluster
        + Topics
        + Log
        + Producers
        + Groups
        + Credentials
        + AclBindings
        + Transactions
        + ?Sized
{
}

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
    /// Ends transactions, writing their markers.
    pub transactions: Arc<TxnCoordinator>,
    /// Checks OAUTHBEARER tokens, when that mechanism is offered.
    pub oauth: Option<Arc<TokenVerifier>>,
    /// Decides what each principal may do.
    pub authorizer: Arc<Authorizer>,
    /// Budget of request bytes read and not yet answered, over all connections, in KiB
    /// (`gateway.max_in_flight_bytes`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    next_connection_id: AtomicU64,
}

/// A bound, not yet serving gateway.
pub struct Gateway {
    listeners: Vec<Listener>,
    tls: Option<Arc<Tls>>,
    ops: OpsServer,
    state: Arc<GatewayState>,
}

impl Gateway {
    /// Binds the Kafka listeners and registers this gateway in the service registry; its
    /// requests to writers and readers carry `peer_token`.
    pub async fn bind(
        config: GatewayConfig,
        registry: RegistryConfig,
        metastore: Arc<dyn GatewayStore>,
        objects: SharedObjectStore,
        key_prefix: String,
        clock: SharedClock,
        peer_token: Option<PeerToken>,
    ) -> Result<Gateway, StartError> {
        // Certificates first: a TLS listener whose files do not load stops start-up before
        // anything is bound or registered.
        let tls = if config
            .effective_listeners()
            .iter()
            .any(|l| l.security_protocol.uses_tls())
        {
            Some(Tls::load(config.tls.clone()).map_err(|e| StartError::Config(e.to_string()))?)
        } else {
            None
        };
        let oauth = if config.sasl.mechanisms.iter().any(|m| m == "OAUTHBEARER") {
            let verifier =
                TokenVerifier::new(config.sasl.oauthbearer.clone()).map_err(StartError::Config)?;
            Some(Arc::new(verifier))
        } else {
            None
        };
        // ACLs before the listeners: no request is decided without them.
        let authorizer = Arc::new(Authorizer::new(&config.authorization));
        if authorizer.enabled() {
            authorizer.reload(metastore.as_ref()).await?;
        }
        let listeners = listeners::bind_all(&config).await?;
        let ops = OpsServer::bind(&config.http_addr).await?;
        let addresses = listeners::registry_addresses(&listeners);
        let cluster = ClusterView::register(metastore.clone(), registry, addresses).await?;
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
        let transactions = Arc::new(TxnCoordinator::new(metastore.clone(), key_prefix));
        let state = Arc::new(GatewayState {
            transactions,
            oauth,
            authorizer,
            in_flight,
            server_clock,
            groups,
            topics: TopicCache::new(metastore.clone()),
            writers: WriterPool::new(config.writer_urls.clone(), cluster.clone())
                .with_rpc(RpcClient::with_token(peer_token.clone())),
            readers: ReaderPool::new(config.reader_urls.clone())
                .with_rpc(RpcClient::with_token(peer_token)),
            producer_ids: ProducerIds::new(metastore.clone()),
            clock,
            config,
            metastore,
            objects,
            cluster,
            next_connection_id: AtomicU64::new(1),
        });
        Ok(Gateway {
            listeners,
            tls,
            ops,
            state,
        })
    }

    /// The bound address of the first Kafka listener.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self.listeners.first() {
            Some(listener) => listener.tcp.local_addr(),
            None => Err(std::io::Error::other("no listener")),
        }
    }

    /// The bound address of the listener called `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| &*l.name == name)
            .and_then(|l| l.tcp.local_addr().ok())
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
            listeners,
            tls,
            ops,
            state,
        } = self;
        for listener in &listeners {
            info!(listener = %listener.name, broker = listener.broker, protocol = listener.protocol.name(),
                  addr = ?listener.tcp.local_addr().ok(), "kafka listener");
        }
        info!(ops = ?ops.local_addr().ok(), node_ids = ?state.cluster.node_ids(), "gateway listening");
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
        let expiry = tokio::spawn(
            state
                .transactions
                .clone()
                .abort_expired(state.clone(), shutdown.clone()),
        );
        let lag = tokio::spawn(groups::lag::report(
            state.groups.clone(),
            state.metastore.clone(),
            shutdown.clone(),
        ));
        let acls = tokio::spawn(
            state
                .authorizer
                .clone()
                .keep_fresh(state.metastore.clone(), shutdown.clone()),
        );
        let reload = tls
            .clone()
            .map(|tls| tokio::spawn(tls.keep_fresh(shutdown.clone())));
        // Each listener accepts in a task of its own and hands connections here, where
        // they are tracked for the drain at shutdown.
        let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel(64);
        let mut accepting = JoinSet::new();
        for listener in listeners {
            let entrance = Entrance {
                listener: listener.name.clone(),
                tls: listener.protocol.uses_tls().then(|| tls.clone()).flatten(),
                sasl: listener.protocol.uses_sasl(),
            };
            accepting.spawn(accept(
                listener.tcp,
                entrance,
                accepted_tx.clone(),
                shutdown.clone(),
            ));
        }
        drop(accepted_tx);
        let mut connections = JoinSet::new();
        loop {
            let (stream, peer, entrance) = tokio::select! {
                Some(accepted) = accepted_rx.recv() => accepted,
                _ = shutdown.wait() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let id = state.next_connection_id.fetch_add(1, Ordering::Relaxed);
            connections.spawn(connection::serve(
                state.clone(),
                stream,
                peer,
                id,
                entrance,
                shutdown.clone(),
            ));
        }
        // The listeners close with their tasks.
        while accepting.join_next().await.is_some() {}
        if let Some(reload) = reload {
            let _ = reload.await;
        }
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
        let _ = expiry.await;
        let _ = lag.await;
        let _ = acls.await;
        state.groups.shutdown().await;
        state.cluster.deregister().await;
        ops_trigger.trigger();
        let _ = ops_task.await;
        info!("gateway stopped");
    }
}

/// Accepts connections on `listener` until `shutdown`, handing each to the serving loop.
async fn accept(
    listener: TcpListener,
    entrance: Entrance,
    accepted: tokio::sync::mpsc::Sender<(TcpStream, SocketAddr, Entrance)>,
    mut shutdown: Shutdown,
) {
    loop {
        let (stream, peer) = tokio::select! {
            pair = yaks_common::rpc::accept(&listener) => pair,
            _ = shutdown.wait() => return,
        };
        if accepted
            .send((stream, peer, entrance.clone()))
            .await
            .is_err()
        {
            return;
        }
    }
}
