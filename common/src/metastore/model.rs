//! The metastore's vocabulary: what every implementation stores and returns.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use uuid::Uuid;

use crate::ids::ObjectId;

/// What every role needs to know about a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// Kafka topic id.
    pub topic_id: Uuid,
    /// Topic name.
    pub name: String,
    /// Partitions `0..partition_count`.
    pub partition_count: i32,
    /// Configs the creator set explicitly.
    pub configs: BTreeMap<String, Option<String>>,
}

/// One partition's batches in a flushed object: a contiguous byte range, batch after batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAppend {
    /// Topic.
    pub topic_id: Uuid,
    /// Partition.
    pub partition_index: i32,
    /// The batches in object order; each starts where the previous one ends.
    pub batches: Vec<AppendBatch>,
}

/// One producer batch inside a [`PartitionAppend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendBatch {
    /// Where the batch starts in the object.
    pub byte_offset: i64,
    /// Its length.
    pub byte_length: i64,
    /// Offsets it occupies.
    pub offset_count: i64,
    /// Its max timestamp.
    pub max_timestamp: i64,
    /// Who sent it, when the producer is idempotent.
    pub producer: Option<ProducerBatch>,
    /// The batch may be stored only by a commit that completes before this time of the
    /// metastore's clock (ms since the epoch): the gateway gives up on its request then.
    /// `None`: no deadline.
    pub commit_deadline_ms: Option<i64>,
}

/// The idempotent-producer identity a batch carries in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    /// Producer id, as InitProducerId gave it.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the first record.
    pub first_sequence: i32,
    /// Sequence number of the last record (wraps after `i32::MAX` to 0).
    pub last_sequence: i32,
    /// Whether the batch belongs to the producer's open transaction (attribute bit 4).
    pub transactional: bool,
}

/// A flushed object to commit: what [`super::Log::commit_object`] records.
#[derive(Debug, Clone, Copy)]
pub struct ObjectCommit<'a> {
    /// The object's id.
    pub object: ObjectId,
    /// Its S3 key.
    pub object_key: &'a str,
    /// Its size.
    pub size_bytes: i64,
    /// Its partitions, each at most once.
    pub appends: &'a [PartitionAppend],
    /// The committing writer's clock, stamped on producer state.
    pub now_ms: i64,
    /// Producer state last touched before this is expired: treated as absent.
    pub producers_expire_before_ms: i64,
}

/// The result of committing one partition of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// Topic.
    pub topic_id: Uuid,
    /// Partition.
    pub partition_index: i32,
    /// Log start offset at commit time, reported back in Produce responses.
    pub log_start_offset: i64,
    /// What became of each batch, in the order of [`PartitionAppend::batches`].
    pub batches: Vec<BatchOutcome>,
}

/// What became of one batch at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Stored; its first record has this offset.
    Appended {
        /// Offset of the batch's first record.
        base_offset: i64,
    },
    /// The producer had already written it (a retry); not stored again, and answered with
    /// the offset it got the first time.
    Duplicate {
        /// Offset the original got.
        base_offset: i64,
    },
    /// Refused by the idempotent-producer rules; not stored.
    Rejected(SequenceError),
    /// Its commit deadline had passed (the gateway gave up on it); not stored.
    Expired,
}

impl BatchOutcome {
    /// The offset the producer should be told, whether stored now or before.
    pub fn base_offset(self) -> Option<i64> {
        match self {
            BatchOutcome::Appended { base_offset } | BatchOutcome::Duplicate { base_offset } => {
                Some(base_offset)
            }
            BatchOutcome::Rejected(_) | BatchOutcome::Expired => None,
        }
    }
}

