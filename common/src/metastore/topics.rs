//! The topics domain: the catalog of topics, their partition counts and explicit configs.
//!
//! A partition's offsets are the log's ([`super::Log`]); the store keeps configs' names and
//! values as given, what they mean is for the roles.

use std::collections::BTreeMap;

use async_trait::async_trait;
use uuid::Uuid;

use super::model::TopicMeta;
use crate::error::StoreError;

/// The topic catalog: create, describe, alter, grow and delete topics.
#[async_trait]
pub trait Topics: Send + Sync + 'static {
    /// Creates a topic with partitions `0..partition_count` and its explicit configs.
    /// `None` when a topic of that name exists.
    async fn create_topic(
        &self,
        name: &str,
        partition_count: i32,
        configs: &BTreeMap<String, Option<String>>,
    ) -> Result<Option<TopicMeta>, StoreError>;

    /// Replaces a topic's explicit configs; false when the topic is absent.
    async fn set_topic_configs(
        &self,
        topic_id: Uuid,
        configs: &BTreeMap<String, Option<String>>,
    ) -> Result<bool, StoreError>;

    /// Grows a topic to `partition_count` partitions (new ones start empty at offset 0).
    /// Returns the count before, or `None` when the topic is absent; a count that is not
    /// larger than the current one is refused with [`StoreError::Invalid`] and nothing
    /// changes.
    async fn add_partitions(
        &self,
        topic_id: Uuid,
        partition_count: i32,
    ) -> Result<Option<i32>, StoreError>;

    /// Topics by name, in name order; `None` lists every topic; unknown names are absent.
    async fn topics(&self, names: Option<&[String]>) -> Result<Vec<TopicMeta>, StoreError>;

    /// Topics by id, in name order; unknown ids are absent.
    async fn topics_by_id(&self, ids: &[Uuid]) -> Result<Vec<TopicMeta>, StoreError>;

    /// Deletes a topic with its partitions and index entries; false when absent. Its
    /// objects stay until the compactor collects them.
    async fn delete_topic(&self, topic_id: Uuid) -> Result<bool, StoreError>;
}
