//! [`Groups`] on PostgreSQL: `group_coordinators`, `groups` and `group_offsets`, every write
//! checked against the coordinator epoch under the group's row lock.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::metastore::groups::*;

use super::super::groups::Groups;
use super::{PgMetastore, pg_error};

#[async_trait]
impl Groups for PgMetastore {
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
/// still the group's coordinator epoch ([`holds_epoch`]).
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
    Ok(holds_epoch(row.map(|r| r.get::<_, i64>(0)), epoch))
}
