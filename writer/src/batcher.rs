//! The open buffer.
//!
//! Vocabulary: an *append* is one accepted produce request (its partitions' batches and the
//! channel to answer it on); a *flush* seals the buffer into one object body in which each
//! partition's batches are one contiguous byte range, in partition order, and hands it to
//! the committer with every batch's place and producer identity, so the commit can decide
//! batch by batch (a retried idempotent batch is not stored twice).
//!
//! When a buffer is sealed (`Pace`): when it holds `flush_bytes`; when nothing was added
//! to it for `flush_idle_ms`, because then its producers are waiting for their answers
//! before sending more (an idempotent producer keeps one request per partition in flight,
//! the Java client five per connection), and waiting out the interval would only idle
//! them; when its first append is `flush_interval_ms` old; at once while shutting down.
//! A flush of a buffer holding less than `flush_bytes` starts at least
//! `min_flush_interval_ms` after the previous flush, which bounds what a latency-bound load
//! costs: at most `1000 / min_flush_interval_ms` small objects a second per writer, on top
//! of one object per `flush_bytes` produced. An empty buffer never flushes, so an idle
//! writer makes no S3 or PostgreSQL requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;
use uuid::Uuid;
use yaks_common::batch::BatchInfo;
use yaks_common::clock::Instant;
use yaks_common::metastore::{AppendBatch, PartitionAppend};
use yaks_common::metrics::{TriggerLabels, metrics};
use yaks_common::shutdown::Shutdown;

use crate::WriterContext;
use crate::committer::Committer;

/// One partition's batch inside an append.
#[derive(Debug, Clone)]
pub struct PartitionBatch {
    /// Topic.
    pub topic_id: Uuid,
    /// Partition.
    pub partition_index: i32,
    /// The producer's batch, byte for byte.
    pub records: Bytes,
    /// Its parsed header.
    pub info: BatchInfo,
    /// When the gateway gives up on it, in the metastore's clock; a commit after that
    /// must not store it (see [`AppendBatch::commit_deadline_ms`]).
    pub commit_deadline_ms: Option<i64>,
}

/// What became of one partition of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOutcome {
    /// Topic.
    pub topic_id: Uuid,
    /// Partition.
    pub partition_index: i32,
    /// `(base_offset, log_start_offset)`, or a Kafka error code.
    pub result: Result<(i64, i64), i16>,
}

/// The answer to one append, in the order its partitions were given.
pub type AppendReply = Vec<PartitionOutcome>;

/// The batcher is gone (shutting down).
#[derive(Debug, thiserror::Error)]
#[error("writer is shutting down")]
pub struct Closed;

struct Append {
    batches: Vec<PartitionBatch>,
    reply: oneshot::Sender<AppendReply>,
    permit: Room,
}

/// Buffer room held by an append from before its body is read until it is answered;
/// counted in `yaks_writer_buffered_bytes` while held.
pub struct Room {
    _permit: OwnedSemaphorePermit,
    bytes: i64,
}

impl Room {
    fn new(permit: OwnedSemaphorePermit, bytes: usize) -> Room {
        metrics().writer.buffered.inc_by(bytes as i64);
        Room {
            _permit: permit,
            bytes: bytes as i64,
        }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        metrics().writer.buffered.dec_by(self.bytes);
    }
}

/// Handle to the batcher task.
pub struct Batcher {
    tx: mpsc::Sender<Append>,
    room: Arc<Semaphore>,
    room_bytes: usize,
}

/// Permits are counted in KiB so that a semaphore's u32 covers any buffer size.
const PERMIT_BYTES: usize = 1024;

impl Batcher {
    /// Starts the batcher task, which hands flushes to `committer`.
    pub fn start(
        context: WriterContext,
        committer: Committer,
        shutdown: Shutdown,
    ) -> (Batcher, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(1024);
        let room_bytes = context.config.max_buffered_bytes as usize;
        let room = Arc::new(Semaphore::new(room_bytes.div_ceil(PERMIT_BYTES)));
        let task = tokio::spawn(run(context, committer, rx, shutdown));
        (
            Batcher {
                tx,
                room,
                room_bytes,
            },
            task,
        )
    }

