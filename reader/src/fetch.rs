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
//!
//! Before reading, a fetch plans the byte ranges it will read (`plan`) and loads their
//! blocks `GETS_PER_FETCH` at a time, and names the ranges of the index entries after
//! them for read-ahead: a consumer catching up on history gets its blocks at the
//! endpoint's parallel GET rate, not one round trip after another.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::select_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use tracing::warn;
use uuid::Uuid;
use yaks_common::batch::{HEADER_LEN, LOG_OVERHEAD, offset_count, spans};
use yaks_common::error::StoreError;
use yaks_common::kafka;
use yaks_common::metastore::transactions::AbortedRange;
use yaks_common::metastore::{IndexEntry, PartitionState};
use yaks_common::topic_names::TopicNames;

use crate::cache::{BlockCache, BlockRef};
use crate::clean::CleanRanges;
use crate::tail::{PartitionKey, Snapshot, TailIndex};

/// The leader epoch of every partition, as Metadata reports it.
pub const LEADER_EPOCH: i32 = 0;

/// Longest wait granted, whatever the request asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Index entries considered per partition per fetch.
const ENTRIES_PER_FETCH: usize = 64;

/// Offsets (records, for all but compacted logs) in one answer at most, beyond the first
/// batch. Kafka's byte limits alone let one answer carry hundreds of thousands of small
/// records, and librdkafka stops fetching for `fetch.queue.backoff.ms` (1 s) whenever its
/// consumer queue holds `queued.min.messages` (100,000): a 16-partition fetch of 100-byte
/// records with its default limits held 147,000 and a consumer then idled most of each
/// second. Below that threshold a client drains one answer while the next is on its way.
/// Kafka too answers with less than the limits allow (one log segment per partition);
/// clients ask again.
const OFFSETS_PER_FETCH: usize = 50_000;

/// What an answer may still take.
#[derive(Debug, Clone, Copy)]
struct Budget {
    bytes: usize,
    offsets: usize,
}

/// Blocks a fetch loads at once before reading them, as many as the writer uploads at once.
const GETS_PER_FETCH: usize = 4;

/// Without a tail to wait on (PostgreSQL unreachable), a waiting fetch looks again this often.
const RETRY_WITHOUT_TAIL: Duration = Duration::from_millis(500);

/// One requested partition.
#[derive(Debug, Clone)]
struct Wanted {
    topic_id: Uuid,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    /// Only what transactions committed (isolation level 1): data up to the last stable
    /// offset, with the aborted transactions of what is returned.
    committed: bool,
}

impl Wanted {
    fn key(&self) -> PartitionKey {
        (self.topic_id, self.partition)
    }
}

/// Serves fetches; cheap to clone.
#[derive(Clone)]
pub struct FetchService {
    metastore: Arc<dyn crate::ReaderStore>,
    cache: BlockCache,
    tail: Arc<TailIndex>,
    names: TopicNames,
    /// Ranges read_committed fetches need not ask the aborted transactions of.
    clean: Arc<CleanRanges>,
}

