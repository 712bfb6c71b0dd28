//! Upload, then commit in flush order, then answer.
//!
//! Durability stages of a flush, in order:
//! 1. *sealed*: the body exists only in memory; nothing is promised.
//! 2. *uploaded-not-committed*: the object is in S3 but no index row points at it. A crash
//!    here leaves an orphan object, collected later; the client never heard an ack.
//! 3. *committed-not-acked*: offsets are assigned in PostgreSQL. A crash here loses only the
//!    answer; the idempotent-producer sequence check makes the client's retry safe.
//! 4. *acked*: every waiting request has its real base offsets (or, for a retried
//!    idempotent batch, the offsets the original got; for a refused one, its error).
//!
//! The gaps between stages 2–3 and 3–4 are the fail points
//! [`yaks_common::failpoint::UPLOADED_NOT_COMMITTED`] and
//! [`yaks_common::failpoint::COMMITTED_NOT_ACKED`].
//!
//! Uploads of several flushes may overlap; commits never reorder, because the commit loop
//! takes flushes in the order the batcher sealed them.

use std::collections::HashMap;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, error, warn};
use uuid::Uuid;
use yaks_common::error::StoreError;
use yaks_common::failpoint::{self, FailAction};
use yaks_common::ids::ObjectId;
use yaks_common::metastore::{AppendResult, BatchOutcome, ObjectCommit};
use yaks_common::metrics::{OutcomeLabels, metrics};
use yaks_common::topic_names::TopicNames;

use crate::WriterContext;
use crate::batcher::{PartitionOutcome, SealedFlush, Waiter};

/// Commit attempts when PostgreSQL reports a passing fault before COMMIT was sent.
const COMMIT_ATTEMPTS: u32 = 5;

struct InFlight {
    object: ObjectId,
    key: String,
    size: i64,
    flush: SealedFlush,
    upload: JoinHandle<Result<(), StoreError>>,
}

/// Handle that takes sealed flushes.
pub struct Committer {
    tx: mpsc::Sender<InFlight>,
    context: WriterContext,
    names: TopicNames,
}

impl Committer {
    /// Starts the commit loop.
    pub fn start(context: WriterContext) -> (Committer, JoinHandle<()>) {
        // The loop holds one flush; the channel the rest of those allowed to upload at once.
        let capacity = context
            .config
            .max_uploads_in_flight
            .saturating_sub(1)
            .max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let task = tokio::spawn(commit_loop(context.clone(), rx));
        let names = TopicNames::new(context.metastore.clone());
        (Committer { tx, context, names }, task)
    }

    /// Starts uploading `flush` and queues it for commit; waits while too many are in flight.
    pub(crate) async fn submit(&self, flush: SealedFlush) {
        let object = ObjectId::new(self.context.clock.now_ms());
        let key = object.key(&self.context.s3.key_prefix);
        let size = flush.body.len() as i64;
        let objects = self.context.objects.clone();
        let mut bytes_by_topic: HashMap<Uuid, u64> = HashMap::new();
        for append in &flush.appends {
            let bytes: i64 = append.batches.iter().map(|b| b.byte_length).sum();
            *bytes_by_topic.entry(append.topic_id).or_default() += bytes as u64;
        }
        let names = self.names.clone();
        let upload = tokio::spawn({
            let key = key.clone();
            let body = flush.body.clone();
            async move {
                let started = yaks_common::clock::now();
                // The names (a metastore query for a topic not seen before) are looked up
                // while the upload runs, not after it.
                let (uploaded, shares) =
                    tokio::join!(objects.put(key, body), names.shares(&bytes_by_topic));
                let writer = &metrics().writer;
                let elapsed = started.elapsed();
                writer.s3.record("put", &shares, elapsed, uploaded.is_ok());
                writer.flush_upload_duration.observe(elapsed.as_secs_f64());
                uploaded
            }
        });
        let in_flight = InFlight {
            object,
            key,
            size,
            flush,
            upload,
        };
        if let Err(mpsc::error::SendError(lost)) = self.tx.send(in_flight).await {
            // Only possible if the commit loop died; its requests get a retriable error.
            error!("commit loop is gone; failing a flush");
            fail_all(lost.flush.waiters, ResponseError::KafkaStorageError.code());
        }
    }
}