    /// Waits for `bytes` of buffer room. The writer's server reserves a request's room
    /// before it reads the body, so requests waiting for room hold no memory and the writer's
    /// footprint is bounded by `max_buffered_bytes`, not by how much gateways send at once.
    pub async fn reserve(&self, bytes: usize) -> Result<Room, Closed> {
        let permits = bytes.min(self.room_bytes).div_ceil(PERMIT_BYTES).max(1) as u32;
        let permit = self
            .room
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| Closed)?;
        Ok(Room::new(permit, bytes))
    }

    /// Accepts an append into room reserved for it. Once this returns, the append is
    /// ordered after every append accepted before it; the receiver yields its answer after
    /// commit.
    pub async fn accept(
        &self,
        batches: Vec<PartitionBatch>,
        room: Room,
    ) -> Result<oneshot::Receiver<AppendReply>, Closed> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Append {
                batches,
                reply,
                permit: room,
            })
            .await
            .map_err(|_| Closed)?;
        Ok(answer)
    }

    /// [`Batcher::reserve`] room for the batches' bytes, then [`Batcher::accept`] them.
    pub async fn append(
        &self,
        batches: Vec<PartitionBatch>,
    ) -> Result<oneshot::Receiver<AppendReply>, Closed> {
        let bytes: usize = batches.iter().map(|b| b.records.len()).sum();
        let room = self.reserve(bytes).await?;
        self.accept(batches, room).await
    }
}

/// One partition's batches in the open buffer, in arrival order.
#[derive(Default)]
struct PartitionBuffer {
    batches: Vec<(Bytes, BatchInfo, Option<i64>)>,
    bytes: usize,
}

/// Where one partition of an append landed: its batch's position among the partition's
/// batches in this flush, which is also its position in the commit's outcomes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    pub topic_id: Uuid,
    pub partition_index: i32,
    pub batch: usize,
}

/// An accepted append waiting for its flush to commit.
pub(crate) struct Waiter {
    pub placements: Vec<Placement>,
    pub reply: oneshot::Sender<AppendReply>,
    /// Held until answered, so buffered and uploading bytes count against the room.
    pub _permit: Room,
    /// When the buffer took it, for `yaks_writer_append_wait` and `yaks_writer_append`.
    pub accepted: Instant,
}

/// A sealed buffer: the object body, its index entries and who waits on it.
pub(crate) struct SealedFlush {
    pub body: Bytes,
    pub appends: Vec<PartitionAppend>,
    pub waiters: Vec<Waiter>,
}

#[derive(Default)]
struct OpenBuffer {
    partitions: BTreeMap<(Uuid, i32), PartitionBuffer>,
    waiters: Vec<Waiter>,
    bytes: usize,
    /// When the first and the latest append were added; `None` while empty.
    added: Option<(Instant, Instant)>,
}

impl OpenBuffer {
    fn add(&mut self, append: Append) {
        let now = yaks_common::clock::now();
        let first = self.added.map_or(now, |(first, _)| first);
        self.added = Some((first, now));
        let mut placements = Vec::with_capacity(append.batches.len());
        for batch in append.batches {
            let partition = self
                .partitions
                .entry((batch.topic_id, batch.partition_index))
                .or_default();
            placements.push(Placement {
                topic_id: batch.topic_id,
                partition_index: batch.partition_index,
                batch: partition.batches.len(),
            });
            partition.bytes += batch.records.len();
            self.bytes += batch.records.len();
            partition
                .batches
                .push((batch.records, batch.info, batch.commit_deadline_ms));
        }
        self.waiters.push(Waiter {
            placements,
            reply: append.reply,
            _permit: append.permit,
            accepted: now,
        });
    }

    fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Lays the partitions out one after another, in (topic id, partition) order.
    fn seal(self) -> SealedFlush {
        let sealed = yaks_common::clock::now();
        for waiter in &self.waiters {
            let waited = sealed.saturating_duration_since(waiter.accepted);
            metrics().writer.append_wait.observe(waited.as_secs_f64());
        }
        let mut body = BytesMut::with_capacity(self.bytes);
        let mut appends = Vec::with_capacity(self.partitions.len());
        for ((topic_id, partition_index), partition) in self.partitions {
            let mut batches = Vec::with_capacity(partition.batches.len());
            for (records, info, commit_deadline_ms) in &partition.batches {
                batches.push(AppendBatch {
                    byte_offset: body.len() as i64,
                    byte_length: records.len() as i64,
                    offset_count: info.offset_count,
                    max_timestamp: info.max_timestamp,
                    producer: info.producer(),
                    commit_deadline_ms: *commit_deadline_ms,
                });
                body.extend_from_slice(records);
            }
            appends.push(PartitionAppend {
                topic_id,
                partition_index,
                batches,
            });
        }
        SealedFlush {
            body: body.freeze(),
            appends,
            waiters: self.waiters,
        }
    }
}

