//! [`Log`] on PostgreSQL: `partitions`, `objects`, `object_index` and `producer_states` as
//! the flush commit writes them, and the commit feed over LISTEN/NOTIFY.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls, Socket, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::warn;
use uuid::Uuid;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::metastore::model::*;
use crate::metastore::plan::{self, PlannedEntry, ProducerKey};
use crate::metastore::producers::{ProducerState, SequenceRange};

use super::super::log::Log;
use super::{PgMetastore, Pipelined, SERVER_NOW_MS, pg_error};

#[async_trait]
impl Log for PgMetastore {
    /// Offsets of many partitions in one query; missing partitions are absent.
    async fn partition_states(
        &self,
        partitions: &[(Uuid, i32)],
    ) -> Result<Vec<PartitionState>, StoreError> {
        let topic_ids: Vec<Uuid> = partitions.iter().map(|p| p.0).collect();
        let indexes: Vec<i32> = partitions.iter().map(|p| p.1).collect();
        let client = self.client("partition_states").await?;
        let statement = client
            .prepare_cached(&format!(
                "SELECT p.topic_id, p.partition_index, p.next_offset, p.log_start_offset,
                            {OPEN_START}
                     FROM partitions p
                     JOIN unnest($1::uuid[], $2::int[]) AS i(topic_id, partition_index)
                       USING (topic_id, partition_index)"
            ))
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
                open_start: r.get(4),
            })
            .collect())
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
                     FOR NO KEY UPDATE),
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
                "SELECT i.topic_id, i.partition_index, {ENTRY_COLUMNS}, {OPEN_START}
                 FROM object_index i JOIN objects o USING (object_id)
                 JOIN partitions p USING (topic_id, partition_index)
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
                open_start: r.get(2 + ENTRY_COLUMN_COUNT),
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

    async fn cleaning(&self, topic_id: Uuid, partition_index: i32) -> Result<Cleaning, StoreError> {
        let client = self.client("cleaning").await?;
        let row = client
            .query_opt(
                "SELECT cleaned_through, tombstones_due_ms FROM partitions
                 WHERE topic_id = $1 AND partition_index = $2",
                &[&topic_id, &partition_index],
            )
            .await
            .map_err(pg_error)?;
        row.map(|r| Cleaning {
            cleaned_through: r.get(0),
            tombstones_due_ms: r.get(1),
        })
        .ok_or_else(|| StoreError::NotFound(format!("partition {topic_id}/{partition_index}")))
    }

    /// LISTENs on a dedicated connection (re-opened when lost, reporting a gap). The
    /// connection is established before this returns.
    async fn commit_feed(&self) -> Result<mpsc::Receiver<CommitEvent>, StoreError> {
        let (sender, receiver) = mpsc::channel(4096);
        let listening = listen(&self.pg_config, self.tls.as_ref(), COMMIT_CHANNEL).await?;
        let follow = Follow {
            config: self.pg_config.clone(),
            tls: self.tls.clone(),
            channel: COMMIT_CHANNEL,
            event: commit_event,
            gap: CommitEvent::Gap,
        };
        tokio::spawn(follow.run(listening, sender));
        Ok(receiver)
    }

    // The writer's flush commit: offsets are assigned here and nowhere else.
    //
    // One transaction per flushed object, whatever the number of partitions in it, in two
    // round trips (a [`Pipelined`] transaction):
    // 1. BEGIN, then lock the touched partition rows in (topic_id, partition_index) order,
    // so two writers committing overlapping partitions queue instead of deadlocking, and
    // read the producer states and the server's clock under those locks;
    // 2. after the pure plan ([`plan::plan_commit`]) decided each batch, the writes and
    // COMMIT: the commit deadline for the trigger checked at COMMIT, the object row, its
    // index rows, the partitions' next offsets, the feed notification and the producer
    // states. The partitions' locks, which other commits and transactions' ends to these
    // partitions wait for, are held for one round trip and the plan.
    //
    // Partitions that vanished (topic deleted while the flush was in flight) are simply
    // absent from the result.
    /// Commits one uploaded object. Each partition must appear at most once in `appends`.
    ///
    /// A failure the server reports before the COMMIT is [`StoreError::Retriable`] (the
    /// transaction rolled back); a failure of the COMMIT itself, or a connection lost once
    /// the COMMIT may have gone out, is [`StoreError::OutcomeUnknown`].
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

        let tx = Pipelined::new(self.client("commit_object").await?);
        // Prepared before BEGIN (see `Pipelined`): once per connection, then from its cache.
        let statements = CommitStatements::prepare(tx.client())
            .await
            .map_err(pg_error)?;

        // Round trip 1: BEGIN, and lock the partitions (*partition locks* in
        // `postgres/mod.rs`: fixed order and mode, so concurrent commits cannot deadlock)
        // and read what the plan needs. Producer state is read after the locks are held, so
        // it reflects every earlier commit to these partitions. The transactions of the
        // batches' producers too: an end of one of them either committed before (its
        // partitions are gone from it) or waits for these locks and comes after what this
        // commit stores. Where each already starts is not read: `write_transaction_starts`
        // keeps the first start of a partition. Commit deadlines are in the server's clock,
        // read after the locks were granted.
        // Expects: the partitions exist; missing ones (deleted topics) are skipped.
        let transactional_producers = plan::transactional_producers(appends);
        let client = tx.client();
        let lock_params: [&(dyn ToSql + Sync); 2] = [&topic_ids, &partitions];
        let producer_params: [&(dyn ToSql + Sync); 3] =
            [&producer_ids, &producer_topics, &producer_partitions];
        let ((), locked, producer_rows, transaction_rows, server_now) = futures::try_join!(
            tx.begin(),
            client.query(&statements.lock, &lock_params),
            async {
                if producer_keys.is_empty() {
                    return Ok(Vec::new());
                }
                client
                    .query(&statements.read_producers, &producer_params)
                    .await
            },
            async {
                if transactional_producers.is_empty() {
                    return Ok(Vec::new());
                }
                client
                    .query(&statements.read_transactions, &[&transactional_producers])
                    .await
            },
            client.query_one(&statements.server_clock, &[]),
        )
        .map_err(pg_error)?;
        let mut transactions: HashMap<i64, plan::ProducerTransaction> = HashMap::new();
        for row in &transaction_rows {
            let topics: Vec<Uuid> = row.get(4);
            let indexes: Vec<i32> = row.get(5);
            transactions.insert(
                row.get(0),
                plan::ProducerTransaction {
                    transactional_id: row.get(1),
                    producer_epoch: row.get(2),
                    open: row.get(3),
                    partitions: topics.into_iter().zip(indexes).map(|p| (p, None)).collect(),
                },
            );
        }
        let mut states = HashMap::with_capacity(locked.len());
        for row in &locked {
            let state = PartitionState {
                topic_id: row.get(0),
                partition_index: row.get(1),
                next_offset: row.get(2),
                log_start_offset: row.get(3),
                // Not what a commit plans with.
                open_start: None,
            };
            states.insert((state.topic_id, state.partition_index), state);
        }
        let mut producers = HashMap::with_capacity(producer_rows.len());
        for row in &producer_rows {
            let recent: Vec<i64> = row.get(4);
            let recent = decode_recent(row.get(0), &recent)?;
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
            transactions,
            plan::CommitClocks {
                now_ms: commit.now_ms,
                expire_before_ms: commit.producers_expire_before_ms,
                server_now_ms: server_now.get(0),
            },
        );

        // Round trip 2: write the plan, and COMMIT. An object none of whose batches was
        // stored is not recorded (its S3 copy is an orphan, collected later).
        let mut columns = EntryColumns::default();
        for entry in &plan.entries {
            columns.push(entry);
        }
        let (advanced_topics, advanced_partitions, next_offsets) = plan
            .next_offsets
            .iter()
            .copied()
            .collect::<(Vec<Uuid>, Vec<i32>, Vec<i64>)>();
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
        let deadline = plan
            .commit_deadline_ms
            .map_or_else(String::new, |d| d.to_string());
        let deadline_params: [&(dyn ToSql + Sync); 1] = [&deadline];
        let writes = async {
            if plan.entries.is_empty() {
                return Ok(());
            }
            // Sent together, executed by the server in this order.
            futures::try_join!(
                client.execute(&statements.set_deadline, &deadline_params),
                client.execute(&statements.insert_object, &object_params),
                client.execute(&statements.insert_entries, &entry_params),
                client.execute(&statements.advance, &advance_params),
                client.execute(&statements.notify, &notify_params),
                write_producer_states(client, &statements, &plan.producer_states),
                write_transaction_starts(client, &statements, &plan.transaction_starts),
            )
            .map(|_| ())
        };
        futures::try_join!(
            async {
                writes.await.map_err(|e| {
                    if e.code().is_some() {
                        // The server refused a write: the transaction is rolled back,
                        // and the COMMIT behind it answers as a ROLLBACK.
                        pg_error(e)
                    } else {
                        // The connection failed with the COMMIT perhaps sent.
                        StoreError::OutcomeUnknown(pg_error(e).to_string())
                    }
                })
            },
            async { tx.commit().await.map_err(commit_error) },
        )?;
        tx.finish();
        Ok(plan.results)
    }
}

