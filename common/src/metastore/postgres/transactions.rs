//! [`Transactions`] on PostgreSQL: `transactions` (each id's record, its open transaction's
//! partitions included), `txn_starts`, `txn_offsets` and `aborted_txns`. Every change reads
//! the transactional id's row under its lock and lets the pure rules decide; an end writes
//! its markers' index rows, the partitions' offsets, the aborted-transaction rows and the
//! offsets in the same transaction.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::error::StoreError;
use crate::metastore::groups::{CommittedOffset, encode_members};
use crate::metastore::transactions::*;

use super::log::COMMIT_CHANNEL;
use super::{PgMetastore, Pipelined, execute_cached, pg_error, query_cached};

/// Class of the advisory locks that serialise InitProducerId per transactional id, whose
/// row may not exist yet to be locked ("tx").
const INIT_LOCK_CLASS: i32 = 0x7478;

/// A record's columns (migrations V9 and V11): the open transaction's partitions are the
/// two arrays, paired by position.
const RECORD_COLUMNS: &str = "transactional_id, producer_id, producer_epoch, last_epoch,
     previous_producer_id, state, timeout_ms, start_ms, updated_ms, groups,
     partition_topics, partition_indexes";

type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// Reads one transactional id's record, locked for the rest of the transaction `client` is
/// in when `lock`.
async fn load<C: GenericClient>(
    client: &C,
    id: &str,
    lock: bool,
) -> Result<Option<TxnRecord>, StoreError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let statement = client
        .prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM transactions WHERE transactional_id = $1{lock}"
        ))
        .await
        .map_err(pg_error)?;
    let found = client
        .query_opt(&statement, &[&id])
        .await
        .map_err(pg_error)?;
    found.as_ref().map(record).transpose()
}

/// A record from a row of [`RECORD_COLUMNS`].
fn record(row: &tokio_postgres::Row) -> Result<TxnRecord, StoreError> {
    let state: String = row.get(5);
    let groups: Vec<String> = row.get(9);
    let topics: Vec<Uuid> = row.get(10);
    let indexes: Vec<i32> = row.get(11);
    Ok(TxnRecord {
        transactional_id: row.get(0),
        producer_id: row.get(1),
        producer_epoch: row.get(2),
        last_epoch: row.get(3),
        previous_producer_id: row.get(4),
        state: TxnState::from_name(&state)
            .ok_or_else(|| StoreError::Internal(format!("transaction state {state}")))?,
        timeout_ms: row.get(6),
        start_ms: row.get(7),
        updated_ms: row.get(8),
        partitions: topics.into_iter().zip(indexes).collect(),
        groups: groups.into_iter().collect(),
    })
}

/// Writes a record's row.
async fn store(tx: &Tx<'_>, record: &TxnRecord) -> Result<(), StoreError> {
    let row = RecordRow::of(record);
    execute_cached(tx, &store_statement(), &row.params()).await?;
    Ok(())
}

/// The statement [`store`] runs.
fn store_statement() -> String {
    format!(
        "INSERT INTO transactions ({RECORD_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (transactional_id) DO UPDATE SET
             producer_id = excluded.producer_id,
             producer_epoch = excluded.producer_epoch,
             last_epoch = excluded.last_epoch,
             previous_producer_id = excluded.previous_producer_id,
             state = excluded.state,
             timeout_ms = excluded.timeout_ms,
             start_ms = excluded.start_ms,
             updated_ms = excluded.updated_ms,
             groups = excluded.groups,
             partition_topics = excluded.partition_topics,
             partition_indexes = excluded.partition_indexes"
    )
}

/// A record as [`store_statement`] stores it: its state's name, its groups and its
/// partitions in the columns' types.
struct RecordRow<'a> {
    record: &'a TxnRecord,
    state: &'static str,
    groups: Vec<&'a str>,
    topics: Vec<Uuid>,
    indexes: Vec<i32>,
}

impl<'a> RecordRow<'a> {
    fn of(record: &'a TxnRecord) -> Self {
        let (topics, indexes) = record.partitions.iter().copied().unzip();
        RecordRow {
            record,
            state: record.state.name(),
            groups: record.groups.iter().map(String::as_str).collect(),
            topics,
            indexes,
        }
    }

