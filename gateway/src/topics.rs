//! Topic metadata as the gateway needs it on every request.
//!
//! [`TopicCache`] keeps topics (and the absence of topics) for a short time so that the
//! produce path does not query PostgreSQL per request; creates and deletes through this
//! gateway invalidate at once, other gateways' changes are seen within [`CACHE_TTL`].
//! Also here: Kafka's rules for topic names and the topic configs yaks accepts.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

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
}

impl TopicCache {
    /// An empty cache over `metastore`.
    pub fn new(metastore: Arc<dyn Topics>) -> TopicCache {
        TopicCache {
            metastore,
            entries: RwLock::new(HashMap::new()),
            by_id: RwLock::new(HashMap::new()),
        }
    }

    /// Topics by name; absent names are not in the map. One metastore query for all misses.
    pub async fn get_many(
        &self,
        names: &[String],
    ) -> Result<HashMap<String, TopicMeta>, StoreError> {
        let now = Instant::now();
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
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
        }
        if missing.is_empty() {
            return Ok(found);
        }
        missing.sort();
        missing.dedup();
        let loaded = self.metastore.topics(Some(&missing)).await?;
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

    /// Topics by id; unknown ids are not in the map. One metastore query for all misses.
    pub async fn get_by_ids(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, TopicMeta>, StoreError> {
        let now = Instant::now();
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        {
            let by_id = self.by_id.read().unwrap_or_else(|p| p.into_inner());
            for id in ids {
                match by_id.get(id) {
                    Some((at, topic)) if now.duration_since(*at) < CACHE_TTL => {
                        found.insert(*id, topic.clone());
                    }
                    _ => missing.push(*id),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let loaded = self.metastore.topics_by_id(&missing).await?;
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
            .insert(topic.name.clone(), (Instant::now(), Some(topic)));
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

/// The kind of value a topic config takes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A 64-bit integer at least this large.
    Long(i64),
    /// A 32-bit integer at least this large.
    Int(i32),
    /// `true` or `false`.
    Bool,
    /// A comma-separated list of these words.
    ListOf(&'static [&'static str]),
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A fraction between 0 and 1.
    Ratio,
    /// Only this value is supported, for the reason given.
    Only(&'static str, &'static str),
}

/// Topic configs accepted by CreateTopics, with Kafka's defaults (reported in responses).
const TOPIC_CONFIGS: &[(&str, Kind, &str)] = &[
    ("cleanup.policy", Kind::ListOf(&["delete"]), "delete"),
    (
        "compression.type",
        Kind::Only(
            "producer",
            "batches are stored exactly as producers compressed them",
        ),
        "producer",
    ),
    ("delete.retention.ms", Kind::Long(0), "86400000"),
    ("file.delete.delay.ms", Kind::Long(0), "60000"),
    ("flush.messages", Kind::Long(1), "9223372036854775807"),
    ("flush.ms", Kind::Long(0), "9223372036854775807"),
    (
        "max.compaction.lag.ms",
        Kind::Long(1),
        "9223372036854775807",
    ),
    ("max.message.bytes", Kind::Int(0), "1048588"),
    (
        "message.timestamp.after.max.ms",
        Kind::Long(0),
        "9223372036854775807",
    ),
    (
        "message.timestamp.before.max.ms",
        Kind::Long(0),
        "9223372036854775807",
    ),
    (
        "message.timestamp.type",
        Kind::OneOf(&["CreateTime", "LogAppendTime"]),
        "CreateTime",
    ),
    ("min.cleanable.dirty.ratio", Kind::Ratio, "0.5"),
    ("min.compaction.lag.ms", Kind::Long(0), "0"),
    ("min.insync.replicas", Kind::Int(1), "1"),
    ("retention.bytes", Kind::Long(-1), "-1"),
    ("retention.ms", Kind::Long(-1), "604800000"),
    ("segment.bytes", Kind::Int(14), "1073741824"),
    ("segment.ms", Kind::Long(1), "604800000"),
    ("unclean.leader.election.enable", Kind::Bool, "false"),
];

/// Kafka's `ConfigSource` of a config set on the topic.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
/// Kafka's `ConfigSource` of a default.
pub const SOURCE_DEFAULT: i8 = 5;

/// Kafka's `ConfigType` of a topic config (DescribeConfigs v3+): BOOLEAN 1, STRING 2,
/// INT 3, LONG 5, DOUBLE 6, LIST 7; 0 (UNKNOWN) for names not accepted here.
pub fn config_type(name: &str) -> i8 {
    match TOPIC_CONFIGS.iter().find(|(n, _, _)| *n == name) {
        Some((_, Kind::Bool, _)) => 1,
        Some((_, Kind::Only(..) | Kind::OneOf(_), _)) => 2,
        Some((_, Kind::Int(_), _)) => 3,
        Some((_, Kind::Long(_), _)) => 5,
        Some((_, Kind::Ratio, _)) => 6,
        Some((_, Kind::ListOf(_), _)) => 7,
        None => 0,
    }
}

/// Kafka's default of a topic config accepted here.
pub fn default_config(name: &str) -> Option<&'static str> {
    TOPIC_CONFIGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, default)| *default)
}

/// Whether a config takes a comma-separated list (APPEND and SUBTRACT apply to it).
pub fn is_list_config(name: &str) -> bool {
    config_type(name) == 7
}

/// Validates one config; the error is the message for INVALID_CONFIG.
pub fn validate_config(name: &str, value: Option<&str>) -> Result<(), String> {
    let Some((_, kind, _)) = TOPIC_CONFIGS.iter().find(|(n, _, _)| *n == name) else {
        return Err(format!("unknown topic config name: {name}"));
    };
    let Some(value) = value else {
        // A null value means "use the default", as in Kafka.
        return Ok(());
    };
    if name == "cleanup.policy" && value.split(',').any(|w| w.trim() == "compact") {
        return Err(
            "cleanup.policy=compact (log compaction) is not supported yet; only delete".into(),
        );
    }
    if let Kind::Only(only, reason) = kind {
        if value.trim() == *only {
            return Ok(());
        }
        return Err(format!("{name} must be {only}: {reason}"));
    }
    let ok = match kind {
        Kind::Only(..) => true,
        Kind::Long(min) => value.trim().parse::<i64>().is_ok_and(|v| v >= *min),
        Kind::Int(min) => value.trim().parse::<i32>().is_ok_and(|v| v >= *min),
        Kind::Bool => matches!(value.trim().to_ascii_lowercase().as_str(), "true" | "false"),
        Kind::ListOf(words) => value.split(',').all(|w| words.contains(&w.trim())),
        Kind::OneOf(words) => words.contains(&value.trim()),
        Kind::Ratio => value
            .trim()
            .parse::<f64>()
            .is_ok_and(|v| (0.0..=1.0).contains(&v)),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid value {value:?} for topic config {name} (expected {kind:?})"
        ))
    }
}

