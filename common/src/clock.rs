//! Injected time: the one place the code reads a clock or sleeps.
//!
//! Two clocks, for two needs:
//! - **Wall time** ([`Clock::now_ms`], ms since the Unix epoch) is what gets stamped and
//!   compared with stamps from other processes (record timestamps, producer-state expiry,
//!   registry leases, retention). Code that needs it takes a [`SharedClock`], so a test can
//!   hand it a [`ManualClock`].
//! - **Monotonic time** ([`now`], [`sleep`], [`sleep_until`], and tokio's timeouts, which
//!   take these instants) measures durations inside one process: deadlines, session
//!   timeouts, cache ages, back-offs. It is tokio's clock, which a test pauses and moves
//!   (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`): waits then take no
//!   real time, and a [`ManualClock`]'s wall time moves with it.
//!
//! `clippy.toml` bans reading the system clocks and sleeping anywhere else, so no ambient
//! call slips past a test that controls time; [`crate::random`] does the same for
//! randomness.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A monotonic instant, in tokio's clock (which tests can pause and advance).
pub use tokio::time::Instant;

/// Now, on the monotonic clock.
pub fn now() -> Instant {
    #[allow(clippy::disallowed_methods)]
    tokio::time::Instant::now()
}

/// Waits `duration` on the monotonic clock.
pub async fn sleep(duration: Duration) {
    #[allow(clippy::disallowed_methods)]
    tokio::time::sleep(duration).await
}

/// Waits until `deadline` on the monotonic clock.
pub async fn sleep_until(deadline: Instant) {
    #[allow(clippy::disallowed_methods)]
    tokio::time::sleep_until(deadline).await
}

/// Blocks this thread for `duration`: for the few loops that run on threads of their own
/// (client polling in tools and tests), where nothing else needs the thread.
pub fn sleep_blocking(duration: Duration) {
    #[allow(clippy::disallowed_methods)]
    std::thread::sleep(duration)
}

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        now.duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

impl SystemClock {
    /// Microseconds since the Unix epoch, for tools that stamp records across processes
    /// finer than milliseconds (`yaks bench`'s end-to-end latency).
    pub fn now_us(&self) -> i64 {
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        now.duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock as a shared handle.
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

/// Wall time for tests: starts where it is told and moves only with the monotonic clock,
/// so a test that pauses tokio's clock and advances it moves both in step, and a test that
/// wants the wall clock alone to jump calls [`ManualClock::set_ms`].
#[derive(Debug)]
pub struct ManualClock {
    /// The wall time at `since`, and the instant it was set.
    at: std::sync::Mutex<(i64, Instant)>,
}

impl ManualClock {
    /// A clock reading `start_ms` now.
    pub fn new(start_ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            at: std::sync::Mutex::new((start_ms, now())),
        })
    }

    /// Sets the wall time to `ms` from now on, whatever the monotonic clock does.
    pub fn set_ms(&self, ms: i64) {
        *self.at.lock().unwrap_or_else(|p| p.into_inner()) = (ms, now());
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        let (ms, since) = *self.at.lock().unwrap_or_else(|p| p.into_inner());
        ms + now().saturating_duration_since(since).as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_manual_clock_moves_with_paused_time_and_jumps_when_set() {
        let clock = ManualClock::new(1_000);
        let started = now();
        sleep(Duration::from_secs(3600)).await;
        assert_eq!(now() - started, Duration::from_secs(3600));
        assert_eq!(clock.now_ms(), 1_000 + 3_600_000);
        clock.set_ms(50);
        tokio::time::advance(Duration::from_millis(7)).await;
        assert_eq!(clock.now_ms(), 57);
    }
}
