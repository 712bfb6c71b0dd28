//! The service registry: which processes are alive, with leases.
//!
//! Each process registers under its role with a random instance id and renews a lease;
//! an entry whose lease ran out is dead to everyone. Lease times use the database's clock,
//! so processes with skewed clocks still agree. A gateway's `node_id` is its Kafka broker id.

use std::fmt;

use super::{Metastore, pg_error};
use crate::error::StoreError;

/// The roles that register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Kafka front door; address is `host:port` for Kafka clients.
    Gateway,
    /// Produce path; address is the internal HTTP base URL.
    Writer,
    /// Fetch path; address is the internal HTTP base URL.
    Reader,
}

impl Role {
    /// The role's name in the registry.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Writer => "writer",
            Role::Reader => "reader",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A live process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceMember {
    /// Registry id; a gateway's broker id.
    pub node_id: i32,
    /// Where to reach it.
    pub address: String,
}

impl Metastore {
    /// Registers or renews `instance_id`; returns its node id.
    pub async fn renew_lease(
        &self,
        role: Role,
        instance_id: &str,
        address: &str,
        lease_ms: i64,
    ) -> Result<i32, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO services (role, instance_id, address, lease_expires_at)
                 VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
                 ON CONFLICT (instance_id) DO UPDATE
                 SET address = EXCLUDED.address, lease_expires_at = EXCLUDED.lease_expires_at
                 RETURNING node_id",
                &[&role.as_str(), &instance_id, &address, &(lease_ms as f64)],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    }

    /// Removes a registration at clean shutdown, and long-dead ones of any instance.
    pub async fn deregister(&self, instance_id: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM services
                 WHERE instance_id = $1 OR lease_expires_at < now() - interval '1 hour'",
                &[&instance_id],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    /// Live members of `role`, by node id.
    pub async fn live_members(&self, role: Role) -> Result<Vec<ServiceMember>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT node_id, address FROM services
                 WHERE role = $1 AND lease_expires_at > now() ORDER BY node_id",
                &[&role.as_str()],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| ServiceMember {
                node_id: r.get(0),
                address: r.get(1),
            })
            .collect())
    }
}