/// What a failed COMMIT of a flush means for the flush.
fn commit_error(e: tokio_postgres::Error) -> StoreError {
    if e.code().is_some_and(|c| c.code() == DEADLINE_PASSED) {
        // Refused by the trigger before anything was committed: replanning will leave the
        // late batches out.
        return StoreError::Retriable(format!("postgres: {e}"));
    }
    match pg_error(e) {
        StoreError::Retriable(detail) | StoreError::Internal(detail) => {
            StoreError::OutcomeUnknown(detail)
        }
        other => other,
    }
}

/// The flush commit's statements, prepared before its transaction begins (see
/// [`Pipelined`]).
struct CommitStatements {
    lock: Statement,
    read_producers: Statement,
    read_transactions: Statement,
    server_clock: Statement,
    set_deadline: Statement,
    insert_object: Statement,
    insert_entries: Statement,
    advance: Statement,
    notify: Statement,
    producer_states: Statement,
    transaction_starts: Statement,
}

impl CommitStatements {
    /// From the connection's cache; on a new connection, prepared in one round trip.
    async fn prepare(
        client: &deadpool_postgres::ClientWrapper,
    ) -> Result<Self, tokio_postgres::Error> {
        let (lock, read_producers, read_transactions, server_clock) = futures::try_join!(
            client.prepare_cached(
                "SELECT topic_id, partition_index, next_offset, log_start_offset
                 FROM partitions
                 WHERE (topic_id, partition_index) IN
                       (SELECT * FROM unnest($1::uuid[], $2::int[]))
                 ORDER BY topic_id, partition_index
                 FOR NO KEY UPDATE",
            ),
            client.prepare_cached(
                "SELECT s.producer_id, s.topic_id, s.partition_index, s.producer_epoch,
                        s.recent, s.updated_ms
                 FROM producer_states s
                 JOIN unnest($1::bigint[], $2::uuid[], $3::int[])
                      AS k(producer_id, topic_id, partition_index)
                   USING (producer_id, topic_id, partition_index)",
            ),
            client.prepare_cached(
                "SELECT producer_id, transactional_id, producer_epoch, state = 'Ongoing',
                        partition_topics, partition_indexes
                 FROM transactions WHERE producer_id = ANY($1)",
            ),
            client.prepare_cached(SERVER_NOW_MS),
        )?;
        let (set_deadline, insert_object, insert_entries, advance, notify) = futures::try_join!(
            // Checked while COMMIT runs by the deferred trigger of migration V3.
            client.prepare_cached("SELECT set_config('yaks.commit_deadline_ms', $1, true)"),
            client.prepare_cached(
                "INSERT INTO objects (object_id, object_key, size_bytes) VALUES ($1, $2, $3)",
            ),
            client.prepare_cached(
                "INSERT INTO object_index (topic_id, partition_index, base_offset,
                     last_offset, max_timestamp, object_id, byte_offset, byte_length,
                     batch_count)
                 SELECT topic_id, partition_index, base_offset, last_offset, max_timestamp,
                        $8, byte_offset, byte_length, batch_count
                 FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[],
                             $5::bigint[], $6::bigint[], $7::bigint[], $9::int[])
                      AS i(topic_id, partition_index, base_offset, last_offset,
                           max_timestamp, byte_offset, byte_length, batch_count)",
            ),
            // Expects: rows locked in round trip 1, their next_offset unchanged since.
            client.prepare_cached(
                "UPDATE partitions p SET next_offset = i.next_offset
                 FROM unnest($1::uuid[], $2::int[], $3::bigint[])
                      AS i(topic_id, partition_index, next_offset)
                 WHERE p.topic_id = i.topic_id AND p.partition_index = i.partition_index",
            ),
            // Delivered to listening readers at COMMIT, in commit order, or not at all.
            client.prepare_cached("SELECT pg_notify($1, $2)"),
        )?;
        let (producer_states, transaction_starts) = futures::try_join!(
            // Expects: the partitions' rows are locked by this transaction, so no other
            // commit touches these states concurrently.
            client.prepare_cached(
                "INSERT INTO producer_states AS s (producer_id, topic_id, partition_index,
                     producer_epoch, recent, updated_ms)
                 SELECT producer_id, topic_id, partition_index, producer_epoch,
                        recent::bigint[], updated_ms
                 FROM unnest($1::bigint[], $2::uuid[], $3::int[], $4::smallint[],
                             $5::text[], $6::bigint[])
                      AS i(producer_id, topic_id, partition_index, producer_epoch, recent,
                           updated_ms)
                 ON CONFLICT (producer_id, topic_id, partition_index) DO UPDATE
                 SET producer_epoch = EXCLUDED.producer_epoch, recent = EXCLUDED.recent,
                     updated_ms = EXCLUDED.updated_ms",
            ),
            client.prepare_cached(
                "INSERT INTO txn_starts (topic_id, partition_index, producer_id, first_offset)
                 SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[])
                 ON CONFLICT DO NOTHING",
            ),
        )?;
        Ok(CommitStatements {
            lock,
            read_producers,
            read_transactions,
            server_clock,
            set_deadline,
            insert_object,
            insert_entries,
            advance,
            notify,
            producer_states,
            transaction_starts,
        })
    }
}

