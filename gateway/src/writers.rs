//! Produce routing: which writer a connection's produce requests go to.
//!
//! The writers are `gateway.writer_urls`, or else the writers holding a lease in the
//! registry (so writers can scale like any stateless service). A connection sticks to one
//! writer (chosen from its id) while that writer answers, so the
//! batches one connection sends to a partition are committed in the order sent. A writer
//! that refuses or cannot be reached is skipped for [`DOWN_FOR`] and the connection moves
//! to the next one; after a writer change, ordering across the change rests on the
//! idempotent-producer sequence check, as in Kafka.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use yaks_common::clock::Instant;

use bytes::Bytes;
use http::Response;
use hyper::body::Incoming;
use tracing::warn;
use yaks_common::rpc::{
    COMMIT_DEADLINE_HEADER, HEALTH_PATH, PRODUCE_PATH, ProbeFailure, RpcClient, RpcError,
    WRITER_INSTANCE_HEADER,
};

use crate::cluster::ClusterView;
use crate::produce_order::PreviousSettled;

/// How long a writer that lost an answer gets to show whether it is still the same process.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long after an unsettling probe of a writer that lost an answer it is asked again;
/// the wait doubles up to [`PROBE_INTERVAL_MAX`].
const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// The longest wait between probes: a writer that stays silent or keeps answering as the
/// same process is probed this often, so a thousand lost answers do not flood it.
const PROBE_INTERVAL_MAX: Duration = Duration::from_secs(2);

/// How long a writer that failed is skipped.
pub const DOWN_FOR: Duration = Duration::from_secs(2);

/// Where the writers come from.
enum Writers {
    /// `gateway.writer_urls`.
    Configured(Vec<String>),
    /// The live writers in the registry.
    Registered(ClusterView),
}

/// The writers and their recent health.
pub struct WriterPool {
    writers: Writers,
    down_until: Mutex<HashMap<String, Instant>>,
    rpc: RpcClient,
}

/// A connection's current writer (its base URL), chosen at its first produce.
#[derive(Debug)]
pub struct Sticky {
    connection_id: u64,
    writer: Mutex<Option<String>>,
}

impl Sticky {
    /// A connection with no writer yet; its first produce picks the one its id hashes to.
    pub fn new(connection_id: u64) -> Sticky {
        Sticky {
            connection_id,
            writer: Mutex::new(None),
        }
    }

    fn get(&self) -> Option<String> {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, url: &str) {
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(url.to_owned());
    }
}

impl WriterPool {
    /// A pool over `urls`, or, when empty, over the live writers `cluster` sees.
    pub fn new(urls: Vec<String>, cluster: ClusterView) -> WriterPool {
        let writers = if urls.is_empty() {
            Writers::Registered(cluster)
        } else {
            Writers::Configured(
                urls.into_iter()
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .collect(),
            )
        };
        WriterPool {
            writers,
            down_until: Mutex::new(HashMap::new()),
            rpc: RpcClient::new(),
        }
    }

    /// The pool with `rpc` as its client (one carrying the deployment's token).
    pub fn with_rpc(mut self, rpc: RpcClient) -> WriterPool {
        self.rpc = rpc;
        self
    }

    /// The writers as of now.
    pub fn urls(&self) -> Vec<String> {
        match &self.writers {
            Writers::Configured(urls) => urls.clone(),
            Writers::Registered(cluster) => cluster.live_writers(),
        }
    }

