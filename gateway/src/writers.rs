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
use yaks_common::rpc::{PRODUCE_PATH, RpcClient, RpcError};

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
    /// that did not accept are retried, so nothing is ever appended twice by this loop.
    pub async fn produce(
        &self,
        sticky: &Sticky,
        body: Bytes,
    ) -> Result<(usize, Response<Incoming>), RpcError> {
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
                match self
                    .rpc
                    .post(&self.urls[index], PRODUCE_PATH, body.clone())
                    .await
                {
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

    /// A writer accepted a produce and then cut the connection without answering: it most
    /// likely died between commit and answer. Skip it, so the client's retry goes to
    /// another writer at once (where the sequence check answers it with the original
    /// offsets if the first attempt was committed).
    pub fn answer_lost(&self, index: usize) {
        warn!(writer = %self.urls[index], "writer lost a produce answer; skipping it for a while");
        self.mark_down(index);
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
