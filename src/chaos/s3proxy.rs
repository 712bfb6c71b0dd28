//! An S3 fault layer: a loopback HTTP proxy in front of a real S3 endpoint that fails a
//! share of requests the way S3 does under load and adds latency.
//!
//! Three kinds of failure, drawn independently per request:
//! - *throttled*: answered `503 SlowDown` without reaching the endpoint;
//! - *refused*: answered `500 InternalError` without reaching the endpoint;
//! - *lost answer*: forwarded (so a PUT really stores its object) and then answered
//!   `500 InternalError`, as when S3 commits a write but the response does not make it back.
//!
//! Every request also waits a random delay up to the configured maximum before anything
//! else. Requests keep their `Host` header, so SigV4 signatures made for the proxy's address
//! still verify at the endpoint behind it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use yaks_common::shutdown::{Shutdown, ShutdownTrigger};

/// How often and how slowly the proxy misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct S3Faults {
    /// Share of requests answered `503 SlowDown` without being forwarded, 0–1.
    pub throttled: f64,
    /// Share answered `500 InternalError` without being forwarded, 0–1.
    pub refused: f64,
    /// Share forwarded and then answered `500 InternalError`, 0–1.
    pub answer_lost: f64,
    /// Each request is delayed by a uniform random time up to this.
    pub max_latency: Duration,
}

impl S3Faults {
    /// `percent` of all requests failing, split 50/30/20 between throttled, refused and
    /// lost answers, with latency up to `max_latency`.
    pub fn with_error_percent(percent: f64, max_latency: Duration) -> S3Faults {
        let share = (percent / 100.0).clamp(0.0, 1.0);
        S3Faults {
            throttled: share * 0.5,
            refused: share * 0.3,
            answer_lost: share * 0.2,
            max_latency,
        }
    }
}

/// What the proxy did, for the run's report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct S3FaultCounts {
    /// Requests received.
    pub requests: u64,
    /// Answered 503 SlowDown without forwarding.
    pub throttled: u64,
    /// Answered 500 without forwarding.
    pub refused: u64,
    /// Forwarded, then answered 500.
    pub answers_lost: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    throttled: AtomicU64,
    refused: AtomicU64,
    answers_lost: AtomicU64,
}

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Forward,
    Throttle,
    Refuse,
    LoseAnswer,
}

struct Proxy {
    upstream: Uri,
    client: Client<HttpConnector, Incoming>,
    faults: S3Faults,
    rng: Mutex<StdRng>,
    counters: Counters,
}

impl Proxy {
    fn draw(&self) -> (Fate, Duration) {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let latency = self.faults.max_latency.mul_f64(rng.random::<f64>());
        let roll: f64 = rng.random();
        let faults = &self.faults;
        let fate = if roll < faults.throttled {
            Fate::Throttle
        } else if roll < faults.throttled + faults.refused {
            Fate::Refuse
        } else if roll < faults.throttled + faults.refused + faults.answer_lost {
            Fate::LoseAnswer
        } else {
            Fate::Forward
        };
        (fate, latency)
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<BoxBody<Bytes, hyper::Error>> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let (fate, latency) = self.draw();
        yaks_common::clock::sleep(latency).await;
        match fate {
            Fate::Throttle => {
                self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                return s3_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SlowDown",
                    "Please reduce your request rate.",
                );
            }
            Fate::Refuse => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                return s3_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                );
            }
            Fate::Forward | Fate::LoseAnswer => {}
        }
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        parts.uri = match Uri::builder()
            .scheme(self.upstream.scheme_str().unwrap_or("http"))
            .authority(self.upstream.authority().map_or("", |a| a.as_str()))
            .path_and_query(path)
            .build()
        {
            Ok(uri) => uri,
            Err(e) => {
                return s3_error(StatusCode::BAD_REQUEST, "InvalidURI", &e.to_string());
            }
        };
        let answer = match self.client.request(Request::from_parts(parts, body)).await {
            Ok(answer) => answer,
            Err(e) => {
                return s3_error(StatusCode::BAD_GATEWAY, "InternalError", &e.to_string());
            }
        };
        if fate == Fate::LoseAnswer {
            // The endpoint did the work; read its answer fully, then pretend it failed.
            let _ = answer.into_body().collect().await;
            self.counters.answers_lost.fetch_add(1, Ordering::Relaxed);
            return s3_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
            );
        }
        answer.map(BodyExt::boxed)
    }
}

fn s3_error(
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<BoxBody<Bytes, hyper::Error>> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>yaks-chaos</RequestId></Error>"
    );
    let mut response = Response::new(
        Full::new(Bytes::from(xml))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    response
}

/// A running fault proxy; stops when dropped.
pub struct FaultyS3 {
    addr: SocketAddr,
    proxy: Arc<Proxy>,
    trigger: ShutdownTrigger,
    task: Option<JoinHandle<()>>,
}

impl FaultyS3 {
    /// Serves on a free loopback port, forwarding to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, faults: S3Faults, seed: u64) -> anyhow::Result<FaultyS3> {
        let upstream: Uri = upstream
            .parse()
            .with_context(|| format!("upstream s3 endpoint {upstream}"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let proxy = Arc::new(Proxy {
            upstream,
            client: Client::builder(TokioExecutor::new()).build(connector),
            faults,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            counters: Counters::default(),
        });
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the s3 fault proxy")?;
        let addr = listener.local_addr()?;
        let (trigger, shutdown) = Shutdown::new();
        let handler_proxy = proxy.clone();
        let task = tokio::spawn(yaks_common::rpc::serve(
            listener,
            move |request| {
                let proxy = handler_proxy.clone();
                async move { proxy.handle(request).await }
            },
            shutdown,
        ));
        Ok(FaultyS3 {
            addr,
            proxy,
            trigger,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:port`, to use as `s3.endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What happened so far.
    pub fn counts(&self) -> S3FaultCounts {
        let c = &self.proxy.counters;
        S3FaultCounts {
            requests: c.requests.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            answers_lost: c.answers_lost.load(Ordering::Relaxed),
        }
    }

    /// Stops serving.
    pub async fn stop(mut self) {
        self.trigger.trigger();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FaultyS3 {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_percent_is_split_between_the_three_failures() {
        let faults = S3Faults::with_error_percent(10.0, Duration::ZERO);
        let total = faults.throttled + faults.refused + faults.answer_lost;
        assert!((total - 0.10).abs() < 1e-9);
        assert!(faults.throttled > faults.refused && faults.refused > faults.answer_lost);
        assert_eq!(
            S3Faults::with_error_percent(250.0, Duration::ZERO).throttled,
            0.5
        );
    }
}
