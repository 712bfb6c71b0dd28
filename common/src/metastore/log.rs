//! The log domain: partitions' offsets, the commit of flushed objects, the object index
//! that maps offsets to byte ranges, and the feed that announces commits.
//!
//! The writer commits ([`Log::commit_object`], whose rules are [`super::plan`]'s), readers and
//! gateways look up, and DeleteRecords moves a partition's start.

use async_trait::async_trait;
use uuid::Uuid;

use super::model::{
    AppendResult, Cleaning, CommitEvent, IndexEntry, LogStartMove, ObjectCommit, PartitionEntry,
    PartitionState,
};
use crate::error::StoreError;

/// The partitions' logs as the index of committed objects.
#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Offsets of the given partitions; missing partitions are absent.
    async fn partition_states(
        &self,
        partitions: &[(Uuid, i32)],
    ) -> Result<Vec<PartitionState>, StoreError>;

    /// Moves a partition's log start offset up to `offset` (-1: the high watermark), as
    /// DeleteRecords does; records below it are no longer served, and the compactor
    /// collects their objects.
    async fn advance_log_start(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        offset: i64,
    ) -> Result<LogStartMove, StoreError>;

    /// Index entries of several partitions at once: for each `(topic, partition,
    /// from_offset)`, the entries whose last offset is at least `from_offset`, in offset
    /// order, at most `limit` of them. One list per request, in request order.
    async fn index_entries(
        &self,
        wanted: &[(Uuid, i32, i64)],
        limit: i64,
    ) -> Result<Vec<Vec<IndexEntry>>, StoreError>;

    /// Where key compaction stands in a partition: where its dirty part starts and when
    /// its kept tombstones are due (moved by the compactor, [`super::Objects`]).
    async fn cleaning(&self, topic_id: Uuid, partition_index: i32) -> Result<Cleaning, StoreError>;

    /// Index entries of one object, for readers following the commit feed.
    async fn object_entries(&self, object_id: &str) -> Result<Vec<PartitionEntry>, StoreError>;

    /// The first index entry of a partition (in offset order) holding a record whose
    /// timestamp is at least `timestamp`, judged by the entries' max timestamps.
    async fn entry_at_time(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        timestamp: i64,
    ) -> Result<Option<IndexEntry>, StoreError>;

    /// The index entry holding a partition's largest timestamp (the earliest such entry).
    async fn entry_with_max_timestamp(
        &self,
        topic_id: Uuid,
        partition_index: i32,
    ) -> Result<Option<IndexEntry>, StoreError>;

    /// Subscribes to commits: every object committed after this call returns is reported,
    /// in commit order, or a [`CommitEvent::Gap`] says some may have been missed. The feed
    /// ends when the receiver is dropped.
    async fn commit_feed(&self) -> Result<tokio::sync::mpsc::Receiver<CommitEvent>, StoreError>;

    /// Atomically commits an uploaded object: under the partitions' locks, decides each
    /// batch by the idempotent-producer rules ([`super::plan::plan_commit`]), gives the stored ones
    /// the partition's next offsets, indexes them, records producer state and announces the
    /// object on the commit feed. Partitions that no longer exist are skipped (absent from
    /// the result). An object none of whose batches was stored is not recorded.
    async fn commit_object(
        &self,
        commit: ObjectCommit<'_>,
    ) -> Result<Vec<AppendResult>, StoreError>;
}
