//! Answering one internal Fetch: plan from the index, read through the cache, long-poll.
//!
//! For each partition: its offsets and the index entries from the fetch offset on come from
//! the tail index when it covers them, from PostgreSQL otherwise (and the result becomes
//! the tail when it reaches the high watermark). The entries' byte ranges are read through
//! the block cache; batches wholly below the fetch offset are dropped; every batch keeps the
//! producer's bytes except `baseOffset`, set to the offset it was committed at, and
//! `partitionLeaderEpoch`, set to [`LEADER_EPOCH`] (both outside the CRC).
//!
//! Limits as in Kafka: a partition gets at most its `partition_max_bytes`, the response at
//! most `max_bytes`, whole batches only, except that the first batch of the first partition
//! with data is returned whole however large. With fewer than `min_bytes` available, the
//! fetch waits up to `max_wait_ms` on the high-watermark channels of its partitions, which
//! commit notifications move: no polling of PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::select_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tracing::warn;
use uuid::Uuid;
use yaks_common::batch::{HEADER_LEN, LOG_OVERHEAD, offset_count, spans};
use yaks_common::error::StoreError;
use yaks_common::kafka;
use yaks_common::metastore::{IndexEntry, Log, PartitionState};
use yaks_common::topic_names::TopicNames;

use crate::cache::BlockCache;
use crate::tail::{PartitionKey, Snapshot, TailIndex};

/// The leader epoch of every partition, as Metadata reports it.
pub const LEADER_EPOCH: i32 = 0;

/// Longest wait granted, whatever the request asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Index entries considered per partition per fetch.
const ENTRIES_PER_FETCH: usize = 64;

/// Without a tail to wait on (PostgreSQL unreachable), a waiting fetch looks again this often.
const RETRY_WITHOUT_TAIL: Duration = Duration::from_millis(500);

/// One requested partition.
#[derive(Debug, Clone)]
struct Wanted {
    topic_id: Uuid,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
}

impl Wanted {
    fn key(&self) -> PartitionKey {
        (self.topic_id, self.partition)
    }
}

/// Serves fetches; cheap to clone.
#[derive(Clone)]
pub struct FetchService {
    metastore: Arc<dyn Log>,
    cache: BlockCache,
    tail: Arc<TailIndex>,
    names: TopicNames,
}

impl FetchService {
    /// A service over the metastore, the cache and the tail index fed by commits.
    pub fn new(
        metastore: Arc<dyn crate::ReaderStore>,
        cache: BlockCache,
        tail: Arc<TailIndex>,
    ) -> Self {
        FetchService {
            names: TopicNames::new(metastore.clone()),
            metastore,
            cache,
            tail,
        }
    }