async fn commit_loop(context: WriterContext, mut rx: mpsc::Receiver<InFlight>) {
    while let Some(in_flight) = rx.recv().await {
        let InFlight {
            object,
            key,
            size,
            flush,
            upload,
        } = in_flight;
        let uploaded = match upload.await {
            Ok(result) => result,
            Err(join) => Err(StoreError::Internal(format!("upload task failed: {join}"))),
        };
        let writer = &metrics().writer;
        writer.flush_size.observe(size as f64);
        writer.flush_partitions.observe(flush.appends.len() as f64);
        if let Err(e) = uploaded {
            count_flush("upload_failed");
            warn!(%object, error = %e, "upload failed; answering the flush with a retriable error");
            fail_all(flush.waiters, ResponseError::KafkaStorageError.code());
            continue;
        }
        // Stage: uploaded-not-committed.
        match context.fail_points.hit(failpoint::UPLOADED_NOT_COMMITTED) {
            Some(FailAction::Error) => {
                fail_all(flush.waiters, ResponseError::KafkaStorageError.code());
                continue;
            }
            Some(FailAction::LoseAnswer) => {
                drop(flush.waiters);
                continue;
            }
            None => {}
        }
        let now_ms = context.clock.now_ms();
        let commit = ObjectCommit {
            object,
            object_key: &key,
            size_bytes: size,
            appends: &flush.appends,
            now_ms,
            producers_expire_before_ms: now_ms
                .saturating_sub(context.config.producer_id_expiration_ms as i64),
        };
        let mut attempt = 0;
        let started = yaks_common::clock::now();
        let committed = loop {
            attempt += 1;
            match context.metastore.commit_object(commit).await {
                Err(StoreError::Retriable(detail)) if attempt < COMMIT_ATTEMPTS => {
                    warn!(%object, attempt, %detail, "commit failed before COMMIT; retrying");
                    yaks_common::clock::sleep(Duration::from_millis(100 << attempt)).await;
                }
                other => break other,
            }
        };
        writer
            .flush_commit_duration
            .observe(started.elapsed().as_secs_f64());
        count_flush(if committed.is_ok() {
            "committed"
        } else {
            "commit_failed"
        });
        match committed {
            Ok(results) => {
                // Stage: committed-not-acked.
                debug!(%object, size, partitions = results.len(), "flush committed");
                let expired = results
                    .iter()
                    .flat_map(|r| &r.batches)
                    .filter(|b| matches!(b, BatchOutcome::Expired))
                    .count();
                if expired > 0 {
                    warn!(%object, expired, "batches past their commit deadline were not stored");
                }
                match context.fail_points.hit(failpoint::COMMITTED_NOT_ACKED) {
                    Some(FailAction::Error) => fail_all(
                        flush.waiters,
                        StoreError::OutcomeUnknown("fail point".into()).kafka_code(),
                    ),
                    Some(FailAction::LoseAnswer) => drop(flush.waiters),
                    None => answer(flush.waiters, &results),
                }
            }
            Err(e) => {
                error!(%object, error = %e, "commit failed");
                fail_all(flush.waiters, e.kafka_code());
            }
        }
    }
}

