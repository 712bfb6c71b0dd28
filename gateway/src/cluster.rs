//! This gateway's place in the cluster.
//!
//! Each gateway registers in the service registry with a lease per broker it presents
//! (`gateway.brokers`, usually one) and renews them; a registration's node id is that
//! broker's Kafka broker id. Metadata answers list the live brokers and deal each topic's
//! partitions out to them in turn, from a place the topic id picks, so every gateway tells
//! clients the same thing and a topic's partitions spread evenly over the connections a
//! client opens. Any gateway can serve any partition; "leader" only steers where clients
//! connect. The same refresh reads the live readers and writers, which Fetch and Produce
//! are routed to when `gateway.reader_urls` / `gateway.writer_urls` are empty. Consumer
//! groups and transactional ids are spread by rendezvous hashing over the brokers, which
//! moves few of them when a gateway comes or goes.

use std::sync::{Arc, RwLock};

use tracing::{debug, warn};
use uuid::Uuid;
use yaks_common::config::RegistryConfig;
use yaks_common::error::StoreError;
use yaks_common::hashing::{rendezvous, stable_hash};
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
    /// One per broker this gateway presents, in broker order.
    leases: Vec<Lease>,
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
    /// Registers each broker of this gateway, reachable at `addresses` (its listeners'
    /// [`registry_addresses`](crate::listeners::registry_addresses)), and reads the
    /// current members.
    pub async fn register(
        metastore: Arc<dyn Cluster>,
        registry: RegistryConfig,
        addresses: Vec<String>,
    ) -> Result<ClusterView, StoreError> {
        let mut leases = Vec::with_capacity(addresses.len());
        for address in addresses {
            let acquired =
                Lease::acquire(metastore.clone(), registry.clone(), Role::Gateway, address).await;
            match acquired {
                Ok(lease) => leases.push(lease),
                Err(e) => {
                    for lease in &leases {
                        lease.release().await;
                    }
                    return Err(e);
                }
            }
        }
        if leases.is_empty() {
            return Err(StoreError::Invalid(
                "a gateway registers at least one broker".into(),
            ));
        }
        let cluster_id = metastore.cluster_id().await?;
        let view = ClusterView {
            inner: Arc::new(Inner {
                leases,
                cluster_id,
                brokers: RwLock::new(Vec::new()),
                readers: RwLock::new(Vec::new()),
                writers: RwLock::new(Vec::new()),
            }),
        };
        view.refresh_members().await?;
        Ok(view)
    }

    /// True while every one of this gateway's registry leases is held (others see all
    /// its brokers as alive).
    pub fn lease_held(&self) -> bool {
        self.inner.leases.iter().all(Lease::is_held)
    }

    /// The broker ids this gateway answers as, in broker order.
    pub fn node_ids(&self) -> Vec<i32> {
        self.inner.leases.iter().map(Lease::node_id).collect()
    }

    /// Whether `node_id` is one of this gateway's brokers.
    pub fn is_local(&self, node_id: i32) -> bool {
        self.inner.leases.iter().any(|l| l.node_id() == node_id)
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

    /// The broker clients should send a partition's requests to (`brokers` by node id):
    /// the topic's partitions are dealt out in turn, as Kafka assigns replicas, from a
    /// broker the topic id picks. Every broker then leads as many of a topic's partitions
    /// as any other, give or take one: a client writing to all of them keeps as many
    /// requests in flight as its connections allow. (Hashing each partition on its own
    /// would leave some broker twice its share, and the client waiting on that one.)
    pub fn leader_of(brokers: &[Broker], topic_id: Uuid, partition: i32) -> i32 {
        if brokers.is_empty() || partition < 0 {
            return -1;
        }
        let count = brokers.len() as u64;
        let first = stable_hash(topic_id.as_bytes()) % count;
        let index = (first + partition as u64 % count) % count;
        brokers[index as usize].node_id
    }

    /// The broker coordinating a consumer group or transactional id: rendezvous hashing of
    /// the id over the live brokers, so every gateway names the same one (and the gateway
    /// presenting it serves it).
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
        for lease in &self.inner.leases {
            if !brokers.iter().any(|b| b.node_id == lease.node_id()) {
                // Our own lease may have lapsed in the registry's eyes; we are alive regardless.
                brokers.push(Broker {
                    node_id: lease.node_id(),
                    endpoints: parse_registry_address(lease.address()),
                });
            }
        }
        brokers.sort_by_key(|b| b.node_id);
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
        let metastore = self.inner.leases[0].metastore();
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

    /// Renews the leases and refreshes members every `heartbeat_ms` until `shutdown`.
    pub async fn heartbeat(self, mut shutdown: Shutdown) {
        while self.inner.leases[0].wait_heartbeat(&mut shutdown).await {
            let mut renewed = true;
            for lease in &self.inner.leases {
                if let Err(e) = lease.renew().await {
                    warn!(node_id = lease.node_id(), error = %e, "renewing gateway lease failed");
                    renewed = false;
                }
            }
            if !renewed {
                continue;
            }
            if let Err(e) = self.refresh_members().await {
                warn!(error = %e, "reading live members failed");
            }
        }
    }

    /// Leaves the registry at clean shutdown so clients stop being sent here at once.
    pub async fn deregister(&self) {
        for lease in &self.inner.leases {
            lease.release().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: impl IntoIterator<Item = i32>) -> Vec<Broker> {
        ids.into_iter()
            .map(|node_id| Broker {
                node_id,
                endpoints: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn a_topics_partitions_are_dealt_evenly_over_the_brokers() {
        let brokers = brokers([1, 2, 3, 4, 9]);
        for topic in 0..50u128 {
            let topic_id = Uuid::from_u128(topic);
            let mut led = std::collections::HashMap::<i32, usize>::new();
            for partition in 0..16 {
                *led.entry(ClusterView::leader_of(&brokers, topic_id, partition))
                    .or_default() += 1;
            }
            assert_eq!(led.len(), 5, "every broker leads some partition");
            assert!(led.values().all(|&n| n == 3 || n == 4), "{led:?}");
        }
        // Topics start at different brokers, so single-partition topics spread too.
        let firsts: std::collections::HashSet<i32> = (0..50u128)
            .map(|t| ClusterView::leader_of(&brokers, Uuid::from_u128(t), 0))
            .collect();
        assert_eq!(firsts.len(), 5);
        assert_eq!(ClusterView::leader_of(&[], Uuid::from_u128(1), 0), -1);
    }
}
