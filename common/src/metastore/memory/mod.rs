//! An in-memory [`Metastore`](super::Metastore), for unit tests of the roles' logic.
//!
//! Same contract as the PostgreSQL one (both pass the shared suite, `super::suite`); state
//! lives behind one mutex, so every call is atomic like a transaction. One file per domain,
//! as in `super::postgres`.

mod acls;
mod cluster;
mod credentials;
mod groups;
mod log;
mod objects;
mod producers;
mod topics;
mod transactions;

use crate::clock::Instant;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::groups::*;
use super::model::*;
use super::plan::ProducerKey;
use super::producers::ProducerState;

#[derive(Debug)]
struct IndexRow {
    last_offset: i64,
    max_timestamp: i64,
    object_id: String,
    object_key: String,
    object_size: i64,
    byte_offset: i64,
    byte_length: i64,
    batch_count: i32,
    /// The range's bytes, when its object is kept in the metastore (markers).
    inline: Option<bytes::Bytes>,
}

impl IndexRow {
    fn entry(&self, base_offset: i64) -> IndexEntry {
        IndexEntry {
            base_offset,
            last_offset: self.last_offset,
            max_timestamp: self.max_timestamp,
            object_key: self.object_key.clone(),
            byte_offset: self.byte_offset,
            byte_length: self.byte_length,
            object_size: self.object_size,
            inline: self.inline.clone(),
        }
    }
}

/// A commit feed subscriber; `lagged` when an event could not be queued, so the next one
/// is preceded by a gap.
#[derive(Debug)]
pub(super) struct Feed {
    sender: mpsc::Sender<CommitEvent>,
    lagged: bool,
}

#[derive(Debug)]
struct Service {
    node_id: i32,
    role: Role,
    address: String,
    expires: Instant,
}

#[derive(Debug, Default)]
struct State {
    topics: BTreeMap<String, TopicMeta>,
    /// (next_offset, log_start_offset)
    partitions: BTreeMap<(Uuid, i32), (i64, i64)>,
    /// Where key compaction stands in each partition (absent: never compacted).
    cleaning: HashMap<(Uuid, i32), Cleaning>,
    objects: BTreeMap<String, (String, i64)>,
    index: BTreeMap<(Uuid, i32, i64), IndexRow>,
    services: HashMap<String, Service>,
    next_node_id: i32,
    feeds: Vec<Feed>,
    next_producer_block: i64,
    /// (epoch, updated_ms) of producers that bumped their epoch.
    producer_epochs: HashMap<i64, (i16, i64)>,
    producer_states: HashMap<ProducerKey, ProducerState>,
    /// When each object was recorded, by id.
    created: HashMap<String, Instant>,
    /// Objects no index entry refers to any more, by id, with when they were marked.
    marked: BTreeMap<String, Instant>,
    /// Objects whose body is kept here, not in the object store (markers), by id.
    inline_objects: std::collections::BTreeSet<String>,
    group_epochs: HashMap<String, i64>,
    groups: BTreeMap<String, StoredGroup>,
    /// (group, topic, partition) → offset.
    offsets: BTreeMap<(String, String, i32), CommittedOffset>,
    /// ACL bindings.
    acls: std::collections::BTreeSet<crate::acl::AclBinding>,
    /// Whoever waits for ACL changes.
    acl_watchers: Vec<tokio::sync::mpsc::Sender<()>>,
    /// (user, mechanism) → SCRAM credential.
    credentials: BTreeMap<(String, crate::scram::Mechanism), crate::scram::Credential>,
    /// Transactional id → its record, partitions included.
    transactions: BTreeMap<String, super::transactions::TxnRecord>,
    /// (transactional id, topic, partition) → the open transaction's first offset there.
    txn_first_offsets: HashMap<(String, Uuid, i32), i64>,
    /// (transactional id, group, topic, partition) → an offset waiting for the end.
    txn_offsets: BTreeMap<(String, String, String, i32), CommittedOffset>,
    /// (topic, partition, abort marker offset) → (producer id, first offset).
    aborted: BTreeMap<(Uuid, i32, i64), (i64, i64)>,
}

impl State {
    /// Where the partition's dirty part starts.
    fn cleaned_through(&self, key: (Uuid, i32)) -> i64 {
        self.cleaning.get(&key).map_or(0, |c| c.cleaned_through)
    }

    /// Where the partition's earliest open transaction with data starts.
    fn open_start(&self, key: (Uuid, i32)) -> Option<i64> {
        self.txn_first_offsets
            .iter()
            .filter(|((_, topic, partition), _)| (*topic, *partition) == key)
            .map(|(_, offset)| *offset)
            .min()
    }

    fn holds(&self, group_id: &str, epoch: i64) -> bool {
        holds_epoch(self.group_epochs.get(group_id).copied(), epoch)
    }
}

/// Metastore state in memory.
#[derive(Debug)]
pub struct MemoryMetastore {
    cluster_id: String,
    state: Mutex<State>,
}

impl Default for MemoryMetastore {
    fn default() -> Self {
        MemoryMetastore {
            cluster_id: crate::random::uuid().simple().to_string(),
            state: Mutex::new(State::default()),
        }
    }
}

impl MemoryMetastore {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::MemoryMetastore;

    crate::metastore_test_suite!(Box::new(MemoryMetastore::default()));
}
