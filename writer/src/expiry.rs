//! Forgets idempotent-producer state that outlived `writer.producer_id_expiration_ms`.
//!
//! Commits already treat expired state as absent (the plan filters it by the writer's
//! clock), so this loop only keeps the tables small; it runs beside the produce path, never
//! on it. Every writer runs it: the deletes are idempotent, so several at once are harmless,
//! and a cluster always has one as long as it has writers at all. Kafka checks every 10
//! minutes (`producer.id.expiration.check.interval.ms`); so does this loop, or more often
//! when the expiration itself is short.

use std::time::Duration;

use tracing::{debug, info, warn};
use yaks_common::shutdown::Shutdown;

use crate::WriterContext;

/// Kafka's default `producer.id.expiration.check.interval.ms`.
const MAX_INTERVAL: Duration = Duration::from_secs(600);

/// How often to look for expired producer state.
pub fn interval(expiration_ms: u64) -> Duration {
    Duration::from_millis(expiration_ms / 4).clamp(Duration::from_secs(1), MAX_INTERVAL)
}

/// Runs until `shutdown`.
pub async fn run(context: WriterContext, mut shutdown: Shutdown) {
    let expiration_ms = context.config.producer_id_expiration_ms;
    let mut ticker = tokio::time::interval(interval(expiration_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => break,
        }
        let before_ms = context.clock.now_ms().saturating_sub(expiration_ms as i64);
        match context.metastore.expire_producers(before_ms).await {
            Ok(0) => debug!("no producer state expired"),
            Ok(removed) => info!(removed, "expired idempotent-producer state"),
            Err(e) => warn!(error = %e, "expiring producer state failed; trying again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_follows_the_expiration_within_bounds() {
        assert_eq!(interval(24 * 3600 * 1000), MAX_INTERVAL);
        assert_eq!(interval(8_000), Duration::from_secs(2));
        assert_eq!(interval(1_000), Duration::from_secs(1));
    }
}
