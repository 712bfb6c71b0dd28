//! One compactor pass, and the loop of them: enforce retention, plan jobs onto the queue,
//! work the queue, collect garbage.
//!
//! Any number of compactors may run at once: planning twice only sends a job twice, and the
//! second run of it loses the compare-and-swap; retention only ever raises log starts; the
//! garbage collector deletes only what no entry refers to after the grace period.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};
use yaks_common::clock::SharedClock;
use yaks_common::config::CompactorConfig;
use yaks_common::error::StoreError;
use yaks_common::metastore::{IndexEntry, Log, LogStartMove, Objects, TopicMeta, Topics};
use yaks_common::metrics::{OutcomeLabels, metrics};
use yaks_common::objstore::SharedObjectStore;
use yaks_common::shutdown::Shutdown;
use yaks_common::topic_config::TopicConfigs;
use yaks_common::topic_names::TopicNames;

use crate::gc::{GcReport, GcSettings, collect};
use crate::planner::{PlannerSettings, plan_partition};
use crate::queue::{JobMessage, JobQueue};
use crate::retention::{Retention, new_log_start};
use crate::worker::{JobOutcome, JobTarget, run_job};

/// Index entries read per partition per pass.
const ENTRIES_PER_PASS: i64 = 10_000;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Jobs planned and sent.
    pub planned: usize,
    /// Jobs whose swap won.
    pub compacted: usize,
    /// Jobs whose inputs changed first.
    pub lost: usize,
    /// Jobs that failed (left on the queue to be received again) or did not parse.
    pub failed: usize,
    /// Partitions whose log start retention moved.
    pub retained: usize,
    /// Garbage collection.
    pub gc: GcReport,
}

/// The metastore domains the compactor uses: topics and their configs (retention), the log
/// it reads and whose start it moves, and the objects it swaps, drops and collects.
pub trait CompactorStore: Topics + Log + Objects {}

impl<T: Topics + Log + Objects + ?Sized> CompactorStore for T {}

/// The compactor: its stores, queue and settings.
pub struct Compactor {
    metastore: Arc<dyn CompactorStore>,
    objects: SharedObjectStore,
    queue: Arc<dyn JobQueue>,
    config: CompactorConfig,
    key_prefix: String,
    clock: SharedClock,
    names: TopicNames,
}

impl Compactor {
    /// A compactor over these stores.
    pub fn new(
        metastore: Arc<dyn CompactorStore>,
        objects: SharedObjectStore,
        queue: Arc<dyn JobQueue>,
        config: CompactorConfig,
        key_prefix: String,
        clock: SharedClock,
    ) -> Compactor {
        Compactor {
            names: TopicNames::new(metastore.clone()),
            metastore,
            objects,
            queue,
            config,
            key_prefix,
            clock,
        }
    }

    /// Every partition of every topic, with the topic.
    async fn partitions(&self) -> Result<Vec<(TopicMeta, i32, i64)>, StoreError> {
        let topics = self.metastore.topics(None).await?;
        let keys: Vec<(uuid::Uuid, i32)> = topics
            .iter()
            .flat_map(|t| (0..t.partition_count).map(move |p| (t.topic_id, p)))
            .collect();
        let states = self.metastore.partition_states(&keys).await?;
        Ok(states
            .into_iter()
            .filter_map(|s| {
                let topic = topics.iter().find(|t| t.topic_id == s.topic_id)?;
                Some((topic.clone(), s.partition_index, s.log_start_offset))
            })
            .collect())
    }