/// What made a buffer due; counted in `yaks_writer_flush_triggers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// It holds `flush_bytes`.
    Full,
    /// Nothing was added to it for `flush_idle_ms`.
    Idle,
    /// Its first append is `flush_interval_ms` old.
    Interval,
    /// The writer is shutting down.
    Shutdown,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Full => "full",
            Trigger::Idle => "idle",
            Trigger::Interval => "interval",
            Trigger::Shutdown => "shutdown",
        }
    }
}

/// When buffers are sealed, from the writer's settings (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    flush_bytes: usize,
    interval: Duration,
    idle: Option<Duration>,
    min_gap: Duration,
}

impl Pace {
    pub(crate) fn new(config: &yaks_common::config::WriterConfig) -> Pace {
        let interval = Duration::from_millis(config.flush_interval_ms);
        Pace {
            flush_bytes: config.flush_bytes as usize,
            interval,
            idle: (config.flush_idle_ms > 0).then(|| Duration::from_millis(config.flush_idle_ms)),
            // Whoever shortens the interval below it asked for flushes at the interval.
            min_gap: Duration::from_millis(config.min_flush_interval_ms).min(interval),
        }
    }

    /// When a buffer holding `bytes`, whose first and latest appends were `added`, is to be
    /// sealed, and why; `None` for an empty buffer. `last_flush` is when the previous
    /// flush started.
    fn due(
        &self,
        bytes: usize,
        added: Option<(Instant, Instant)>,
        last_flush: Option<Instant>,
    ) -> Option<(Instant, Trigger)> {
        let (first, latest) = added?;
        let mut due = if bytes >= self.flush_bytes {
            (latest, Trigger::Full)
        } else {
            (first + self.interval, Trigger::Interval)
        };
        if let Some(idle) = self.idle
            && latest + idle < due.0
        {
            due = (latest + idle, Trigger::Idle);
        }
        // Only flushes of less than `flush_bytes` are held back: holding a full buffer would
        // not save requests, only grow objects past the size readers and compaction expect.
        if let Some(last) = last_flush
            && due.1 != Trigger::Full
        {
            due.0 = due.0.max(last + self.min_gap);
        }
        Some(due)
    }
}

async fn run(
    context: WriterContext,
    committer: Committer,
    mut rx: mpsc::Receiver<Append>,
    mut shutdown: Shutdown,
) {
    let pace = Pace::new(&context.config);
    let mut buffer = OpenBuffer::default();
    let mut last_flush: Option<Instant> = None;
    let mut draining = false;
    loop {
        let now = yaks_common::clock::now();
        let due = if draining && !buffer.is_empty() {
            Some((now, Trigger::Shutdown))
        } else {
            pace.due(buffer.bytes, buffer.added, last_flush)
        };
        // A flush already due goes before any waiting append: the timer rounds deadlines up
        // to its next tick, and appends arriving without pause would otherwise keep it
        // from ever firing.
        if let Some((at, trigger)) = due
            && at <= now
        {
            last_flush = Some(now);
            flush(&committer, &mut buffer, trigger).await;
            continue;
        }
        // A disabled branch's future is still built: give it a deadline it never reaches.
        let at = due.map_or(now + Duration::from_secs(3600), |(at, _)| at);
        let trigger = tokio::select! {
            _ = yaks_common::clock::sleep_until(at), if due.is_some() => due.map(|(_, t)| t),
            append = rx.recv() => match append {
                Some(append) => {
                    buffer.add(append);
                    None
                }
                None => {
                    if !buffer.is_empty() {
                        flush(&committer, &mut buffer, Trigger::Shutdown).await;
                    }
                    break;
                }
            },
            _ = shutdown.wait(), if !draining => {
                debug!("batcher draining");
                draining = true;
                None
            }
        };
        if let Some(trigger) = trigger {
            last_flush = Some(yaks_common::clock::now());
            flush(&committer, &mut buffer, trigger).await;
        }
    }
    debug!("batcher stopped");
}

async fn flush(committer: &Committer, buffer: &mut OpenBuffer, trigger: Trigger) {
    metrics()
        .writer
        .flush_triggers
        .get_or_create(&TriggerLabels {
            trigger: trigger.label(),
        })
        .inc();
    committer.submit(std::mem::take(buffer).seal()).await;
}