/// Where partition `p`'s earliest open transaction with data starts (NULL for none): the
/// least first offset of its `txn_starts` rows (migration V11).
const OPEN_START: &str = "(SELECT min(s.first_offset) FROM txn_starts s
                          WHERE s.topic_id = p.topic_id
                            AND s.partition_index = p.partition_index)";

/// Channel on which every flush commit announces its object id (DESIGN.md, write path 6).
pub(super) const COMMIT_CHANNEL: &str = "yaks_commits";

/// The columns of an [`IndexEntry`], for queries joining `object_index i` and `objects o`.
/// The range of a body kept in PostgreSQL comes with it (NULL for an object in S3).
const ENTRY_COLUMNS: &str = "i.base_offset, i.last_offset, i.max_timestamp, o.object_key, \
                             i.byte_offset, i.byte_length, o.size_bytes, \
                             substring(o.body FROM (i.byte_offset + 1)::int \
                                       FOR i.byte_length::int)";

/// How many columns [`ENTRY_COLUMNS`] are.
const ENTRY_COLUMN_COUNT: usize = 8;

/// The entry in the [`ENTRY_COLUMNS`] of `row` that start at column `first`.
fn entry_from_row(row: &tokio_postgres::Row, first: usize) -> IndexEntry {
    IndexEntry {
        base_offset: row.get(first),
        last_offset: row.get(first + 1),
        max_timestamp: row.get(first + 2),
        object_key: row.get(first + 3),
        byte_offset: row.get(first + 4),
        byte_length: row.get(first + 5),
        object_size: row.get(first + 6),
        inline: row.get::<_, Option<Vec<u8>>>(first + 7).map(Bytes::from),
    }
}

