//! The PostgreSQL metastore, what the product runs on: the pool, migrations and error
//! mapping here, each domain's statements in the file named after it.
//!
//! Schema in `migrations/`, applied by refinery under an advisory lock. The statements only
//! check the states they expect, as their comments say; Kafka semantics stay in the roles
//! and the pure rule modules. The writer's flush commit (`Log::commit_object`, in `log.rs`)
//! is one transaction whose statement count does not grow with the number of partitions.
//!
//! Partition locks: whatever changes a partition's offsets (a flush commit, a transaction's
//! end, a log start move) first locks its `partitions` rows in (topic id, partition) order
//! and `FOR NO KEY UPDATE`. The order keeps those from deadlocking one another; the mode
//! keeps them from deadlocking with inserts that name a partition (`producer_states`,
//! `object_index`, `aborted_txns`), whose foreign-key checks take KEY SHARE locks on the
//! rows in no particular order. `FOR UPDATE` would wait for those: before migration V11,
//! an EndTxn and another producer's AddPartitionsToTxn (which inserted such rows) over the
//! same partitions stalled each other until PostgreSQL's deadlock timeout (1 s).

mod acls;
mod cluster;
mod credentials;
mod groups;
mod log;
mod objects;
mod producers;
mod tls;
mod topics;
mod transactions;

use crate::clock::Instant;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use tracing::info;

use crate::config::PostgresConfig;
use crate::error::StoreError;
use crate::metrics::{OperationLabels, metrics};

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Key of the advisory lock that serialises migrations across processes ("yaks" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x7961_6b73;

/// Handle to the PostgreSQL metastore: a connection pool and the statements that use it.
#[derive(Clone)]
pub struct PgMetastore {
    pool: Pool,
    /// For the commit feed's dedicated LISTEN connection, which cannot be pooled.
    pg_config: tokio_postgres::Config,
    /// TLS for every connection (`sslmode=verify-full`); `None`: plaintext.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
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
        let tls::TlsUrl { url, tls } = tls::split(url)?;
        let mut pg_config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("postgres.url: {e}")))?;
        pg_config.connect_timeout(Duration::from_millis(config.connect_timeout_ms));
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("yaks");
        }
        if config.idle_in_transaction_timeout_ms > 0 {
            let mut options = pg_config.get_options().unwrap_or_default().to_owned();
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str(&format!(
                "-c idle_in_transaction_session_timeout={}",
                config.idle_in_transaction_timeout_ms
            ));
            pg_config.options(&options);
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Some(tls) => Manager::from_config(pg_config.clone(), tls.clone(), manager_config),
            None => Manager::from_config(pg_config.clone(), NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_millis(config.connect_timeout_ms)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Internal(format!("postgres pool: {e}")))?;
        Ok(PgMetastore {
            pool,
            pg_config,
            tls,
        })
    }

    /// Closes the pool: its idle connections end cleanly, and the metastore serves no more
    /// calls. For a process that stops its own PostgreSQL next (`yaks dev`), whose
    /// shutdown would otherwise cut the pooled connections, each logging an error.
    pub fn close(&self) {
        self.pool.close();
    }

    /// Applies pending migrations under an advisory lock, so concurrent starts apply each
    /// migration exactly once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client("migrate").await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await
            .map_err(pg_error)?;
        let report = embedded::migrations::runner()
            .set_abort_divergent(true)
            .run_async(&mut ***client)
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

    /// A pooled connection for `operation`, timed: the wait for it and how long the
    /// operation holds it go to the metastore metrics.
    pub(crate) async fn client(&self, operation: &'static str) -> Result<TimedClient, StoreError> {
        let asked = crate::clock::now();
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| StoreError::Retriable(format!("postgres connection: {e}")))?;
        let got = crate::clock::now();
        metrics()
            .metastore
            .pool_wait
            .observe((got - asked).as_secs_f64());
        Ok(TimedClient {
            client: Some(client),
            operation,
            since: got,
        })
    }
}

