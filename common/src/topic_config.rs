//! Topic configs: the one list of the names yaks accepts, each with Kafka's default, the
//! kind of value it takes, and whether yaks enforces it.
//!
//! Why one place: CreateTopics and the AlterConfigs requests validate against it,
//! DescribeConfigs reports from it (values, defaults, types, and with the documentation
//! asked for, whether yaks acts on the setting), and the roles read the settings they act
//! on through [`TopicConfigs`] — the gateway `max.message.bytes`, `message.timestamp.type`
//! and whether records need a key, the compactor `cleanup.policy`, retention and the
//! compaction settings — so a default or a parsing rule cannot differ between the role that
//! enforces a config and the request that describes it.
//!
//! Every name Kafka clients and tools commonly set is accepted so that they work unchanged;
//! those yaks has no use for (no local segments, no replicas) are stored and described but
//! not enforced, and the description says so.

use std::collections::BTreeMap;

/// The kind of value a topic config takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
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

impl Kind {
    /// Kafka's `ConfigType` (DescribeConfigs v3+): BOOLEAN 1, STRING 2, INT 3, LONG 5,
    /// DOUBLE 6, LIST 7.
    pub fn config_type(self) -> i8 {
        match self {
            Kind::Bool => 1,
            Kind::Only(..) | Kind::OneOf(_) => 2,
            Kind::Int(_) => 3,
            Kind::Long(_) => 5,
            Kind::Ratio => 6,
            Kind::ListOf(_) => 7,
        }
    }
}

/// Whether yaks acts on a config, and how or why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// yaks acts on it, as this says.
    Enforced(&'static str),
    /// Accepted and described, but yaks does not act on it, for this reason.
    Ignored(&'static str),
}

/// One topic config yaks accepts.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfig {
    /// Kafka's name of it.
    pub name: &'static str,
    /// The values it takes.
    pub kind: Kind,
    /// Kafka's default, in effect while the topic does not set it.
    pub default: &'static str,
    /// Whether yaks acts on it.
    pub enforcement: Enforcement,
}

/// Why the segment settings are not acted on.
const NO_SEGMENTS: &str = "yaks has no segments: objects are cut by the writers' flushes and \
                           merged by the compactor";
/// Why the flush settings are not acted on.
const ALWAYS_DURABLE: &str =
    "every acknowledged batch is already in object storage and committed to the metastore";
/// Why the replication settings are not acted on.
const NO_REPLICAS: &str = "yaks keeps no replicas: object storage provides durability";

