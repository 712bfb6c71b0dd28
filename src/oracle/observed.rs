//! What the oracle's producers went through, as their clients saw it.
//!
//! The invariants say whether data survived; this says what surviving cost a client:
//! how long acknowledgements took, how many requests librdkafka retried, and which errors
//! it reported (broker connections lost, requests timed out, …). Errors and retries come
//! from librdkafka's own callbacks (`error`, and the `txretries` counter of its
//! statistics), latencies from the time between queueing a record and its delivery report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use tracing::debug;

/// Counters shared by every producer of a run.
#[derive(Debug, Default)]
pub struct Observed {
    inner: Mutex<Counters>,
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