    /// The first index entries of a partition from its log start.
    async fn entries(
        &self,
        topic: &TopicMeta,
        partition: i32,
        log_start: i64,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        Ok(self
            .metastore
            .index_entries(&[(topic.topic_id, partition, log_start)], ENTRIES_PER_PASS)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// Plans jobs for every partition and sends them to the queue.
    pub async fn plan(&self) -> Result<usize, StoreError> {
        let settings = PlannerSettings {
            target_bytes: self.config.target_bytes,
            small_bytes: self.config.small_bytes,
            window_ms: self.config.window_ms,
        };
        let mut planned = 0;
        for (topic, partition, log_start) in self.partitions().await? {
            let entries = self.entries(&topic, partition, log_start).await?;
            for job in plan_partition(&entries, &settings) {
                self.queue
                    .send(&JobMessage::new(topic.topic_id, partition, &job))
                    .await?;
                planned += 1;
            }
        }
        Ok(planned)
    }

    /// Works the queue until it has nothing visible (or `stop` fired): each job run and
    /// deleted, a failing one left to be received again (and set aside after too many
    /// receives).
    async fn work_until(
        &self,
        report: &mut PassReport,
        stop: Option<&Shutdown>,
    ) -> Result<(), StoreError> {
        loop {
            let deliveries = self.queue.receive(10).await?;
            if deliveries.is_empty() {
                return Ok(());
            }
            for delivery in deliveries {
                if stop.is_some_and(Shutdown::is_triggered) {
                    return Ok(());
                }
                let message = match delivery.job {
                    Ok(message) => message,
                    Err(e) => {
                        warn!(receives = delivery.receive_count, error = %e, "poison job left for the dead-letter queue");
                        report.failed += 1;
                        count_job("failed");
                        continue;
                    }
                };
                let topic = self.names.names(&[message.topic_id]).await[&message.topic_id].clone();
                let target = JobTarget {
                    topic_id: message.topic_id,
                    topic: &topic,
                    partition_index: message.partition_index,
                    key_prefix: &self.key_prefix,
                };
                let outcome = run_job(
                    self.metastore.as_ref(),
                    self.objects.as_ref(),
                    &target,
                    &message.job(),
                    self.clock.now_ms(),
                )
                .await;
                let compactor = &metrics().compactor;
                match outcome {
                    Ok(outcome) => {
                        match outcome {
                            JobOutcome::Swapped { .. } => {
                                report.compacted += 1;
                                count_job("compacted");
                                let inputs: HashSet<&str> = message
                                    .inputs
                                    .iter()
                                    .map(|input| input.object_key.as_str())
                                    .collect();
                                compactor.objects_in.inc_by(inputs.len() as u64);
                                compactor.objects_out.inc();
                            }
                            JobOutcome::Lost => {
                                report.lost += 1;
                                count_job("lost");
                            }
                        }
                        self.queue.delete(&delivery.receipt).await?;
                    }
                    Err(e) => {
                        warn!(receives = delivery.receive_count, error = %e, "compaction job failed; it will be received again");
                        report.failed += 1;
                        count_job("failed");
                    }
                }
            }
        }
    }

    /// Moves log starts as `retention.ms` and `retention.bytes` say.
    pub async fn enforce_retention(&self) -> Result<usize, StoreError> {
        let now_ms = self.clock.now_ms();
        let mut moved = 0;
        for (topic, partition, log_start) in self.partitions().await? {
            let retention = retention_of(&topic);
            if retention.max_age_ms.is_none() && retention.max_bytes.is_none() {
                continue;
            }
            let entries = self.entries(&topic, partition, log_start).await?;
            let Some(start) = new_log_start(&entries, retention, now_ms) else {
                continue;
            };
            if start <= log_start {
                continue;
            }
            let result = self
                .metastore
                .advance_log_start(topic.topic_id, partition, start)
                .await?;
            if let LogStartMove::Moved { log_start_offset } = result {
                info!(topic = %topic.name, partition, log_start_offset, "retention moved the log start");
                metrics().compactor.retention_moves.inc();
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// One full pass: retention (so expired data is not compacted), plan, work, garbage.
    /// A dry run only lists what garbage collection would delete.
    pub async fn run_once(&self, dry_run: bool) -> Result<PassReport, StoreError> {
        self.pass(dry_run, None).await
    }

    /// [`Compactor::run_once`], cut short when `stop` fires: no new job is started and
    /// garbage is left for the next pass (a job not deleted from the queue is received
    /// again after its visibility timeout).
    async fn pass(&self, dry_run: bool, stop: Option<&Shutdown>) -> Result<PassReport, StoreError> {
        let mut report = PassReport::default();
        if !dry_run {
            report.retained = self.enforce_retention().await?;
            report.planned = self.plan().await?;
            self.work_until(&mut report, stop).await?;
            if stop.is_some_and(Shutdown::is_triggered) {
                info!(?report, "compactor pass cut short by shutdown");
                return Ok(report);
            }
        }
        let settings = GcSettings {
            grace: Duration::from_millis(self.config.grace_ms),
            key_prefix: self.key_prefix.clone(),
            dry_run,
        };
        report.gc = collect(
            self.metastore.as_ref(),
            self.objects.as_ref(),
            &settings,
            self.clock.now_ms(),
        )
        .await?;
        info!(?report, "compactor pass done");
        Ok(report)
    }

    /// Passes every `compactor.interval_ms` until `shutdown`; a failed pass is logged and
    /// the next one tries again.
    pub async fn run(self, mut shutdown: Shutdown) {
        let interval = Duration::from_millis(self.config.interval_ms);
        loop {
            if let Err(e) = self.pass(false, Some(&shutdown)).await {
                warn!(error = %e, "compactor pass failed");
            }
            tokio::select! {
                _ = yaks_common::clock::sleep(interval) => {}
                _ = shutdown.wait() => return,
            }
        }
    }
}

/// A topic's retention limits (Kafka's defaults when unset; -1 is unlimited).
fn retention_of(topic: &TopicMeta) -> Retention {
    let configs = TopicConfigs::new(&topic.configs);
    Retention {
        max_age_ms: configs.retention_ms(),
        max_bytes: configs.retention_bytes(),
    }
}

fn count_job(outcome: &'static str) {
    metrics()
        .compactor
        .jobs
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}