    /// [`store_statement`]'s parameters.
    fn params(&self) -> [&(dyn ToSql + Sync); 12] {
        let record = self.record;
        [
            &record.transactional_id,
            &record.producer_id,
            &record.producer_epoch,
            &record.last_epoch,
            &record.previous_producer_id,
            &self.state,
            &record.timeout_ms,
            &record.start_ms,
            &record.updated_ms,
            &self.groups,
            &self.topics,
            &self.indexes,
        ]
    }
}

/// Ends `record`'s open transaction with `object`'s markers: indexes each partition's
/// marker at the partition's next offset, records the aborted ranges or moves the staged
/// offsets, and leaves the record ended. Expects: the record's row locked by the
/// transaction `client` is in; with `commit`, that transaction, ended here.
///
/// After the partitions' locks, every statement is sent at once (pipelined; the server
/// runs them in order), as the flush commit does, and with `commit` the COMMIT behind
/// them: the locks, which flush commits of the same partitions wait for, are held for one
/// round trip and the COMMIT's, not ten.
async fn write_end<C: GenericClient>(
    client: &C,
    commit: Option<&Pipelined>,
    record: &TxnRecord,
    object: &MarkerObject,
    now_ms: i64,
) -> Result<(), StoreError> {
    let id = record.transactional_id.as_str();
    let markers = &object.markers;
    let (topics, partitions): (Vec<Uuid>, Vec<i32>) = record.partitions.iter().copied().unzip();
    let prepare =
        |sql: &'static str| async move { client.prepare_cached(sql).await.map_err(pg_error) };
    let mut rows = Columns::default();
    if !topics.is_empty() {
        // The partitions' locks, in the flush commit's order and mode so neither can
        // deadlock the other (*partition locks* in `postgres/mod.rs`); a flush storing this
        // transaction's data either finished before (its batches come before the marker)
        // or finds the transaction ended and refuses them.
        let locked = query_cached(
            client,
            "SELECT topic_id, partition_index, next_offset FROM partitions
             WHERE (topic_id, partition_index) IN
                   (SELECT * FROM unnest($1::uuid[], $2::int[]))
             ORDER BY topic_id, partition_index
             FOR NO KEY UPDATE",
            &[&topics, &partitions],
        )
        .await?;
        for row in &locked {
            let key: (Uuid, i32) = (row.get(0), row.get(1));
            let Some(&(_, _, byte_offset, byte_length)) = object
                .ranges
                .iter()
                .find(|(topic, partition, _, _)| (*topic, *partition) == key)
            else {
                return Err(StoreError::Internal(format!(
                    "markers of {id} miss partition {}/{}",
                    key.0, key.1
                )));
            };
            rows.topics.push(key.0);
            rows.partitions.push(key.1);
            rows.offsets.push(row.get(2));
            rows.byte_offsets.push(byte_offset);
            rows.byte_lengths.push(byte_length);
        }
    }
    let object_id = object.object.to_string();
    let body = object.body.as_ref();
    let groups: Vec<&str> = record.groups.iter().map(String::as_str).collect();
    let ended = ended(record, markers, now_ms);
    let no_members = encode_members(&[]).to_vec();
    // Statements and their parameters, in the order they must run.
    let mut writes: Vec<(tokio_postgres::Statement, Vec<&(dyn ToSql + Sync)>)> = Vec::new();
    if !topics.is_empty() {
        writes.push((
            prepare(
                "INSERT INTO objects (object_id, object_key, size_bytes, body)
                 VALUES ($1, $2, $3, $4)",
            )
            .await?,
            vec![&object_id, &object.object_key, &object.size_bytes, &body],
        ));
        writes.push((
            prepare(
                "INSERT INTO object_index (topic_id, partition_index, base_offset, last_offset,
                     max_timestamp, object_id, byte_offset, byte_length, batch_count)
                 SELECT topic_id, partition_index, base_offset, base_offset, $4, $5,
                        byte_offset, byte_length, 1
                 FROM unnest($1::uuid[], $2::int[], $3::bigint[], $6::bigint[], $7::bigint[])
                      AS m(topic_id, partition_index, base_offset, byte_offset, byte_length)",
            )
            .await?,
            vec![
                &rows.topics,
                &rows.partitions,
                &rows.offsets,
                &object.timestamp_ms,
                &object_id,
                &rows.byte_offsets,
                &rows.byte_lengths,
            ],
        ));
        writes.push((
            prepare(
                "UPDATE partitions p SET next_offset = p.next_offset + 1
                 FROM unnest($1::uuid[], $2::int[]) AS m(topic_id, partition_index)
                 WHERE p.topic_id = m.topic_id AND p.partition_index = m.partition_index",
            )
            .await?,
            vec![&rows.topics, &rows.partitions],
        ));
        // The transaction no longer holds the partitions' last stable offsets back. An
        // abort records the range of each partition it stored data in (a marker alone
        // hides nothing), from the same rows.
        let (starts, params): (_, Vec<&(dyn ToSql + Sync)>) = if markers.commit {
            (
                "DELETE FROM txn_starts s
                 USING unnest($2::uuid[], $3::int[]) AS m(topic_id, partition_index)
                 WHERE s.topic_id = m.topic_id AND s.partition_index = m.partition_index
                   AND s.producer_id = $1",
                vec![&record.producer_id, &rows.topics, &rows.partitions],
            )
        } else {
            (
                "WITH gone AS (
                     DELETE FROM txn_starts s
                     USING unnest($2::uuid[], $3::int[], $4::bigint[])
                           AS m(topic_id, partition_index, last_offset)
                     WHERE s.topic_id = m.topic_id AND s.partition_index = m.partition_index
                       AND s.producer_id = $1
                     RETURNING s.topic_id, s.partition_index, s.first_offset, m.last_offset)
                 INSERT INTO aborted_txns (topic_id, partition_index, producer_id,
                     first_offset, last_offset)
                 SELECT topic_id, partition_index, $1, first_offset, last_offset FROM gone",
                vec![
                    &record.producer_id,
                    &rows.topics,
                    &rows.partitions,
                    &rows.offsets,
                ],
            )
        };
        writes.push((prepare(starts).await?, params));
        writes.push((
            prepare("SELECT pg_notify($1, $2)").await?,
            vec![&COMMIT_CHANNEL, &object_id],
        ));
    }
    // Offsets are staged only for groups AddOffsetsToTxn added (`stage`): with none, there
    // is nothing to move, or to drop below.
    if markers.commit && !groups.is_empty() {
        // The staged offsets become the groups' committed offsets, each group listed as
        // a standalone commit would list it. Before the staged rows go, below.
        writes.push((
            prepare(
                "INSERT INTO group_offsets (group_id, topic, partition_index, committed_offset,
                     leader_epoch, metadata, commit_ms)
                 SELECT group_id, topic, partition_index, committed_offset, leader_epoch,
                        metadata, commit_ms
                 FROM txn_offsets WHERE transactional_id = $1
                 ON CONFLICT (group_id, topic, partition_index) DO UPDATE SET
                     committed_offset = excluded.committed_offset,
                     leader_epoch = excluded.leader_epoch,
                     metadata = excluded.metadata,
                     commit_ms = excluded.commit_ms",
            )
            .await?,
            vec![&id],
        ));
        writes.push((
            prepare(
                "INSERT INTO consumer_groups (group_id, generation, members, updated_ms)
                 SELECT DISTINCT group_id, 0, $2::bytea, $3::bigint
                 FROM txn_offsets WHERE transactional_id = $1
                 ON CONFLICT (group_id) DO NOTHING",
            )
            .await?,
            vec![&id, &no_members, &now_ms],
        ));
    }
    if !groups.is_empty() {
        writes.push((
            prepare("DELETE FROM txn_offsets WHERE transactional_id = $1").await?,
            vec![&id],
        ));
    }
    let ended_row = RecordRow::of(&ended);
    writes.push((
        client
            .prepare_cached(&store_statement())
            .await
            .map_err(pg_error)?,
        ended_row.params().to_vec(),
    ));
    // Fewer than 30 futures: `try_join_all` polls them in order, so they are sent in order.
    let written = futures::future::try_join_all(
        writes
            .iter()
            .map(|(statement, params)| client.execute(statement, params.as_slice())),
    );
    match commit {
        Some(tx) => futures::try_join!(written, tx.commit()).map(|_| ()),
        None => written.await.map(|_| ()),
    }
    .map_err(pg_error)
}

