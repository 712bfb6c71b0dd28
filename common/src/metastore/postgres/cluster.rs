//! [`Cluster`] on PostgreSQL: the `cluster` row, the schema version, the server's clock
//! and the `services` leases.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::metastore::model::*;

use super::super::cluster::Cluster;
use super::{PgMetastore, SERVER_NOW_MS, embedded, pg_error};

#[async_trait]
impl Cluster for PgMetastore {
    /// The cluster id created by the first migration.
    async fn cluster_id(&self) -> Result<String, StoreError> {
        let client = self.client("cluster_id").await?;
        let row = client
            .query_one("SELECT cluster_id FROM cluster", &[])
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    }

    /// Checks the database answers, for health endpoints.
    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client("ping").await?;
        let applied: Option<i32> = client
            .query_one("SELECT max(version) FROM refinery_schema_history", &[])
            .await
            .map_err(pg_error)?
            .get(0);
        let latest = embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|m| m.version())
            .max();
        if applied.map(|v| v as i64) < latest.map(|v| v as i64) {
            return Err(StoreError::Retriable(format!(
                "schema at migration {applied:?}, this build needs {latest:?}"
            )));
        }
        Ok(())
    }

    async fn server_time_ms(&self) -> Result<i64, StoreError> {
        let client = self.client("server_time_ms").await?;
        let row = client
            .query_one(SERVER_NOW_MS, &[])
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    }

    // The service registry: which processes are alive, with leases.
    //
    // Each process registers under its role with a random instance id and renews a lease;
    // an entry whose lease ran out is dead to everyone. Lease times use the database's clock,
    // so processes with skewed clocks still agree. A gateway's `node_id` is its Kafka broker id.
    /// Registers or renews `instance_id`; returns its node id.
    /// One transaction: the predecessor's registration deleted, this one inserted with
    /// its node id (or the next one).
    async fn register(
        &self,
        role: Role,
        instance_id: &str,
        address: &str,
        lease_ms: i64,
    ) -> Result<i32, StoreError> {
        let mut client = self.client("register").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let taken: Option<i32> = tx
            .query_opt(
                "DELETE FROM services
                 WHERE role = $1 AND address = $2 AND instance_id <> $3
                   AND (SELECT count(*) FROM services WHERE role = $1 AND address = $2) = 1
                 RETURNING node_id",
                &[&role.as_str(), &address, &instance_id],
            )
            .await
            .map_err(pg_error)?
            .map(|row| row.get(0));
        let row = tx
            .query_one(
                "INSERT INTO services (node_id, role, instance_id, address, lease_expires_at)
                 VALUES (COALESCE($5, nextval(pg_get_serial_sequence('services', 'node_id'))::int),
                         $1, $2, $3, now() + $4 * interval '1 millisecond')
                 ON CONFLICT (instance_id) DO UPDATE
                 SET address = EXCLUDED.address, lease_expires_at = EXCLUDED.lease_expires_at
                 RETURNING node_id",
                &[
                    &role.as_str(),
                    &instance_id,
                    &address,
                    &(lease_ms as f64),
                    &taken,
                ],
            )
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(row.get(0))
    }

    async fn renew_lease(
        &self,
        role: Role,
        instance_id: &str,
        address: &str,
        lease_ms: i64,
    ) -> Result<i32, StoreError> {
        let client = self.client("renew_lease").await?;
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
    async fn deregister(&self, instance_id: &str) -> Result<(), StoreError> {
        let client = self.client("deregister").await?;
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
    async fn live_members(&self, role: Role) -> Result<Vec<ServiceMember>, StoreError> {
        let client = self.client("live_members").await?;
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