#[cfg(test)]
impl PartitionBatch {
    /// A valid batch of `values`, for tests.
    pub(crate) fn for_test(
        topic_id: Uuid,
        partition_index: i32,
        values: &[&[u8]],
    ) -> PartitionBatch {
        let records = Bytes::from(yaks_common::batch::testing::batch(values, 7));
        let info = yaks_common::batch::header_info(&records).expect("valid");
        PartitionBatch {
            topic_id,
            partition_index,
            records,
            info,
            commit_deadline_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(topic_id: Uuid, partition_index: i32, values: &[&[u8]]) -> PartitionBatch {
        PartitionBatch::for_test(topic_id, partition_index, values)
    }

    #[test]
    fn seal_groups_each_partition_into_one_range() {
        let topic = Uuid::from_u128(1);
        let room = Arc::new(Semaphore::new(100));
        let mut buffer = OpenBuffer::default();
        for batches in [
            vec![batch(topic, 1, &[b"a", b"b"]), batch(topic, 0, &[b"c"])],
            vec![batch(topic, 1, &[b"d"])],
        ] {
            let (reply, _answer) = oneshot::channel();
            let permit = Room::new(room.clone().try_acquire_owned().expect("room"), 1);
            buffer.add(Append {
                batches,
                reply,
                permit,
            });
        }
        let first_len = buffer.partitions[&(topic, 0)].bytes as i64;
        let sealed = buffer.seal();
        assert_eq!(sealed.appends.len(), 2);
        let p0 = &sealed.appends[0];
        let p1 = &sealed.appends[1];
        assert_eq!(p0.partition_index, 0);
        assert_eq!(
            (p0.batches[0].byte_offset, p0.batches[0].offset_count),
            (0, 1)
        );
        assert_eq!(p1.partition_index, 1);
        let p1_batches: Vec<_> = p1
            .batches
            .iter()
            .map(|b| (b.byte_offset, b.offset_count))
            .collect();
        let second_at = first_len + p1.batches[0].byte_length;
        assert_eq!(p1_batches, vec![(first_len, 2), (second_at, 1)]);
        let last = &p1.batches[1];
        assert_eq!(
            last.byte_offset + last.byte_length,
            sealed.body.len() as i64
        );
        // The second append's batch is the partition's second in this flush.
        assert_eq!(sealed.waiters[1].placements[0].batch, 1);
    }

    fn pace(idle_ms: u64) -> Pace {
        Pace::new(&yaks_common::config::WriterConfig {
            flush_bytes: 1000,
            flush_interval_ms: 250,
            flush_idle_ms: idle_ms,
            min_flush_interval_ms: 20,
            ..Default::default()
        })
    }

    #[test]
    fn an_empty_buffer_is_never_due() {
        assert_eq!(pace(2).due(0, None, None), None);
    }

    #[test]
    fn a_buffer_that_stopped_growing_is_due_after_the_idle_time_not_the_interval() {
        let t0 = yaks_common::clock::now();
        let ms = Duration::from_millis;
        let due = pace(2).due(10, Some((t0, t0 + ms(5))), None);
        assert_eq!(due, Some((t0 + ms(7), Trigger::Idle)));
        // Without the idle rule, the interval from the first append.
        let due = pace(0).due(10, Some((t0, t0 + ms(5))), None);
        assert_eq!(due, Some((t0 + ms(250), Trigger::Interval)));
        // A buffer that kept growing reaches its interval before it is ever idle.
        let due = pace(2).due(10, Some((t0, t0 + ms(249))), None);
        assert_eq!(due, Some((t0 + ms(250), Trigger::Interval)));
    }

    #[test]
    fn a_full_buffer_is_due_at_once() {
        let t0 = yaks_common::clock::now();
        let ms = Duration::from_millis;
        let due = pace(2).due(1000, Some((t0, t0 + ms(3))), None);
        assert_eq!(due, Some((t0 + ms(3), Trigger::Full)));
    }

    #[test]
    fn flushes_of_partial_buffers_start_at_least_the_minimum_interval_apart() {
        let t0 = yaks_common::clock::now();
        let ms = Duration::from_millis;
        let last = Some(t0);
        let due = pace(2).due(10, Some((t0, t0 + ms(1))), last);
        assert_eq!(due, Some((t0 + ms(20), Trigger::Idle)));
        // A full buffer makes an object of the size the bound is there to keep: not held.
        let due = pace(2).due(1000, Some((t0, t0 + ms(1))), last);
        assert_eq!(due, Some((t0 + ms(1), Trigger::Full)));
        // Long after the last flush, the bound does not delay anything.
        let due = pace(2).due(10, Some((t0 + ms(100), t0 + ms(100))), last);
        assert_eq!(due, Some((t0 + ms(102), Trigger::Idle)));
    }

    #[test]
    fn the_minimum_interval_never_exceeds_the_flush_interval() {
        let pace = Pace::new(&yaks_common::config::WriterConfig {
            flush_interval_ms: 5,
            min_flush_interval_ms: 20,
            ..Default::default()
        });
        assert_eq!(pace.min_gap, Duration::from_millis(5));
    }
}
