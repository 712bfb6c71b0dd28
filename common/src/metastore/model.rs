//! The metastore's vocabulary: what every implementation stores and returns.

use std::collections::BTreeMap;
use std::fmt;

use uuid::Uuid;

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

/// One partition's contiguous byte range in a flushed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionAppend {
    /// Topic.
    pub topic_id: Uuid,
    /// Partition.
    pub partition_index: i32,
    /// Offsets the batches occupy together.
    pub offset_count: i64,
    /// Largest batch max timestamp.
    pub max_timestamp: i64,
    /// Where the range starts in the object.
    pub byte_offset: i64,
    /// Length of the range.
    pub byte_length: i64,
    /// Batches in the range.
    pub batch_count: i32,
}

/// The offsets a committed range received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Topic.
    pub topic_id: Uuid,
    /// Partition.
    pub partition_index: i32,
    /// Offset of the first record of the range.
    pub base_offset: i64,
    /// Log start offset at commit time, reported back in Produce responses.
    pub log_start_offset: i64,
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
}

/// What the commit feed reports to readers, in commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitEvent {
    /// An object was committed; its index entries follow from [`super::Metastore::object_entries`].
    Committed {
        /// Id of the committed object.
        object_id: String,
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
