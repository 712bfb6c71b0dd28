//! [`Topics`] in memory.

use std::collections::BTreeMap;

use uuid::Uuid;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::metastore::model::*;

use super::super::topics::Topics;
use super::MemoryMetastore;

#[async_trait]
impl Topics for MemoryMetastore {
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
            topic_id: crate::random::uuid(),
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
}
