//! The objects domain: the lifecycle of committed objects after their commit.
//!
//! The compactor swaps small objects' index entries for a merged object's, drops entries
//! below a partition's log start, and marks objects nothing refers to; the garbage collector
//! deletes marked objects from the bucket after a grace period and forgets them here.

use async_trait::async_trait;
use uuid::Uuid;

use super::model::{EntrySwap, MarkedObject};
use crate::error::StoreError;

/// Compaction's swaps, retention's drops and garbage collection's bookkeeping.
#[async_trait]
pub trait Objects: Send + Sync + 'static {
    /// Compare-and-swap of index entries for compaction: if every input entry is still
    /// indexed as named, records the new object, replaces the inputs with one entry over it
    /// (their offsets, largest timestamp and batches) and marks input objects no entry
    /// refers to any more; returns false and changes nothing otherwise (another compaction
    /// or a topic deletion won). Inputs that are not contiguous, or a size that is not
    /// their total, are refused with [`StoreError::Invalid`].
    /// With [`EntrySwap::compaction`] set, the output may hold fewer bytes, and the swap
    /// also moves the partition's `cleaned_through` if it is still `cleaned_from`
    /// (false, nothing changed, otherwise).
    async fn swap_entries(&self, swap: EntrySwap<'_>) -> Result<bool, StoreError>;

    /// Moves the partition's `cleaned_through` from `from` to `to` (a key compaction pass
    /// judged everything below `to`) and records when the tombstones the pass kept are due;
    /// false, nothing changed, if `cleaned_through` is no longer `from` (another pass moved
    /// it) or the partition is gone.
    async fn advance_cleaned_through(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        from: i64,
        to: i64,
        tombstones_due_ms: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// Removes index entries wholly below their partition's log start offset (retention,
    /// DeleteRecords) and marks objects left without entries; returns how many entries went.
    async fn drop_expired_entries(&self) -> Result<u64, StoreError>;

    /// Marks live objects no index entry refers to (a deleted topic's) that were recorded
    /// at least `min_age_ms` ago by the store's clock; returns how many.
    async fn mark_unreferenced(&self, min_age_ms: i64) -> Result<u64, StoreError>;

    /// Objects marked at least `min_age_ms` ago (store's clock), at most `limit`: what the
    /// garbage collector may delete from the bucket.
    async fn marked_objects(
        &self,
        min_age_ms: i64,
        limit: i64,
    ) -> Result<Vec<MarkedObject>, StoreError>;

    /// Forgets objects, once deleted from the bucket.
    async fn forget_objects(&self, object_ids: &[String]) -> Result<(), StoreError>;

    /// Which of these object ids are recorded (live or marked).
    async fn known_objects(&self, object_ids: &[String]) -> Result<Vec<String>, StoreError>;
}
