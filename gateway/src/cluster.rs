//! This gateway's place in the cluster.
//!
//! Each gateway registers in the service registry with a lease and renews it; its registry
//! node id is its Kafka broker id. Metadata answers list the live gateways as brokers and
//! give each partition a leader chosen by rendezvous hashing over them, so every gateway
//! tells clients the same thing and connections spread evenly. Any gateway can serve any
//! partition; "leader" only steers where clients connect. The same refresh reads the live
//! readers and writers, which Fetch and Produce are routed to when `gateway.reader_urls` /
//! `gateway.writer_urls` are empty. Consumer groups
//! are spread the same way: a group's coordinator is the rendezvous choice for its id.

use std::sync::{Arc, RwLock};

use tracing::{debug, warn};
use uuid::Uuid;
use yaks_common::config::RegistryConfig;
use yaks_common::error::StoreError;
use yaks_common::hashing::rendezvous;
use yaks_common::metastore::{Cluster, Role, ServiceMember};
use yaks_common::registry::Lease;
use yaks_common::shutdown::Shutdown;

use crate::listeners::{Endpoint, parse_registry_address};

/// A gateway as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Broker id.
    pub node_id: i32,
    /// Where clients reach it, one per listener.
    pub endpoints: Vec<Endpoint>,
}

impl Broker {
    /// Where a client that came in on `listener` reaches this broker; `None` if it has no
    /// such listener.
    pub fn endpoint(&self, listener: &str) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|e| e.listener == listener)
            .or_else(|| self.endpoints.iter().find(|e| e.listener.is_empty()))
    }
}

struct Inner {
    lease: Lease,
    cluster_id: String,
    brokers: RwLock<Vec<Broker>>,
    readers: RwLock<Vec<ServiceMember>>,
    writers: RwLock<Vec<String>>,
}

/// Shared view of the live gateways and readers, refreshed with every lease renewal.
#[derive(Clone)]
pub struct ClusterView {
    inner: Arc<Inner>,
}

impl ClusterView {
    /// Registers this gateway, reachable at `address` (its listeners'
    /// [`registry_address`](crate::listeners::registry_address)), and reads the current
    /// members.
    pub async fn register(
        metastore: Arc<dyn Cluster>,
        registry: RegistryConfig,
        address: String,
    ) -> Result<ClusterView, StoreError> {
        let lease = Lease::acquire(metastore.clone(), registry, Role::Gateway, address).await?;
        let cluster_id = metastore.cluster_id().await?;
        let view = ClusterView {
            inner: Arc::new(Inner {
                lease,
                cluster_id,
                brokers: RwLock::new(Vec::new()),
                readers: RwLock::new(Vec::new()),
                writers: RwLock::new(Vec::new()),
            }),
        };
        view.refresh_members().await?;
        Ok(view)
    }

    /// True while this gateway's registry lease is held (others see it as alive).
    pub fn lease_held(&self) -> bool {
        self.inner.lease.is_held()
    }

    /// This gateway's broker id.
    pub fn node_id(&self) -> i32 {
        self.inner.lease.node_id()
    }

    /// The cluster id stored in PostgreSQL.
    pub fn cluster_id(&self) -> &str {
        &self.inner.cluster_id
    }

    /// Live gateways, always including this one, by node id.
    pub fn brokers(&self) -> Vec<Broker> {
        self.inner
            .brokers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The broker clients should send a partition's requests to.
    pub fn leader_of(brokers: &[Broker], topic_id: Uuid, partition: i32) -> i32 {
        let mut key = [0u8; 20];
        key[..16].copy_from_slice(topic_id.as_bytes());
        key[16..].copy_from_slice(&partition.to_be_bytes());
        rendezvous(&key, brokers, |b| i64::from(b.node_id))
            .map(|b| b.node_id)
            .unwrap_or(-1)
    }

    /// The gateway coordinating a consumer group: rendezvous hashing of the group id over
    /// the live gateways, so every gateway names the same one.
    pub fn coordinator_of(&self, group_id: &str) -> Option<Broker> {
        let brokers = self.brokers();
        rendezvous(group_id.as_bytes(), &brokers, |b| i64::from(b.node_id)).cloned()
    }

    fn set_members(&self, members: Vec<ServiceMember>) {
        let mut brokers: Vec<Broker> = members
            .into_iter()
            .map(|m| Broker {
                node_id: m.node_id,
                endpoints: parse_registry_address(&m.address),
            })
            .filter(|b| !b.endpoints.is_empty())
            .collect();
        let node_id = self.node_id();
        if !brokers.iter().any(|b| b.node_id == node_id) {
            // Our own lease may have lapsed in the registry's eyes; we are alive regardless.
            brokers.push(Broker {
                node_id,
                endpoints: parse_registry_address(self.inner.lease.address()),
            });
            brokers.sort_by_key(|b| b.node_id);
        }
        *self
            .inner
            .brokers
            .write()
            .unwrap_or_else(|p| p.into_inner()) = brokers;
    }

    /// Live readers in the registry, by node id.
    pub fn live_readers(&self) -> Vec<ServiceMember> {
        self.inner
            .readers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Base URLs of the live writers in the registry, in node-id order.
    pub fn live_writers(&self) -> Vec<String> {
        self.inner
            .writers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn refresh_members(&self) -> Result<(), StoreError> {
        let metastore = self.inner.lease.metastore();
        let gateways = metastore.live_members(Role::Gateway).await?;
        debug!(count = gateways.len(), "live gateways");
        self.set_members(gateways);
        let readers = metastore.live_members(Role::Reader).await?;
        *self
            .inner
            .readers
            .write()
            .unwrap_or_else(|p| p.into_inner()) = readers;
        let mut writers = metastore.live_members(Role::Writer).await?;
        writers.sort_by_key(|w| w.node_id);
        *self
            .inner
            .writers
            .write()
            .unwrap_or_else(|p| p.into_inner()) = writers.into_iter().map(|w| w.address).collect();
        Ok(())
    }

    /// Renews the lease and refreshes members every `heartbeat_ms` until `shutdown`.
    pub async fn heartbeat(self, mut shutdown: Shutdown) {
        while self.inner.lease.wait_heartbeat(&mut shutdown).await {
            if let Err(e) = self.inner.lease.renew().await {
                warn!(error = %e, "renewing gateway lease failed");
                continue;
            }
            if let Err(e) = self.refresh_members().await {
                warn!(error = %e, "reading live members failed");
            }
        }
    }

    /// Leaves the registry at clean shutdown so clients stop being sent here at once.
    pub async fn deregister(&self) {
        self.inner.lease.release().await;
    }
}
