//! The open buffer.
//!
//! Vocabulary: an *append* is one accepted produce request (its partitions' batches and the
//! channel to answer it on); a *flush* seals the buffer into one object body in which each
//! partition's batches are one contiguous byte range, in partition order, and hands it to
//! the committer with every batch's place and producer identity, so the commit can decide
//! batch by batch (a retried idempotent batch is not stored twice). A buffer is flushed when it holds `flush_bytes`, when its first append is
//! `flush_interval` old, or at once while shutting down. An empty buffer never flushes, so
//! an idle writer makes no S3 or PostgreSQL requests.

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
use yaks_common::metrics::metrics;
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
    opened_at: Option<Instant>,
}

impl OpenBuffer {
    fn add(&mut self, append: Append) {
        self.opened_at.get_or_insert_with(yaks_common::clock::now);
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
        });
    }

    fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Lays the partitions out one after another, in (topic id, partition) order.
    fn seal(self) -> SealedFlush {
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

async fn run(
    context: WriterContext,
    committer: Committer,
    mut rx: mpsc::Receiver<Append>,
    mut shutdown: Shutdown,
) {
    let flush_bytes = context.config.flush_bytes as usize;
    let flush_interval = Duration::from_millis(context.config.flush_interval_ms);
    let mut buffer = OpenBuffer::default();
    let mut draining = false;
    loop {
        let deadline = buffer
            .opened_at
            .map(|t| t + flush_interval)
            .unwrap_or_else(|| yaks_common::clock::now() + Duration::from_secs(3600));
        let flush_now = tokio::select! {
            append = rx.recv() => match append {
                Some(append) => {
                    buffer.add(append);
                    draining || buffer.bytes >= flush_bytes
                }
                None => {
                    if !buffer.is_empty() {
                        committer.submit(std::mem::take(&mut buffer).seal()).await;
                    }
                    break;
                }
            },
            _ = yaks_common::clock::sleep_until(deadline), if !buffer.is_empty() => true,
            _ = shutdown.wait(), if !draining => {
                debug!("batcher draining");
                draining = true;
                !buffer.is_empty()
            }
        };
        if flush_now {
            committer.submit(std::mem::take(&mut buffer).seal()).await;
        }
    }
    debug!("batcher stopped");
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
}
