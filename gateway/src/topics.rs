//! Topic metadata as the gateway needs it on every request.
//!
//! [`TopicCache`] keeps topics (and the absence of topics) for a short time so that the
//! produce path does not query PostgreSQL per request; creates and deletes through this
//! gateway invalidate at once, other gateways' changes are seen within [`CACHE_TTL`].
//! Misses load one at a time and look again once their turn comes, and an answer is
//! trusted from when it arrived: otherwise every request arriving as entries expire loads
//! them again, the loads queue for the pool, and answers that took longer than the TTL to
//! come expire on arrival, so the cache never fills again (seen under the bench's load).
//! Also here: Kafka's rules for topic names. The topic configs yaks accepts are in
//! [`yaks_common::topic_config`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use yaks_common::clock::Instant;

use uuid::Uuid;
use yaks_common::error::StoreError;
use yaks_common::metastore::{TopicMeta, Topics};

/// How long a cached answer (topic or no topic) is trusted.
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// Kafka's limit on topic name length.
const MAX_NAME_LEN: usize = 249;

/// Short-lived cache of topics by name, and of known topics by id (Fetch v13+).
pub struct TopicCache {
    metastore: Arc<dyn Topics>,
    entries: RwLock<HashMap<String, (Instant, Option<TopicMeta>)>>,
    by_id: RwLock<HashMap<Uuid, (Instant, TopicMeta)>>,
    /// Held while loading misses, so concurrent misses of the same topics share a load.
    loading: tokio::sync::Mutex<()>,
}

impl TopicCache {
    /// An empty cache over `metastore`.
    pub fn new(metastore: Arc<dyn Topics>) -> TopicCache {
        TopicCache {
            metastore,
            entries: RwLock::new(HashMap::new()),
            by_id: RwLock::new(HashMap::new()),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// Topics by name; absent names are not in the map. One metastore query for all misses.
    pub async fn get_many(
        &self,
        names: &[String],
    ) -> Result<HashMap<String, TopicMeta>, StoreError> {
        let mut found = HashMap::new();
        let mut missing = self.cached(names, &mut found);
        if missing.is_empty() {
            return Ok(found);
        }
        let _turn = self.loading.lock().await;
        // Another request may have loaded them while this one waited.
        missing = self.cached(&missing, &mut found);
        if missing.is_empty() {
            return Ok(found);
        }
        missing.sort();
        missing.dedup();
        let loaded = self.metastore.topics(Some(&missing)).await?;
        let now = yaks_common::clock::now();
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        for name in &missing {
            entries.insert(name.clone(), (now, None));
        }
        for topic in loaded {
            entries.insert(topic.name.clone(), (now, Some(topic.clone())));
            found.insert(topic.name.clone(), topic);
        }
        Ok(found)
    }

    /// Puts the fresh cached topics among `names` into `found`; returns the names not
    /// cached (or expired).
    fn cached(&self, names: &[String], found: &mut HashMap<String, TopicMeta>) -> Vec<String> {
        let now = yaks_common::clock::now();
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let mut missing = Vec::new();
        for name in names {
            match entries.get(name) {
                Some((at, entry)) if now.duration_since(*at) < CACHE_TTL => {
                    if let Some(topic) = entry {
                        found.insert(name.clone(), topic.clone());
                    }
                }
                _ => missing.push(name.clone()),
            }
        }
        missing
    }

    /// Puts the fresh cached topics among `ids` into `found`; returns the ids not cached.
    fn cached_ids(&self, ids: &[Uuid], found: &mut HashMap<Uuid, TopicMeta>) -> Vec<Uuid> {
        let now = yaks_common::clock::now();
        let by_id = self.by_id.read().unwrap_or_else(|p| p.into_inner());
        let mut missing = Vec::new();
        for id in ids {
            match by_id.get(id) {
                Some((at, topic)) if now.duration_since(*at) < CACHE_TTL => {
                    found.insert(*id, topic.clone());
                }
                _ => missing.push(*id),
            }
        }
        missing
    }

    /// Topics by id; unknown ids are not in the map. One metastore query for all misses.
    pub async fn get_by_ids(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, TopicMeta>, StoreError> {
        let mut found = HashMap::new();
        let mut missing = self.cached_ids(ids, &mut found);
        if missing.is_empty() {
            return Ok(found);
        }
        let _turn = self.loading.lock().await;
        missing = self.cached_ids(&missing, &mut found);
        if missing.is_empty() {
            return Ok(found);
        }
        let loaded = self.metastore.topics_by_id(&missing).await?;
        let now = yaks_common::clock::now();
        let mut by_id = self.by_id.write().unwrap_or_else(|p| p.into_inner());
        by_id.retain(|_, (at, _)| now.duration_since(*at) < CACHE_TTL);
        for topic in loaded {
            by_id.insert(topic.topic_id, (now, topic.clone()));
            found.insert(topic.topic_id, topic);
        }
        Ok(found)
    }

    /// Forgets what is known about `name`.
    pub fn invalidate(&self, name: &str) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.by_id
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (_, topic)| topic.name != name);
    }

    /// Records a topic this gateway just created.
    pub fn insert(&self, topic: TopicMeta) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.name.clone(), (yaks_common::clock::now(), Some(topic)));
    }
}

/// Checks a topic name against Kafka's rules; the error says what is wrong.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be {name:?}"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "topic name is longer than {MAX_NAME_LEN} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {bad:?}; only ASCII alphanumerics, '.', '_' and '-' are legal"
        ));
    }
    Ok(())
}

/// Kafka's `ConfigSource` of a config set on the topic.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
/// Kafka's `ConfigSource` of a default.
pub const SOURCE_DEFAULT: i8 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_rules() {
        assert!(validate_name("orders.v1_eu-west").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name("has space").is_err());
        assert!(validate_name(&"x".repeat(250)).is_err());
    }
}
