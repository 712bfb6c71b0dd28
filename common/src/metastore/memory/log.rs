//! [`Log`] in memory.

use std::collections::HashMap;

use tokio::sync::mpsc;
use uuid::Uuid;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::metastore::model::*;
use crate::metastore::plan;

use super::super::log::Log;
use super::{Feed, IndexRow, MemoryMetastore};

#[async_trait]
impl Log for MemoryMetastore {
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
                    open_start: state.open_start((topic_id, partition_index)),
                })
            })
            .collect())
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
                    open_start: state.open_start((topic_id, partition_index)),
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

    async fn cleaning(&self, topic_id: Uuid, partition_index: i32) -> Result<Cleaning, StoreError> {
        let state = self.state();
        let key = (topic_id, partition_index);
        if !state.partitions.contains_key(&key) {
            return Err(StoreError::NotFound(format!(
                "partition {topic_id}/{partition_index}"
            )));
        }
        Ok(state.cleaning.get(&key).copied().unwrap_or_default())
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
                        open_start: None,
                    },
                );
            }
        }
        let producers = plan::producer_keys(commit.appends)
            .into_iter()
            .filter_map(|key| state.producer_states.get(&key).map(|s| (key, s.clone())))
            .collect();
        let mut transactions = HashMap::new();
        for producer_id in plan::transactional_producers(commit.appends) {
            let Some(record) = state
                .transactions
                .values()
                .find(|record| record.producer_id == producer_id)
            else {
                continue;
            };
            let id = &record.transactional_id;
            transactions.insert(
                producer_id,
                plan::ProducerTransaction {
                    transactional_id: id.clone(),
                    producer_epoch: record.producer_epoch,
                    open: record.state == crate::metastore::transactions::TxnState::Ongoing,
                    partitions: record
                        .partitions
                        .iter()
                        .map(|&(topic, partition)| {
                            let first = state
                                .txn_first_offsets
                                .get(&(id.clone(), topic, partition))
                                .copied();
                            ((topic, partition), first)
                        })
                        .collect(),
                },
            );
        }
        let plan = plan::plan_commit(
            commit.appends,
            &partitions,
            producers,
            transactions,
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
        state.created.insert(object_id.clone(), crate::clock::now());
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
                    inline: None,
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
        for start in plan.transaction_starts {
            state.txn_first_offsets.insert(
                (
                    start.transactional_id,
                    start.topic_id,
                    start.partition_index,
                ),
                start.first_offset,
            );
        }
        notify(
            &mut state.feeds,
            &CommitEvent::Committed {
                object_id: object_id.clone(),
            },
        );
        Ok(plan.results)
    }
}

/// Queues an event on every live feed, preceded by a gap where one was missed.
pub(super) fn notify(feeds: &mut Vec<Feed>, event: &CommitEvent) {
    feeds.retain(|feed| !feed.sender.is_closed());
    for feed in feeds.iter_mut() {
        if feed.lagged {
            if feed.sender.try_send(CommitEvent::Gap).is_err() {
                continue;
            }
            feed.lagged = false;
        }
        if feed.sender.try_send(event.clone()).is_err() {
            feed.lagged = true;
        }
    }
}
