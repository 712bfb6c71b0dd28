//! What was around a violation: the batches of the offending producer near it, as stored.
//!
//! The oracle says which record broke an invariant and where; the cause is in how the
//! batches around it got there. For each place, this reads the partition's index rows near
//! the offsets involved from PostgreSQL and the batches they point at from S3, and keeps
//! the batches of the producer that sent the record: their offsets, producer id, epoch and
//! sequences (a record stored twice under two epochs shows at once), the records they hold,
//! the object they are in with the time its id was stamped, and which writer committed it
//! and when (from the writers' "flush committed" log lines). Under the table come the lines
//! of that producer's client log (`clients.log`) about epoch bumps and sequence errors from
//! the same stretch of time: what librdkafka concluded from the answers it got.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use yaks_common::batch::{header_info, spans};
use yaks_common::ids::ObjectId;
use yaks_common::metastore::{Log, PgMetastore, Topics};
use yaks_common::objstore::{ObjectStore, S3ObjectStore};
use yaks_common::records::{MAX_OPENED_BYTES, OpenBatch};

use crate::oracle::check::Place;
use crate::oracle::observed::time_of_day;
use crate::oracle::records::RecordId;

/// Offsets read on either side of a place: a producer's batches can lie far apart when
/// one was held up (a frozen writer held one for 10 s, 1,500 offsets in a chaos run).
const AROUND: i64 = 2_000;
/// Batches of the producer shown before the first and after the last offset involved.
const SHOWN: usize = 3;

/// One stored batch of the producer in question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBatch {
    /// Its first offset.
    pub first_offset: i64,
    /// Its last offset.
    pub last_offset: i64,
    /// Kafka producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub epoch: i16,
    /// Sequence of its first record.
    pub first_sequence: i32,
    /// Records in it.
    pub records: i32,
    /// The oracle records it holds, first and last (when its records can be read).
    pub holds: Option<(RecordId, RecordId)>,
    /// The object it is in.
    pub object: String,
    /// When the object's id was stamped (its flush was sealed), `HH:MM:SS.mmm`.
    pub object_time: String,
    /// The writer that committed the object and when, from its log.
    pub committed: Option<(String, String)>,
}

/// The writers' commits: object id → (writer, time of day), from each `logs/writer-*.log`.
pub fn commits_in_logs(logs: &Path) -> HashMap<String, (String, String)> {
    let mut commits = HashMap::new();
    let Ok(entries) = std::fs::read_dir(logs) else {
        return commits;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(writer) = name
            .strip_suffix(".log")
            .filter(|n| n.starts_with("writer-"))
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines().filter(|l| l.contains("flush committed")) {
            let Some(object) = field(line, "object=") else {
                continue;
            };
            // Lines start with an RFC 3339 time: keep its time of day.
            let time = line.get(11..23).unwrap_or_default().to_owned();
            commits.insert(object.to_owned(), (writer.to_owned(), time));
        }
    }
    commits
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(name)? + name.len();
    line[start..].split_whitespace().next()
}

