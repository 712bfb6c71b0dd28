//! The cluster domain: who the cluster is, whether its store answers, the store's clock,
//! and which processes are alive (the service registry's leases).
//!
//! Gateways, writers and readers use it: leases are how gateways find writers and readers,
//! and the store's clock is the one commit deadlines are measured in.

use async_trait::async_trait;

use super::model::{Role, ServiceMember};
use crate::error::StoreError;

/// Identity, health, clock and membership of the cluster.
#[async_trait]
pub trait Cluster: Send + Sync + 'static {
    /// The cluster's id, reported to clients.
    async fn cluster_id(&self) -> Result<String, StoreError>;

    /// Checks the store answers and its schema has every migration this build knows.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The store's clock, ms since the epoch: the clock of commit deadlines
    /// ([`super::AppendBatch::commit_deadline_ms`]), which gateways sample to set them.
    async fn server_time_ms(&self) -> Result<i64, StoreError>;

    /// Registers a process that has just started, with a lease, and returns its node id.
    /// At the address of exactly one registration of its role (a process restarted where
    /// one died: two cannot listen there at once) it takes over that registration's node
    /// id, as a Kafka broker keeps its `broker.id`. A client that sees a new id at a known
    /// address drops the broker it knew with the requests it had in flight, and librdkafka
    /// resends those as never stored, rebatched, which an idempotent producer's sequence
    /// check then refuses as out of order.
    async fn register(
        &self,
        role: Role,
        instance_id: &str,
        address: &str,
        lease_ms: i64,
    ) -> Result<i32, StoreError>;

    /// Registers or renews a process's lease; returns its node id, stable per instance.
    async fn renew_lease(
        &self,
        role: Role,
        instance_id: &str,
        address: &str,
        lease_ms: i64,
    ) -> Result<i32, StoreError>;

    /// Removes a registration.
    async fn deregister(&self, instance_id: &str) -> Result<(), StoreError>;

    /// Members of `role` whose lease has not run out, by node id.
    async fn live_members(&self, role: Role) -> Result<Vec<ServiceMember>, StoreError>;
}
