//! [`Producers`] on PostgreSQL: the `producer_id_blocks` sequence, `producer_epochs`, and
//! the expiry of both with `producer_states`, and what compaction reads of the latter.

use std::collections::HashMap;

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::StoreError;
use crate::metastore::PRODUCER_ID_BLOCK;
use crate::metastore::producers::{EpochRecord, ProducerState, bump_epoch};

use super::super::producers::Producers;
use super::log::decode_recent;
use super::{PgMetastore, pg_error};

#[async_trait]
impl Producers for PgMetastore {
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
        let mut client = self.client("bump_producer_epoch").await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        // Serialises bumps of one producer id (a transaction-scoped lock in a key space of
        // its own), so two bumps with the same claim are judged one after the other.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashint8($2))",
            &[&BUMP_LOCK_CLASS, &producer_id],
        )
        .await
        .map_err(pg_error)?;
        let row = tx
            .query_one(
                "SELECT $1::bigint >= 0
                        AND $1::bigint < (SELECT CASE WHEN is_called
                                                      THEN (last_value + 1) * $2::bigint
                                                      ELSE 0 END
                                          FROM producer_id_blocks),
                        (SELECT producer_epoch FROM producer_epochs WHERE producer_id = $1),
                        (SELECT max(producer_epoch) FROM producer_states
                         WHERE producer_id = $1)",
                &[&producer_id, &PRODUCER_ID_BLOCK],
            )
            .await
            .map_err(pg_error)?;
        let record = EpochRecord {
            handed_out: row.get(0),
            bumped_to: row.get(1),
            newest_written: row.get(2),
        };
        let Some(next) = bump_epoch(producer_epoch, record) else {
            return Ok(None);
        };
        tx.execute(
            "INSERT INTO producer_epochs (producer_id, producer_epoch, updated_ms)
             VALUES ($1, $2, $3)
             ON CONFLICT (producer_id) DO UPDATE
             SET producer_epoch = EXCLUDED.producer_epoch, updated_ms = EXCLUDED.updated_ms",
            &[&producer_id, &next, &now_ms],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        Ok(Some(next))
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

    async fn last_batches(
        &self,
        topic_id: Uuid,
        partition_index: i32,
    ) -> Result<HashMap<i64, i64>, StoreError> {
        let client = self.client("last_batches").await?;
        let rows = client
            .query(
                "SELECT producer_id, producer_epoch, recent, updated_ms FROM producer_states
                 WHERE topic_id = $1 AND partition_index = $2",
                &[&topic_id, &partition_index],
            )
            .await
            .map_err(pg_error)?;
        let mut last = HashMap::with_capacity(rows.len());
        for row in &rows {
            let recent: Vec<i64> = row.get(2);
            let state = ProducerState {
                producer_epoch: row.get(1),
                recent: decode_recent(row.get(0), &recent)?,
                updated_ms: row.get(3),
            };
            if let Some(offset) = state.last_offset() {
                last.insert(row.get(0), offset);
            }
        }
        Ok(last)
    }
}

/// Class of the advisory locks that serialise epoch bumps per producer id ("yk").
const BUMP_LOCK_CLASS: i32 = 0x796b;

/// Rows one producer-expiry statement deletes at most.
const EXPIRY_SLICE: i64 = 5_000;