/// The batches of `place.id.producer` stored near `place` (and its earlier offset).
pub async fn batches_around(
    metastore: &PgMetastore,
    objects: &S3ObjectStore,
    key_prefix: &str,
    commits: &HashMap<String, (String, String)>,
    place: &Place,
) -> anyhow::Result<Vec<StoredBatch>> {
    let topics = metastore
        .topics(Some(std::slice::from_ref(&place.topic)))
        .await?;
    let Some(topic) = topics.first() else {
        anyhow::bail!("topic {} is gone", place.topic);
    };
    let low = place.earlier.unwrap_or(place.offset).min(place.offset);
    let high = place.earlier.unwrap_or(place.offset).max(place.offset);
    let from = (low - AROUND).max(0);
    let entries = metastore
        .index_entries(&[(topic.topic_id, place.partition, from)], 10_000)
        .await?
        .remove(0);
    let mut batches = Vec::new();
    for entry in entries {
        if entry.base_offset > high + AROUND {
            break;
        }
        let start = entry.byte_offset as u64;
        let bytes = match &entry.inline {
            Some(bytes) => bytes.clone(),
            None => {
                objects
                    .get_range(
                        entry.object_key.clone(),
                        start..start + entry.byte_length as u64,
                    )
                    .await?
            }
        };
        let object = ObjectId::from_key(key_prefix, &entry.object_key);
        let object_name = object.map_or_else(|| entry.object_key.clone(), |o| o.to_string());
        let object_time = object.map_or_else(String::new, |o| time_of_day(o.timestamp_ms()));
        let mut offset = entry.base_offset;
        for (at, len) in spans(&bytes) {
            let batch: Bytes = bytes.slice(at..at + len);
            let Ok(info) = header_info(&batch) else {
                break;
            };
            let first_offset = offset;
            offset += info.offset_count;
            let holds = OpenBatch::open(batch.clone(), MAX_OPENED_BYTES)
                .ok()
                .and_then(|opened| {
                    let records = opened.records().ok()?;
                    let first = RecordId::from_key(records.first()?.key?)?;
                    let last = RecordId::from_key(records.last()?.key?)?;
                    Some((first, last))
                });
            if holds.is_none_or(|(first, _)| first.producer != place.id.producer) {
                continue;
            }
            batches.push(StoredBatch {
                first_offset,
                last_offset: offset - 1,
                producer_id: info.producer_id,
                epoch: info.producer_epoch,
                first_sequence: info.base_sequence,
                records: info.record_count,
                holds,
                object: object_name.clone(),
                object_time: object_time.clone(),
                committed: commits.get(&object_name).cloned(),
            });
        }
    }
    // A few of the producer's batches on either side of the offsets involved.
    let before = batches
        .iter()
        .filter(|b| b.last_offset < low)
        .count()
        .saturating_sub(SHOWN);
    let mut after = 0;
    batches = batches
        .into_iter()
        .skip(before)
        .take_while(|b| {
            if b.first_offset > high {
                after += 1;
            }
            after <= SHOWN
        })
        .collect();
    Ok(batches)
}

/// The batches as a Markdown table.
pub fn table(batches: &[StoredBatch]) -> String {
    let mut out = String::from(
        "| offsets | producer id | epoch | sequences | records | object (stamped) | committed by |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for b in batches {
        let holds = b.holds.map_or_else(String::new, |(first, last)| {
            format!("{}–{}", first.sequence, last.sequence)
        });
        let committed = b.committed.as_ref().map_or_else(
            || "?".to_owned(),
            |(writer, at)| format!("{writer} at {at}"),
        );
        out.push_str(&format!(
            "| {}–{} | {} | {} | {}–{} | {holds} | …{} ({}) | {committed} |\n",
            b.first_offset,
            b.last_offset,
            b.producer_id,
            b.epoch,
            b.first_sequence,
            b.first_sequence + b.records - 1,
            &b.object[b.object.len().saturating_sub(6)..],
            b.object_time,
        ));
    }
    out
}

/// What the client of oracle producer `producer` logged about epochs and sequences between
/// `from` and `to` (times of day), from `clients.log`.
pub fn client_decisions(clients_log: &Path, producer: u32, from: &str, to: &str) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(clients_log) else {
        return Vec::new();
    };
    let tag = format!(" producer {producer} ");
    text.lines()
        .filter(|line| line.contains(&tag))
        .filter(|line| {
            let time = line.get(..12).unwrap_or_default();
            time >= from && time <= to
        })
        .filter(|line| {
            line.contains("ERRSEQ")
                || line.contains("DrainBump")
                || line.contains("bumped epoch")
                || line.contains("atal")
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_found_in_writer_logs() {
        let dir = std::env::temp_dir().join(format!("yaks-context-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("writer-1.log"),
            "2026-12-04T18:24:09.621491Z DEBUG yaks_writer::committer: flush committed \
             object=01M914S9WA1GSKR42FGQF5G7TH size=73287 partitions=14\n\
             2026-12-04T18:24:09.700000Z  WARN something else object=X\n",
        )
        .expect("log");
        std::fs::write(dir.join("gateway-0.log"), "flush committed object=Y\n").expect("log");
        let commits = commits_in_logs(&dir);
        assert_eq!(
            commits.get("01M914S9WA1GSKR42FGQF5G7TH"),
            Some(&("writer-1".to_owned(), "18:24:09.621".to_owned()))
        );
        assert_eq!(commits.len(), 1);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
