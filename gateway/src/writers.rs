//! Produce routing: which writer a connection's produce requests go to.
//!
//! A connection sticks to one writer (chosen from its id) while that writer answers, so the
//! batches one connection sends to a partition are committed in the order sent. A writer
//! that refuses or cannot be reached is skipped for [`DOWN_FOR`] and the connection moves
//! to the next one; after a writer change, ordering across the change rests on the
//! idempotent-producer sequence check, as in Kafka.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use hyper::body::Incoming;
use tracing::warn;
use yaks_common::rpc::{
    COMMIT_DEADLINE_HEADER, HEALTH_PATH, PRODUCE_PATH, RpcClient, RpcError, WRITER_INSTANCE_HEADER,
};

/// How long a writer that lost an answer gets to show whether it is still the same process.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a writer that failed is skipped.
pub const DOWN_FOR: Duration = Duration::from_secs(2);

/// The configured writers and their recent health.
pub struct WriterPool {
    urls: Vec<String>,
    down_until: Mutex<Vec<Option<Instant>>>,
    rpc: RpcClient,
}

/// A connection's current writer.
#[derive(Debug)]
pub struct Sticky(AtomicUsize);

impl Sticky {
    /// Starts a connection on the writer its id hashes to.
    pub fn new(connection_id: u64, writers: usize) -> Sticky {
        Sticky(AtomicUsize::new((connection_id as usize) % writers.max(1)))
    }
}

impl WriterPool {
    /// A pool over `urls` (at least one).
    pub fn new(urls: Vec<String>) -> WriterPool {
        let count = urls.len();
        WriterPool {
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            down_until: Mutex::new(vec![None; count]),
            rpc: RpcClient::new(),
        }
    }

    /// Number of writers.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// True when no writer is configured.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Sends an internal produce body and returns once a writer *accepted* it, with that
    /// writer's index. Tries the connection's writer first, then the others; only writers
    /// that refused or could not be reached are retried, so nothing is ever appended twice
    /// by this loop. A writer still silent at `deadline` (stopped, or its host gone) may
    /// have appended the request: that is [`RpcError::AnswerLost`], never a retry
    /// elsewhere, and the writer is skipped for a while. Before trying any writer but the
    /// connection's own, waits for `previous_settled` (the connection's previous produce,
    /// which that writer accepted, to be answered or unstorable), so the two cannot be
    /// committed out of order (see [`crate::handlers::ProduceTurn`]).
    pub async fn produce(
        &self,
        sticky: &Sticky,
        body: Bytes,
        deadline: Instant,
        commit_deadline_ms: i64,
        previous_settled: &mut Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> Result<(usize, Response<Incoming>), RpcError> {
        let headers = [(COMMIT_DEADLINE_HEADER, commit_deadline_ms.to_string())];
        let count = self.urls.len();
        let start = sticky.0.load(Ordering::Relaxed);
        let mut last_error = RpcError::Unavailable("no writer configured".into());
        // First pass skips writers marked down; the second tries them anyway.
        for pass in 0..2 {
            for step in 0..count {
                let index = (start + step) % count;
                if pass == 0 && self.is_down(index) {
                    continue;
                }
                if index != start
                    && let Some(settled) = previous_settled.take()
                    && tokio::time::timeout_at(deadline.into(), settled)
                        .await
                        .is_err()
                {
                    // Nothing was sent: the client may retry safely.
                    return Err(RpcError::Unavailable(
                        "the previous produce of this connection is still unsettled".into(),
                    ));
                }
                let post =
                    self.rpc
                        .post_with(&self.urls[index], PRODUCE_PATH, body.clone(), &headers);
                let Ok(posted) = tokio::time::timeout_at(deadline.into(), post).await else {
                    self.skip(index, "writer did not accept a produce in time");
                    return Err(RpcError::AnswerLost(format!(
                        "{} did not accept the produce in time",
                        self.urls[index]
                    )));
                };
                match posted {
                    Ok(response) => {
                        if index != start {
                            sticky.0.store(index, Ordering::Relaxed);
                        }
                        self.mark_up(index);
                        return Ok((index, response));
                    }
                    Err(e) => {
                        warn!(writer = %self.urls[index], error = %e, "writer did not accept a produce");
                        self.mark_down(index);
                        last_error = e;
                    }
                }
            }
        }
        Err(last_error)
    }

    /// A writer accepted a produce and then cut the connection without answering (it most
    /// likely died between commit and answer) or did not answer in time (stopped, or
    /// overloaded). Skip it, so the client's retry goes to another writer at once, where
    /// the sequence check answers it with the original offsets if the first attempt was
    /// committed.
    pub fn skip(&self, index: usize, why: &str) {
        warn!(writer = %self.urls[index], why, "skipping writer for a while");
        self.mark_down(index);
    }

    /// A writer accepted a produce (as writer process `instance`) and its answer was lost.
    /// Returns once the produce can no longer be stored: at once when that process is gone
    /// (nothing listens, or another process answers), else at `deadline`, after which its
    /// commit deadline has passed. Only then may the client be told it timed out: it may
    /// re-send the records under a new producer epoch, which the sequence check cannot
    /// relate to the first attempt.
    pub async fn settle_lost(&self, index: usize, instance: Option<&str>, deadline: Instant) {
        let probe = self.rpc.get(&self.urls[index], HEALTH_PATH);
        let gone = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Err(refused)) => refused,
            Ok(Ok(response)) => {
                let now = response
                    .headers()
                    .get(WRITER_INSTANCE_HEADER)
                    .and_then(|v| v.to_str().ok());
                instance.is_some() && now != instance
            }
            Err(_) => false,
        };
        if !gone {
            tokio::time::sleep_until(deadline.into()).await;
        }
    }

    fn is_down(&self, index: usize) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        down[index].is_some_and(|until| Instant::now() < until)
    }

    fn mark_down(&self, index: usize) {
        self.down_until.lock().unwrap_or_else(|p| p.into_inner())[index] =
            Some(Instant::now() + DOWN_FOR);
    }

    fn mark_up(&self, index: usize) {
        self.down_until.lock().unwrap_or_else(|p| p.into_inner())[index] = None;
    }
}