    /// Sends an internal produce body and returns once a writer *accepted* it, with that
    /// writer's index. Tries the connection's writer first, then the others; only writers
    /// that refused or could not be reached are retried, so nothing is ever appended twice
    /// by this loop. A writer still silent at `deadline` (stopped, or its host gone) may
    /// have appended the request: that is [`RpcError::AnswerLost`], never a retry
    /// elsewhere, and the writer is skipped for a while. Before trying any writer but the
    /// connection's own, waits for `previous_settled` (the connection's earlier produces,
    /// which that writer accepted, to be answered or unstorable), so they cannot be
    /// committed out of order (see [`crate::produce_order`]).
    pub async fn produce(
        &self,
        sticky: &Sticky,
        body: Bytes,
        deadline: Instant,
        commit_deadline_ms: i64,
        previous_settled: &PreviousSettled,
    ) -> Result<(String, Response<Incoming>), RpcError> {
        let headers = [(COMMIT_DEADLINE_HEADER, commit_deadline_ms.to_string())];
        let urls = self.urls();
        let count = urls.len();
        if count == 0 {
            return Err(RpcError::Unavailable(
                "no writer is registered (gateway.writer_urls is empty)".into(),
            ));
        }
        // The connection's writer, if it is still among the writers; else the one its id
        // hashes to.
        let current = sticky.get();
        let start = current
            .as_ref()
            .and_then(|url| urls.iter().position(|u| u == url))
            .unwrap_or((sticky.connection_id as usize) % count);
        let mut last_error = RpcError::Unavailable("no writer accepted".into());
        // First pass skips writers marked down; the second tries them anyway.
        for pass in 0..2 {
            for step in 0..count {
                let url = &urls[(start + step) % count];
                if pass == 0 && self.is_down(url) {
                    continue;
                }
                let moving = current.as_ref().is_some_and(|c| c != url);
                if moving
                    && tokio::time::timeout_at(deadline, previous_settled.wait())
                        .await
                        .is_err()
                {
                    // Nothing was sent: the client may retry safely.
                    return Err(RpcError::Unavailable(
                        "the previous produce of this connection is still unsettled".into(),
                    ));
                }
                let post = self
                    .rpc
                    .post_with(url, PRODUCE_PATH, body.clone(), &headers);
                let Ok(posted) = tokio::time::timeout_at(deadline, post).await else {
                    self.skip(url, "writer did not accept a produce in time");
                    return Err(RpcError::AnswerLost(format!(
                        "{url} did not accept the produce in time"
                    )));
                };
                match posted {
                    Ok(response) => {
                        if current.as_deref() != Some(url.as_str()) {
                            sticky.set(url);
                        }
                        self.mark_up(url);
                        return Ok((url.clone(), response));
                    }
                    // Another writer would refuse it too, and this one is not down.
                    Err(e @ RpcError::Rejected { .. }) => {
                        warn!(writer = %url, error = %e, "writer refused a produce");
                        return Err(e);
                    }
                    Err(e) => {
                        warn!(writer = %url, error = %e, "writer did not accept a produce");
                        self.mark_down(url);
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
    pub fn skip(&self, url: &str, why: &str) {
        warn!(writer = %url, why, "skipping writer for a while");
        self.mark_down(url);
    }

    /// A writer accepted a produce (as writer process `instance`) and its answer was lost.
    /// Returns once the produce can no longer be stored: as soon as that process is seen
    /// gone (nothing listens, or another process answers), else at `deadline`, after which
    /// its commit deadline has passed. Only then may the client be told it timed out: it
    /// may re-send the records under a new producer epoch, which the sequence check cannot
    /// relate to the first attempt.
    ///
    /// Asks again until then, 250 ms after the first probe and at doubling intervals up to
    /// 2 s: one failed probe says nothing. Right after a writer dies, a probe may reuse a
    /// pooled connection to it whose close was not noticed yet, or reach its successor on
    /// the same address before it serves; taking either for "maybe alive" held the client
    /// for the whole deadline (30 s by default) although the next probe would have shown
    /// the process gone.
    pub async fn settle_lost(&self, url: &str, instance: Option<&str>, deadline: Instant) {
        let mut interval = PROBE_INTERVAL;
        loop {
            let asked = yaks_common::clock::now();
            let probe = self.rpc.get(url, HEALTH_PATH);
            let gone =
                match tokio::time::timeout_at(deadline.min(asked + PROBE_TIMEOUT), probe).await {
                    Ok(Err(failure)) => failure == ProbeFailure::Refused,
                    Ok(Ok(response)) => {
                        let now = response
                            .headers()
                            .get(WRITER_INSTANCE_HEADER)
                            .and_then(|v| v.to_str().ok());
                        instance.is_some() && now != instance
                    }
                    Err(_) => false,
                };
            if gone {
                return;
            }
            let next = asked + interval;
            if next >= deadline {
                yaks_common::clock::sleep_until(deadline).await;
                return;
            }
            yaks_common::clock::sleep_until(next).await;
            interval = (interval * 2).min(PROBE_INTERVAL_MAX);
        }
    }

    fn is_down(&self, url: &str) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        down.get(url)
            .is_some_and(|until| yaks_common::clock::now() < *until)
    }

    fn mark_down(&self, url: &str) {
        self.down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.to_owned(), yaks_common::clock::now() + DOWN_FOR);
    }

    fn mark_up(&self, url: &str) {
        self.down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(url);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::StatusCode;
    use http_body_util::Full;
    use yaks_common::rpc::{bind, serve, text_response};
    use yaks_common::shutdown::{Shutdown, ShutdownTrigger};

    use super::*;
    use crate::deadlines::Deadline;
    use crate::produce_order::{Outbound, Place, ProduceOrder};

    /// A peer on loopback answering every request with `status`, counting them.
    async fn peer(status: StatusCode) -> (String, Arc<AtomicUsize>, ShutdownTrigger) {
        let (listener, addr) = bind("127.0.0.1:0").await.expect("bind");
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let (trigger, shutdown) = Shutdown::new();
        let handler = move |_request| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { text_response::<Full<Bytes>>(status, "answered") }
        };
        tokio::spawn(serve(listener, handler, shutdown));
        (format!("http://{addr}"), requests, trigger)
    }

    /// A peer on loopback that closes its first connection unanswered, then answers
    /// every request as writer process `instance`.
    async fn flaky_writer(instance: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((mut socket, _)) = listener.accept().await {
                if std::mem::take(&mut first) {
                    let mut request = [0u8; 1024];
                    let _ = socket.read(&mut request).await;
                    continue;
                }
                tokio::spawn(async move {
                    let mut request = [0u8; 1024];
                    let _ = socket.read(&mut request).await;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\n{WRITER_INSTANCE_HEADER}: {instance}\r\n\
                         content-length: 2\r\nconnection: close\r\n\r\nok"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_lost_answer_settles_once_a_later_probe_finds_another_process() {
        let url = flaky_writer("successor").await;
        let pool = pool(vec![url.clone()]);
        let started = yaks_common::clock::now();
        let deadline = started + Duration::from_secs(20);
        pool.settle_lost(&url, Some("killed"), deadline).await;
        // The first probe failed without saying anything; the next one met the successor.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_lost_answer_of_a_process_still_answering_settles_at_its_deadline() {
        let url = flaky_writer("same").await;
        let pool = pool(vec![url.clone()]);
        let started = yaks_common::clock::now();
        let deadline = started + Duration::from_millis(900);
        pool.settle_lost(&url, Some("same"), deadline).await;
        assert!(yaks_common::clock::now() >= deadline);
    }

    fn pool(urls: Vec<String>) -> WriterPool {
        WriterPool {
            writers: Writers::Configured(urls),
            down_until: Mutex::new(HashMap::new()),
            rpc: RpcClient::new(),
        }
    }

    async fn produce(pool: &WriterPool) -> Result<String, RpcError> {
        let deadline = Deadline {
            at: yaks_common::clock::now() + Duration::from_secs(5),
            commit_ms: 0,
        };
        let turn = ProduceOrder::new().turn(deadline);
        let Place::Lead(_, lead) = turn.wait(Outbound::default()).await else {
            panic!("a first produce leads");
        };
        pool.produce(
            &Sticky::new(0),
            Bytes::new(),
            deadline.at,
            0,
            &lead.previous_settled(),
        )
        .await
        .map(|(url, _)| url)
    }

    #[tokio::test]
    async fn a_writer_refusing_the_request_is_neither_marked_down_nor_retried_elsewhere() {
        let (refusing, refused, _a) = peer(StatusCode::BAD_REQUEST).await;
        let (other, others, _b) = peer(StatusCode::OK).await;
        let pool = pool(vec![refusing.clone(), other]);

        let error = produce(&pool).await.expect_err("refused");
        assert!(
            matches!(error, RpcError::Rejected { status, .. } if status == StatusCode::BAD_REQUEST),
            "{error}"
        );
        assert_eq!(refused.load(Ordering::SeqCst), 1);
        assert_eq!(
            others.load(Ordering::SeqCst),
            0,
            "not sent to another writer"
        );
        assert!(!pool.is_down(&refusing));
    }

    #[tokio::test]
    async fn an_unavailable_writer_is_marked_down_and_the_next_one_takes_the_request() {
        let (failing, _, _a) = peer(StatusCode::SERVICE_UNAVAILABLE).await;
        let (other, others, _b) = peer(StatusCode::OK).await;
        let pool = pool(vec![failing.clone(), other.clone()]);

        assert_eq!(produce(&pool).await.expect("accepted"), other);
        assert_eq!(others.load(Ordering::SeqCst), 1);
        assert!(pool.is_down(&failing));
    }
}