/// Every accepted config with its effective value for a topic, and whether it was set.
pub fn effective_configs(
    set: &BTreeMap<String, Option<String>>,
) -> Vec<(&'static str, String, bool)> {
    TOPIC_CONFIGS
        .iter()
        .map(|(name, _, default)| match set.get(*name) {
            Some(Some(value)) => (*name, value.clone(), true),
            _ => (*name, (*default).to_owned(), false),
        })
        .collect()
}

/// Whether the topic stamps batches with the append time (`message.timestamp.type`).
pub fn log_append_time(set: &BTreeMap<String, Option<String>>) -> bool {
    set.get("message.timestamp.type")
        .and_then(|v| v.as_deref())
        .is_some_and(|v| v.trim() == "LogAppendTime")
}

/// The effective integer value of a config, for limits checked on the produce path.
pub fn config_i64(set: &BTreeMap<String, Option<String>>, name: &str) -> Option<i64> {
    let explicit = set.get(name).and_then(|v| v.as_deref());
    explicit.or(default_config(name))?.trim().parse().ok()
}

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

    #[test]
    fn configs_are_checked_by_kind() {
        assert!(validate_config("retention.ms", Some("-1")).is_ok());
        assert!(validate_config("retention.ms", Some("soon")).is_err());
        assert!(validate_config("cleanup.policy", Some("delete")).is_ok());
        let compact = validate_config("cleanup.policy", Some("compact"));
        assert!(compact.expect_err("unsupported").contains("compaction"));
        assert!(validate_config("cleanup.policy", Some("shred")).is_err());
        assert!(validate_config("no.such.config", Some("1")).is_err());
        assert!(validate_config("max.message.bytes", None).is_ok());
        assert!(validate_config("compression.type", Some("producer")).is_ok());
        assert!(validate_config("message.timestamp.type", Some("LogAppendTime")).is_ok());
        assert!(validate_config("message.timestamp.type", Some("WallClock")).is_err());
        let mut set = BTreeMap::new();
        set.insert("max.message.bytes".to_owned(), Some("2000000".to_owned()));
        assert_eq!(config_i64(&set, "max.message.bytes"), Some(2_000_000));
        assert_eq!(
            config_i64(&BTreeMap::new(), "max.message.bytes"),
            Some(1_048_588)
        );
    }
}