    /// Answers a fetch once `min_bytes` are available, an error occurred, or `max_wait_ms`
    /// passed.
    pub async fn fetch(&self, request: FetchRequest) -> FetchResponse {
        let mut wanted = Vec::new();
        for topic in &request.topics {
            for partition in &topic.partitions {
                wanted.push(Wanted {
                    topic_id: topic.topic_id,
                    partition: partition.partition,
                    fetch_offset: partition.fetch_offset,
                    max_bytes: partition.partition_max_bytes.max(0) as usize,
                });
            }
        }
        let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT);
        let deadline = yaks_common::clock::now() + max_wait;
        let min_bytes = request.min_bytes.max(0) as usize;
        let max_bytes = match request.max_bytes {
            bytes if bytes <= 0 => usize::MAX,
            bytes => bytes as usize,
        };
        let mut subscribed_all = false;
        loop {
            // Subscribe before reading, so a commit landing after the read still wakes us.
            let mut watchers = Vec::with_capacity(wanted.len());
            for w in &wanted {
                if let Some(watcher) = self.tail.subscribe(w.key()) {
                    watchers.push(watcher);
                }
            }
            let had_all = watchers.len() == wanted.len();
            let (partitions, total) = self.read_once(&wanted, max_bytes).await;
            let any_error = partitions.iter().any(|p| p.error_code != 0);
            if total >= min_bytes || any_error || yaks_common::clock::now() >= deadline {
                return build(&wanted, partitions);
            }
            if !had_all && !subscribed_all {
                // This read installed tails for partitions we could not watch yet.
                subscribed_all = true;
                continue;
            }
            let wait = async {
                if watchers.is_empty() {
                    yaks_common::clock::sleep(RETRY_WITHOUT_TAIL).await;
                    return;
                }
                let changes = watchers.iter_mut().map(|w| Box::pin(w.changed()));
                let _ = select_all(changes).await;
            };
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                // Deadline: one last read, so the answer carries the latest offsets.
                let (partitions, _) = self.read_once(&wanted, max_bytes).await;
                return build(&wanted, partitions);
            }
        }
    }

    /// Reads every partition once; returns their answers and the record bytes in them.
    async fn read_once(&self, wanted: &[Wanted], max_bytes: usize) -> (Vec<PartitionData>, usize) {
        let snapshots = match self.snapshots(wanted).await {
            Ok(snapshots) => snapshots,
            Err(e) => {
                warn!(error = %e, "reading partition offsets failed");
                let code = e.kafka_code();
                return (
                    wanted
                        .iter()
                        .map(|w| kafka::fetch_error(w.partition, code))
                        .collect(),
                    0,
                );
            }
        };
        let mut total = 0usize;
        let mut out = Vec::with_capacity(wanted.len());
        for (w, snapshot) in wanted.iter().zip(snapshots) {
            let Some(Snapshot { state, entries }) = snapshot else {
                out.push(kafka::fetch_error(
                    w.partition,
                    ResponseError::UnknownTopicOrPartition.code(),
                ));
                continue;
            };
            let mut data = PartitionData::default()
                .with_partition_index(w.partition)
                .with_high_watermark(state.next_offset)
                .with_last_stable_offset(state.next_offset)
                .with_log_start_offset(state.log_start_offset)
                .with_aborted_transactions(Some(Vec::new()))
                .with_records(Some(Bytes::new()));
            if w.fetch_offset < state.log_start_offset || w.fetch_offset > state.next_offset {
                data.error_code = ResponseError::OffsetOutOfRange.code();
                out.push(data);
                continue;
            }
            if w.fetch_offset == state.next_offset || total >= max_bytes {
                out.push(data);
                continue;
            }
            let budget = w.max_bytes.min(max_bytes - total);
            let topic = self.names.names(&[w.topic_id]).await[&w.topic_id].clone();
            match self
                .read_records(&entries, w.fetch_offset, budget, total == 0, &topic)
                .await
            {
                Ok(records) => {
                    total += records.len();
                    data.records = Some(records);
                }
                Err(e) => {
                    warn!(topic_id = %w.topic_id, partition = w.partition, error = %e, "reading records failed");
                    data.error_code = ResponseError::KafkaStorageError.code();
                }
            }
            out.push(data);
        }
        (out, total)
    }

    /// Offsets and entries of every wanted partition: from the tail where it covers the
    /// fetch offset, else from PostgreSQL (then installed as the tail when possible).
    /// `None` for partitions that do not exist.
    async fn snapshots(&self, wanted: &[Wanted]) -> Result<Vec<Option<Snapshot>>, StoreError> {
        let mut snapshots: Vec<Option<Snapshot>> = wanted
            .iter()
            .map(|w| {
                self.tail
                    .snapshot(w.key(), w.fetch_offset, ENTRIES_PER_FETCH)
            })
            .collect();
        let missing: Vec<usize> = (0..wanted.len())
            .filter(|&i| snapshots[i].is_none())
            .collect();
        if missing.is_empty() {
            return Ok(snapshots);
        }
        let ticket = self.tail.ticket();
        let keys: Vec<PartitionKey> = missing.iter().map(|&i| wanted[i].key()).collect();
        let states = self.metastore.partition_states(&keys).await?;
        let mut found: Vec<(usize, PartitionState)> = Vec::with_capacity(missing.len());
        for &i in &missing {
            let key = wanted[i].key();
            if let Some(state) = states
                .iter()
                .find(|s| (s.topic_id, s.partition_index) == key)
            {
                found.push((i, *state));
            }
        }
        // Entries only where the fetch offset is inside the log: one query for all of them.
        let inside: Vec<usize> = (0..found.len())
            .filter(|&f| {
                let (i, state) = found[f];
                let offset = wanted[i].fetch_offset;
                offset >= state.log_start_offset && offset < state.next_offset
            })
            .collect();
        let ranges: Vec<(Uuid, i32, i64)> = inside
            .iter()
            .map(|&f| {
                let w = &wanted[found[f].0];
                (w.topic_id, w.partition, w.fetch_offset)
            })
            .collect();
        let lists = if ranges.is_empty() {
            Vec::new()
        } else {
            self.metastore
                .index_entries(&ranges, ENTRIES_PER_FETCH as i64)
                .await?
        };
        let mut entries_of: Vec<Vec<IndexEntry>> = vec![Vec::new(); found.len()];
        for (&f, list) in inside.iter().zip(lists) {
            entries_of[f] = list;
        }
        for ((i, state), entries) in found.into_iter().zip(entries_of) {
            // A load reaching the high watermark becomes the partition's tail.
            if wanted[i].fetch_offset >= state.next_offset || !entries.is_empty() {
                self.tail.install(ticket, state, &entries);
            }
            snapshots[i] = Some(Snapshot { state, entries });
        }
        Ok(snapshots)
    }

    /// Whole batches from `fetch_offset` on, at most `budget` bytes unless the first batch
    /// alone is larger and `first_in_response` is set.
    async fn read_records(
        &self,
        entries: &[IndexEntry],
        fetch_offset: i64,
        budget: usize,
        first_in_response: bool,
        topic: &str,
    ) -> Result<Bytes, StoreError> {
        // Sized once: growing by doubling copied a multi-MiB response several times over.
        let wanted: i64 = entries
            .iter()
            .filter(|e| e.last_offset >= fetch_offset)
            .map(|e| e.byte_length)
            .sum();
        let mut out = BytesMut::with_capacity((wanted.max(0) as usize).min(budget));
        for entry in entries {
            if entry.last_offset < fetch_offset {
                continue;
            }
            let object_size = entry.object_size as u64;
            let end = (entry.byte_offset + entry.byte_length) as u64;
            let mut pos = entry.byte_offset as u64;
            let mut base = entry.base_offset;
            while pos < end {
                let room = budget.saturating_sub(out.len()).max(HEADER_LEN) as u64;
                let mut chunk = self
                    .cache
                    .read(
                        &entry.object_key,
                        object_size,
                        pos..end.min(pos + room),
                        topic,
                    )
                    .await?;
                let mut batches = spans(&chunk);
                if batches.is_empty() {
                    // The next batch is larger than the room left.
                    if !(out.is_empty() && first_in_response) {
                        return Ok(out.freeze());
                    }
                    let len = batch_len(&chunk).ok_or_else(|| corrupt(entry, pos))?;
                    if pos + len as u64 > end {
                        return Err(corrupt(entry, pos));
                    }
                    chunk = self
                        .cache
                        .read(&entry.object_key, object_size, pos..pos + len as u64, topic)
                        .await?;
                    batches = vec![(0, len)];
                }
                for (at, len) in batches {
                    let batch = &chunk[at..at + len];
                    let count = offset_count(batch).ok_or_else(|| corrupt(entry, pos))?;
                    let batch_base = base;
                    base += count;
                    pos += len as u64;
                    if batch_base + count <= fetch_offset {
                        continue;
                    }
                    let fits = out.len() + len <= budget || (out.is_empty() && first_in_response);
                    if !fits {
                        return Ok(out.freeze());
                    }
                    let at_out = out.len();
                    out.extend_from_slice(batch);
                    out[at_out..at_out + 8].copy_from_slice(&batch_base.to_be_bytes());
                    out[at_out + 12..at_out + 16].copy_from_slice(&LEADER_EPOCH.to_be_bytes());
                }
            }
            if base != entry.last_offset + 1 {
                return Err(StoreError::Internal(format!(
                    "index entry {}..={} of {} holds batches for {} offsets",
                    entry.base_offset,
                    entry.last_offset,
                    entry.object_key,
                    base - entry.base_offset
                )));
            }
        }
        Ok(out.freeze())
    }
}

/// Total length of the batch starting `bytes`, if its length field is there and sane.
fn batch_len(bytes: &Bytes) -> Option<usize> {
    if bytes.len() < LOG_OVERHEAD {
        return None;
    }
    let declared = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let len = usize::try_from(declared).ok()? + LOG_OVERHEAD;
    (len >= HEADER_LEN).then_some(len)
}

fn corrupt(entry: &IndexEntry, pos: u64) -> StoreError {
    StoreError::Internal(format!(
        "object {} holds no valid batch at byte {pos}",
        entry.object_key
    ))
}

fn build(wanted: &[Wanted], partitions: Vec<PartitionData>) -> FetchResponse {
    let mut responses: Vec<FetchableTopicResponse> = Vec::new();
    for (w, data) in wanted.iter().zip(partitions) {
        match responses.last_mut() {
            Some(last) if last.topic_id == w.topic_id => last.partitions.push(data),
            _ => responses.push(
                FetchableTopicResponse::default()
                    .with_topic_id(w.topic_id)
                    .with_partitions(vec![data]),
            ),
        }
    }
    FetchResponse::default().with_responses(responses)
}