/// Every topic config yaks accepts, by name.
pub const TOPIC_CONFIGS: &[TopicConfig] = &[
    TopicConfig {
        name: "cleanup.policy",
        kind: Kind::ListOf(&["compact", "delete"]),
        default: "delete",
        enforcement: Enforcement::Enforced(
            "delete: the compactor moves the log start by retention.ms and retention.bytes; \
             compact: it keeps the newest record of each key (records without a key are \
             refused on produce); compact,delete: both",
        ),
    },
    TopicConfig {
        name: "compression.type",
        kind: Kind::Only(
            "producer",
            "batches are stored exactly as producers compressed them",
        ),
        default: "producer",
        enforcement: Enforcement::Enforced(
            "batches are stored exactly as producers compressed them",
        ),
    },
    TopicConfig {
        name: "delete.retention.ms",
        kind: Kind::Long(0),
        default: "86400000",
        enforcement: Enforcement::Enforced(
            "a tombstone stays this long after the first key compaction pass that kept it",
        ),
    },
    TopicConfig {
        name: "file.delete.delay.ms",
        kind: Kind::Long(0),
        default: "60000",
        enforcement: Enforcement::Ignored(
            "objects no longer referenced are deleted after the compactor's grace period",
        ),
    },
    TopicConfig {
        name: "flush.messages",
        kind: Kind::Long(1),
        default: "9223372036854775807",
        enforcement: Enforcement::Ignored(ALWAYS_DURABLE),
    },
    TopicConfig {
        name: "flush.ms",
        kind: Kind::Long(0),
        default: "9223372036854775807",
        enforcement: Enforcement::Ignored(ALWAYS_DURABLE),
    },
    TopicConfig {
        name: "max.compaction.lag.ms",
        kind: Kind::Long(1),
        default: "9223372036854775807",
        enforcement: Enforcement::Enforced(
            "a partition with a record older than this that no pass has judged is compacted \
             whatever its dirty ratio (within one compactor interval)",
        ),
    },
    TopicConfig {
        name: "max.message.bytes",
        kind: Kind::Int(0),
        default: "1048588",
        enforcement: Enforcement::Enforced(
            "a larger batch is refused with MESSAGE_TOO_LARGE by the gateway",
        ),
    },
    TopicConfig {
        name: "message.timestamp.after.max.ms",
        kind: Kind::Long(0),
        default: "9223372036854775807",
        enforcement: Enforcement::Ignored(
            "batches are stored with their producers' timestamps, however far ahead",
        ),
    },
    TopicConfig {
        name: "message.timestamp.before.max.ms",
        kind: Kind::Long(0),
        default: "9223372036854775807",
        enforcement: Enforcement::Ignored(
            "batches are stored with their producers' timestamps, however far behind",
        ),
    },
    TopicConfig {
        name: "message.timestamp.type",
        kind: Kind::OneOf(&["CreateTime", "LogAppendTime"]),
        default: "CreateTime",
        enforcement: Enforcement::Enforced(
            "LogAppendTime: the gateway stamps each batch with the time it arrived",
        ),
    },
    TopicConfig {
        name: "min.cleanable.dirty.ratio",
        kind: Kind::Ratio,
        default: "0.5",
        enforcement: Enforcement::Enforced(
            "a partition is compacted once this share of its bytes is newer than the last pass",
        ),
    },
    TopicConfig {
        name: "min.compaction.lag.ms",
        kind: Kind::Long(0),
        default: "0",
        enforcement: Enforcement::Enforced(
            "index entries holding a record younger than this are not compacted",
        ),
    },
    TopicConfig {
        name: "min.insync.replicas",
        kind: Kind::Int(1),
        default: "1",
        enforcement: Enforcement::Ignored(NO_REPLICAS),
    },
    TopicConfig {
        name: "retention.bytes",
        kind: Kind::Long(-1),
        default: "-1",
        enforcement: Enforcement::Enforced(
            "the compactor moves each partition's log start past its oldest objects \
             while the partition holds more",
        ),
    },
    TopicConfig {
        name: "retention.ms",
        kind: Kind::Long(-1),
        default: "604800000",
        enforcement: Enforcement::Enforced(
            "the compactor moves each partition's log start past objects whose newest \
             record is older",
        ),
    },
    TopicConfig {
        name: "segment.bytes",
        kind: Kind::Int(14),
        default: "1073741824",
        enforcement: Enforcement::Ignored(NO_SEGMENTS),
    },
    TopicConfig {
        name: "segment.ms",
        kind: Kind::Long(1),
        default: "604800000",
        enforcement: Enforcement::Ignored(NO_SEGMENTS),
    },
    TopicConfig {
        name: "unclean.leader.election.enable",
        kind: Kind::Bool,
        default: "false",
        enforcement: Enforcement::Ignored("yaks has no partition leaders to elect"),
    },
];

/// The config named `name`, if yaks accepts it.
pub fn find(name: &str) -> Option<&'static TopicConfig> {
    TOPIC_CONFIGS.iter().find(|config| config.name == name)
}

impl TopicConfig {
    /// Whether the config takes a comma-separated list (APPEND and SUBTRACT apply to it).
    pub fn is_list(&self) -> bool {
        matches!(self.kind, Kind::ListOf(_))
    }

    /// Checks a value; the error is the message for INVALID_CONFIG.
    pub fn validate(&self, value: &str) -> Result<(), String> {
        let name = self.name;
        let ok = match self.kind {
            Kind::Only(only, reason) => {
                if value.trim() == only {
                    return Ok(());
                }
                return Err(format!("{name} must be {only}: {reason}"));
            }
            Kind::Long(min) => value.trim().parse::<i64>().is_ok_and(|v| v >= min),
            Kind::Int(min) => value.trim().parse::<i32>().is_ok_and(|v| v >= min),
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
                "invalid value {value:?} for topic config {name} (expected {:?})",
                self.kind
            ))
        }
    }

    /// What DescribeConfigs says of it when asked for documentation: whether yaks acts on
    /// it, and how or why not.
    pub fn documentation(&self) -> String {
        match self.enforcement {
            Enforcement::Enforced(how) => format!("Enforced by yaks: {how}."),
            Enforcement::Ignored(why) => format!("Accepted but not enforced by yaks: {why}."),
        }
    }
}