/// A read_committed partition of an answer whose aborted transactions are to be listed.
struct AbortedAsk {
    /// Its place in the answer.
    index: usize,
    /// What is asked: from the fetch offset to the last stable offset, so that an answer
    /// of none covers what the consumer reads next (see [`crate::clean`]).
    range: AbortedRange,
    /// Where the records returned end: only transactions starting below it are listed.
    end: i64,
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
            clean: Arc::default(),
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
                    committed: request.isolation_level == 1,
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
        let ids: Vec<Uuid> = wanted.iter().map(|w| w.topic_id).collect();
        let names = self.names.names(&ids).await;
        let (needed, ahead) = plan(wanted, &snapshots, max_bytes);
        let blocks = |span: &Span<'_>| {
            // Markers kept in the metastore came with their entry: nothing to load.
            if span.entry.inline.is_some() {
                return Vec::new();
            }
            let topic = names
                .get(&wanted[span.wanted].topic_id)
                .map_or("", |name| name);
            self.cache.blocks_of(
                &span.entry.object_key,
                span.entry.object_size as u64,
                span.range.clone(),
                topic,
            )
        };
        let mut seen = HashSet::new();
        let needed: Vec<BlockRef> = needed
            .iter()
            .flat_map(blocks)
            .filter(|b| seen.insert((b.object_key.clone(), b.index)))
            .collect();
        self.cache.load(needed, GETS_PER_FETCH).await;
        // Started once this fetch's own blocks are in, so they load while the answer
        // travels and the consumer works through it.
        self.cache.read_ahead(
            ahead
                .iter()
                .flat_map(blocks)
                .filter(|b| seen.insert((b.object_key.clone(), b.index))),
        );

        let mut total = 0usize;
        let mut offsets = 0usize;
        let mut out = Vec::with_capacity(wanted.len());
        // Read_committed partitions that return transactional batches outside a range known
        // to be clean: their aborted transactions are listed after the loop.
        let mut aborted_asked: Vec<AbortedAsk> = Vec::new();
        for (w, snapshot) in wanted.iter().zip(snapshots) {
            let Some(Snapshot { state, entries }) = snapshot else {
                out.push(kafka::fetch_error(
                    w.partition,
                    ResponseError::UnknownTopicOrPartition.code(),
                ));
                continue;
            };
            // What this fetch may return ends at the last stable offset for read_committed,
            // at the high watermark otherwise.
            let stable = state.last_stable_offset();
            let until = if w.committed {
                stable
            } else {
                state.next_offset
            };
            let mut data = PartitionData::default()
                .with_partition_index(w.partition)
                .with_high_watermark(state.next_offset)
                .with_last_stable_offset(stable)
                .with_log_start_offset(state.log_start_offset)
                // Kafka lists aborted transactions for read_committed only (an empty list
                // when there are none) and answers null to read_uncommitted.
                .with_aborted_transactions(w.committed.then(Vec::new))
                .with_records(Some(Bytes::new()));
            if w.fetch_offset < state.log_start_offset || w.fetch_offset > state.next_offset {
                data.error_code = ResponseError::OffsetOutOfRange.code();
                out.push(data);
                continue;
            }
            if w.fetch_offset >= until || total >= max_bytes || offsets >= OFFSETS_PER_FETCH {
                out.push(data);
                continue;
            }
            let budget = Budget {
                bytes: w.max_bytes.min(max_bytes - total),
                offsets: OFFSETS_PER_FETCH - offsets,
            };
            let topic = names.get(&w.topic_id).cloned().unwrap_or_else(|| "".into());
            let read = self
                .read_records(&entries, w.fetch_offset, until, budget, total == 0, &topic)
                .await;
            if let Ok((records, taken)) = &read
                && w.committed
                && any_transactional(records)
            {
                let end = first_offset(records) + *taken as i64;
                if !self.clean.covers(w.key(), &(w.fetch_offset..end)) {
                    // Answered below, for every such partition of this fetch at once.
                    aborted_asked.push(AbortedAsk {
                        index: out.len(),
                        range: (w.topic_id, w.partition, w.fetch_offset, stable.max(end)),
                        end,
                    });
                }
            }
            match read {
                Ok((records, taken)) => {
                    total += records.len();
                    offsets += taken;
                    data.records = Some(records);
                }
                Err(e) => {
                    warn!(topic_id = %w.topic_id, partition = w.partition, error = %e, "reading records failed");
                    data.error_code = ResponseError::KafkaStorageError.code();
                }
            }
            out.push(data);
        }
        if !aborted_asked.is_empty() {
            self.list_aborted(&mut out, &mut total, &aborted_asked)
                .await;
        }
        (out, total)
    }

    /// Lists, in each partition of `out` that `asked` names, the aborted transactions whose
    /// range meets what it returns, as Kafka's transaction index answers: clients skip
    /// their batches. One metastore call for all of them; if it fails, those partitions
    /// return no records and a storage error (the client retries), never records without
    /// the list that says which to skip. A partition with none up to its last stable
    /// offset is remembered as clean up to there.
    async fn list_aborted(
        &self,
        out: &mut [PartitionData],
        total: &mut usize,
        asked: &[AbortedAsk],
    ) {
        let ranges: Vec<AbortedRange> = asked.iter().map(|ask| ask.range).collect();
        match self.metastore.aborted_transactions_of(&ranges).await {
            Ok(answers) => {
                for (ask, aborted) in asked.iter().zip(answers) {
                    let (topic_id, partition, from, until) = ask.range;
                    // Asked up to the last stable offset only when nothing returned lies
                    // above it (always so: reads stop there).
                    if aborted.is_empty() && ask.end <= until {
                        self.clean.learn((topic_id, partition), from..until);
                    }
                    out[ask.index].aborted_transactions = Some(
                        aborted
                            .iter()
                            .filter(|a| a.first_offset < ask.end)
                            .map(|a| {
                                AbortedTransaction::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_first_offset(a.first_offset)
                            })
                            .collect(),
                    );
                }
            }
            Err(e) => {
                warn!(partitions = asked.len(), error = %e, "listing aborted transactions failed");
                for ask in asked {
                    let data = &mut out[ask.index];
                    *total -= data.records.as_ref().map_or(0, |r| r.len());
                    data.records = Some(Bytes::new());
                    data.error_code = ResponseError::KafkaStorageError.code();
                }
            }
        }
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

    /// Bytes `range` of `entry`'s object: from the entry itself when its object is kept in
    /// the metastore (markers), else through the cache.
    async fn bytes_of(
        &self,
        entry: &IndexEntry,
        object_size: u64,
        range: Range<u64>,
        topic: &str,
    ) -> Result<Bytes, StoreError> {
        if entry.inline.is_some() {
            let pos = range.start;
            return entry.inline_range(range).ok_or_else(|| corrupt(entry, pos));
        }
        self.cache
            .read(&entry.object_key, object_size, range, topic)
            .await
    }

    /// Whole batches from `fetch_offset` on and below `until`, within `budget` unless the
    /// first batch alone is larger and `first_in_response` is set; and the offsets those
    /// batches hold.
    async fn read_records(
        &self,
        entries: &[IndexEntry],
        fetch_offset: i64,
        until: i64,
        limits: Budget,
        first_in_response: bool,
        topic: &str,
    ) -> Result<(Bytes, usize), StoreError> {
        let budget = limits.bytes;
        let mut taken = 0usize;
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
            if entry.base_offset >= until {
                break;
            }
            let object_size = entry.object_size as u64;
            let end = (entry.byte_offset + entry.byte_length) as u64;
            let mut pos = entry.byte_offset as u64;
            let mut base = entry.base_offset;
            while pos < end {
                let room = budget.saturating_sub(out.len()).max(HEADER_LEN) as u64;
                let mut chunk = self
                    .bytes_of(entry, object_size, pos..end.min(pos + room), topic)
                    .await?;
                let mut batches = spans(&chunk);
                if batches.is_empty() {
                    // The next batch is larger than the room left.
                    if !(out.is_empty() && first_in_response) {
                        return Ok((out.freeze(), taken));
                    }
                    let len = batch_len(&chunk).ok_or_else(|| corrupt(entry, pos))?;
                    if pos + len as u64 > end {
                        return Err(corrupt(entry, pos));
                    }
                    chunk = self
                        .bytes_of(entry, object_size, pos..pos + len as u64, topic)
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
                    if batch_base >= until {
                        return Ok((out.freeze(), taken));
                    }
                    let fits = (out.len() + len <= budget
                        && taken + count as usize <= limits.offsets)
                        || (out.is_empty() && first_in_response);
                    if !fits {
                        return Ok((out.freeze(), taken));
                    }
                    taken += count as usize;
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
        Ok((out.freeze(), taken))
    }
}

/// A byte range of one index entry of the partition `wanted[wanted]`.
#[derive(Debug, PartialEq)]
struct Span<'a> {
    wanted: usize,
    entry: &'a IndexEntry,
    range: std::ops::Range<u64>,
}

/// The ranges a read of `snapshots` will take, in the order it takes them, following the
/// same limits (a partition its `max_bytes`, the fetch `max_bytes` and
/// [`OFFSETS_PER_FETCH`], the first range whole); then, for read-ahead, the ranges after
/// them: first those of the partitions the limits left out, partition by partition (the
/// client's next fetch reads them first), then the others', a partition's next entry after
/// the other partitions' (entries of one flush share objects). Entries wholly below a fetch
/// offset are skipped; the entry holding it is taken from its start, its batch boundaries
/// being unknown until read.
fn plan<'a>(
    wanted: &[Wanted],
    snapshots: &'a [Option<Snapshot>],
    max_bytes: usize,
) -> (Vec<Span<'a>>, Vec<Span<'a>>) {
    let mut needed = Vec::new();
    let mut rest: Vec<Vec<Span<'a>>> = Vec::new();
    let mut unserved = Vec::new();
    let mut total = 0usize;
    let mut offsets = 0usize;
    for (index, (w, snapshot)) in wanted.iter().zip(snapshots).enumerate() {
        let Some(Snapshot { state, entries }) = snapshot else {
            continue;
        };
        if w.fetch_offset < state.log_start_offset || w.fetch_offset >= state.next_offset {
            continue;
        }
        let mut budget = w.max_bytes.min(max_bytes.saturating_sub(total));
        let mut later = Vec::new();
        for entry in entries.iter().filter(|e| e.last_offset >= w.fetch_offset) {
            let start = entry.byte_offset.max(0) as u64;
            let length = entry.byte_length.max(0) as usize;
            if (budget == 0 || offsets >= OFFSETS_PER_FETCH) && total > 0 {
                later.push(Span {
                    wanted: index,
                    entry,
                    range: start..start + length as u64,
                });
                continue;
            }
            // The first range of the response is read whole, however large.
            let take = if total == 0 {
                length
            } else {
                length.min(budget)
            };
            needed.push(Span {
                wanted: index,
                entry,
                range: start..start + take as u64,
            });
            total += take;
            offsets += (entry.last_offset - entry.base_offset.max(w.fetch_offset) + 1) as usize;
            budget = budget.saturating_sub(take);
            if take < length {
                later.push(Span {
                    wanted: index,
                    entry,
                    range: start + take as u64..start + length as u64,
                });
            }
        }
        // A partition the limits left out entirely is what the client's next fetch reads
        // first: its ranges go ahead of every other, in the order that fetch reads them.
        if needed.last().is_none_or(|span| span.wanted != index) {
            unserved.extend(later);
        } else {
            rest.push(later);
        }
    }
    let mut ahead = unserved;
    let mut queues: Vec<std::vec::IntoIter<Span<'a>>> =
        rest.into_iter().map(Vec::into_iter).collect();
    loop {
        let before = ahead.len();
        for queue in &mut queues {
            ahead.extend(queue.next());
        }
        if ahead.len() == before {
            break;
        }
    }
    (needed, ahead)
}

