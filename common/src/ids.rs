//! Object ids and the one path resolver.
//!
//! Every object yaks writes is immutable and named by an [`ObjectId`], a ULID: sortable by
//! creation time and unique without coordination. [`ObjectId::key`] is the only place that
//! turns an id into an S3 key; the key starts with a short hash so that writes spread over
//! S3's partitions instead of piling onto one prefix.

use std::fmt;
use std::str::FromStr;

use ulid::Ulid;

/// Identifies one immutable object in the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(Ulid);

impl ObjectId {
    /// A new id stamped with `now_ms`.
    pub fn new(now_ms: i64) -> ObjectId {
        ObjectId(Ulid::from_parts(
            now_ms.max(0) as u64,
            crate::random::u128(),
        ))
    }

    /// Milliseconds since the epoch when the id was made.
    pub fn timestamp_ms(&self) -> i64 {
        self.0.timestamp_ms() as i64
    }

    /// The S3 key of this object under `prefix`: `{prefix}{hash}/{ulid}.batches`.
    pub fn key(&self, prefix: &str) -> String {
        let text = self.0.to_string();
        let hash = crc32c::crc32c(text.as_bytes()) & 0xffff;
        format!("{prefix}{hash:04x}/{text}.batches")
    }

    /// Parses an id back out of a key made by [`ObjectId::key`].
    pub fn from_key(prefix: &str, key: &str) -> Option<ObjectId> {
        let rest = key.strip_prefix(prefix)?;
        let (_, file) = rest.split_once('/')?;
        let text = file.strip_suffix(".batches")?;
        text.parse().ok()
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for ObjectId {
    type Err = ulid::DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ulid::from_string(s).map(ObjectId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_time() {
        let early = ObjectId::new(1_000);
        let late = ObjectId::new(2_000);
        assert!(early < late);
        let key = early.key("cluster-a/");
        assert!(key.starts_with("cluster-a/"));
        assert_eq!(ObjectId::from_key("cluster-a/", &key), Some(early));
        assert_eq!(early.timestamp_ms(), 1_000);
    }
}
