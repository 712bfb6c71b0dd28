//! Topic names by topic id, for labelling metrics.
//!
//! Writers, readers and the compactor see topic ids only (the internal protocol and the
//! object index carry ids), but operators read metrics by topic name. Ids are never reused
//! and topics are never renamed, so a name once learned stays true; a topic deleted before
//! its name was learned is labelled [`crate::metrics::NO_TOPIC`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use crate::metastore::Topics;
use crate::metrics::NO_TOPIC;

/// A process-lifetime cache of topic names.
#[derive(Clone)]
pub struct TopicNames {
    metastore: Arc<dyn Topics>,
    names: Arc<RwLock<HashMap<Uuid, Arc<str>>>>,
}

impl TopicNames {
    /// An empty cache reading names from `metastore` on a miss.
    pub fn new(metastore: Arc<dyn Topics>) -> TopicNames {
        TopicNames {
            metastore,
            names: Arc::default(),
        }
    }

    /// Bytes per topic name, from bytes per topic id (one metastore query for the ids not
    /// seen before; on a failed query those are labelled `-` this time).
    pub async fn shares(&self, bytes_by_id: &HashMap<Uuid, u64>) -> Vec<(Arc<str>, u64)> {
        let ids: Vec<Uuid> = bytes_by_id.keys().copied().collect();
        let names = self.names(&ids).await;
        ids.iter()
            .map(|id| (names[id].clone(), bytes_by_id[id]))
            .collect()
    }

    /// The name of each id, `-` for unknown ones.
    pub async fn names(&self, ids: &[Uuid]) -> HashMap<Uuid, Arc<str>> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        if let Ok(names) = self.names.read() {
            for id in ids {
                match names.get(id) {
                    Some(name) => {
                        found.insert(*id, name.clone());
                    }
                    None => missing.push(*id),
                }
            }
        }
        if !missing.is_empty()
            && let Ok(topics) = self.metastore.topics_by_id(&missing).await
            && let Ok(mut names) = self.names.write()
        {
            for topic in topics {
                let name: Arc<str> = topic.name.into();
                names.insert(topic.topic_id, name.clone());
                found.insert(topic.topic_id, name);
            }
        }
        for id in ids {
            found.entry(*id).or_insert_with(|| NO_TOPIC.into());
        }
        found
    }
}