fn count_flush(outcome: &'static str) {
    metrics()
        .writer
        .flushes
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

/// Answers every waiter from the commit results.
fn answer(waiters: Vec<Waiter>, results: &[AppendResult]) {
    let by_partition: HashMap<(Uuid, i32), &AppendResult> = results
        .iter()
        .map(|r| ((r.topic_id, r.partition_index), r))
        .collect();
    for waiter in waiters {
        let mut outcomes = Vec::with_capacity(waiter.placements.len());
        for placement in &waiter.placements {
            let result = match by_partition.get(&(placement.topic_id, placement.partition_index)) {
                Some(r) => match r.batches.get(placement.batch) {
                    Some(BatchOutcome::Appended { base_offset })
                    | Some(BatchOutcome::Duplicate { base_offset }) => {
                        Ok((*base_offset, r.log_start_offset))
                    }
                    Some(BatchOutcome::Rejected(error)) => Err(error.kafka_code()),
                    // Its gateway has given up on it, or is about to: not stored.
                    Some(BatchOutcome::Expired) => Err(ResponseError::RequestTimedOut.code()),
                    None => Err(ResponseError::UnknownServerError.code()),
                },
                // The partition vanished (topic deleted) between accept and commit.
                None => Err(ResponseError::UnknownTopicOrPartition.code()),
            };
            outcomes.push(PartitionOutcome {
                topic_id: placement.topic_id,
                partition_index: placement.partition_index,
                result,
            });
        }
        metrics()
            .writer
            .append_duration
            .observe(waiter.accepted.elapsed().as_secs_f64());
        // The requester may have gone away; nothing to do then.
        let _ = waiter.reply.send(outcomes);
    }
}

fn fail_all(waiters: Vec<Waiter>, code: i16) {
    for waiter in waiters {
        let outcomes = waiter
            .placements
            .iter()
            .map(|p| PartitionOutcome {
                topic_id: p.topic_id,
                partition_index: p.partition_index,
                result: Err(code),
            })
            .collect();
        let _ = waiter.reply.send(outcomes);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use bytes::Bytes;
    use futures::future::BoxFuture;
    use yaks_common::clock::system_clock;
    use yaks_common::config::{S3Config, WriterConfig};
    use yaks_common::failpoint::FailPoints;
    use yaks_common::metastore::{Log, MemoryMetastore, Topics};
    use yaks_common::objstore::{MemoryObjectStore, ObjectStore};
    use yaks_common::shutdown::{Shutdown, ShutdownTrigger};

    use super::*;
    use crate::batcher::{Batcher, PartitionBatch};

    /// Fails the first `failures` puts, then behaves like memory.
    struct FlakyStore {
        inner: MemoryObjectStore,
        failures: AtomicU32,
    }

    impl ObjectStore for FlakyStore {
        fn put(&self, key: String, body: Bytes) -> BoxFuture<'_, Result<(), StoreError>> {
            let remaining = self.failures.load(Ordering::SeqCst);
            if remaining > 0 {
                self.failures.store(remaining - 1, Ordering::SeqCst);
                return Box::pin(async { Err(StoreError::Retriable("injected".into())) });
            }
            self.inner.put(key, body)
        }
        fn get_range(
            &self,
            key: String,
            range: std::ops::Range<u64>,
        ) -> BoxFuture<'_, Result<Bytes, StoreError>> {
            self.inner.get_range(key, range)
        }
        fn delete(&self, key: String) -> BoxFuture<'_, Result<(), StoreError>> {
            self.inner.delete(key)
        }
        fn list(&self, prefix: String) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
            self.inner.list(prefix)
        }
    }

    fn batch(topic_id: Uuid, partition_index: i32, value: &str) -> PartitionBatch {
        PartitionBatch::for_test(topic_id, partition_index, &[value.as_bytes()])
    }

    struct Harness {
        batcher: Batcher,
        metastore: Arc<MemoryMetastore>,
        objects: MemoryObjectStore,
        fail_points: Arc<FailPoints>,
        topic: Uuid,
        // Dropping the trigger would start a shutdown.
        _running: ShutdownTrigger,
    }

    async fn writer_with(failures: u32) -> Harness {
        let metastore = Arc::new(MemoryMetastore::default());
        let topic = metastore
            .create_topic("t", 2, &Default::default())
            .await
            .expect("create")
            .expect("new");
        let objects = MemoryObjectStore::default();
        let fail_points = Arc::new(FailPoints::default());
        let context = WriterContext {
            config: WriterConfig {
                flush_interval_ms: 5,
                ..WriterConfig::default()
            },
            s3: S3Config::default(),
            metastore: metastore.clone(),
            objects: Arc::new(FlakyStore {
                inner: objects.clone(),
                failures: AtomicU32::new(failures),
            }),
            clock: system_clock(),
            fail_points: fail_points.clone(),
            peer_token: None,
        };
        let (committer, _commit_task) = Committer::start(context.clone());
        let (running, shutdown) = Shutdown::new();
        let (batcher, _batch_task) = Batcher::start(context, committer, shutdown);
        Harness {
            batcher,
            metastore,
            objects,
            fail_points,
            topic: topic.topic_id,
            _running: running,
        }
    }

    #[tokio::test]
    async fn appends_are_answered_with_committed_offsets_in_order() {
        let Harness {
            batcher,
            metastore,
            objects,
            topic,
            _running,
            ..
        } = writer_with(0).await;
        let mut answers = Vec::new();
        for i in 0..5 {
            let batches = vec![
                batch(topic, 0, &format!("p0-{i}")),
                batch(topic, 1, &format!("p1-{i}")),
            ];
            answers.push(batcher.append(batches).await.expect("accepted"));
        }
        for (i, answer) in answers.into_iter().enumerate() {
            let outcomes = answer.await.expect("answered");
            assert_eq!(outcomes.len(), 2);
            for outcome in outcomes {
                assert_eq!(outcome.result.map(|r| r.0), Ok(i as i64), "{outcome:?}");
            }
        }
        let entries = metastore
            .index_entries(&[(topic, 1, 0)], 100)
            .await
            .expect("entries")
            .remove(0);
        let covered: i64 = entries
            .iter()
            .map(|e| e.last_offset - e.base_offset + 1)
            .sum();
        assert_eq!(covered, 5);
        // Each entry's byte range holds exactly the partition's batches.
        for entry in entries {
            let start = entry.byte_offset as u64;
            let bytes = objects
                .get_range(
                    entry.object_key.clone(),
                    start..start + entry.byte_length as u64,
                )
                .await
                .expect("range");
            assert!(String::from_utf8_lossy(&bytes).contains("p1-"));
            assert!(!String::from_utf8_lossy(&bytes).contains("p0-"));
        }
    }

    #[tokio::test]
    async fn a_failed_upload_commits_nothing_and_answers_retriable() {
        let Harness {
            batcher,
            metastore,
            topic,
            _running,
            ..
        } = writer_with(1).await;
        let answer = batcher
            .append(vec![batch(topic, 0, "lost")])
            .await
            .expect("accepted");
        let outcomes = answer.await.expect("answered");
        assert_eq!(
            outcomes[0].result,
            Err(ResponseError::KafkaStorageError.code())
        );
        let states = metastore
            .partition_states(&[(topic, 0)])
            .await
            .expect("states");
        assert_eq!(states[0].next_offset, 0, "nothing committed");

        let answer = batcher
            .append(vec![batch(topic, 0, "kept")])
            .await
            .expect("accepted");
        let outcomes = answer.await.expect("answered");
        assert_eq!(
            outcomes[0].result.map(|r| r.0),
            Ok(0),
            "the retry gets offset 0"
        );
    }

    async fn next_offset(metastore: &MemoryMetastore, topic: Uuid) -> i64 {
        metastore
            .partition_states(&[(topic, 0)])
            .await
            .expect("states")[0]
            .next_offset
    }

    #[tokio::test]
    async fn a_retry_in_the_same_flush_gets_the_original_offset_and_is_stored_once() {
        let Harness {
            batcher,
            metastore,
            topic,
            _running,
            ..
        } = writer_with(0).await;
        let records = Bytes::from(yaks_common::batch::testing::idempotent_batch(
            &[b"a", b"b"],
            7,
            42,
            0,
            0,
        ));
        let info = yaks_common::batch::header_info(&records).expect("valid");
        let batch = PartitionBatch {
            topic_id: topic,
            partition_index: 0,
            records,
            info,
            commit_deadline_ms: None,
        };
        let first = batcher.append(vec![batch.clone()]).await.expect("accepted");
        let retry = batcher.append(vec![batch]).await.expect("accepted");
        for answer in [first, retry] {
            let outcomes = answer.await.expect("answered");
            assert_eq!(outcomes[0].result, Ok((0, 0)));
        }
        assert_eq!(next_offset(&metastore, topic).await, 2);
    }

    #[tokio::test]
    async fn fail_points_stop_a_flush_before_commit_or_before_the_answer() {
        let Harness {
            batcher,
            metastore,
            fail_points,
            topic,
            _running,
            ..
        } = writer_with(0).await;
        fail_points.arm(
            failpoint::UPLOADED_NOT_COMMITTED,
            FailAction::Error,
            Some(1),
        );
        let answer = batcher
            .append(vec![batch(topic, 0, "uncommitted")])
            .await
            .expect("accepted");
        assert_eq!(
            answer.await.expect("answered")[0].result,
            Err(ResponseError::KafkaStorageError.code())
        );
        assert_eq!(next_offset(&metastore, topic).await, 0, "nothing committed");

        fail_points.arm(failpoint::COMMITTED_NOT_ACKED, FailAction::Error, Some(1));
        let answer = batcher
            .append(vec![batch(topic, 0, "unacked")])
            .await
            .expect("accepted");
        assert_eq!(
            answer.await.expect("answered")[0].result,
            Err(ResponseError::RequestTimedOut.code()),
            "outcome unknown to the client"
        );
        assert_eq!(next_offset(&metastore, topic).await, 1, "but committed");

        fail_points.arm(
            failpoint::COMMITTED_NOT_ACKED,
            FailAction::LoseAnswer,
            Some(1),
        );
        let answer = batcher
            .append(vec![batch(topic, 0, "lost")])
            .await
            .expect("accepted");
        assert!(answer.await.is_err(), "the answer is never sent");
        assert_eq!(next_offset(&metastore, topic).await, 2);
    }
}
