//! [`Producers`] in memory.

use std::collections::HashMap;

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::StoreError;
use crate::metastore::PRODUCER_ID_BLOCK;
use crate::metastore::producers::{EpochRecord, bump_epoch};

use super::super::producers::Producers;
use super::MemoryMetastore;

#[async_trait]
impl Producers for MemoryMetastore {
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
        let record = EpochRecord {
            handed_out: (0..state.next_producer_block * PRODUCER_ID_BLOCK).contains(&producer_id),
            bumped_to: state.producer_epochs.get(&producer_id).map(|e| e.0),
            newest_written: state
                .producer_states
                .iter()
                .filter(|(key, _)| key.0 == producer_id)
                .map(|(_, s)| s.producer_epoch)
                .max(),
        };
        let Some(next) = bump_epoch(producer_epoch, record) else {
            return Ok(None);
        };
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

    async fn last_batches(
        &self,
        topic_id: Uuid,
        partition_index: i32,
    ) -> Result<HashMap<i64, i64>, StoreError> {
        let state = self.state();
        Ok(state
            .producer_states
            .iter()
            .filter(|(key, _)| key.1 == topic_id && key.2 == partition_index)
            .filter_map(|(key, s)| Some((key.0, s.last_offset()?)))
            .collect())
    }
}