/// Why an idempotent producer's batch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// The batch lies behind the last one the producer wrote to the partition and is not a
    /// retry of a recent one: it can never be stored.
    #[error("out of order sequence number")]
    OutOfOrder,
    /// The batch lies ahead of the last one stored: an earlier batch of the producer for
    /// this partition is not stored yet. That one may still be on its way (through another
    /// writer, or about to be retried), so this is not a verdict on it: not stored now,
    /// the client retries.
    #[error("an earlier batch of this producer for this partition is not stored yet")]
    Ahead,
    /// The batch carries an epoch older than one the producer already wrote with.
    #[error("producer epoch is older than the partition has seen")]
    StaleEpoch,
    /// A transactional batch for a partition outside the producer's open transaction (not
    /// added, or the transaction ended), or a plain batch of a producer whose transaction
    /// is open in the partition: Kafka's "not part of an ongoing transaction".
    #[error("the batch is not part of the producer's ongoing transaction")]
    NotInTransaction,
}

/// One partition's contiguous byte range in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// First offset in the range.
    pub base_offset: i64,
    /// Last offset in the range.
    pub last_offset: i64,
    /// Largest record timestamp in the range.
    pub max_timestamp: i64,
    /// S3 key of the object.
    pub object_key: String,
    /// Where the range starts in the object.
    pub byte_offset: i64,
    /// Length of the range.
    pub byte_length: i64,
    /// Size of the whole object, so readers can cache it in aligned blocks.
    pub object_size: i64,
    /// The range's bytes when its object is kept in the metastore, not S3 (a
    /// transaction's markers): read from here, never from the object store.
    pub inline: Option<Bytes>,
}

impl IndexEntry {
    /// The entry's bytes `range` (object positions, within the entry) when it is inline.
    pub fn inline_range(&self, range: std::ops::Range<u64>) -> Option<Bytes> {
        let inline = self.inline.as_ref()?;
        let start = usize::try_from(range.start.checked_sub(self.byte_offset as u64)?).ok()?;
        let end = usize::try_from(range.end.checked_sub(self.byte_offset as u64)?).ok()?;
        inline.get(start..end).map(|_| inline.slice(start..end))
    }
}

/// An index entry with the partition it belongs to, as a commit notification delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionEntry {
    /// Topic.
    pub topic_id: Uuid,
    /// Partition.
    pub partition_index: i32,
    /// The range.
    pub entry: IndexEntry,
    /// Where the partition's earliest open transaction with data starts, as of reading
    /// the entry (not of its commit: the last stable offset only moves forward, and a
    /// later value is what a read_committed fetch may use).
    pub open_start: Option<i64>,
}

/// What the commit feed reports to readers, in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitEvent {
    /// An object was committed; its index entries follow from [`super::Log::object_entries`].
    Committed {
        /// Id of the committed object.
        object_id: String,
    },
    /// Key compaction replaced some of a partition's index entries by ones holding fewer
    /// records: entries of it kept from earlier events must be re-read.
    Rewritten {
        /// Topic.
        topic_id: Uuid,
        /// Partition.
        partition_index: i32,
    },
    /// Events may have been missed (the listening connection was lost and re-established):
    /// anything derived from earlier events must be re-read.
    Gap,
}

/// A partition's offsets as the read path reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    /// Topic.
    pub topic_id: Uuid,
    /// Partition.
    pub partition_index: i32,
    /// High watermark.
    pub next_offset: i64,
    /// Log start offset.
    pub log_start_offset: i64,
    /// Where the earliest open transaction with data in the partition starts, if one has.
    pub open_start: Option<i64>,
}

impl PartitionState {
    /// The last stable offset: where read_committed fetches stop. Never below the log
    /// start, as in Kafka: retention or DeleteRecords may pass an open transaction's start,
    /// and an answer below the log start would send a read_committed consumer that resets
    /// to latest into OFFSET_OUT_OF_RANGE and another reset, until the transaction ends.
    pub fn last_stable_offset(&self) -> i64 {
        self.open_start.map_or(self.next_offset, |start| {
            start.max(self.log_start_offset).min(self.next_offset)
        })
    }
}