/// Whether an answer holds a transactional batch (data or marker): only then can an
/// aborted transaction's range meet it.
fn any_transactional(records: &Bytes) -> bool {
    spans(records).iter().any(|&(at, len)| {
        records[at..at + len]
            .get(21..23)
            .is_some_and(|a| i16::from_be_bytes([a[0], a[1]]) & (1 << 4) != 0)
    })
}

/// The base offset of the first batch of an answer (placed by [`FetchService::read_records`]).
fn first_offset(records: &Bytes) -> i64 {
    records
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i64::from_be_bytes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use yaks_common::metastore::PartitionState;

    /// A partition whose entries each hold 10 offsets in 100 bytes of object `o{n}`.
    fn partition(index: i32, objects: i64) -> (Wanted, Option<Snapshot>) {
        let entries = (0..objects)
            .map(|n| IndexEntry {
                base_offset: n * 10,
                last_offset: n * 10 + 9,
                max_timestamp: 0,
                object_key: format!("o{n}"),
                byte_offset: 100 * index as i64,
                byte_length: 100,
                object_size: 1600,
                inline: None,
            })
            .collect();
        let state = PartitionState {
            topic_id: Uuid::from_u128(1),
            partition_index: index,
            next_offset: objects * 10,
            log_start_offset: 0,
            open_start: None,
        };
        let wanted = Wanted {
            topic_id: state.topic_id,
            partition: index,
            fetch_offset: 0,
            max_bytes: 250,
            committed: false,
        };
        (wanted, Some(Snapshot { state, entries }))
    }

    fn ranges(spans: &[Span<'_>]) -> Vec<(i32, String, u64, u64)> {
        spans
            .iter()
            .map(|s| {
                (
                    s.wanted as i32,
                    s.entry.object_key.clone(),
                    s.range.start,
                    s.range.end,
                )
            })
            .collect()
    }

    #[test]
    fn a_fetch_plans_the_ranges_it_reads_then_the_next_ones_partition_by_partition() {
        let (wanted, snapshots): (Vec<_>, Vec<_>) = (0..2).map(|p| partition(p, 3)).unzip();
        let (needed, ahead) = plan(&wanted, &snapshots, 400);
        // Partition 0 takes 250 bytes (its limit), partition 1 the 150 left of the fetch's.
        assert_eq!(
            ranges(&needed),
            vec![
                (0, "o0".into(), 0, 100),
                (0, "o1".into(), 0, 100),
                (0, "o2".into(), 0, 50),
                (1, "o0".into(), 100, 200),
                (1, "o1".into(), 100, 150),
            ]
        );
        // What is left, the partitions' next ranges side by side.
        assert_eq!(
            ranges(&ahead),
            vec![
                (0, "o2".into(), 50, 100),
                (1, "o1".into(), 150, 200),
                (1, "o2".into(), 100, 200),
            ]
        );
    }

    #[test]
    fn ranges_below_the_fetch_offset_or_at_the_end_are_not_planned() {
        let (mut first, first_snapshot) = partition(0, 3);
        first.fetch_offset = 15;
        let (mut second, second_snapshot) = partition(1, 3);
        second.fetch_offset = 30;
        let wanted = vec![first, second];
        let snapshots = vec![first_snapshot, second_snapshot];
        let (needed, ahead) = plan(&wanted, &snapshots, 10_000);
        assert_eq!(
            ranges(&needed),
            vec![(0, "o1".into(), 0, 100), (0, "o2".into(), 0, 100)]
        );
        assert!(ahead.is_empty());
    }

    #[test]
    fn the_first_range_of_a_fetch_is_planned_whole_however_small_the_limit() {
        let (mut wanted, snapshot) = partition(0, 2);
        wanted.max_bytes = 1;
        let snapshots = vec![snapshot];
        let (needed, ahead) = plan(&[wanted], &snapshots, 1);
        assert_eq!(ranges(&needed), vec![(0, "o0".into(), 0, 100)]);
        assert_eq!(ranges(&ahead), vec![(0, "o1".into(), 0, 100)]);
    }

    #[test]
    fn a_fetch_plans_no_more_offsets_than_an_answer_takes() {
        let (wanted, mut snapshot) = partition(0, 3);
        for entry in &mut snapshot.as_mut().expect("snapshot").entries {
            entry.base_offset *= 3_000;
            entry.last_offset = entry.base_offset + 29_999;
        }
        let snapshots = vec![snapshot];
        let wanted = Wanted {
            max_bytes: 10_000,
            ..wanted
        };
        let (needed, ahead) = plan(&[wanted], &snapshots, 10_000);
        // 30,000 offsets, then 60,000: the limit is reached inside the second entry.
        assert_eq!(
            ranges(&needed),
            vec![(0, "o0".into(), 0, 100), (0, "o1".into(), 0, 100)]
        );
        assert_eq!(ranges(&ahead), vec![(0, "o2".into(), 0, 100)]);
    }

    #[test]
    fn partitions_the_limits_left_out_are_read_ahead_first() {
        let (wanted, snapshots): (Vec<_>, Vec<_>) = (0..3).map(|p| partition(p, 2)).unzip();
        let (needed, ahead) = plan(&wanted, &snapshots, 150);
        assert_eq!(
            ranges(&needed),
            vec![(0, "o0".into(), 0, 100), (0, "o1".into(), 0, 50)]
        );
        assert_eq!(
            ranges(&ahead),
            vec![
                (1, "o0".into(), 100, 200),
                (1, "o1".into(), 100, 200),
                (2, "o0".into(), 200, 300),
                (2, "o1".into(), 200, 300),
                (0, "o1".into(), 50, 100),
            ]
        );
    }
}
