//! [`Objects`] on PostgreSQL: the compaction swap, retention's drops and the `objects`
//! rows' marks for garbage collection.

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::StoreError;
use crate::metastore::model::*;
use crate::metastore::plan;

use super::super::objects::Objects;
use super::log::{COMMIT_CHANNEL, REWRITTEN_PREFIX};
use super::{PgMetastore, pg_error};

/// Marks those of the objects `$1` that no index row refers to any more: they wait out the
/// grace period before the garbage collector deletes them.
const MARK_IF_UNREFERENCED: &str = "UPDATE objects o SET state = 'marked', marked_at = now()
     WHERE o.object_id = ANY($1) AND o.state = 'live'
       AND NOT EXISTS (SELECT 1 FROM object_index i WHERE i.object_id = o.object_id)";

#[async_trait]
impl Objects for PgMetastore {
    /// One transaction: lock the input rows (a racing swap of the same rows waits, then
    /// finds them gone), check them, record the object, replace the rows, mark objects left
    /// without rows.
    async fn swap_entries(&self, swap: EntrySwap<'_>) -> Result<bool, StoreError> {
        let mut client = self.client("swap_entries").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let bases: Vec<i64> = swap.inputs.iter().map(|(b, _)| *b).collect();
        // Locks the entries at the inputs' offsets; the swap goes ahead only if they are
        // still the inputs ([`plan::swap_inputs_current`]).
        let rows = tx
            .query(
                "SELECT i.base_offset, i.last_offset, i.byte_length, i.max_timestamp,
                        i.batch_count, i.object_id, o.object_key
                 FROM object_index i JOIN objects o ON o.object_id = i.object_id
                 WHERE i.topic_id = $1 AND i.partition_index = $2
                   AND i.base_offset = ANY($3)
                 ORDER BY i.base_offset
                 FOR UPDATE OF i",
                &[&swap.topic_id, &swap.partition_index, &bases],
            )
            .await
            .map_err(pg_error)?;
        if !plan::swap_inputs_current(
            swap.inputs,
            rows.iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, &str>(6))),
        ) {
            return Ok(false);
        }
        let merged = plan::merge_swapped(
            rows.iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2))),
            swap.size_bytes,
            swap.compaction.is_some(),
        )
        .map_err(StoreError::Invalid)?;
        let mut max_timestamp = rows.iter().map(|r| r.get::<_, i64>(3)).max().unwrap_or(-1);
        let mut batch_count: i32 = rows.iter().map(|r| r.get::<_, i32>(4)).sum();
        if let Some(compaction) = &swap.compaction {
            let moved = tx
                .execute(
                    "UPDATE partitions SET cleaned_through = $4
                     WHERE topic_id = $1 AND partition_index = $2 AND cleaned_through = $3",
                    &[
                        &swap.topic_id,
                        &swap.partition_index,
                        &compaction.cleaned_from,
                        &compaction.cleaned_through,
                    ],
                )
                .await
                .map_err(pg_error)?;
            if moved == 0 {
                // Another pass judged this part first (or the partition is gone).
                return Ok(false);
            }
            if !compaction.abort_markers_dropped.is_empty() {
                tx.execute(
                    "DELETE FROM aborted_txns
                     WHERE topic_id = $1 AND partition_index = $2 AND last_offset = ANY($3)",
                    &[
                        &swap.topic_id,
                        &swap.partition_index,
                        &compaction.abort_markers_dropped,
                    ],
                )
                .await
                .map_err(pg_error)?;
            }
            batch_count = compaction.batch_count;
            max_timestamp = compaction.max_timestamp;
        }
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
        tx.execute(MARK_IF_UNREFERENCED, &[&old_objects])
            .await
            .map_err(pg_error)?;
        if swap.compaction.is_some() {
            // Readers drop what they keep of the partition's entries (delivered at COMMIT).
            let notice = format!(
                "{REWRITTEN_PREFIX}{}:{}",
                swap.topic_id, swap.partition_index
            );
            tx.execute("SELECT pg_notify($1, $2)", &[&COMMIT_CHANNEL, &notice])
                .await
                .map_err(pg_error)?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(true)
    }

    async fn advance_cleaned_through(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        from: i64,
        to: i64,
        tombstones_due_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let client = self.client("advance_cleaned_through").await?;
        let moved = client
            .execute(
                "UPDATE partitions SET cleaned_through = $4, tombstones_due_ms = $5
                 WHERE topic_id = $1 AND partition_index = $2 AND cleaned_through = $3",
                &[&topic_id, &partition_index, &from, &to, &tombstones_due_ms],
            )
            .await
            .map_err(pg_error)?;
        Ok(moved == 1)
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
            tx.execute(MARK_IF_UNREFERENCED, &[&dropped])
                .await
                .map_err(pg_error)?;
        }
        // An aborted range whose marker is below the log start describes nothing a fetch
        // can return.
        tx.execute(
            "DELETE FROM aborted_txns a USING partitions p
             WHERE p.topic_id = a.topic_id AND p.partition_index = a.partition_index
               AND a.last_offset < p.log_start_offset",
            &[],
        )
        .await
        .map_err(pg_error)?;
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
                "SELECT object_id, object_key, size_bytes, body IS NOT NULL FROM objects
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
                inline: r.get(3),
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
}
