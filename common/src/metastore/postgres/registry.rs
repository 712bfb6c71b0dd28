//! The service registry: which processes are alive, with leases.
//!
//! Each process registers under its role with a random instance id and renews a lease;
//! an entry whose lease ran out is dead to everyone. Lease times use the database's clock,
//! so processes with skewed clocks still agree. A gateway's `node_id` is its Kafka broker id.

use super::{PgMetastore, pg_error};
use crate::error::StoreError;
use crate::metastore::model::*;

impl PgMetastore {
    /// Registers or renews `instance_id`; returns its node id.
    pub(super) async fn upsert_lease(
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
    pub(super) async fn delete_lease(&self, instance_id: &str) -> Result<(), StoreError> {
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
    pub(super) async fn query_live_members(
        &self,
        role: Role,
    ) -> Result<Vec<ServiceMember>, StoreError> {
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