impl PgMetastore {
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
}

/// A LISTENing connection: the client that keeps it open and its notifications' payloads.
/// The receiver ends when the connection is lost.
pub(super) struct Listening {
    _client: tokio_postgres::Client,
    payloads: mpsc::UnboundedReceiver<String>,
}

/// Opens a connection LISTENing on `channel`.
pub(super) async fn listen(
    config: &tokio_postgres::Config,
    tls: Option<&MakeRustlsConnect>,
    channel: &'static str,
) -> Result<Listening, StoreError> {
    match tls {
        Some(tls) => listen_with(config, tls.clone(), channel).await,
        None => listen_with(config, NoTls, channel).await,
    }
}

async fn listen_with<T>(
    config: &tokio_postgres::Config,
    tls: T,
    channel: &'static str,
) -> Result<Listening, StoreError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await.map_err(pg_error)?;
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
                    warn!(error = %e, channel, "notification connection failed");
                    return;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .map_err(pg_error)?;
    Ok(Listening {
        _client: client,
        payloads,
    })
}

/// Where a LISTENing connection's notifications go: each payload becomes an event, and a
/// lost connection, once re-opened, the `gap` event (notifications may have been missed).
pub(super) struct Follow<T> {
    /// The connection's settings, to re-open it.
    pub config: tokio_postgres::Config,
    /// Its TLS, if any.
    pub tls: Option<MakeRustlsConnect>,
    /// The channel LISTENed on.
    pub channel: &'static str,
    /// The event a payload stands for.
    pub event: fn(String) -> T,
    /// The event sent after a reconnection.
    pub gap: T,
}

