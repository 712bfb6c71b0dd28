//! The PostgreSQL metastore, what the product runs on.
//!
//! Schema in `migrations/`, applied by refinery under an advisory lock. The statements only
//! check the states they expect, as their comments say; Kafka semantics stay in the roles.
//! The writer's flush commit (`commit_object`) is one transaction whose statement count does
//! not grow with the number of partitions.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls};
use tracing::{info, warn};
use uuid::Uuid;

use super::groups::*;
use super::model::*;
use super::plan::{self, PlannedEntry, ProducerKey};
use super::producers::{ProducerState, SequenceRange};
use super::{Metastore, PRODUCER_ID_BLOCK};
use crate::config::PostgresConfig;
use crate::error::StoreError;
use crate::metrics::{OperationLabels, metrics};

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Key of the advisory lock that serialises migrations across processes ("yaks" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x7961_6b73;

/// Channel on which every flush commit announces its object id (DESIGN.md, write path 6).
const COMMIT_CHANNEL: &str = "yaks_commits";

/// Rows one producer-expiry statement deletes at most.
const EXPIRY_SLICE: i64 = 5_000;

/// The columns of an [`IndexEntry`], for queries joining `object_index i` and `objects o`.
const ENTRY_COLUMNS: &str = "i.base_offset, i.last_offset, i.max_timestamp, o.object_key, \
                             i.byte_offset, i.byte_length, o.size_bytes";

fn entry_from_row(row: &tokio_postgres::Row, first: usize) -> IndexEntry {
    IndexEntry {
        base_offset: row.get(first),
        last_offset: row.get(first + 1),
        max_timestamp: row.get(first + 2),
        object_key: row.get(first + 3),
        byte_offset: row.get(first + 4),
        byte_length: row.get(first + 5),
        object_size: row.get(first + 6),
    }
}

/// Handle to the PostgreSQL metastore: a connection pool and the statements that use it.
#[derive(Clone)]
pub struct PgMetastore {
    pool: Pool,
    /// For the commit feed's dedicated LISTEN connection, which cannot be pooled.
    pg_config: tokio_postgres::Config,
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
        let manager = Manager::from_config(
            pg_config.clone(),
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
        Ok(PgMetastore { pool, pg_config })
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

    /// Topics by name and/or id; `None` for both lists every topic.
    async fn query_topics(
        &self,
        names: Option<&[String]>,
        ids: Option<&[Uuid]>,
    ) -> Result<Vec<TopicMeta>, StoreError> {
        let client = self.client("query_topics").await?;
        let rows = client
            .query(
                "SELECT t.topic_id, t.name, t.partition_count,
                        coalesce(array_agg(c.key) FILTER (WHERE c.key IS NOT NULL), '{}'),
                        coalesce(array_agg(c.value) FILTER (WHERE c.key IS NOT NULL), '{}')
                 FROM topics t LEFT JOIN topic_configs c USING (topic_id)
                 WHERE ($1::text[] IS NULL OR t.name = ANY($1))
                   AND ($2::uuid[] IS NULL OR t.topic_id = ANY($2))
                 GROUP BY t.topic_id ORDER BY t.name",
                &[&names, &ids],
            )
            .await
            .map_err(pg_error)?;
        let mut topics = Vec::with_capacity(rows.len());
        for row in rows {
            let keys: Vec<String> = row.get(3);
            let values: Vec<Option<String>> = row.get(4);
            topics.push(TopicMeta {
                topic_id: row.get(0),
                name: row.get(1),
                partition_count: row.get(2),
                configs: keys.into_iter().zip(values).collect(),
            });
        }
        Ok(topics)
    }

    /// The first index entry of partition ($1, $2) matching `condition` in `order`.
    async fn first_entry(
        &self,
        condition: &str,
        order: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<IndexEntry>, StoreError> {
        let client = self.client("first_entry").await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {ENTRY_COLUMNS}
                     FROM object_index i JOIN objects o USING (object_id)
                     WHERE i.topic_id = $1 AND i.partition_index = $2 AND {condition}
                     ORDER BY {order}
                     LIMIT 1"
                ),
                params,
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| entry_from_row(&r, 0)))
    }

    /// A pooled connection for `operation`, timed: the wait for it and how long the
    /// operation holds it go to the metastore metrics.
    pub(crate) async fn client(&self, operation: &'static str) -> Result<TimedClient, StoreError> {
        let asked = Instant::now();
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| StoreError::Retriable(format!("postgres connection: {e}")))?;
        let got = Instant::now();
        metrics()
            .metastore
            .pool_wait
            .observe((got - asked).as_secs_f64());
        Ok(TimedClient {
            client,
            operation,
            since: got,
        })
    }
}

#[async_trait]
impl Metastore for PgMetastore {
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