/// Validates one config of a request; a null value means "the default", as in Kafka.
pub fn validate(name: &str, value: Option<&str>) -> Result<(), String> {
    let Some(config) = find(name) else {
        return Err(format!("unknown topic config name: {name}"));
    };
    match value {
        Some(value) => config.validate(value),
        None => Ok(()),
    }
}

/// A topic's configs as stored (only those set on it), read with the defaults filled in.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigs<'a> {
    set: &'a BTreeMap<String, Option<String>>,
}

/// One config's effective value for a topic.
#[derive(Debug, Clone)]
pub struct Effective {
    /// The config.
    pub config: &'static TopicConfig,
    /// Its value: the topic's own, or the default.
    pub value: String,
    /// Whether the topic set it.
    pub explicit: bool,
}

impl<'a> TopicConfigs<'a> {
    /// The configs set on a topic, by name (a `None` value is unset).
    pub fn new(set: &'a BTreeMap<String, Option<String>>) -> TopicConfigs<'a> {
        TopicConfigs { set }
    }

    /// Every accepted config with its effective value, in name order.
    pub fn effective(&self) -> Vec<Effective> {
        TOPIC_CONFIGS
            .iter()
            .map(|config| match self.explicit(config.name) {
                Some(value) => Effective {
                    config,
                    value: value.to_owned(),
                    explicit: true,
                },
                None => Effective {
                    config,
                    value: config.default.to_owned(),
                    explicit: false,
                },
            })
            .collect()
    }

    fn explicit(&self, name: &str) -> Option<&'a str> {
        self.set.get(name).and_then(|v| v.as_deref())
    }

    /// The effective integer value of `name`: the topic's own if it parses, else the
    /// default (values are validated when set, so a value that does not parse was stored
    /// by something else, and the default is the safe reading).
    fn integer(&self, name: &str) -> Option<i64> {
        let parse = |v: &str| v.trim().parse::<i64>().ok();
        self.explicit(name)
            .and_then(parse)
            .or_else(|| find(name).and_then(|c| parse(c.default)))
    }

    /// `max.message.bytes`: the largest batch a producer may send.
    pub fn max_message_bytes(&self) -> i64 {
        self.integer("max.message.bytes").unwrap_or(i64::MAX)
    }

    /// `message.timestamp.type` is LogAppendTime: batches are stamped with their arrival.
    pub fn log_append_time(&self) -> bool {
        self.explicit("message.timestamp.type")
            .is_some_and(|v| v.trim() == "LogAppendTime")
    }

    /// `retention.ms`, or `None` for unlimited (Kafka's -1).
    pub fn retention_ms(&self) -> Option<i64> {
        self.integer("retention.ms").filter(|v| *v >= 0)
    }

    /// `retention.bytes` per partition, or `None` for unlimited (Kafka's -1).
    pub fn retention_bytes(&self) -> Option<i64> {
        self.integer("retention.bytes").filter(|v| *v >= 0)
    }

    fn policy(&self, word: &str) -> bool {
        self.explicit("cleanup.policy")
            .unwrap_or("delete")
            .split(',')
            .any(|w| w.trim() == word)
    }

    /// `cleanup.policy` includes `compact`: the newest record of each key is kept, and
    /// records without a key are refused.
    pub fn compacts(&self) -> bool {
        self.policy("compact")
    }

    /// `cleanup.policy` includes `delete`: retention moves the log start.
    pub fn deletes(&self) -> bool {
        self.policy("delete")
    }

