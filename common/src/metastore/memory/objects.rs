//! [`Objects`] in memory.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::StoreError;
use crate::metastore::model::*;
use crate::metastore::plan;

use super::super::objects::Objects;
use super::{IndexRow, MemoryMetastore, State};

#[async_trait]
impl Objects for MemoryMetastore {
    async fn swap_entries(&self, swap: EntrySwap<'_>) -> Result<bool, StoreError> {
        let mut state = self.state();
        let rows: Vec<(i64, &IndexRow)> = swap
            .inputs
            .iter()
            .filter_map(|(base_offset, _)| {
                let row = state
                    .index
                    .get(&(swap.topic_id, swap.partition_index, *base_offset))?;
                Some((*base_offset, row))
            })
            .collect();
        if !plan::swap_inputs_current(
            swap.inputs,
            rows.iter().map(|(base, r)| (*base, r.object_key.as_str())),
        ) {
            return Ok(false);
        }
        let merged = plan::merge_swapped(
            rows.iter()
                .map(|(base, r)| (*base, r.last_offset, r.byte_length)),
            swap.size_bytes,
            swap.compaction.is_some(),
        )
        .map_err(StoreError::Invalid)?;
        let mut max_timestamp = rows
            .iter()
            .map(|(_, r)| r.max_timestamp)
            .max()
            .unwrap_or(-1);
        let mut batch_count = rows.iter().map(|(_, r)| r.batch_count).sum();
        let old_objects: Vec<String> = rows.iter().map(|(_, r)| r.object_id.clone()).collect();
        if let Some(compaction) = &swap.compaction {
            let key = (swap.topic_id, swap.partition_index);
            if !state.partitions.contains_key(&key)
                || state.cleaned_through(key) != compaction.cleaned_from
            {
                return Ok(false);
            }
            let cleaning = state.cleaning.entry(key).or_default();
            cleaning.cleaned_through = compaction.cleaned_through;
            for marker in &compaction.abort_markers_dropped {
                state.aborted.remove(&(key.0, key.1, *marker));
            }
            batch_count = compaction.batch_count;
            max_timestamp = compaction.max_timestamp;
        }
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
        state.created.insert(object_id.clone(), crate::clock::now());
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
                inline: None,
            },
        );
        for old in old_objects {
            if !state.index.values().any(|r| r.object_id == old) {
                state.marked.insert(old, crate::clock::now());
            }
        }
        if swap.compaction.is_some() {
            super::log::notify(
                &mut state.feeds,
                &CommitEvent::Rewritten {
                    topic_id: swap.topic_id,
                    partition_index: swap.partition_index,
                },
            );
        }
        Ok(true)
    }

    async fn advance_cleaned_through(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        from: i64,
        to: i64,
        tombstones_due_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        let key = (topic_id, partition_index);
        if !state.partitions.contains_key(&key) || state.cleaned_through(key) != from {
            return Ok(false);
        }
        state.cleaning.insert(
            key,
            Cleaning {
                cleaned_through: to,
                tombstones_due_ms,
            },
        );
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
        let State {
            aborted,
            partitions,
            ..
        } = &mut *state;
        aborted.retain(|(topic, partition, last_offset), _| {
            *last_offset >= partitions.get(&(*topic, *partition)).map_or(0, |p| p.1)
        });
        for object in touched {
            if !state.index.values().any(|r| r.object_id == object) {
                state.marked.entry(object).or_insert_with(crate::clock::now);
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
            state.marked.insert(id.clone(), crate::clock::now());
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
                    inline: state.inline_objects.contains(id),
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
            state.inline_objects.remove(id);
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
}
