//! The writer's flush commit: offsets are assigned here and nowhere else.
//!
//! One transaction per flushed object, whatever the number of partitions in it:
//! 1. insert the object row;
//! 2. lock the touched partition rows in (topic_id, partition_index) order, so two writers
//!    committing overlapping partitions queue instead of deadlocking;
//! 3. one statement advances every partition's `next_offset` by the offsets its batches
//!    occupy and inserts one index row per partition, returning the base offsets.
//!
//! The three statements are pipelined on one connection. Partitions that vanished (topic
//! deleted while the flush was in flight) are simply absent from the result.

use tokio_postgres::types::ToSql;

use super::{PgMetastore, pg_error};
use crate::error::StoreError;
use crate::ids::ObjectId;
use crate::metastore::model::*;

impl PgMetastore {
    /// Commits one uploaded object. Each partition must appear at most once in `appends`.
    ///
    /// A failure before COMMIT was sent is [`StoreError::Retriable`] (nothing happened); a
    /// failure of the COMMIT itself is [`StoreError::OutcomeUnknown`].
    pub(super) async fn commit_object_tx(
        &self,
        object: ObjectId,
        object_key: &str,
        size_bytes: i64,
        appends: &[PartitionAppend],
    ) -> Result<Vec<AppendResult>, StoreError> {
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
        let object_id = object.to_string();
        let mut topic_ids = Vec::with_capacity(appends.len());
        let mut partitions = Vec::with_capacity(appends.len());
        let mut offset_counts = Vec::with_capacity(appends.len());
        let mut max_timestamps = Vec::with_capacity(appends.len());
        let mut byte_offsets = Vec::with_capacity(appends.len());
        let mut byte_lengths = Vec::with_capacity(appends.len());
        let mut batch_counts = Vec::with_capacity(appends.len());
        for append in appends {
            topic_ids.push(append.topic_id);
            partitions.push(append.partition_index);
            offset_counts.push(append.offset_count);
            max_timestamps.push(append.max_timestamp);
            byte_offsets.push(append.byte_offset);
            byte_lengths.push(append.byte_length);
            batch_counts.push(append.batch_count);
        }

        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let insert_object = tx
            .prepare_cached(
                "INSERT INTO objects (object_id, object_key, size_bytes) VALUES ($1, $2, $3)",
            )
            .await
            .map_err(pg_error)?;
        // Expects: the partitions exist; missing ones (deleted topics) are skipped.
        let lock = tx
            .prepare_cached(
                "SELECT 1 FROM partitions
                 WHERE (topic_id, partition_index) IN
                       (SELECT * FROM unnest($1::uuid[], $2::int[]))
                 ORDER BY topic_id, partition_index
                 FOR UPDATE",
            )
            .await
            .map_err(pg_error)?;
        // Expects: rows locked above; advances next_offset and indexes the ranges at the
        // offsets it had, in one statement for all partitions.
        let advance = tx
            .prepare_cached(
                "WITH input AS (
                     SELECT * FROM unnest($1::uuid[], $2::int[], $3::bigint[], $4::bigint[],
                                          $5::bigint[], $6::bigint[], $7::int[])
                         AS i(topic_id, partition_index, offset_count, max_timestamp,
                              byte_offset, byte_length, batch_count)
                 ), advanced AS (
                     UPDATE partitions p SET next_offset = p.next_offset + i.offset_count
                     FROM input i
                     WHERE p.topic_id = i.topic_id AND p.partition_index = i.partition_index
                     RETURNING p.topic_id, p.partition_index,
                               p.next_offset - i.offset_count AS base_offset,
                               p.log_start_offset, i.offset_count, i.max_timestamp,
                               i.byte_offset, i.byte_length, i.batch_count
                 ), indexed AS (
                     INSERT INTO object_index (topic_id, partition_index, base_offset,
                         last_offset, max_timestamp, object_id, byte_offset, byte_length,
                         batch_count)
                     SELECT topic_id, partition_index, base_offset,
                            base_offset + offset_count - 1, max_timestamp, $8, byte_offset,
                            byte_length, batch_count
                     FROM advanced
                 )
                 SELECT topic_id, partition_index, base_offset, log_start_offset FROM advanced",
            )
            .await
            .map_err(pg_error)?;

        let size = size_bytes;
        let object_params: [&(dyn ToSql + Sync); 3] = [&object_id, &object_key, &size];
        let lock_params: [&(dyn ToSql + Sync); 2] = [&topic_ids, &partitions];
        let advance_params: [&(dyn ToSql + Sync); 8] = [
            &topic_ids,
            &partitions,
            &offset_counts,
            &max_timestamps,
            &byte_offsets,
            &byte_lengths,
            &batch_counts,
            &object_id,
        ];
        // Pipelined: sent together, executed by the server in this order.
        let (inserted, _locked, rows) = futures::try_join!(
            tx.execute(&insert_object, &object_params),
            tx.query(&lock, &lock_params),
            tx.query(&advance, &advance_params),
        )
        .map_err(pg_error)?;
        debug_assert_eq!(inserted, 1);

        let mut results = Vec::with_capacity(rows.len());
        for row in rows {
            results.push(AppendResult {
                topic_id: row.get(0),
                partition_index: row.get(1),
                base_offset: row.get(2),
                log_start_offset: row.get(3),
            });
        }
        tx.commit().await.map_err(|e| match pg_error(e) {
            StoreError::Retriable(detail) | StoreError::Internal(detail) => {
                StoreError::OutcomeUnknown(detail)
            }
            other => other,
        })?;
        Ok(results)
    }
}