/// The server's clock in ms since the epoch: the clock commit deadlines are in.
const SERVER_NOW_MS: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Maps a PostgreSQL error to what the caller should do about it.
pub(crate) fn pg_error(err: tokio_postgres::Error) -> StoreError {
    metrics().metastore.errors.inc();
    let Some(code) = err.code() else {
        // No SQLSTATE: the connection broke or timed out.
        return StoreError::Retriable(format!("postgres: {err}"));
    };
    let class = &code.code()[..2];
    // tokio-postgres' Display says only "db error"; the server's message says which.
    let detail = match err.as_db_error() {
        Some(db) => format!("postgres: {} ({})", db.message(), code.code()),
        None => format!("postgres: {err} ({})", code.code()),
    };
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

/// Runs `sql` as a statement prepared once per connection and kept there. A statement
/// given as text is prepared afresh on every call, one more round trip each time: the
/// transaction coordinator's requests, a dozen statements each, paid that many times over.
pub(crate) async fn query_cached<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
    client.query(&statement, params).await.map_err(pg_error)
}

/// [`query_cached`] for a statement that returns no rows: how many it changed.
pub(crate) async fn execute_cached<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
    client.execute(&statement, params).await.map_err(pg_error)
}

/// A pooled connection that records, when dropped, how long its operation held it.
pub(crate) struct TimedClient {
    /// `None` only once [`TimedClient::discard`] took it.
    client: Option<deadpool_postgres::Object>,
    operation: &'static str,
    since: Instant,
}

impl TimedClient {
    /// Closes the connection rather than returning it to the pool: for a session whose
    /// state is not known, such as a [`Pipelined`] transaction left midway. The server
    /// rolls back what the session had open when the connection closes.
    fn discard(mut self) {
        if let Some(object) = self.client.take() {
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

impl std::ops::Deref for TimedClient {
    type Target = deadpool_postgres::Object;

    fn deref(&self) -> &Self::Target {
        self.client
            .as_ref()
            .expect("a connection is taken only by discard, which consumes the client")
    }
}

impl std::ops::DerefMut for TimedClient {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.client
            .as_mut()
            .expect("a connection is taken only by discard, which consumes the client")
    }
}

/// A transaction whose BEGIN is sent with its first statements and whose COMMIT with its
/// last: two round trips where `tokio_postgres::Transaction` takes four, and for the flush
/// commit one fewer during which the partitions' locks are held.
///
/// `Transaction` cannot do that (its BEGIN is awaited before it exists), and it is what
/// rolls back a transaction dropped midway. Here, a `Pipelined` dropped before
/// [`Pipelined::finish`] (an error, or its future cancelled) closes its connection
/// instead: handed back to the pool inside an open transaction, it would run the next
/// operation's statements inside this one.
///
/// Every statement must be prepared before it is joined with BEGIN or COMMIT: a prepare's
/// round trip inside the join would send its statement after the COMMIT, outside the
/// transaction.
pub(crate) struct Pipelined {
    /// `None` once finished.
    client: Option<TimedClient>,
}

impl Pipelined {
    /// Takes `client`, which must be idle (outside any transaction).
    pub(crate) fn new(client: TimedClient) -> Self {
        Pipelined {
            client: Some(client),
        }
    }

    /// The connection, to prepare and send statements on.
    pub(crate) fn client(&self) -> &deadpool_postgres::Client {
        self.client
            .as_ref()
            .expect("a Pipelined is used only until it finishes")
    }

    /// BEGIN, to be joined ahead of the transaction's first statements (a join polls its
    /// futures in order, and each sends its statement when first polled).
    pub(crate) async fn begin(&self) -> Result<(), tokio_postgres::Error> {
        self.client().batch_execute("BEGIN").await
    }

    /// COMMIT, to be joined behind the transaction's last statements. It answers `Ok`
    /// even when an earlier statement failed (the server then rolls back): only with
    /// every statement's success does it mean committed.
    pub(crate) async fn commit(&self) -> Result<(), tokio_postgres::Error> {
        self.client().batch_execute("COMMIT").await
    }

    /// Returns the connection to the pool, once the COMMIT and every statement before it
    /// have answered.
    pub(crate) fn finish(mut self) {
        drop(self.client.take());
    }

    /// Rolls back and returns the connection to the pool: for a transaction that decided,
    /// from what it read, to write nothing. Dropped instead, it would cost a connection.
    pub(crate) async fn rollback(self) -> Result<(), tokio_postgres::Error> {
        self.client().batch_execute("ROLLBACK").await?;
        self.finish();
        Ok(())
    }
}

impl Drop for Pipelined {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            client.discard();
        }
    }
}

impl Drop for TimedClient {
    fn drop(&mut self) {
        metrics()
            .metastore
            .operation_duration
            .get_or_create(&OperationLabels {
                operation: self.operation,
            })
            .observe(self.since.elapsed().as_secs_f64());
    }
}