/// The marker index rows of one end, as columns.
#[derive(Default)]
struct Columns {
    topics: Vec<Uuid>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    byte_offsets: Vec<i64>,
    byte_lengths: Vec<i64>,
}

#[async_trait]
impl Transactions for PgMetastore {
    async fn transaction(&self, transactional_id: &str) -> Result<Option<TxnRecord>, TxnError> {
        let mut client = self.client("transaction").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let record = load(&tx, transactional_id, false).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(record)
    }

    async fn list_transactions(&self) -> Result<Vec<TxnRecord>, TxnError> {
        let client = self.client("list_transactions").await?;
        let rows = client
            .query(
                &format!("SELECT {RECORD_COLUMNS} FROM transactions ORDER BY transactional_id"),
                &[],
            )
            .await
            .map_err(pg_error)?;
        let mut records = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        // Sorted here, not by the database's collation: the same order as the memory store.
        records.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(records)
    }

    async fn expired_transactions(&self, now_ms: i64) -> Result<Vec<TxnRecord>, TxnError> {
        let client = self.client("expired_transactions").await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM transactions
                     WHERE state = 'Ongoing' AND start_ms >= 0
                       AND start_ms + timeout_ms < $1"
                ),
                &[&now_ms],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(record).collect::<Result<Vec<_>, _>>()?)
    }

    async fn forget_idle_transactional_ids(
        &self,
        idle_before_ms: i64,
    ) -> Result<Vec<String>, TxnError> {
        // A request holding the row (FOR UPDATE) makes the DELETE wait and re-check its
        // condition on what that request wrote; a request after it finds no record and
        // starts the id afresh, as Kafka does after an expiration.
        let client = self.client("forget_idle_transactional_ids").await?;
        let rows = client
            .query(
                "DELETE FROM transactions
                 WHERE state <> 'Ongoing' AND updated_ms < $1
                 RETURNING transactional_id",
                &[&idle_before_ms],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn init_producer(
        &self,
        request: &InitRequest,
        markers: Option<&MarkerObject>,
    ) -> Result<TxnInitOutcome, TxnError> {
        let mut client = self.client("init_producer").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        execute_cached(
            &tx,
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&INIT_LOCK_CLASS, &request.transactional_id],
        )
        .await?;
        let mut existing = load(&tx, &request.transactional_id, true).await?;
        let mut request = request.clone();
        let decided = loop {
            match init(existing.as_ref(), &request)? {
                InitDecision::Record(record) => {
                    store(&tx, &record).await?;
                    break (record.producer_id, record.producer_epoch);
                }
                InitDecision::Unchanged => {
                    let record = existing.as_ref().expect("unchanged means recorded");
                    break (record.producer_id, record.producer_epoch);
                }
                InitDecision::AbortFirst(wanted) => {
                    let record = existing.take().expect("an abort needs a record");
                    match markers {
                        Some(object) if object.fits(&wanted) => {
                            write_end(&tx, None, &record, object, request.now_ms).await?;
                            existing = Some(ended(&record, &wanted, request.now_ms));
                            // The client's expectation was met before the abort moved the
                            // epoch on.
                            request.expected = None;
                        }
                        _ => return Ok(TxnInitOutcome::NeedsMarkers(wanted)),
                    }
                }
            }
        };
        tx.commit().await.map_err(pg_error)?;
        Ok(TxnInitOutcome::Ready {
            producer_id: decided.0,
            producer_epoch: decided.1,
        })
    }

    async fn add_to_transaction(
        &self,
        producer: &TxnProducer<'_>,
        partitions: &[(Uuid, i32)],
        groups: &[String],
        now_ms: i64,
    ) -> Result<(), TxnError> {
        let tx = Pipelined::new(self.client("add_to_transaction").await?);
        let client = tx.client();
        // Prepared before BEGIN (see `Pipelined`).
        let store_sql = store_statement();
        let (store_statement, relaxed) = futures::try_join!(
            client.prepare_cached(&store_sql),
            client.prepare_cached("SELECT set_config('synchronous_commit', 'off', true)"),
        )
        .map_err(pg_error)?;
        let ((), existing) = futures::try_join!(
            async { tx.begin().await.map_err(pg_error) },
            load(client, producer.transactional_id, true),
        )?;
        let next = match add(existing.as_ref(), producer, partitions, groups, now_ms) {
            Ok(Some(next)) => next,
            unchanged_or_refused => {
                tx.rollback().await.map_err(pg_error)?;
                return unchanged_or_refused.map(|_| ());
            }
        };
        // A partition whose topic is deleted meanwhile stays listed: the end skips it, as it
        // skips any partition that is gone.
        //
        // Partitions alone need not wait for the WAL to reach the disk. What depends on
        // them is written after them: a flush commit storing the transaction's data, which
        // reads the record, or its end, which locks it. Both wait for their own commit to
        // be flushed, and the WAL is flushed in order, so whatever the client was told about
        // its data is durable together with this. A crash that loses the partitions loses
        // no acknowledged data either: the data is then refused as outside the transaction,
        // as a Kafka broker refuses it, and the client aborts. Groups (AddOffsetsToTxn) wait:
        // the offsets a lost group would refuse are sent later, and the client would find
        // out only then.
        let row = RecordRow::of(&next);
        let params = row.params();
        let relax = groups.is_empty();
        futures::try_join!(
            async {
                if relax {
                    client.execute(&relaxed, &[]).await?;
                }
                Ok(())
            },
            client.execute(&store_statement, &params),
            tx.commit(),
        )
        .map_err(pg_error)?;
        tx.finish();
        Ok(())
    }

    async fn stage_offsets(
        &self,
        producer: &TxnProducer<'_>,
        group_id: &str,
        offsets: &[CommittedOffset],
        now_ms: i64,
    ) -> Result<(), TxnError> {
        let tx = Pipelined::new(self.client("stage_offsets").await?);
        let client = tx.client();
        // Prepared before BEGIN (see `Pipelined`). The last of a partition listed twice
        // wins, as in a standalone commit.
        let insert = client
            .prepare_cached(
                "INSERT INTO txn_offsets (transactional_id, group_id, topic, partition_index,
                     committed_offset, leader_epoch, metadata, commit_ms)
                 SELECT DISTINCT ON (t.topic, t.partition_index) $1, $2, t.topic,
                        t.partition_index, t.committed_offset, t.leader_epoch, t.metadata, $8
                 FROM unnest($3::text[], $4::int[], $5::bigint[], $6::int[], $7::text[])
                      WITH ORDINALITY AS t(topic, partition_index, committed_offset,
                                           leader_epoch, metadata, n)
                 ORDER BY t.topic, t.partition_index, t.n DESC
                 ON CONFLICT (transactional_id, group_id, topic, partition_index) DO UPDATE SET
                     committed_offset = excluded.committed_offset,
                     leader_epoch = excluded.leader_epoch,
                     metadata = excluded.metadata,
                     commit_ms = excluded.commit_ms",
            )
            .await
            .map_err(pg_error)?;
        let ((), existing) = futures::try_join!(
            async { tx.begin().await.map_err(pg_error) },
            load(client, producer.transactional_id, true),
        )?;
        if let Err(refused) = stage(existing.as_ref(), producer, group_id) {
            tx.rollback().await.map_err(pg_error)?;
            return Err(refused);
        }
        let topics: Vec<&str> = offsets.iter().map(|o| o.topic.as_str()).collect();
        let partitions: Vec<i32> = offsets.iter().map(|o| o.partition_index).collect();
        let values: Vec<i64> = offsets.iter().map(|o| o.offset).collect();
        let epochs: Vec<i32> = offsets.iter().map(|o| o.leader_epoch).collect();
        let metadata: Vec<Option<&str>> = offsets.iter().map(|o| o.metadata.as_deref()).collect();
        let params: [&(dyn ToSql + Sync); 8] = [
            &producer.transactional_id,
            &group_id,
            &topics,
            &partitions,
            &values,
            &epochs,
            &metadata,
            &now_ms,
        ];
        // Unlike the record of AddPartitionsToTxn, these rows wait for the WAL's flush: an
        // end after a crash that lost them would commit the transaction without them.
        futures::try_join!(client.execute(&insert, &params), tx.commit()).map_err(pg_error)?;
        tx.finish();
        Ok(())
    }

    async fn end_transaction(
        &self,
        request: &EndRequest<'_>,
        markers: Option<&MarkerObject>,
    ) -> Result<EndOutcome, TxnError> {
        let id = request.producer.transactional_id;
        let client = self.client("end_transaction").await?;
        let Some(object) = markers else {
            // Which markers an end needs is read without a transaction or the lock, in one
            // statement instead of a transaction's four: the end itself reads the record
            // again under its lock, and writes only if these markers still fit. An answer
            // given from this read is the state committed when the request came, as good as
            // a later one.
            let existing = load(&*client, id, false).await?;
            return Ok(match end(existing.as_ref(), request)? {
                EndDecision::AlreadyEnded => EndOutcome::AlreadyEnded,
                EndDecision::Write(wanted) => EndOutcome::NeedsMarkers(wanted),
            });
        };
        let tx = Pipelined::new(client);
        let ((), existing) = futures::try_join!(
            async { tx.begin().await.map_err(pg_error) },
            load(tx.client(), id, true),
        )?;
        match end(existing.as_ref(), request) {
            Ok(EndDecision::Write(wanted)) if object.fits(&wanted) => {}
            decided => {
                // Nothing to write: ended already, refused, or other markers are needed.
                tx.rollback().await.map_err(pg_error)?;
                return Ok(match decided? {
                    EndDecision::AlreadyEnded => EndOutcome::AlreadyEnded,
                    EndDecision::Write(wanted) => EndOutcome::NeedsMarkers(wanted),
                });
            }
        }
        let record = existing.expect("an end needs a record");
        write_end(tx.client(), Some(&tx), &record, object, request.now_ms).await?;
        tx.finish();
        Ok(EndOutcome::Ended)
    }

    async fn offsets_pending(&self, group_id: &str) -> Result<Vec<(String, i32)>, TxnError> {
        let client = self.client("offsets_pending").await?;
        let rows = client
            .query(
                "SELECT DISTINCT topic, partition_index FROM txn_offsets WHERE group_id = $1",
                &[&group_id],
            )
            .await
            .map_err(pg_error)?;
        let mut pending: Vec<(String, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        pending.sort();
        Ok(pending)
    }

    async fn aborted_transactions(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        from: i64,
        until: i64,
    ) -> Result<Vec<AbortedTxn>, TxnError> {
        // The statement of a whole fetch's ranges, for one range.
        let mut answers = self
            .aborted_transactions_of(&[(topic_id, partition_index, from, until)])
            .await?;
        Ok(answers.pop().unwrap_or_default())
    }

    /// One statement for every range, so a Fetch pays one round trip however many
    /// partitions it returns.
    async fn aborted_transactions_of(
        &self,
        ranges: &[AbortedRange],
    ) -> Result<Vec<Vec<AbortedTxn>>, TxnError> {
        let mut answers = vec![Vec::new(); ranges.len()];
        if ranges.is_empty() {
            return Ok(answers);
        }
        let topics: Vec<Uuid> = ranges.iter().map(|r| r.0).collect();
        let partitions: Vec<i32> = ranges.iter().map(|r| r.1).collect();
        let froms: Vec<i64> = ranges.iter().map(|r| r.2).collect();
        let untils: Vec<i64> = ranges.iter().map(|r| r.3).collect();
        let client = self.client("aborted_transactions").await?;
        let rows = query_cached(
            &*client,
            "SELECT r.n, a.producer_id, a.first_offset, a.last_offset
             FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[])
                  WITH ORDINALITY AS r(topic_id, partition_index, from_offset,
                                       until_offset, n)
             JOIN aborted_txns a
               ON a.topic_id = r.topic_id AND a.partition_index = r.partition_index
              AND a.last_offset >= r.from_offset AND a.first_offset < r.until_offset
             ORDER BY r.n, a.first_offset, a.last_offset",
            &[&topics, &partitions, &froms, &untils],
        )
        .await?;
        for row in rows {
            // ORDINALITY counts from 1.
            let n: i64 = row.get(0);
            if let Some(answer) = usize::try_from(n - 1).ok().and_then(|i| answers.get_mut(i)) {
                answer.push(AbortedTxn {
                    producer_id: row.get(1),
                    first_offset: row.get(2),
                    last_offset: row.get(3),
                });
            }
        }
        Ok(answers)
    }
}
