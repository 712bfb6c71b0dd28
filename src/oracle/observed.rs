//! What the oracle's producers went through, as their clients saw it.
//!
//! The invariants say whether data survived; this says what surviving cost a client:
//! how long acknowledgements took, how many requests librdkafka retried, and which errors
//! it reported (broker connections lost, requests timed out, …). Errors and retries come
//! from librdkafka's own callbacks (`error`, and the `txretries` counter of its
//! statistics), latencies from the time between queueing a record and its delivery report.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use tracing::debug;

/// Counters shared by every producer of a run.
#[derive(Debug, Default)]
pub struct Observed {
    inner: Mutex<Counters>,
    /// Where librdkafka's log lines go (`--client-debug`), if anywhere.
    client_log: Mutex<Option<BufWriter<File>>>,
}

#[derive(Debug, Default)]
struct Counters {
    /// Error kind → times reported.
    errors: BTreeMap<String, u64>,
    /// (producer, broker) → the highest `txretries` seen; brokers come and go as gateways
    /// restart, so each one's last count is kept.
    retries: BTreeMap<(u32, String), u64>,
}

impl Observed {
    /// Counters that also write every client's log lines to `file`, one line each, stamped
    /// with the time and the producer: what librdkafka decided (an epoch bump, a retry) is
    /// then next to the gateways' and writers' logs of the same moment.
    pub fn logging_to(file: File) -> Observed {
        Observed {
            client_log: Mutex::new(Some(BufWriter::new(file))),
            ..Observed::default()
        }
    }

    /// Writes out what the client log holds.
    pub fn flush_client_log(&self) {
        let mut log = self.client_log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = log.as_mut() {
            let _ = log.flush();
        }
    }

    /// Errors by kind, most frequent first.
    pub fn errors(&self) -> Vec<(String, u64)> {
        let counters = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut errors: Vec<(String, u64)> = counters
            .errors
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        errors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        errors
    }

    /// Produce requests librdkafka sent again, over all producers and brokers.
    pub fn retries(&self) -> u64 {
        let counters = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        counters.retries.values().sum()
    }
}

/// The librdkafka client context of one oracle producer.
pub struct ObservingContext {
    /// Where it counts.
    pub observed: Arc<Observed>,
    /// Which producer it belongs to.
    pub producer: u32,
}

impl ClientContext for ObservingContext {
    fn stats(&self, statistics: Statistics) {
        let mut counters = self
            .observed
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (name, broker) in statistics.brokers {
            let seen = counters.retries.entry((self.producer, name)).or_default();
            *seen = (*seen).max(broker.txretries);
        }
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let mut log = self
            .observed
            .client_log
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(log) = log.as_mut() {
            let now = time_of_day(yaks_common::clock::system_clock().now_ms());
            let _ = writeln!(
                log,
                "{now} producer {} {level:?} {facility} {message}",
                self.producer
            );
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        debug!(producer = self.producer, %error, reason, "client error");
        let kind = match error.rdkafka_error_code() {
            Some(code) => format!("{code:?}"),
            None => error.to_string(),
        };
        let mut counters = self
            .observed
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *counters.errors.entry(kind).or_default() += 1;
    }
}

/// `HH:MM:SS.mmm` (UTC) of a wall-clock time in ms: how the roles' logs stamp their lines,
/// short of the date, which a run does not span.
pub fn time_of_day(ms: i64) -> String {
    let ms_of_day = ms.rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000
    )
}

/// Acknowledgement latencies of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latencies {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Latencies {
    /// Percentiles of `samples` (sorted in place).
    pub fn of(samples: &mut [Duration]) -> Latencies {
        if samples.is_empty() {
            return Latencies::default();
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Latencies {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let latencies = Latencies::of(&mut samples);
        assert_eq!(latencies.p50, Duration::from_millis(51));
        assert_eq!(latencies.p99, Duration::from_millis(99));
        assert_eq!(latencies.max, Duration::from_millis(100));
        assert_eq!(Latencies::of(&mut []), Latencies::default());
    }
}