/// The roles that register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Kafka front door; address is `host:port` for Kafka clients.
    Gateway,
    /// Produce path; address is the internal HTTP base URL.
    Writer,
    /// Fetch path; address is the internal HTTP base URL.
    Reader,
}

impl Role {
    /// The role's name in the registry.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Writer => "writer",
            Role::Reader => "reader",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A live process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceMember {
    /// Registry id; a gateway's broker id.
    pub node_id: i32,
    /// Where to reach it.
    pub address: String,
}

/// What DeleteRecords did to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStartMove {
    /// The log start offset is now this (it never moves back).
    Moved {
        /// The new log start offset (low watermark).
        log_start_offset: i64,
    },
    /// The offset asked for is past the high watermark; nothing changed.
    BeyondHighWatermark {
        /// The high watermark.
        next_offset: i64,
    },
    /// No such partition.
    NoPartition,
}

/// A compaction's change to the index: contiguous entries of one partition, each named by
/// its base offset and object key, replaced by one entry covering the whole of a new
/// object that holds their bytes in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySwap<'a> {
    /// Topic.
    pub topic_id: Uuid,
    /// Partition.
    pub partition_index: i32,
    /// (base offset, object key) of every input entry, in offset order.
    pub inputs: &'a [(i64, String)],
    /// The new object.
    pub object: ObjectId,
    /// Its key.
    pub object_key: &'a str,
    /// Its size: the inputs' lengths added up for a merge, what is left for a key
    /// compaction.
    pub size_bytes: i64,
    /// Set for a key compaction, whose output holds fewer bytes and batches than its inputs.
    pub compaction: Option<CompactionSwap>,
}

/// What a key compaction's swap also records: the partition's judged part moves from
/// `cleaned_from` (what the pass read; the swap loses if another pass moved it) to
/// `cleaned_through`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionSwap {
    /// Batches in the output.
    pub batch_count: i32,
    /// The largest timestamp of a record kept (-1 for none): what ListOffsets by time and
    /// retention judge the new entry by, as Kafka recomputes a cleaned segment's.
    pub max_timestamp: i64,
    /// The partition's `cleaned_through` the pass started from.
    pub cleaned_from: i64,
    /// Its new `cleaned_through`: one past the last offset the pass judged.
    pub cleaned_through: i64,
    /// The offsets of the abort markers the output leaves out: their aborted ranges go
    /// with them, or a read_committed consumer would skip the producer's later committed
    /// data while waiting for a marker that is gone.
    pub abort_markers_dropped: Vec<i64>,
}

/// Where key compaction stands in a partition (the default: never compacted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cleaning {
    /// The first offset no pass has judged (0 for a partition never compacted).
    pub cleaned_through: i64,
    /// The earliest delete horizon of the tombstones the last pass kept, if any: a pass is
    /// due then, whether or not anything new arrived.
    pub tombstones_due_ms: Option<i64>,
}

/// An object the garbage collector may delete: marked, and past the grace period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedObject {
    /// Its id in the `objects` table.
    pub object_id: String,
    /// Its S3 key.
    pub key: String,
    /// Its size, for the reclaimed-bytes metric.
    pub size_bytes: i64,
    /// Kept in the metastore (a transaction's markers): nothing to delete in S3.
    pub inline: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(log_start_offset: i64, open_start: Option<i64>, next_offset: i64) -> PartitionState {
        PartitionState {
            topic_id: Uuid::nil(),
            partition_index: 0,
            next_offset,
            log_start_offset,
            open_start,
        }
    }

    #[test]
    fn the_last_stable_offset_lies_between_the_log_start_and_the_high_watermark() {
        assert_eq!(state(0, None, 10).last_stable_offset(), 10);
        assert_eq!(state(0, Some(4), 10).last_stable_offset(), 4);
        // Retention passed the open transaction's start.
        assert_eq!(state(6, Some(4), 10).last_stable_offset(), 6);
        assert_eq!(state(0, Some(12), 10).last_stable_offset(), 10);
    }
}
