//! A process's lease in the service registry.
//!
//! Gateways and readers register under their role with a random instance id and renew a
//! lease every `registry.heartbeat_ms`; a registration whose lease ran out is dead to
//! everyone (lease times use PostgreSQL's clock, so skewed hosts still agree). At clean
//! shutdown a process leaves at once instead of waiting for its lease to run out.

use crate::clock::Instant;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::warn;

use crate::config::RegistryConfig;
use crate::error::StoreError;
use crate::metastore::{Cluster, Role};
use crate::shutdown::Shutdown;

/// One registration, renewed until released.
pub struct Lease {
    metastore: Arc<dyn Cluster>,
    config: RegistryConfig,
    role: Role,
    instance_id: String,
    address: String,
    node_id: i32,
    /// When the last renewal succeeded, by this process's clock.
    renewed_at: Mutex<Instant>,
}

impl Lease {
    /// Registers a new instance of `role` reachable at `address`.
    pub async fn acquire(
        metastore: Arc<dyn Cluster>,
        config: RegistryConfig,
        role: Role,
        address: String,
    ) -> Result<Lease, StoreError> {
        let instance_id = crate::random::uuid().to_string();
        let asked = crate::clock::now();
        let node_id = metastore
            .register(role, &instance_id, &address, config.lease_ms as i64)
            .await?;
        Ok(Lease {
            metastore,
            config,
            role,
            instance_id,
            address,
            node_id,
            renewed_at: Mutex::new(asked),
        })
    }

    /// The registry's id for this instance (a gateway's broker id).
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// Where others reach this instance.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The registry settings.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The metastore the lease lives in.
    pub fn metastore(&self) -> &Arc<dyn Cluster> {
        &self.metastore
    }

    /// Extends the lease by `registry.lease_ms` from now.
    pub async fn renew(&self) -> Result<(), StoreError> {
        let asked = crate::clock::now();
        self.metastore
            .renew_lease(
                self.role,
                &self.instance_id,
                &self.address,
                self.config.lease_ms as i64,
            )
            .await?;
        if let Ok(mut renewed_at) = self.renewed_at.lock() {
            *renewed_at = asked;
        }
        Ok(())
    }

    /// True while the last successful renewal is younger than the lease: others still see
    /// this instance as alive. Measured from when the renewal was sent, so never optimistic.
    pub fn is_held(&self) -> bool {
        self.renewed_at
            .lock()
            .map(|at| at.elapsed() < Duration::from_millis(self.config.lease_ms))
            .unwrap_or(false)
    }

    /// Waits one heartbeat period; false when `shutdown` came first.
    pub async fn wait_heartbeat(&self, shutdown: &mut Shutdown) -> bool {
        tokio::select! {
            _ = crate::clock::sleep(Duration::from_millis(self.config.heartbeat_ms)) => true,
            _ = shutdown.wait() => false,
        }
    }

    /// Renews every heartbeat until `shutdown`, logging failures (the next beat retries).
    pub async fn keep(&self, mut shutdown: Shutdown) {
        while self.wait_heartbeat(&mut shutdown).await {
            if let Err(e) = self.renew().await {
                warn!(role = %self.role, error = %e, "renewing lease failed");
            }
        }
    }

    /// Leaves the registry, so others stop routing here at once.
    pub async fn release(&self) {
        if let Err(e) = self.metastore.deregister(&self.instance_id).await {
            warn!(role = %self.role, error = %e, "leaving the registry failed; the lease will expire");
        }
    }
}
