//! The PostgreSQL metastore, what the product runs on.
//!
//! Schema in `migrations/`, applied by refinery under an advisory lock. The statements only
//! check the states they expect, as their comments say; Kafka semantics stay in the roles.
//!
//! - [`topics`]: create, list, delete topics.
//! - [`commit`]: the writer's flush commit, one transaction whose statement count does not
//!   grow with the number of partitions.
//! - [`index`]: partition offsets and index entries, for the read path.
//! - [`registry`]: leases of live processes.

pub mod commit;
pub mod index;
pub mod registry;
pub mod topics;

use std::collections::BTreeMap;

use async_trait::async_trait;
use uuid::Uuid;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tracing::info;

use crate::config::PostgresConfig;
use crate::error::StoreError;

use super::Metastore;
use super::model::*;
use crate::ids::ObjectId;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Key of the advisory lock that serialises migrations across processes ("yaks" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x7961_6b73;

/// Handle to the PostgreSQL metastore: a connection pool and the statements that use it.
#[derive(Clone)]
pub struct PgMetastore {
    pool: Pool,
}

impl std::fmt::Debug for PgMetastore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMetastore").finish_non_exhaustive()
    }
}

impl PgMetastore {
    /// Builds the pool for `config.url`. No connection is opened until first use.
    pub fn connect(config: &PostgresConfig) -> Result<PgMetastore, StoreError> {
        let url = config
            .url
            .as_deref()
            .ok_or_else(|| StoreError::Invalid("postgres.url is not set".into()))?;
        let mut pg_config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("postgres.url: {e}")))?;
        pg_config.connect_timeout(Duration::from_millis(config.connect_timeout_ms));
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("yaks");
        }
        let manager = Manager::from_config(
            pg_config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_millis(config.connect_timeout_ms)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Internal(format!("postgres pool: {e}")))?;
        Ok(PgMetastore { pool })
    }

    /// Applies pending migrations under an advisory lock, so concurrent starts apply each
    /// migration exactly once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await
            .map_err(pg_error)?;
        let report = embedded::migrations::runner()
            .set_abort_divergent(true)
            .run_async(&mut **client)
            .await;
        // Unlock even when the migration failed; the session ends with the connection anyway.
        let unlock = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
            .await;
        let report = report.map_err(|e| StoreError::Internal(format!("migration failed: {e}")))?;
        unlock.map_err(pg_error)?;
        for migration in report.applied_migrations() {
            info!(
                version = migration.version(),
                name = migration.name(),
                "applied migration"
            );
        }
        Ok(())
    }

    /// The cluster id created by the first migration.
    pub async fn read_cluster_id(&self) -> Result<String, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT cluster_id FROM cluster", &[])
            .await
            .map_err(pg_error)?;
        Ok(row.get(0))
    }

    /// Checks the database answers, for health endpoints.
    pub async fn select_one(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(pg_error)?;
        Ok(())
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Retriable(format!("postgres connection: {e}")))
    }
}

#[async_trait]
impl Metastore for PgMetastore {
    async fn cluster_id(&self) -> Result<String, StoreError> {
        self.read_cluster_id().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.select_one().await
    }

    async fn create_topic(
        &self,
        name: &str,
        partition_count: i32,
        configs: &BTreeMap<String, Option<String>>,
    ) -> Result<Option<TopicMeta>, StoreError> {
        self.insert_topic(name, partition_count, configs).await
    }

    async fn topics(&self, names: Option<&[String]>) -> Result<Vec<TopicMeta>, StoreError> {
        self.query_topics(names, None).await
    }

    async fn topics_by_id(&self, ids: &[Uuid]) -> Result<Vec<TopicMeta>, StoreError> {
        self.query_topics(None, Some(ids)).await
    }

    async fn delete_topic(&self, topic_id: Uuid) -> Result<bool, StoreError> {
        self.remove_topic(topic_id).await
    }

    async fn partition_states(
        &self,
        partitions: &[(Uuid, i32)],
    ) -> Result<Vec<PartitionState>, StoreError> {
        self.query_partition_states(partitions).await
    }

    async fn index_entries(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        from_offset: i64,
        limit: i64,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        self.query_index_entries(topic_id, partition_index, from_offset, limit)
            .await
    }

    async fn commit_object(
        &self,
        object: ObjectId,
        object_key: &str,
        size_bytes: i64,
        appends: &[PartitionAppend],
    ) -> Result<Vec<AppendResult>, StoreError> {
        self.commit_object_tx(object, object_key, size_bytes, appends)
            .await
    }

    async fn renew_lease(
        &self,
        role: Role,
        instance_id: &str,
        address: &str,
        lease_ms: i64,
    ) -> Result<i32, StoreError> {
        self.upsert_lease(role, instance_id, address, lease_ms)
            .await
    }

    async fn deregister(&self, instance_id: &str) -> Result<(), StoreError> {
        self.delete_lease(instance_id).await
    }

    async fn live_members(&self, role: Role) -> Result<Vec<ServiceMember>, StoreError> {
        self.query_live_members(role).await
    }
}

/// Maps a PostgreSQL error to what the caller should do about it.
pub(crate) fn pg_error(err: tokio_postgres::Error) -> StoreError {
    let Some(code) = err.code() else {
        // No SQLSTATE: the connection broke or timed out.
        return StoreError::Retriable(format!("postgres: {err}"));
    };
    let class = &code.code()[..2];
    let detail = format!("postgres: {err} ({})", code.code());
    if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || matches!(class, "08" | "53" | "57" | "40")
    {
        StoreError::Retriable(detail)
    } else if matches!(class, "22" | "23") {
        StoreError::Invalid(detail)
    } else {
        StoreError::Internal(detail)
    }
}