impl<T: Clone + Send + 'static> Follow<T> {
    /// Forwards notifications until the subscriber goes away, reconnecting when the
    /// connection is lost.
    pub(super) async fn run(self, mut listening: Listening, sender: mpsc::Sender<T>) {
        loop {
            loop {
                let payload = tokio::select! {
                    payload = listening.payloads.recv() => payload,
                    _ = sender.closed() => return,
                };
                let Some(payload) = payload else { break };
                if sender.send((self.event)(payload)).await.is_err() {
                    return;
                }
            }
            listening = loop {
                if sender.is_closed() {
                    return;
                }
                match listen(&self.config, self.tls.as_ref(), self.channel).await {
                    Ok(listening) => break listening,
                    Err(e) => {
                        warn!(error = %e, channel = self.channel, "re-opening a LISTEN connection failed; retrying");
                        crate::clock::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            if sender.send(self.gap.clone()).await.is_err() {
                return;
            }
        }
    }
}

/// Prefix of the notification a key compaction swap sends (object ids, the payload of
/// every other notification, are ULIDs and never hold a colon).
pub(super) const REWRITTEN_PREFIX: &str = "rewritten:";

/// The event a notification's payload stands for: `rewritten:{topic_id}:{partition}` for a
/// key compaction swap, else a committed object's id.
fn commit_event(payload: String) -> CommitEvent {
    let rewritten = payload.strip_prefix(REWRITTEN_PREFIX).and_then(|rest| {
        let (topic, partition) = rest.split_once(':')?;
        Some(CommitEvent::Rewritten {
            topic_id: topic.parse().ok()?,
            partition_index: partition.parse().ok()?,
        })
    });
    match rewritten {
        Some(event) => event,
        // A malformed rewrite notice cannot say which partition: re-read them all.
        None if payload.starts_with(REWRITTEN_PREFIX) => CommitEvent::Gap,
        None => CommitEvent::Committed { object_id: payload },
    }
}

/// SQLSTATE raised at COMMIT when a batch's commit deadline passed (migration V3).
const DEADLINE_PASSED: &str = "YK001";

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

/// Records where open transactions start in partitions they had stored nothing in, in one
/// statement; a partition where one already starts keeps that earlier start. Expects: the
/// partitions locked by this transaction, as an end of the transaction locks them to
/// delete these rows.
async fn write_transaction_starts(
    client: &tokio_postgres::Client,
    statements: &CommitStatements,
    starts: &[plan::TransactionStart],
) -> Result<u64, tokio_postgres::Error> {
    if starts.is_empty() {
        return Ok(0);
    }
    let mut topics = Vec::with_capacity(starts.len());
    let mut partitions = Vec::with_capacity(starts.len());
    let mut producers = Vec::with_capacity(starts.len());
    let mut offsets = Vec::with_capacity(starts.len());
    for start in starts {
        topics.push(start.topic_id);
        partitions.push(start.partition_index);
        producers.push(start.producer_id);
        offsets.push(start.first_offset);
    }
    client
        .execute(
            &statements.transaction_starts,
            &[&topics, &partitions, &producers, &offsets],
        )
        .await
}

/// Upserts the producer states a commit changed, in one statement. Each state's recent
/// batches travel as the text of a bigint array, since `unnest` would flatten an array of
/// arrays.
async fn write_producer_states(
    client: &tokio_postgres::Client,
    statements: &CommitStatements,
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
    client
        .execute(
            &statements.producer_states,
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

/// The `recent` column of producer `producer_id`'s row, flattened triples of
/// (first_sequence, last_sequence, base_offset).
pub(super) fn decode_recent(
    producer_id: i64,
    flat: &[i64],
) -> Result<VecDeque<SequenceRange>, StoreError> {
    let malformed = || {
        StoreError::Internal(format!(
            "producer_states.recent of producer {producer_id} is malformed"
        ))
    };
    if flat.is_empty() || !flat.len().is_multiple_of(3) {
        return Err(malformed());
    }
    flat.chunks_exact(3)
        .map(|c| {
            Some(SequenceRange {
                first_sequence: i32::try_from(c[0]).ok()?,
                last_sequence: i32::try_from(c[1]).ok()?,
                base_offset: c[2],
            })
        })
        .collect::<Option<_>>()
        .ok_or_else(malformed)
}