    /// `min.cleanable.dirty.ratio`.
    pub fn min_cleanable_dirty_ratio(&self) -> f64 {
        let parse = |v: &str| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
        };
        self.explicit("min.cleanable.dirty.ratio")
            .and_then(parse)
            .unwrap_or(0.5)
    }

    /// `min.compaction.lag.ms`.
    pub fn min_compaction_lag_ms(&self) -> i64 {
        self.integer("min.compaction.lag.ms").unwrap_or(0).max(0)
    }

    /// `max.compaction.lag.ms`.
    pub fn max_compaction_lag_ms(&self) -> i64 {
        self.integer("max.compaction.lag.ms")
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// `delete.retention.ms`.
    pub fn delete_retention_ms(&self) -> i64 {
        self.integer("delete.retention.ms")
            .unwrap_or(86_400_000)
            .max(0)
    }

    /// The settings that say when a compacted partition is due for compaction.
    pub fn lags(&self) -> crate::dirty::Lags {
        crate::dirty::Lags {
            min_dirty_ratio: self.min_cleanable_dirty_ratio(),
            min_lag_ms: self.min_compaction_lag_ms(),
            max_lag_ms: self.max_compaction_lag_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect()
    }

    #[test]
    fn configs_are_checked_by_kind() {
        assert!(validate("retention.ms", Some("-1")).is_ok());
        assert!(validate("retention.ms", Some("soon")).is_err());
        assert!(validate("cleanup.policy", Some("delete")).is_ok());
        assert!(validate("cleanup.policy", Some("compact")).is_ok());
        assert!(validate("cleanup.policy", Some("compact, delete")).is_ok());
        assert!(validate("cleanup.policy", Some("shred")).is_err());
        assert!(validate("no.such.config", Some("1")).is_err());
        assert!(validate("max.message.bytes", None).is_ok());
        assert!(validate("compression.type", Some("producer")).is_ok());
        assert!(validate("compression.type", Some("zstd")).is_err());
        assert!(validate("message.timestamp.type", Some("LogAppendTime")).is_ok());
        assert!(validate("message.timestamp.type", Some("WallClock")).is_err());
        assert!(validate("min.cleanable.dirty.ratio", Some("1.5")).is_err());
        assert!(validate("unclean.leader.election.enable", Some("TRUE")).is_ok());
    }

    #[test]
    fn the_list_is_in_name_order_with_defaults_of_their_own_kind() {
        assert!(TOPIC_CONFIGS.windows(2).all(|w| w[0].name < w[1].name));
        for config in TOPIC_CONFIGS {
            assert!(config.validate(config.default).is_ok(), "{}", config.name);
        }
        assert!(find("cleanup.policy").is_some_and(TopicConfig::is_list));
        assert_eq!(find("retention.ms").map(|c| c.kind.config_type()), Some(5));
    }

    #[test]
    fn settings_read_with_kafka_defaults_and_minus_one_unlimited() {
        let defaults = BTreeMap::new();
        let topic = TopicConfigs::new(&defaults);
        assert_eq!(topic.max_message_bytes(), 1_048_588);
        assert_eq!(topic.retention_ms(), Some(604_800_000));
        assert_eq!(topic.retention_bytes(), None);
        assert!(!topic.log_append_time());

        let configs = set(&[
            ("max.message.bytes", "2000000"),
            ("retention.ms", "-1"),
            ("retention.bytes", "4096"),
            ("message.timestamp.type", "LogAppendTime"),
        ]);
        let topic = TopicConfigs::new(&configs);
        assert_eq!(topic.max_message_bytes(), 2_000_000);
        assert_eq!(topic.retention_ms(), None);
        assert_eq!(topic.retention_bytes(), Some(4096));
        assert!(topic.log_append_time());

        assert!(topic.deletes() && !topic.compacts());
        assert_eq!(topic.min_cleanable_dirty_ratio(), 0.5);
        assert_eq!(topic.max_compaction_lag_ms(), i64::MAX);
        assert_eq!(topic.delete_retention_ms(), 86_400_000);
        let compacted = set(&[
            ("cleanup.policy", "compact,delete"),
            ("min.cleanable.dirty.ratio", "0.1"),
            ("min.compaction.lag.ms", "1000"),
        ]);
        let topic = TopicConfigs::new(&compacted);
        assert!(topic.deletes() && topic.compacts());
        assert_eq!(topic.min_cleanable_dirty_ratio(), 0.1);
        assert_eq!(topic.min_compaction_lag_ms(), 1000);
        let only = set(&[("cleanup.policy", "compact")]);
        assert!(!TopicConfigs::new(&only).deletes());

        let unreadable = set(&[("retention.ms", "soon")]);
        assert_eq!(
            TopicConfigs::new(&unreadable).retention_ms(),
            Some(604_800_000)
        );
    }

    #[test]
    fn effective_configs_say_which_were_set() {
        let configs = set(&[("retention.ms", "1000")]);
        let effective = TopicConfigs::new(&configs).effective();
        assert_eq!(effective.len(), TOPIC_CONFIGS.len());
        let retention = effective
            .iter()
            .find(|e| e.config.name == "retention.ms")
            .expect("listed");
        assert_eq!(
            (retention.value.as_str(), retention.explicit),
            ("1000", true)
        );
        let segment = effective
            .iter()
            .find(|e| e.config.name == "segment.ms")
            .expect("listed");
        assert_eq!(
            (segment.value.as_str(), segment.explicit),
            ("604800000", false)
        );
        assert!(segment.config.documentation().contains("not enforced"));
    }
}
