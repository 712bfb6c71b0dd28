//! An in-memory [`Metastore`], for unit tests of the roles' logic.
//!
//! Same contract as the PostgreSQL one (both pass [`super::conformance_suite`]); state lives
//! behind one mutex, so every call is atomic like a transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::groups::*;
use super::model::*;
use super::plan::{self, ProducerKey};
use super::producers::ProducerState;
use super::{Metastore, PRODUCER_ID_BLOCK};
use crate::error::StoreError;

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
        }
    }
}

/// A commit feed subscriber; `lagged` when an event could not be queued, so the next one
/// is preceded by a gap.
#[derive(Debug)]
struct Feed {
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
    group_epochs: HashMap<String, i64>,
    groups: BTreeMap<String, StoredGroup>,
    /// (group, topic, partition) → offset.
    offsets: BTreeMap<(String, String, i32), CommittedOffset>,
}

impl State {
    fn holds(&self, group_id: &str, epoch: i64) -> bool {
        self.group_epochs.get(group_id) == Some(&epoch)
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
            cluster_id: Uuid::new_v4().simple().to_string(),
            state: Mutex::new(State::default()),
        }
    }
}

impl MemoryMetastore {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Metastore for MemoryMetastore {
    async fn cluster_id(&self) -> Result<String, StoreError> {
        Ok(self.cluster_id.clone())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn server_time_ms(&self) -> Result<i64, StoreError> {
        Ok(crate::clock::system_clock().now_ms())
    }

    async fn create_topic(
        &self,
        name: &str,
        partition_count: i32,
        configs: &BTreeMap<String, Option<String>>,
    ) -> Result<Option<TopicMeta>, StoreError> {
        if partition_count <= 0 {
            return Err(StoreError::Invalid(format!("{partition_count} partitions")));
        }
        let mut state = self.state();
        if state.topics.contains_key(name) {
            return Ok(None);
        }
        let topic = TopicMeta {
            topic_id: Uuid::new_v4(),
            name: name.to_owned(),
            partition_count,
            configs: configs.clone(),
        };
        for partition in 0..partition_count {
            state.partitions.insert((topic.topic_id, partition), (0, 0));
        }
        state.topics.insert(name.to_owned(), topic.clone());
        Ok(Some(topic))
    }

    async fn set_topic_configs(
        &self,
        topic_id: Uuid,
        configs: &BTreeMap<String, Option<String>>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        match state.topics.values_mut().find(|t| t.topic_id == topic_id) {
            Some(topic) => {
                topic.configs = configs.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn add_partitions(
        &self,
        topic_id: Uuid,
        partition_count: i32,
    ) -> Result<Option<i32>, StoreError> {
        let mut state = self.state();
        let Some(topic) = state.topics.values_mut().find(|t| t.topic_id == topic_id) else {
            return Ok(None);
        };
        let before = topic.partition_count;
        if partition_count <= before {
            return Err(StoreError::Invalid(format!(
                "the topic has {before} partitions; {partition_count} would not add any"
            )));
        }
        topic.partition_count = partition_count;
        for partition in before..partition_count {
            state.partitions.insert((topic_id, partition), (0, 0));
        }
        Ok(Some(before))
    }

    async fn advance_log_start(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        offset: i64,
    ) -> Result<LogStartMove, StoreError> {
        let mut state = self.state();
        let Some((next_offset, log_start)) = state.partitions.get_mut(&(topic_id, partition_index))
        else {
            return Ok(LogStartMove::NoPartition);
        };
        let target = if offset < 0 { *next_offset } else { offset };
        if target > *next_offset {
            return Ok(LogStartMove::BeyondHighWatermark {
                next_offset: *next_offset,
            });
        }
        *log_start = (*log_start).max(target);
        Ok(LogStartMove::Moved {
            log_start_offset: *log_start,
        })
    }

    async fn topics(&self, names: Option<&[String]>) -> Result<Vec<TopicMeta>, StoreError> {
        let state = self.state();
        Ok(state
            .topics
            .values()
            .filter(|t| names.is_none_or(|names| names.contains(&t.name)))
            .cloned()
            .collect())
    }

    async fn topics_by_id(&self, ids: &[Uuid]) -> Result<Vec<TopicMeta>, StoreError> {
        let state = self.state();
        Ok(state
            .topics
            .values()
            .filter(|t| ids.contains(&t.topic_id))
            .cloned()
            .collect())
    }

    async fn delete_topic(&self, topic_id: Uuid) -> Result<bool, StoreError> {
        let mut state = self.state();
        let Some(name) = state
            .topics
            .values()
            .find(|t| t.topic_id == topic_id)
            .map(|t| t.name.clone())
        else {
            return Ok(false);
        };
        state.offsets.retain(|(_, topic, _), _| *topic != name);
        state.topics.remove(&name);
        state.partitions.retain(|(t, _), _| *t != topic_id);
        state.index.retain(|(t, _, _), _| *t != topic_id);
        state.producer_states.retain(|(_, t, _), _| *t != topic_id);
        Ok(true)
    }

    async fn partition_states(
        &self,
        partitions: &[(Uuid, i32)],
    ) -> Result<Vec<PartitionState>, StoreError> {
        let state = self.state();
        Ok(partitions
            .iter()
            .filter_map(|&(topic_id, partition_index)| {
                let (next_offset, log_start_offset) =
                    *state.partitions.get(&(topic_id, partition_index))?;
                Some(PartitionState {
                    topic_id,
                    partition_index,
                    next_offset,
                    log_start_offset,
                })
            })
            .collect())
    }

    async fn index_entries(
        &self,
        wanted: &[(Uuid, i32, i64)],
        limit: i64,
    ) -> Result<Vec<Vec<IndexEntry>>, StoreError> {
        let state = self.state();
        let mut lists = Vec::with_capacity(wanted.len());
        for &(topic_id, partition_index, from_offset) in wanted {
            lists.push(
                state
                    .index
                    .range(
                        (topic_id, partition_index, i64::MIN)
                            ..=(topic_id, partition_index, i64::MAX),
                    )
                    .filter(|(_, row)| row.last_offset >= from_offset)
                    .take(limit.max(0) as usize)
                    .map(|(&(_, _, base_offset), row)| row.entry(base_offset))
                    .collect(),
            );
        }
        Ok(lists)
    }

    async fn object_entries(&self, object_id: &str) -> Result<Vec<PartitionEntry>, StoreError> {
        let state = self.state();
        Ok(state
            .index
            .iter()
            .filter(|(_, row)| row.object_id == object_id)
            .map(
                |(&(topic_id, partition_index, base_offset), row)| PartitionEntry {
                    topic_id,
                    partition_index,
                    entry: row.entry(base_offset),
                },
            )
            .collect())
    }

    async fn entry_at_time(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        timestamp: i64,
    ) -> Result<Option<IndexEntry>, StoreError> {
        let state = self.state();
        Ok(state
            .index
            .range((topic_id, partition_index, i64::MIN)..=(topic_id, partition_index, i64::MAX))
            .find(|(_, row)| row.max_timestamp >= timestamp)
            .map(|(&(_, _, base_offset), row)| row.entry(base_offset)))
    }

    async fn entry_with_max_timestamp(
        &self,
        topic_id: Uuid,
        partition_index: i32,
    ) -> Result<Option<IndexEntry>, StoreError> {
        let state = self.state();
        let mut best: Option<IndexEntry> = None;
        let rows = state
            .index
            .range((topic_id, partition_index, i64::MIN)..=(topic_id, partition_index, i64::MAX));
        for (&(_, _, base_offset), row) in rows {
            if best
                .as_ref()
                .is_none_or(|b| row.max_timestamp > b.max_timestamp)
            {
                best = Some(row.entry(base_offset));
            }
        }
        Ok(best)
    }

    async fn commit_feed(&self) -> Result<mpsc::Receiver<CommitEvent>, StoreError> {
        let (sender, receiver) = mpsc::channel(1024);
        self.state().feeds.push(Feed {
            sender,
            lagged: false,
        });
        Ok(receiver)
    }

    async fn commit_object(
        &self,
        commit: ObjectCommit<'_>,
    ) -> Result<Vec<AppendResult>, StoreError> {
        let mut state = self.state();
        let object_id = commit.object.to_string();
        if state.objects.contains_key(&object_id) {
            return Err(StoreError::Invalid(format!(
                "object {object_id} committed twice"
            )));
        }
        let mut partitions = HashMap::new();
        for append in commit.appends {
            let key = (append.topic_id, append.partition_index);
            if let Some(&(next_offset, log_start_offset)) = state.partitions.get(&key) {
                partitions.insert(
                    key,
                    PartitionState {
                        topic_id: key.0,
                        partition_index: key.1,
                        next_offset,
                        log_start_offset,
                    },
                );
            }
        }
        let producers = plan::producer_keys(commit.appends)
            .into_iter()
            .filter_map(|key| state.producer_states.get(&key).map(|s| (key, s.clone())))
            .collect();
        let plan = plan::plan_commit(
            commit.appends,
            &partitions,
            producers,
            plan::CommitClocks {
                now_ms: commit.now_ms,
                expire_before_ms: commit.producers_expire_before_ms,
                // One clock here, and the commit is instantaneous.
                server_now_ms: commit.now_ms,
            },
        );
        if plan.entries.is_empty() {
            return Ok(plan.results);
        }
        state.objects.insert(
            object_id.clone(),
            (commit.object_key.to_owned(), commit.size_bytes),
        );
        state.created.insert(object_id.clone(), Instant::now());
        for entry in plan.entries {
            state.index.insert(
                (entry.topic_id, entry.partition_index, entry.base_offset),
                IndexRow {
                    last_offset: entry.last_offset,
                    max_timestamp: entry.max_timestamp,
                    object_id: object_id.clone(),
                    object_key: commit.object_key.to_owned(),
                    object_size: commit.size_bytes,
                    byte_offset: entry.byte_offset,
                    byte_length: entry.byte_length,
                    batch_count: entry.batch_count,
                },
            );
        }
        for (topic_id, partition_index, next_offset) in plan.next_offsets {
            if let Some(partition) = state.partitions.get_mut(&(topic_id, partition_index)) {
                partition.0 = next_offset;
            }
        }
        for (key, producer) in plan.producer_states {
            state.producer_states.insert(key, producer);
        }
        notify(&mut state.feeds, &object_id);
        Ok(plan.results)
    }

    async fn swap_entries(&self, swap: EntrySwap<'_>) -> Result<bool, StoreError> {
        let mut state = self.state();
        let mut rows = Vec::with_capacity(swap.inputs.len());
        for (base_offset, key) in swap.inputs {
            match state
                .index
                .get(&(swap.topic_id, swap.partition_index, *base_offset))
            {
                Some(row) if row.object_key == *key => rows.push((*base_offset, row)),
                _ => return Ok(false),
            }
        }
        let merged = plan::merge_swapped(
            rows.iter()
                .map(|(base, r)| (*base, r.last_offset, r.byte_length)),
            swap.size_bytes,
        )
        .map_err(StoreError::Invalid)?;
        let max_timestamp = rows
            .iter()
            .map(|(_, r)| r.max_timestamp)
            .max()
            .unwrap_or(-1);
        let batch_count = rows.iter().map(|(_, r)| r.batch_count).sum();
        let old_objects: Vec<String> = rows.iter().map(|(_, r)| r.object_id.clone()).collect();
        let object_id = swap.object.to_string();
        for (base_offset, _) in swap.inputs {
            state
                .index
                .remove(&(swap.topic_id, swap.partition_index, *base_offset));
        }
        state.objects.insert(
            object_id.clone(),
            (swap.object_key.to_owned(), swap.size_bytes),
        );
        state.created.insert(object_id.clone(), Instant::now());
        state.index.insert(
            (swap.topic_id, swap.partition_index, merged.0),
            IndexRow {
                last_offset: merged.1,
                max_timestamp,
                object_id,
                object_key: swap.object_key.to_owned(),
                object_size: swap.size_bytes,
                byte_offset: 0,
                byte_length: swap.size_bytes,
                batch_count,
            },
        );
        for old in old_objects {
            if !state.index.values().any(|r| r.object_id == old) {
                state.marked.insert(old, Instant::now());
            }
        }
        Ok(true)
    }

    async fn drop_expired_entries(&self) -> Result<u64, StoreError> {
        let mut state = self.state();
        let State {
            index, partitions, ..
        } = &mut *state;
        let before = index.len();
        let mut touched = Vec::new();
        index.retain(|(topic, partition, _), row| {
            let log_start = partitions.get(&(*topic, *partition)).map_or(0, |p| p.1);
            let keep = row.last_offset >= log_start;
            if !keep {
                touched.push(row.object_id.clone());
            }
            keep
        });
        let dropped = (before - state.index.len()) as u64;
        for object in touched {
            if !state.index.values().any(|r| r.object_id == object) {
                state.marked.entry(object).or_insert_with(Instant::now);
            }
        }
        Ok(dropped)
    }

    async fn mark_unreferenced(&self, min_age_ms: i64) -> Result<u64, StoreError> {
        let mut state = self.state();
        let min_age = Duration::from_millis(u64::try_from(min_age_ms).unwrap_or(0));
        let unreferenced: Vec<String> = state
            .objects
            .keys()
            .filter(|id| !state.marked.contains_key(*id))
            .filter(|id| {
                state
                    .created
                    .get(*id)
                    .is_none_or(|at| at.elapsed() >= min_age)
            })
            .filter(|id| !state.index.values().any(|r| r.object_id == **id))
            .cloned()
            .collect();
        for id in &unreferenced {
            state.marked.insert(id.clone(), Instant::now());
        }
        Ok(unreferenced.len() as u64)
    }

    async fn marked_objects(
        &self,
        min_age_ms: i64,
        limit: i64,
    ) -> Result<Vec<MarkedObject>, StoreError> {
        let state = self.state();
        let min_age = Duration::from_millis(u64::try_from(min_age_ms).unwrap_or(0));
        Ok(state
            .marked
            .iter()
            .filter(|(_, at)| at.elapsed() >= min_age)
            .filter_map(|(id, _)| {
                state.objects.get(id).map(|(key, size_bytes)| MarkedObject {
                    object_id: id.clone(),
                    key: key.clone(),
                    size_bytes: *size_bytes,
                })
            })
            .take(usize::try_from(limit).unwrap_or(0))
            .collect())
    }

    async fn forget_objects(&self, object_ids: &[String]) -> Result<(), StoreError> {
        let mut state = self.state();
        for id in object_ids {
            state.objects.remove(id);
            state.marked.remove(id);
            state.created.remove(id);
        }
        Ok(())
    }

    async fn known_objects(&self, object_ids: &[String]) -> Result<Vec<String>, StoreError> {
        let state = self.state();
        Ok(object_ids
            .iter()
            .filter(|id| state.objects.contains_key(*id))
            .cloned()
            .collect())
    }

    async fn allocate_producer_ids(&self) -> Result<i64, StoreError> {
        let mut state = self.state();
        let block = state.next_producer_block;
        state.next_producer_block += 1;
        Ok(block * PRODUCER_ID_BLOCK)
    }

    async fn bump_producer_epoch(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: i64,
    ) -> Result<Option<i16>, StoreError> {
        let mut state = self.state();
        let handed_out = (0..state.next_producer_block * PRODUCER_ID_BLOCK).contains(&producer_id);
        let recorded_ahead = state
            .producer_epochs
            .get(&producer_id)
            .is_some_and(|e| e.0 > producer_epoch);
        let newer_written = state
            .producer_states
            .iter()
            .any(|(key, s)| key.0 == producer_id && s.producer_epoch > producer_epoch);
        if !handed_out || recorded_ahead || newer_written {
            return Ok(None);
        }
        let next = producer_epoch + 1;
        state.producer_epochs.insert(producer_id, (next, now_ms));
        Ok(Some(next))
    }

    async fn expire_producers(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut state = self.state();
        let before = state.producer_states.len() + state.producer_epochs.len();
        state
            .producer_states
            .retain(|_, s| s.updated_ms >= before_ms);
        state.producer_epochs.retain(|_, e| e.1 >= before_ms);
        let after = state.producer_states.len() + state.producer_epochs.len();
        Ok((before - after) as u64)
    }

    async fn renew_lease(
        &self,
        role: Role,
        instance_id: &str,
        address: &str,
        lease_ms: i64,
    ) -> Result<i32, StoreError> {
        let mut state = self.state();
        let now = Instant::now();
        let expires = if lease_ms > 0 {
            now + Duration::from_millis(lease_ms as u64)
        } else {
            now.checked_sub(Duration::from_millis(1)).unwrap_or(now)
        };
        if let Some(service) = state.services.get_mut(instance_id) {
            service.address = address.to_owned();
            service.expires = expires;
            return Ok(service.node_id);
        }
        state.next_node_id += 1;
        let node_id = state.next_node_id;
        state.services.insert(
            instance_id.to_owned(),
            Service {
                node_id,
                role,
                address: address.to_owned(),
                expires,
            },
        );
        Ok(node_id)
    }

    async fn deregister(&self, instance_id: &str) -> Result<(), StoreError> {
        self.state().services.remove(instance_id);
        Ok(())
    }

    async fn live_members(&self, role: Role) -> Result<Vec<ServiceMember>, StoreError> {
        let state = self.state();
        let now = Instant::now();
        let mut members: Vec<ServiceMember> = state
            .services
            .values()
            .filter(|s| s.role == role && s.expires > now)
            .map(|s| ServiceMember {
                node_id: s.node_id,
                address: s.address.clone(),
            })
            .collect();
        members.sort_by_key(|m| m.node_id);
        Ok(members)
    }

    async fn claim_group(&self, group_id: &str) -> Result<GroupClaim, StoreError> {
        let mut state = self.state();
        let epoch = state.group_epochs.entry(group_id.to_owned()).or_insert(0);
        *epoch += 1;
        let epoch = *epoch;
        Ok(GroupClaim {
            epoch,
            group: state.groups.get(group_id).cloned(),
        })
    }

    async fn store_group(
        &self,
        epoch: i64,
        group: &StoredGroup,
        _now_ms: i64,
    ) -> Result<GroupWrite, StoreError> {
        let mut state = self.state();
        if !state.holds(&group.group_id, epoch) {
            return Ok(GroupWrite::Fenced);
        }
        state.groups.insert(group.group_id.clone(), group.clone());
        Ok(GroupWrite::Done)
    }

    async fn commit_offsets(
        &self,
        group_id: &str,
        epoch: i64,
        offsets: &[CommittedOffset],
        _now_ms: i64,
    ) -> Result<GroupWrite, StoreError> {
        let mut state = self.state();
        if !state.holds(group_id, epoch) {
            return Ok(GroupWrite::Fenced);
        }
        for offset in offsets {
            state.offsets.insert(
                (
                    group_id.to_owned(),
                    offset.topic.clone(),
                    offset.partition_index,
                ),
                offset.clone(),
            );
        }
        state
            .groups
            .entry(group_id.to_owned())
            .or_insert_with(|| StoredGroup {
                group_id: group_id.to_owned(),
                generation: 0,
                protocol_type: None,
                protocol_name: None,
                leader: None,
                members: Vec::new(),
            });
        Ok(GroupWrite::Done)
    }

    async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<CommittedOffset>, StoreError> {
        let state = self.state();
        Ok(state
            .offsets
            .iter()
            .filter(|((g, topic, partition), _)| {
                g == group_id
                    && partitions.is_none_or(|wanted| {
                        wanted.iter().any(|(t, p)| t == topic && p == partition)
                    })
            })
            .map(|(_, offset)| offset.clone())
            .collect())
    }

    async fn delete_offsets(
        &self,
        group_id: &str,
        epoch: i64,
        partitions: &[(String, i32)],
    ) -> Result<GroupWrite, StoreError> {
        let mut state = self.state();
        if !state.holds(group_id, epoch) {
            return Ok(GroupWrite::Fenced);
        }
        for (topic, partition) in partitions {
            state
                .offsets
                .remove(&(group_id.to_owned(), topic.clone(), *partition));
        }
        Ok(GroupWrite::Done)
    }

    async fn delete_group(&self, group_id: &str, epoch: i64) -> Result<GroupWrite, StoreError> {
        let mut state = self.state();
        if !state.holds(group_id, epoch) {
            return Ok(GroupWrite::Fenced);
        }
        let had_offsets = state.offsets.keys().any(|(g, _, _)| g == group_id);
        state.offsets.retain(|(g, _, _), _| g != group_id);
        let had_group = state.groups.remove(group_id).is_some();
        Ok(if had_group || had_offsets {
            GroupWrite::Done
        } else {
            GroupWrite::NotFound
        })
    }

    async fn list_groups(&self) -> Result<Vec<GroupListing>, StoreError> {
        let state = self.state();
        Ok(state
            .groups
            .values()
            .map(|g| GroupListing {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                has_members: !g.members.is_empty(),
            })
            .collect())
    }
}

/// Queues a commit event on every live feed, preceded by a gap where one was missed.
fn notify(feeds: &mut Vec<Feed>, object_id: &str) {
    feeds.retain(|feed| !feed.sender.is_closed());
    for feed in feeds.iter_mut() {
        if feed.lagged {
            if feed.sender.try_send(CommitEvent::Gap).is_err() {
                continue;
            }
            feed.lagged = false;
        }
        let event = CommitEvent::Committed {
            object_id: object_id.to_owned(),
        };
        if feed.sender.try_send(event).is_err() {
            feed.lagged = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_metastore_conforms() {
        super::super::conformance_suite(&MemoryMetastore::default()).await;
    }
}