    /// Creates a topic with its partitions and configs in one transaction.
    /// Returns `None` when a topic with that name already exists.
    async fn create_topic(
        &self,
        name: &str,
        partition_count: i32,
        configs: &BTreeMap<String, Option<String>>,
    ) -> Result<Option<TopicMeta>, StoreError> {
        let topic_id = Uuid::new_v4();
        let mut client = self.client("create_topic").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Expects: no topic of that name (the unique name makes a racing create a no-op).
        let inserted = tx
            .execute(
                "INSERT INTO topics (topic_id, name, partition_count) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
                &[&topic_id, &name, &partition_count],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 0 {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO partitions (topic_id, partition_index)
             SELECT $1, generate_series(0, $2 - 1)",
            &[&topic_id, &partition_count],
        )
        .await
        .map_err(pg_error)?;
        let keys: Vec<&str> = configs.keys().map(String::as_str).collect();
        let values: Vec<Option<&str>> = configs.values().map(|v| v.as_deref()).collect();
        tx.execute(
            "INSERT INTO topic_configs (topic_id, key, value)
             SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS c(k, v)",
            &[&topic_id, &keys, &values],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Some(TopicMeta {
            topic_id,
            name: name.to_owned(),
            partition_count,
            configs: configs.clone(),
        }))
    }

    async fn set_topic_configs(
        &self,
        topic_id: Uuid,
        configs: &BTreeMap<String, Option<String>>,
    ) -> Result<bool, StoreError> {
        let mut client = self.client("set_topic_configs").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Expects: the topic exists; its row lock orders concurrent alterations.
        let found = tx
            .query_opt(
                "SELECT 1 FROM topics WHERE topic_id = $1 FOR UPDATE",
                &[&topic_id],
            )
            .await
            .map_err(pg_error)?;
        if found.is_none() {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM topic_configs WHERE topic_id = $1",
            &[&topic_id],
        )
        .await
        .map_err(pg_error)?;
        let keys: Vec<&str> = configs.keys().map(String::as_str).collect();
        let values: Vec<Option<&str>> = configs.values().map(|v| v.as_deref()).collect();
        tx.execute(
            "INSERT INTO topic_configs (topic_id, key, value)
             SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS c(k, v)",
            &[&topic_id, &keys, &values],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(true)
    }

    async fn add_partitions(
        &self,
        topic_id: Uuid,
        partition_count: i32,
    ) -> Result<Option<i32>, StoreError> {
        let mut client = self.client("add_partitions").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Expects: the topic exists with fewer partitions; its row lock orders concurrent
        // growth.
        let Some(row) = tx
            .query_opt(
                "SELECT partition_count FROM topics WHERE topic_id = $1 FOR UPDATE",
                &[&topic_id],
            )
            .await
            .map_err(pg_error)?
        else {
            return Ok(None);
        };
        let before: i32 = row.get(0);
        if partition_count <= before {
            return Err(StoreError::Invalid(format!(
                "the topic has {before} partitions; {partition_count} would not add any"
            )));
        }
        tx.execute(
            "INSERT INTO partitions (topic_id, partition_index)
             SELECT $1, generate_series($2::int, $3::int - 1)",
            &[&topic_id, &before, &partition_count],
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            "UPDATE topics SET partition_count = $2 WHERE topic_id = $1",
            &[&topic_id, &partition_count],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Some(before))
    }

    async fn advance_log_start(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        offset: i64,
    ) -> Result<LogStartMove, StoreError> {
        let client = self.client("advance_log_start").await?;
        // One statement: the partition's row lock orders it with flush commits. Expects:
        // the partition exists and `offset` is at most its high watermark; reports which
        // expectation failed otherwise.
        let row = client
            .query_opt(
                "WITH target AS (
                     SELECT topic_id, partition_index, next_offset,
                            CASE WHEN $3::bigint < 0 THEN next_offset ELSE $3::bigint END AS wanted
                     FROM partitions WHERE topic_id = $1 AND partition_index = $2
                     FOR UPDATE),
                 moved AS (
                     UPDATE partitions p
                     SET log_start_offset = greatest(p.log_start_offset, t.wanted)
                     FROM target t
                     WHERE p.topic_id = t.topic_id AND p.partition_index = t.partition_index
                       AND t.wanted <= t.next_offset
                     RETURNING p.log_start_offset)
                 SELECT t.next_offset, (SELECT log_start_offset FROM moved) FROM target t",
                &[&topic_id, &partition_index, &offset],
            )
            .await
            .map_err(pg_error)?;
        Ok(match row {
            None => LogStartMove::NoPartition,
            Some(row) => match row.get::<_, Option<i64>>(1) {
                Some(log_start_offset) => LogStartMove::Moved { log_start_offset },
                None => LogStartMove::BeyondHighWatermark {
                    next_offset: row.get(0),
                },
            },
        })
    }

    async fn topics(&self, names: Option<&[String]>) -> Result<Vec<TopicMeta>, StoreError> {
        self.query_topics(names, None).await
    }

    async fn topics_by_id(&self, ids: &[Uuid]) -> Result<Vec<TopicMeta>, StoreError> {
        self.query_topics(None, Some(ids)).await
    }

    /// Deletes a topic, its partitions and index rows. Its objects become unreferenced and
    /// are collected by the compactor after the grace period. Returns false when absent.
    async fn delete_topic(&self, topic_id: Uuid) -> Result<bool, StoreError> {
        let mut client = self.client("delete_topic").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Committed offsets go with the topic, as in Kafka.
        tx.execute(
            "DELETE FROM group_offsets
             WHERE topic = (SELECT name FROM topics WHERE topic_id = $1)",
            &[&topic_id],
        )
        .await
        .map_err(pg_error)?;
        // Expects: the topic exists; partitions and index rows go with it (ON DELETE CASCADE).
        let deleted = tx
            .execute("DELETE FROM topics WHERE topic_id = $1", &[&topic_id])
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(deleted > 0)
    }

    /// Offsets of many partitions in one query; missing partitions are absent.
    async fn partition_states(
        &self,
        partitions: &[(Uuid, i32)],
    ) -> Result<Vec<PartitionState>, StoreError> {
        let topic_ids: Vec<Uuid> = partitions.iter().map(|p| p.0).collect();
        let indexes: Vec<i32> = partitions.iter().map(|p| p.1).collect();
        let client = self.client("partition_states").await?;
        let statement = client
            .prepare_cached(
                "SELECT p.topic_id, p.partition_index, p.next_offset, p.log_start_offset
                 FROM partitions p
                 JOIN unnest($1::uuid[], $2::int[]) AS i(topic_id, partition_index)
                   USING (topic_id, partition_index)",
            )
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(&statement, &[&topic_ids, &indexes])
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| PartitionState {
                topic_id: r.get(0),
                partition_index: r.get(1),
                next_offset: r.get(2),
                log_start_offset: r.get(3),
            })
            .collect())
    }

    /// Index entries of many partitions in one query: a LATERAL scan of each partition's
    /// primary-key range from its fetch offset, `limit` rows each.
    async fn index_entries(
        &self,
        wanted: &[(Uuid, i32, i64)],
        limit: i64,
    ) -> Result<Vec<Vec<IndexEntry>>, StoreError> {
        let topic_ids: Vec<Uuid> = wanted.iter().map(|w| w.0).collect();
        let partitions: Vec<i32> = wanted.iter().map(|w| w.1).collect();
        let from_offsets: Vec<i64> = wanted.iter().map(|w| w.2).collect();
        let client = self.client("index_entries").await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT w.n, e.*
                 FROM unnest($1::uuid[], $2::int[], $3::bigint[]) WITH ORDINALITY
                      AS w(topic_id, partition_index, from_offset, n)
                 CROSS JOIN LATERAL (
                     SELECT {ENTRY_COLUMNS}
                     FROM object_index i JOIN objects o USING (object_id)
                     WHERE i.topic_id = w.topic_id AND i.partition_index = w.partition_index
                       AND i.last_offset >= w.from_offset
                     ORDER BY i.base_offset
                     LIMIT $4
                 ) e
                 ORDER BY w.n, e.base_offset"
            ))
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(
                &statement,
                &[&topic_ids, &partitions, &from_offsets, &limit],
            )
            .await
            .map_err(pg_error)?;
        let mut lists = vec![Vec::new(); wanted.len()];
        for row in rows {
            let n: i64 = row.get(0);
            lists[(n - 1) as usize].push(entry_from_row(&row, 1));
        }
        Ok(lists)
    }

    /// Index entries of one object, in (topic, partition) order.
    async fn object_entries(&self, object_id: &str) -> Result<Vec<PartitionEntry>, StoreError> {
        let client = self.client("object_entries").await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT i.topic_id, i.partition_index, {ENTRY_COLUMNS}
                 FROM object_index i JOIN objects o USING (object_id)
                 WHERE i.object_id = $1
                 ORDER BY i.topic_id, i.partition_index, i.base_offset"
            ))
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(&statement, &[&object_id])
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| PartitionEntry {
                topic_id: r.get(0),
                partition_index: r.get(1),
                entry: entry_from_row(r, 2),
            })
            .collect())
    }

    /// Scans the partition's entries in offset order for the first whose max timestamp
    /// reaches `timestamp` (timestamps are not monotonic in offsets, so no index helps).
    async fn entry_at_time(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        timestamp: i64,
    ) -> Result<Option<IndexEntry>, StoreError> {
        self.first_entry(
            "i.max_timestamp >= $3",
            "i.base_offset",
            &[&topic_id, &partition_index, &timestamp],
        )
        .await
    }

    async fn entry_with_max_timestamp(
        &self,
        topic_id: Uuid,
        partition_index: i32,
    ) -> Result<Option<IndexEntry>, StoreError> {
        self.first_entry(
            "true",
            "i.max_timestamp DESC, i.base_offset",
            &[&topic_id, &partition_index],
        )
        .await
    }

    /// LISTENs on a dedicated connection (re-opened when lost, reporting a gap). The
    /// connection is established before this returns.
    async fn commit_feed(&self) -> Result<mpsc::Receiver<CommitEvent>, StoreError> {
        let (sender, receiver) = mpsc::channel(4096);
        let listening = listen(&self.pg_config).await?;
        tokio::spawn(follow_commits(self.pg_config.clone(), listening, sender));
        Ok(receiver)
    }

    // The writer's flush commit: offsets are assigned here and nowhere else.
    //
    // One transaction per flushed object, whatever the number of partitions in it:
    // 1. insert the object row;
    // 2. lock the touched partition rows in (topic_id, partition_index) order, so two writers
    // committing overlapping partitions queue instead of deadlocking;
    // 3. one statement advances every partition's `next_offset` by the offsets its batches
    // occupy and inserts one index row per partition, returning the base offsets.
    //
    // The three statements are pipelined on one connection. Partitions that vanished (topic
    // deleted while the flush was in flight) are simply absent from the result.
    /// Commits one uploaded object. Each partition must appear at most once in `appends`.
    ///
    /// A failure before COMMIT was sent is [`StoreError::Retriable`] (nothing happened); a
    /// failure of the COMMIT itself is [`StoreError::OutcomeUnknown`].
    async fn commit_object(
        &self,
        commit: ObjectCommit<'_>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        let appends = commit.appends;
        debug_assert!(
            {
                let mut keys: Vec<_> = appends
                    .iter()
                    .map(|a| (a.topic_id, a.partition_index))
                    .collect();
                keys.sort();
                keys.windows(2).all(|w| w[0] != w[1])
            },
            "a partition appears twice in one commit"
        );
        let object_id = commit.object.to_string();
        let topic_ids: Vec<Uuid> = appends.iter().map(|a| a.topic_id).collect();
        let partitions: Vec<i32> = appends.iter().map(|a| a.partition_index).collect();
        let producer_keys = plan::producer_keys(appends);
        let producer_ids: Vec<i64> = producer_keys.iter().map(|k| k.0).collect();
        let producer_topics: Vec<Uuid> = producer_keys.iter().map(|k| k.1).collect();
        let producer_partitions: Vec<i32> = producer_keys.iter().map(|k| k.2).collect();

        let mut client = self.client("commit_object").await?;
        let tx = client.transaction().await.map_err(pg_error)?;

        // Round trip 1: lock the partitions (fixed order, so concurrent commits cannot
        // deadlock) and read what the plan needs. Producer state is read after the locks
        // are held, so it reflects every earlier commit to these partitions.
        // Expects: the partitions exist; missing ones (deleted topics) are skipped.
        let lock = tx
            .prepare_cached(
                "SELECT topic_id, partition_index, next_offset, log_start_offset
                 FROM partitions
                 WHERE (topic_id, partition_index) IN
                       (SELECT * FROM unnest($1::uuid[], $2::int[]))
                 ORDER BY topic_id, partition_index
                 FOR UPDATE",
            )
            .await
            .map_err(pg_error)?;
        let read_producers = tx
            .prepare_cached(
                "SELECT s.producer_id, s.topic_id, s.partition_index, s.producer_epoch,
                        s.recent, s.updated_ms
                 FROM producer_states s
                 JOIN unnest($1::bigint[], $2::uuid[], $3::int[])
                      AS k(producer_id, topic_id, partition_index)
                   USING (producer_id, topic_id, partition_index)",
            )
            .await
            .map_err(pg_error)?;
        // Commit deadlines are in this clock, read after the locks were granted.
        let server_clock = tx.prepare_cached(SERVER_NOW_MS).await.map_err(pg_error)?;
        let lock_params: [&(dyn ToSql + Sync); 2] = [&topic_ids, &partitions];
        let producer_params: [&(dyn ToSql + Sync); 3] =
            [&producer_ids, &producer_topics, &producer_partitions];
        let (locked, producer_rows, server_now) = futures::try_join!(
            tx.query(&lock, &lock_params),
            async {
                if producer_keys.is_empty() {
                    return Ok(Vec::new());
                }
                tx.query(&read_producers, &producer_params).await
            },
            tx.query_one(&server_clock, &[]),
        )
        .map_err(pg_error)?;
        let mut states = HashMap::with_capacity(locked.len());
        for row in &locked {
            let state = PartitionState {
                topic_id: row.get(0),
                partition_index: row.get(1),
                next_offset: row.get(2),
                log_start_offset: row.get(3),
            };
            states.insert((state.topic_id, state.partition_index), state);
        }
        let mut producers = HashMap::with_capacity(producer_rows.len());
        for row in &producer_rows {
            let recent: Vec<i64> = row.get(4);
            let Some(recent) = decode_recent(&recent) else {
                return Err(StoreError::Internal(format!(
                    "producer_states.recent of producer {} is malformed",
                    row.get::<_, i64>(0)
                )));
            };
            producers.insert(
                (row.get(0), row.get(1), row.get(2)),
                ProducerState {
                    producer_epoch: row.get(3),
                    recent,
                    updated_ms: row.get(5),
                },
            );
        }

        let plan = plan::plan_commit(
            appends,
            &states,
            producers,
            plan::CommitClocks {
                now_ms: commit.now_ms,
                expire_before_ms: commit.producers_expire_before_ms,
                server_now_ms: server_now.get(0),
            },
        );

        // Round trip 2: write the plan. An object none of whose batches was stored is not
        // recorded (its S3 copy is an orphan, collected later).
        if !plan.entries.is_empty() {
            let mut columns = EntryColumns::default();
            for entry in &plan.entries {
                columns.push(entry);
            }
            let (advanced_topics, advanced_partitions, next_offsets) = plan
                .next_offsets
                .iter()
                .copied()
                .collect::<(Vec<Uuid>, Vec<i32>, Vec<i64>)>();
            let insert_object = tx
                .prepare_cached(
                    "INSERT INTO objects (object_id, object_key, size_bytes) VALUES ($1, $2, $3)",
                )
                .await
                .map_err(pg_error)?;
            let insert_entries = tx
                .prepare_cached(
                    "INSERT INTO object_index (topic_id, partition_index, base_offset,
                         last_offset, max_timestamp, object_id, byte_offset, byte_length,
                         batch_count)
                     SELECT topic_id, partition_index, base_offset, last_offset, max_timestamp,
                            $8, byte_offset, byte_length, batch_count
                     FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[],
                                 $5::bigint[], $6::bigint[], $7::bigint[], $9::int[])
                          AS i(topic_id, partition_index, base_offset, last_offset,
                               max_timestamp, byte_offset, byte_length, batch_count)",
                )
                .await
                .map_err(pg_error)?;
            // Expects: rows locked in round trip 1, their next_offset unchanged since.
            let advance = tx
                .prepare_cached(
                    "UPDATE partitions p SET next_offset = i.next_offset
                     FROM unnest($1::uuid[], $2::int[], $3::bigint[])
                          AS i(topic_id, partition_index, next_offset)
                     WHERE p.topic_id = i.topic_id AND p.partition_index = i.partition_index",
                )
                .await
                .map_err(pg_error)?;
            // Delivered to listening readers at COMMIT, in commit order, or not at all.
            let notify = tx
                .prepare_cached("SELECT pg_notify($1, $2)")
                .await
                .map_err(pg_error)?;
            let size = commit.size_bytes;
            let object_params: [&(dyn ToSql + Sync); 3] = [&object_id, &commit.object_key, &size];
            let entry_params: [&(dyn ToSql + Sync); 9] = [
                &columns.topic_ids,
                &columns.partitions,
                &columns.base_offsets,
                &columns.last_offsets,
                &columns.max_timestamps,
                &columns.byte_offsets,
                &columns.byte_lengths,
                &object_id,
                &columns.batch_counts,
            ];
            let advance_params: [&(dyn ToSql + Sync); 3] =
                [&advanced_topics, &advanced_partitions, &next_offsets];
            let notify_params: [&(dyn ToSql + Sync); 2] = [&COMMIT_CHANNEL, &object_id];
            // Checked while COMMIT runs by the deferred trigger of migration V3.
            let set_deadline = tx
                .prepare_cached("SELECT set_config('yaks.commit_deadline_ms', $1, true)")
                .await
                .map_err(pg_error)?;
            let deadline = plan
                .commit_deadline_ms
                .map_or_else(String::new, |d| d.to_string());
            let deadline_params: [&(dyn ToSql + Sync); 1] = [&deadline];
            // Pipelined: sent together, executed by the server in this order.
            futures::try_join!(
                tx.execute(&set_deadline, &deadline_params),
                tx.execute(&insert_object, &object_params),
                tx.execute(&insert_entries, &entry_params),
                tx.execute(&advance, &advance_params),
                tx.execute(&notify, &notify_params),
                write_producer_states(&tx, &plan.producer_states),
            )
            .map_err(pg_error)?;
        }

        tx.commit().await.map_err(|e| {
            if e.code().is_some_and(|c| c.code() == DEADLINE_PASSED) {
                // Refused by the trigger before anything was committed: replanning will
                // leave the late batches out.
                return StoreError::Retriable(format!("postgres: {e}"));
            }
            match pg_error(e) {
                StoreError::Retriable(detail) | StoreError::Internal(detail) => {
                    StoreError::OutcomeUnknown(detail)
                }
                other => other,
            }
        })?;
        Ok(plan.results)
    }

    /// One transaction: lock the input rows (a racing swap of the same rows waits, then
    /// finds them gone), check them, record the object, replace the rows, mark objects left
    /// without rows.
    async fn swap_entries(&self, swap: EntrySwap<'_>) -> Result<bool, StoreError> {
        let mut client = self.client("swap_entries").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let bases: Vec<i64> = swap.inputs.iter().map(|(b, _)| *b).collect();
        let keys: Vec<&str> = swap.inputs.iter().map(|(_, k)| k.as_str()).collect();
        // Expects: every input row still indexed with the object it names.
        let rows = tx
            .query(
                "SELECT i.base_offset, i.last_offset, i.byte_length, i.max_timestamp,
                        i.batch_count, i.object_id
                 FROM object_index i JOIN objects o ON o.object_id = i.object_id
                 JOIN unnest($3::bigint[], $4::text[]) AS w(base_offset, object_key)
                   ON w.base_offset = i.base_offset AND w.object_key = o.object_key
                 WHERE i.topic_id = $1 AND i.partition_index = $2
                 ORDER BY i.base_offset
                 FOR UPDATE OF i",
                &[&swap.topic_id, &swap.partition_index, &bases, &keys],
            )
            .await
            .map_err(pg_error)?;
        if rows.len() != swap.inputs.len() {
            return Ok(false);
        }
        let merged = plan::merge_swapped(
            rows.iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2))),
            swap.size_bytes,
        )
        .map_err(StoreError::Invalid)?;
        let max_timestamp = rows.iter().map(|r| r.get::<_, i64>(3)).max().unwrap_or(-1);
        let batch_count: i32 = rows.iter().map(|r| r.get::<_, i32>(4)).sum();
        let mut old_objects: Vec<String> = rows.iter().map(|r| r.get(5)).collect();
        old_objects.sort();
        old_objects.dedup();
        let object_id = swap.object.to_string();
        tx.execute(
            "INSERT INTO objects (object_id, object_key, size_bytes) VALUES ($1, $2, $3)",
            &[&object_id, &swap.object_key, &swap.size_bytes],
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            "DELETE FROM object_index
             WHERE topic_id = $1 AND partition_index = $2 AND base_offset = ANY($3)",
            &[&swap.topic_id, &swap.partition_index, &bases],
        )
        .await
        .map_err(pg_error)?;
        tx.execute(
            "INSERT INTO object_index (topic_id, partition_index, base_offset, last_offset,
                 max_timestamp, object_id, byte_offset, byte_length, batch_count)
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)",
            &[
                &swap.topic_id,
                &swap.partition_index,
                &merged.0,
                &merged.1,
                &max_timestamp,
                &object_id,
                &swap.size_bytes,
                &batch_count,
            ],
        )
        .await
        .map_err(pg_error)?;
        // Objects no row refers to any more wait out the grace period before deletion.
        tx.execute(
            "UPDATE objects o SET state = 'marked', marked_at = now()
             WHERE o.object_id = ANY($1) AND o.state = 'live'
               AND NOT EXISTS (SELECT 1 FROM object_index i WHERE i.object_id = o.object_id)",
            &[&old_objects],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(true)
    }

    async fn drop_expired_entries(&self) -> Result<u64, StoreError> {
        let mut client = self.client("drop_expired_entries").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Expects nothing: rows a flush adds are above the log start, and DeleteRecords
        // only raises it.
        let dropped: Vec<String> = tx
            .query(
                "DELETE FROM object_index i USING partitions p
                 WHERE p.topic_id = i.topic_id AND p.partition_index = i.partition_index
                   AND i.last_offset < p.log_start_offset
                 RETURNING i.object_id",
                &[],
            )
            .await
            .map_err(pg_error)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !dropped.is_empty() {
            tx.execute(
                "UPDATE objects o SET state = 'marked', marked_at = now()
                 WHERE o.object_id = ANY($1) AND o.state = 'live'
                   AND NOT EXISTS (SELECT 1 FROM object_index i WHERE i.object_id = o.object_id)",
                &[&dropped],
            )
            .await
            .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(dropped.len() as u64)
    }

    async fn mark_unreferenced(&self, min_age_ms: i64) -> Result<u64, StoreError> {
        let client = self.client("mark_unreferenced").await?;
        let marked = client
            .execute(
                "UPDATE objects o SET state = 'marked', marked_at = now()
                 WHERE o.state = 'live'
                   AND o.created_at < now() - $1 * interval '1 millisecond'
                   AND NOT EXISTS (SELECT 1 FROM object_index i WHERE i.object_id = o.object_id)",
                &[&(min_age_ms as f64)],
            )
            .await
            .map_err(pg_error)?;
        Ok(marked)
    }

    async fn marked_objects(
        &self,
        min_age_ms: i64,
        limit: i64,
    ) -> Result<Vec<MarkedObject>, StoreError> {
        let client = self.client("marked_objects").await?;
        let rows = client
            .query(
                "SELECT object_id, object_key, size_bytes FROM objects
                 WHERE state = 'marked' AND marked_at <= now() - $1 * interval '1 millisecond'
                 ORDER BY marked_at LIMIT $2",
                &[&(min_age_ms as f64), &limit],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| MarkedObject {
                object_id: r.get(0),
                key: r.get(1),
                size_bytes: r.get(2),
            })
            .collect())
    }

    async fn forget_objects(&self, object_ids: &[String]) -> Result<(), StoreError> {
        let client = self.client("forget_objects").await?;
        // Expects: the objects are marked (no index row refers to them).
        client
            .execute(
                "DELETE FROM objects WHERE object_id = ANY($1) AND state = 'marked'",
                &[&object_ids],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn known_objects(&self, object_ids: &[String]) -> Result<Vec<String>, StoreError> {
        let client = self.client("known_objects").await?;
        let rows = client
            .query(
                "SELECT object_id FROM objects WHERE object_id = ANY($1)",
                &[&object_ids],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn allocate_producer_ids(&self) -> Result<i64, StoreError> {
        let client = self.client("allocate_producer_ids").await?;
        let row = client
            .query_one("SELECT nextval('producer_id_blocks')", &[])
            .await
            .map_err(pg_error)?;
        let block: i64 = row.get(0);
        Ok(block * PRODUCER_ID_BLOCK)
    }

    async fn bump_producer_epoch(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: i64,
    ) -> Result<Option<i16>, StoreError> {
        let client = self.client("bump_producer_epoch").await?;
        // Compare-and-set on the producer's epoch. A producer without a row is at the epoch
        // it wrote with last, or 0, so the first bump inserts. The claimed epoch may be ahead
        // of the row (clients such as Java's bump locally) but never behind it or behind an
        // epoch a partition has seen, and the id must have been handed out. Two calls with
        // the same claim: the first moves the row past it, the second finds no match.
        let statement = client
            .prepare_cached(
                "INSERT INTO producer_epochs AS e (producer_id, producer_epoch, updated_ms)
                 SELECT $1::bigint, ($2::smallint + 1)::smallint, $3::bigint
                 WHERE $1::bigint >= 0
                   AND $1::bigint < (SELECT CASE WHEN is_called THEN (last_value + 1) * $4::bigint
                                                 ELSE 0 END
                                     FROM producer_id_blocks)
                   AND NOT EXISTS (SELECT 1 FROM producer_states
                                   WHERE producer_id = $1::bigint
                                     AND producer_epoch > $2::smallint)
                 ON CONFLICT (producer_id) DO UPDATE
                 SET producer_epoch = EXCLUDED.producer_epoch, updated_ms = EXCLUDED.updated_ms
                 WHERE e.producer_epoch <= $2::smallint
                 RETURNING producer_epoch",
            )
            .await
            .map_err(pg_error)?;
        let row = client
            .query_opt(
                &statement,
                &[&producer_id, &producer_epoch, &now_ms, &PRODUCER_ID_BLOCK],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn expire_producers(&self, before_ms: i64) -> Result<u64, StoreError> {
        let client = self.client("expire_producers").await?;
        // In slices, so no statement holds many row locks: a commit that meets one waits
        // only for its slice. Expired rows are ignored by commits anyway (the plan treats
        // them as absent), so how soon they go does not change any answer.
        let mut removed = 0;
        for table in ["producer_states", "producer_epochs"] {
            let statement = client
                .prepare_cached(&format!(
                    "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                         SELECT ctid FROM {table} WHERE updated_ms < $1 LIMIT $2))"
                ))
                .await
                .map_err(pg_error)?;
            loop {
                let deleted = client
                    .execute(&statement, &[&before_ms, &EXPIRY_SLICE])
                    .await
                    .map_err(pg_error)?;
                removed += deleted;
                if deleted < EXPIRY_SLICE as u64 {
                    break;
                }
            }
        }
        Ok(removed)
    }

    // The service registry: which processes are alive, with leases.
    //
    // Each process registers under its role with a random instance id and renews a lease;
    // an entry whose lease ran out is dead to everyone. Lease times use the database's clock,
    // so processes with skewed clocks still agree. A gateway's `node_id` is its Kafka broker id.
    /// Registers or renews `instance_id`; returns its node id.
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

    // Consumer groups. Every write by a coordinator first takes the group's coordinator row
    // (FOR SHARE: writes of one coordinator do not block each other, a claim waits for them
    // and they for it) and checks it still holds the epoch it claimed.
    async fn claim_group(&self, group_id: &str) -> Result<GroupClaim, StoreError> {
        let mut client = self.client("claim_group").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let epoch: i64 = tx
            .query_one(
                "INSERT INTO group_coordinators (group_id, epoch) VALUES ($1, 1)
                 ON CONFLICT (group_id) DO UPDATE SET epoch = group_coordinators.epoch + 1
                 RETURNING epoch",
                &[&group_id],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        let row = tx
            .query_opt(
                "SELECT generation, protocol_type, protocol_name, leader_id, members
                 FROM consumer_groups WHERE group_id = $1",
                &[&group_id],
            )
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        let group = match row {
            None => None,
            Some(row) => Some(StoredGroup {
                group_id: group_id.to_owned(),
                generation: row.get(0),
                protocol_type: row.get(1),
                protocol_name: row.get(2),
                leader: row.get(3),
                members: decode_members(bytes::Bytes::from(row.get::<_, Vec<u8>>(4)))
                    .map_err(|e| StoreError::Internal(format!("group {group_id}: {e}")))?,
            }),
        };
        Ok(GroupClaim { epoch, group })
    }

    async fn store_group(
        &self,
        epoch: i64,
        group: &StoredGroup,
        now_ms: i64,
    ) -> Result<GroupWrite, StoreError> {
        let mut client = self.client("store_group").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        if !holds_group(&tx, &group.group_id, epoch).await? {
            return Ok(GroupWrite::Fenced);
        }
        let members = encode_members(&group.members).to_vec();
        tx.execute(
            "INSERT INTO consumer_groups
                 (group_id, generation, protocol_type, protocol_name, leader_id, members, updated_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (group_id) DO UPDATE SET
                 generation = EXCLUDED.generation, protocol_type = EXCLUDED.protocol_type,
                 protocol_name = EXCLUDED.protocol_name, leader_id = EXCLUDED.leader_id,
                 members = EXCLUDED.members, updated_ms = EXCLUDED.updated_ms",
            &[
                &group.group_id,
                &group.generation,
                &group.protocol_type,
                &group.protocol_name,
                &group.leader,
                &members,
                &now_ms,
            ],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(GroupWrite::Done)
    }

    async fn commit_offsets(
        &self,
        group_id: &str,
        epoch: i64,
        offsets: &[CommittedOffset],
        now_ms: i64,
    ) -> Result<GroupWrite, StoreError> {
        let mut client = self.client("commit_offsets").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        if !holds_group(&tx, group_id, epoch).await? {
            return Ok(GroupWrite::Fenced);
        }
        let topics: Vec<&str> = offsets.iter().map(|o| o.topic.as_str()).collect();
        let partitions: Vec<i32> = offsets.iter().map(|o| o.partition_index).collect();
        let committed: Vec<i64> = offsets.iter().map(|o| o.offset).collect();
        let epochs: Vec<i32> = offsets.iter().map(|o| o.leader_epoch).collect();
        let metadata: Vec<Option<&str>> = offsets.iter().map(|o| o.metadata.as_deref()).collect();
        // One statement for any number of partitions. A partition named twice in one request
        // keeps its last value, as Kafka's map of the request does.
        tx.execute(
            "INSERT INTO group_offsets
                 (group_id, topic, partition_index, committed_offset, leader_epoch, metadata,
                  commit_ms)
             SELECT DISTINCT ON (t.topic, t.partition_index)
                    $1, t.topic, t.partition_index, t.committed_offset, t.leader_epoch,
                    t.metadata, $7
             FROM unnest($2::text[], $3::int[], $4::bigint[], $5::int[], $6::text[])
                  WITH ORDINALITY AS t(topic, partition_index, committed_offset, leader_epoch,
                                       metadata, n)
             ORDER BY t.topic, t.partition_index, t.n DESC
             ON CONFLICT (group_id, topic, partition_index) DO UPDATE SET
                 committed_offset = EXCLUDED.committed_offset,
                 leader_epoch = EXCLUDED.leader_epoch, metadata = EXCLUDED.metadata,
                 commit_ms = EXCLUDED.commit_ms",
            &[
                &group_id,
                &topics,
                &partitions,
                &committed,
                &epochs,
                &metadata,
                &now_ms,
            ],
        )
        .await
        .map_err(pg_error)?;
        // A group known only by its offsets is still a group (ListGroups, DeleteGroups).
        tx.execute(
            "INSERT INTO consumer_groups (group_id, generation, members, updated_ms)
             VALUES ($1, 0, $2, $3) ON CONFLICT (group_id) DO NOTHING",
            &[&group_id, &encode_members(&[]).to_vec(), &now_ms],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(GroupWrite::Done)
    }

    async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<CommittedOffset>, StoreError> {
        let client = self.client("fetch_offsets").await?;
        let rows = match partitions {
            None => client
                .query(
                    "SELECT topic, partition_index, committed_offset, leader_epoch, metadata
                     FROM group_offsets WHERE group_id = $1 ORDER BY topic, partition_index",
                    &[&group_id],
                )
                .await
                .map_err(pg_error)?,
            Some(wanted) => {
                let topics: Vec<&str> = wanted.iter().map(|(t, _)| t.as_str()).collect();
                let indexes: Vec<i32> = wanted.iter().map(|(_, p)| *p).collect();
                client
                    .query(
                        "SELECT o.topic, o.partition_index, o.committed_offset, o.leader_epoch,
                                o.metadata
                         FROM group_offsets o
                         JOIN (SELECT DISTINCT * FROM unnest($2::text[], $3::int[]))
                              AS w(topic, partition_index)
                           ON o.topic = w.topic AND o.partition_index = w.partition_index
                         WHERE o.group_id = $1 ORDER BY o.topic, o.partition_index",
                        &[&group_id, &topics, &indexes],
                    )
                    .await
                    .map_err(pg_error)?
            }
        };
        Ok(rows
            .iter()
            .map(|r| CommittedOffset {
                topic: r.get(0),
                partition_index: r.get(1),
                offset: r.get(2),
                leader_epoch: r.get(3),
                metadata: r.get(4),
            })
            .collect())
    }

    async fn delete_offsets(
        &self,
        group_id: &str,
        epoch: i64,
        partitions: &[(String, i32)],
    ) -> Result<GroupWrite, StoreError> {
        let mut client = self.client("delete_offsets").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        if !holds_group(&tx, group_id, epoch).await? {
            return Ok(GroupWrite::Fenced);
        }
        let topics: Vec<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
        let indexes: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
        tx.execute(
            "DELETE FROM group_offsets o
             USING unnest($2::text[], $3::int[]) AS w(topic, partition_index)
             WHERE o.group_id = $1 AND o.topic = w.topic
               AND o.partition_index = w.partition_index",
            &[&group_id, &topics, &indexes],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(GroupWrite::Done)
    }

    async fn delete_group(&self, group_id: &str, epoch: i64) -> Result<GroupWrite, StoreError> {
        let mut client = self.client("delete_group").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        if !holds_group(&tx, group_id, epoch).await? {
            return Ok(GroupWrite::Fenced);
        }
        let offsets = tx
            .execute(
                "DELETE FROM group_offsets WHERE group_id = $1",
                &[&group_id],
            )
            .await
            .map_err(pg_error)?;
        let groups = tx
            .execute(
                "DELETE FROM consumer_groups WHERE group_id = $1",
                &[&group_id],
            )
            .await
            .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(if offsets + groups > 0 {
            GroupWrite::Done
        } else {
            GroupWrite::NotFound
        })
    }

    async fn list_groups(&self) -> Result<Vec<GroupListing>, StoreError> {
        let client = self.client("list_groups").await?;
        let rows = client
            .query(
                "SELECT group_id, coalesce(protocol_type, ''), leader_id IS NOT NULL
                 FROM consumer_groups ORDER BY group_id",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| GroupListing {
                group_id: r.get(0),
                protocol_type: r.get(1),
                has_members: r.get(2),
            })
            .collect())
    }
}

/// Locks a group's coordinator row for the rest of the transaction and checks `epoch` is
/// still the group's coordinator epoch.
async fn holds_group(
    tx: &deadpool_postgres::Transaction<'_>,
    group_id: &str,
    epoch: i64,
) -> Result<bool, StoreError> {
    let row = tx
        .query_opt(
            "SELECT epoch FROM group_coordinators WHERE group_id = $1 FOR SHARE",
            &[&group_id],
        )
        .await
        .map_err(pg_error)?;
    Ok(row.is_some_and(|r| r.get::<_, i64>(0) == epoch))
}

/// A LISTENing connection: the client that keeps it open and its notifications' payloads.
/// The receiver ends when the connection is lost.
struct Listening {
    _client: tokio_postgres::Client,
    payloads: mpsc::UnboundedReceiver<String>,
}

async fn listen(config: &tokio_postgres::Config) -> Result<Listening, StoreError> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(pg_error)?;
    let (sender, payloads) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if sender.send(n.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "commit feed connection failed");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {COMMIT_CHANNEL}"))
        .await
        .map_err(pg_error)?;
    Ok(Listening {
        _client: client,
        payloads,
    })
}

/// Forwards notifications until the subscriber goes away, reconnecting (with a gap event)
/// when the connection is lost.
async fn follow_commits(
    config: tokio_postgres::Config,
    mut listening: Listening,
    sender: mpsc::Sender<CommitEvent>,
) {
    loop {
        loop {
            let payload = tokio::select! {
                payload = listening.payloads.recv() => payload,
                _ = sender.closed() => return,
            };
            let Some(object_id) = payload else { break };
            if sender
                .send(CommitEvent::Committed { object_id })
                .await
                .is_err()
            {
                return;
            }
        }
        listening = loop {
            if sender.is_closed() {
                return;
            }
            match listen(&config).await {
                Ok(listening) => break listening,
                Err(e) => {
                    warn!(error = %e, "re-opening the commit feed failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        if sender.send(CommitEvent::Gap).await.is_err() {
            return;
        }
    }
}

/// Maps a PostgreSQL error to what the caller should do about it.
/// SQLSTATE raised at COMMIT when a batch's commit deadline passed (migration V3).
const DEADLINE_PASSED: &str = "YK001";

/// The server's clock in ms since the epoch: the clock commit deadlines are in.
const SERVER_NOW_MS: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint";

pub(crate) fn pg_error(err: tokio_postgres::Error) -> StoreError {
    metrics().metastore.errors.inc();
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

/// Planned index rows as the column arrays the insert statement unnests.
#[derive(Default)]
struct EntryColumns {
    topic_ids: Vec<Uuid>,
    partitions: Vec<i32>,
    base_offsets: Vec<i64>,
    last_offsets: Vec<i64>,
    max_timestamps: Vec<i64>,
    byte_offsets: Vec<i64>,
    byte_lengths: Vec<i64>,
    batch_counts: Vec<i32>,
}

impl EntryColumns {
    fn push(&mut self, entry: &PlannedEntry) {
        self.topic_ids.push(entry.topic_id);
        self.partitions.push(entry.partition_index);
        self.base_offsets.push(entry.base_offset);
        self.last_offsets.push(entry.last_offset);
        self.max_timestamps.push(entry.max_timestamp);
        self.byte_offsets.push(entry.byte_offset);
        self.byte_lengths.push(entry.byte_length);
        self.batch_counts.push(entry.batch_count);
    }
}

/// Upserts the producer states a commit changed, in one statement. Each state's recent
/// batches travel as the text of a bigint array, since `unnest` would flatten an array of
/// arrays.
async fn write_producer_states(
    tx: &deadpool_postgres::Transaction<'_>,
    states: &[(ProducerKey, ProducerState)],
) -> Result<u64, tokio_postgres::Error> {
    if states.is_empty() {
        return Ok(0);
    }
    let mut producer_ids = Vec::with_capacity(states.len());
    let mut topic_ids = Vec::with_capacity(states.len());
    let mut partitions = Vec::with_capacity(states.len());
    let mut epochs = Vec::with_capacity(states.len());
    let mut recents = Vec::with_capacity(states.len());
    let mut updated = Vec::with_capacity(states.len());
    for ((producer_id, topic_id, partition_index), state) in states {
        producer_ids.push(*producer_id);
        topic_ids.push(*topic_id);
        partitions.push(*partition_index);
        epochs.push(state.producer_epoch);
        recents.push(encode_recent(&state.recent));
        updated.push(state.updated_ms);
    }
    // Expects: the partitions' rows are locked by this transaction, so no other commit
    // touches these states concurrently.
    let statement = tx
        .prepare_cached(
            "INSERT INTO producer_states AS s (producer_id, topic_id, partition_index,
                 producer_epoch, recent, updated_ms)
             SELECT producer_id, topic_id, partition_index, producer_epoch, recent::bigint[],
                    updated_ms
             FROM unnest($1::bigint[], $2::uuid[], $3::int[], $4::smallint[], $5::text[],
                         $6::bigint[])
                  AS i(producer_id, topic_id, partition_index, producer_epoch, recent,
                       updated_ms)
             ON CONFLICT (producer_id, topic_id, partition_index) DO UPDATE
             SET producer_epoch = EXCLUDED.producer_epoch, recent = EXCLUDED.recent,
                 updated_ms = EXCLUDED.updated_ms",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &producer_ids,
            &topic_ids,
            &partitions,
            &epochs,
            &recents,
            &updated,
        ],
    )
    .await
}

/// `{first,last,base,first,last,base,...}`, oldest batch first.
fn encode_recent(recent: &VecDeque<SequenceRange>) -> String {
    let numbers: Vec<String> = recent
        .iter()
        .flat_map(|r| {
            [
                i64::from(r.first_sequence),
                i64::from(r.last_sequence),
                r.base_offset,
            ]
        })
        .map(|n| n.to_string())
        .collect();
    format!("{{{}}}", numbers.join(","))
}

fn decode_recent(flat: &[i64]) -> Option<VecDeque<SequenceRange>> {
    if flat.is_empty() || !flat.len().is_multiple_of(3) {
        return None;
    }
    flat.chunks_exact(3)
        .map(|c| {
            Some(SequenceRange {
                first_sequence: i32::try_from(c[0]).ok()?,
                last_sequence: i32::try_from(c[1]).ok()?,
                base_offset: c[2],
            })
        })
        .collect()
}

/// A pooled connection that records, when dropped, how long its operation held it.
pub(crate) struct TimedClient {
    client: deadpool_postgres::Object,
    operation: &'static str,
    since: Instant,
}

impl std::ops::Deref for TimedClient {
    type Target = deadpool_postgres::Object;

    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

impl std::ops::DerefMut for TimedClient {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.client
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
