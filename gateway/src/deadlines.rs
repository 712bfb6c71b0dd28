//! Commit deadlines: the fence that keeps a late writer from storing what a client was
//! told had timed out.
//!
//! A produce the gateway gives up on is answered REQUEST_TIMED_OUT, and librdkafka may
//! then send its records again under a new producer epoch, with new sequence numbers. If
//! the first attempt were still stored afterwards (by a writer that was frozen, or whose
//! request sat in a socket buffer), the records would be stored twice and the sequence
//! check could not tell. So every internal produce carries the time after which it must
//! not be committed, and the commit checks it, at COMMIT, against PostgreSQL's clock
//! (see migration `V3__commit_deadlines.sql`).
//!
//! The deadline is expressed in that clock: [`ServerClock`] keeps this gateway's offset to
//! it, sampled at start and every [`SAMPLE_EVERY`]. A request's commit deadline is the
//! moment the gateway will answer it minus [`margin`]: the time a COMMIT that passed its
//! check still needs, plus the sampling error.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use yaks_common::clock::Instant;

use tracing::warn;
use yaks_common::clock::SharedClock;
use yaks_common::error::StoreError;
use yaks_common::metastore::Cluster;
use yaks_common::shutdown::Shutdown;

/// How often the offset to the metastore's clock is measured again.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Time between a commit's deadline and the gateway's answer: room for a COMMIT that
/// passed the deadline check to finish. A quarter of the writer timeout, at most 2 s.
pub fn margin(writer_timeout: Duration) -> Duration {
    (writer_timeout / 4).min(Duration::from_secs(2))
}

/// When the gateway gives up on a produce, and the commit deadline sent with it: both fixed
/// when the request arrived, not when its turn came, so a request that waited behind a
/// stopped writer is not held (nor stored) past the time its client was promised. An
/// internal request carrying several takes the earliest of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// Acceptance and answer must come before this.
    pub at: Instant,
    /// In the metastore's clock; a commit after it must not store the batches.
    pub commit_ms: i64,
}

impl Deadline {
    /// The earlier of both deadlines.
    pub fn min(self, other: Deadline) -> Deadline {
        Deadline {
            at: self.at.min(other.at),
            commit_ms: self.commit_ms.min(other.commit_ms),
        }
    }
}

/// This gateway's view of the metastore's clock.
pub struct ServerClock {
    clock: SharedClock,
    /// Server time minus local time, ms.
    offset_ms: AtomicI64,
    /// Half the round trip of the sample the offset came from, ms.
    error_ms: AtomicI64,
}

impl ServerClock {
    /// Measures the offset once; fails when the metastore does not answer.
    pub async fn sample(
        clock: SharedClock,
        metastore: &dyn Cluster,
    ) -> Result<ServerClock, StoreError> {
        let server = ServerClock {
            clock,
            offset_ms: AtomicI64::new(0),
            error_ms: AtomicI64::new(0),
        };
        server.resample(metastore).await?;
        Ok(server)
    }

    /// Measures the offset again.
    pub async fn resample(&self, metastore: &dyn Cluster) -> Result<(), StoreError> {
        let before = self.clock.now_ms();
        let server = metastore.server_time_ms().await?;
        let after = self.clock.now_ms();
        let error = (after - before) / 2 + 1;
        // A sample taken over a slow round trip says little; keep the previous one unless
        // it was no better.
        if error > 500 && self.error_ms.load(Ordering::Relaxed) > 0 {
            return Ok(());
        }
        self.offset_ms
            .store(server - (before + after) / 2, Ordering::Relaxed);
        self.error_ms.store(error, Ordering::Relaxed);
        Ok(())
    }

    /// The metastore's clock now, as best known here.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// The commit deadline, in the metastore's clock, of a request the gateway will answer
    /// `writer_timeout` from now at the latest.
    pub fn commit_deadline_ms(&self, writer_timeout: Duration) -> i64 {
        let server_now = self.clock.now_ms() + self.offset_ms.load(Ordering::Relaxed);
        let guard =
            margin(writer_timeout).as_millis() as i64 + self.error_ms.load(Ordering::Relaxed);
        server_now + writer_timeout.as_millis() as i64 - guard
    }

    /// Both deadlines of a request arriving now that the gateway answers within
    /// `writer_timeout`.
    pub fn deadline(&self, writer_timeout: Duration) -> Deadline {
        Deadline {
            at: yaks_common::clock::now() + writer_timeout,
            commit_ms: self.commit_deadline_ms(writer_timeout),
        }
    }

    /// Resamples every [`SAMPLE_EVERY`] until `shutdown`.
    pub async fn keep(&self, metastore: Arc<dyn Cluster>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = yaks_common::clock::sleep(SAMPLE_EVERY) => {}
            }
            if let Err(e) = self.resample(metastore.as_ref()).await {
                warn!(error = %e, "sampling the metastore's clock failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use yaks_common::clock::system_clock;
    use yaks_common::metastore::MemoryMetastore;

    use super::*;

    #[tokio::test]
    async fn deadlines_end_a_margin_before_the_gateway_answers() {
        assert_eq!(margin(Duration::from_secs(30)), Duration::from_secs(2));
        assert_eq!(margin(Duration::from_secs(4)), Duration::from_secs(1));
        let metastore = MemoryMetastore::default();
        let server = ServerClock::sample(system_clock(), &metastore)
            .await
            .expect("sample");
        let now = metastore.server_time_ms().await.expect("time");
        let deadline = server.commit_deadline_ms(Duration::from_secs(30));
        let expected = now + 30_000 - 2_000;
        assert!(
            (deadline - expected).abs() < 1_000,
            "deadline {deadline} near {expected}"
        );
    }

    #[test]
    fn carried_requests_keep_the_earliest_deadline() {
        let now = yaks_common::clock::now();
        let early = Deadline {
            at: now,
            commit_ms: 200,
        };
        let late = Deadline {
            at: now + Duration::from_secs(1),
            commit_ms: 100,
        };
        assert_eq!(
            early.min(late),
            Deadline {
                at: now,
                commit_ms: 100
            }
        );
    }
}
