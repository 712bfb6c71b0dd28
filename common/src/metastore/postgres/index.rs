//! Reading the object index: where a partition's offsets live.

use uuid::Uuid;

use super::{PgMetastore, pg_error};
use crate::error::StoreError;
use crate::metastore::model::*;

impl PgMetastore {
    /// Offsets of many partitions in one query; missing partitions are absent.
    pub(super) async fn query_partition_states(
        &self,
        partitions: &[(Uuid, i32)],
    ) -> Result<Vec<PartitionState>, StoreError> {
        let topic_ids: Vec<Uuid> = partitions.iter().map(|p| p.0).collect();
        let indexes: Vec<i32> = partitions.iter().map(|p| p.1).collect();
        let client = self.client().await?;
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

    /// Index entries of a partition holding offsets from `from_offset` on, in offset order,
    /// at most `limit` of them.
    pub(super) async fn query_index_entries(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        from_offset: i64,
        limit: i64,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "SELECT i.base_offset, i.last_offset, i.max_timestamp, o.object_key,
                        i.byte_offset, i.byte_length
                 FROM object_index i JOIN objects o USING (object_id)
                 WHERE i.topic_id = $1 AND i.partition_index = $2 AND i.last_offset >= $3
                 ORDER BY i.base_offset
                 LIMIT $4",
            )
            .await
            .map_err(pg_error)?;
        let rows = client
            .query(
                &statement,
                &[&topic_id, &partition_index, &from_offset, &limit],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| IndexEntry {
                base_offset: r.get(0),
                last_offset: r.get(1),
                max_timestamp: r.get(2),
                object_key: r.get(3),
                byte_offset: r.get(4),
                byte_length: r.get(5),
            })
            .collect())
    }
}
