//! One compactor pass, and the loop of them: enforce retention, compact compacted topics by
//! key, plan merge jobs onto the queue, work the queue, collect garbage.
//!
//! Any number of compactors may run at once: planning twice only sends a job twice, and the
//! second run of it loses the compare-and-swap; retention only ever raises log starts; the
//! garbage collector deletes only what no entry refers to after the grace period.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};
use uuid::Uuid;
use yaks_common::clock::SharedClock;
use yaks_common::config::CompactorConfig;
use yaks_common::error::StoreError;
use yaks_common::metastore::{
    IndexEntry, Log, LogStartMove, Objects, PartitionState, Producers, TopicMeta, Topics,
    Transactions,
};
use yaks_common::metrics::{OutcomeLabels, PartitionLabels, TopicLabels, metrics};
use yaks_common::objstore::SharedObjectStore;
use yaks_common::shutdown::Shutdown;
use yaks_common::topic_config::TopicConfigs;
use yaks_common::topic_names::TopicNames;

use crate::compact::{KeyCompaction, PassLimits, PassOutcome, compact_partition};
use crate::gc::{GcReport, GcSettings, collect};
use crate::planner::{PlannerSettings, plan_partition};
use crate::queue::{JobMessage, JobQueue};
use crate::retention::{Retention, new_log_start};
use crate::worker::{JobOutcome, JobTarget, run_job};

/// Index entries read per partition per pass.
const ENTRIES_PER_PASS: i64 = 10_000;

/// Index entries a key compaction pass reads of a partition at most (its dirty part ends
/// there; the next pass goes on). Merging keeps a partition's entry count far below it.
const ENTRIES_PER_KEY_COMPACTION: usize = 200_000;

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
    /// Compacted partitions a key compaction pass judged.
    pub key_compacted: usize,
    /// Garbage collection.
    pub gc: GcReport,
}

/// What a key compaction pass over one partition came to.
enum KeyPass {
    /// It judged the partition's dirty part (or its due tombstones).
    Judged,
    /// None was due; one will be by time alone at `due_ms`, if ever.
    NotDue { due_ms: Option<i64> },
    /// Another compactor, a merge or retention changed the partition first.
    Lost,
}

/// The metastore domains the compactor uses: topics and their configs (retention,
/// compaction), the log it reads and whose start it moves, the objects it swaps, drops and
/// collects, and producers' last batches, which key compaction keeps.
pub trait CompactorStore: Topics + Log + Objects + Producers + Transactions {}

impl<T: Topics + Log + Objects + Producers + Transactions + ?Sized> CompactorStore for T {}

/// The compactor: its stores, queue and settings.
pub struct Compactor {
    metastore: Arc<dyn CompactorStore>,
    objects: SharedObjectStore,
    queue: Arc<dyn JobQueue>,
    config: CompactorConfig,
    key_prefix: String,
    clock: SharedClock,
    names: TopicNames,
    /// What the last key compaction check found of each compacted partition not due:
    /// one that has not grown since and is not due by time is not read again until the
    /// next full pass.
    seen: Mutex<HashMap<(Uuid, i32), Seen>>,
}

/// A compacted partition as a check left it: not due.
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// Its next offset then.
    next_offset: i64,
    /// When it may become due by time alone (max lag, entries past the minimum lag,
    /// tombstones), if ever.
    due_ms: Option<i64>,
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
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Every partition of every topic, with its topic and state.
    async fn partitions(&self) -> Result<Vec<(TopicMeta, PartitionState)>, StoreError> {
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
                Some((topic.clone(), s))
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

    /// Every index entry of a partition from its log start, up to
    /// [`ENTRIES_PER_KEY_COMPACTION`].
    async fn all_entries(
        &self,
        topic: &TopicMeta,
        partition: i32,
        log_start: i64,
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let mut all: Vec<IndexEntry> = Vec::new();
        loop {
            let from = all.last().map_or(log_start, |e| e.last_offset + 1);
            let page = self.entries(topic, partition, from).await?;
            let done = (page.len() as i64) < ENTRIES_PER_PASS;
            all.extend(page);
            if done || all.len() >= ENTRIES_PER_KEY_COMPACTION {
                return Ok(all);
            }
        }
    }

    /// Runs a key compaction pass over every partition of a compacted topic where one is
    /// due; returns how many were judged. A partition that neither grew nor came due by
    /// time since the last check found it not due is skipped without a read; one that
    /// fails is logged and left for the next check.
    pub async fn compact_keys(&self) -> Result<usize, StoreError> {
        let mut judged = 0;
        let now_ms = self.clock.now_ms();
        for (topic, state) in self.partitions().await? {
            if !TopicConfigs::new(&topic.configs).compacts() {
                continue;
            }
            let (partition, next_offset) = (state.partition_index, state.next_offset);
            let key = (topic.topic_id, partition);
            let unchanged = self.seen().get(&key).is_some_and(|seen| {
                seen.next_offset == next_offset && seen.due_ms.is_none_or(|due| due > now_ms)
            });
            if unchanged {
                continue;
            }
            let pass = self.compact_partition_keys(&topic, &state).await;
            let mut seen = self.seen();
            match pass {
                Ok(KeyPass::NotDue { due_ms }) => {
                    seen.insert(
                        key,
                        Seen {
                            next_offset,
                            due_ms,
                        },
                    );
                }
                Ok(KeyPass::Judged) => {
                    seen.remove(&key);
                    judged += 1;
                    count_pass("compacted");
                }
                Ok(KeyPass::Lost) => {
                    seen.remove(&key);
                    count_pass("lost");
                }
                Err(e) => {
                    seen.remove(&key);
                    warn!(topic = %topic.name, partition, error = %e, "key compaction pass failed; the next check tries again");
                    count_pass("failed");
                }
            }
        }
        Ok(judged)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, i32), Seen>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A key compaction pass over one partition of a compacted topic, if one is due, and
    /// its metrics.
    async fn compact_partition_keys(
        &self,
        topic: &TopicMeta,
        state: &PartitionState,
    ) -> Result<KeyPass, StoreError> {
        let partition = state.partition_index;
        let configs = TopicConfigs::new(&topic.configs);
        let settings = KeyCompaction {
            lags: configs.lags(),
            delete_retention_ms: configs.delete_retention_ms(),
        };
        let limits = PassLimits {
            map_bytes: self.config.key_map_bytes,
            chunk_bytes: self.config.target_bytes,
        };
        let mut entries = self
            .all_entries(topic, partition, state.log_start_offset)
            .await?;
        // Data of open transactions is not compacted (Kafka cleans below the first unstable
        // offset): an entry reaching the last stable offset waits. Transactions that open
        // later start at or past the next offset read with it.
        let stable = state.last_stable_offset();
        entries.retain(|e| e.last_offset < stable);
        let cleaning = self.metastore.cleaning(topic.topic_id, partition).await?;
        let target = JobTarget {
            topic_id: topic.topic_id,
            topic: &topic.name,
            partition_index: partition,
            key_prefix: &self.key_prefix,
        };
        let now_ms = self.clock.now_ms();
        let outcome = compact_partition(
            self.metastore.as_ref(),
            self.objects.as_ref(),
            &target,
            &entries,
            cleaning,
            &settings,
            &limits,
            now_ms,
        )
        .await?;
        let compactor = &metrics().compactor;
        let dirty = match outcome {
            PassOutcome::NotDue(dirty) => dirty,
            PassOutcome::Compacted {
                records,
                bytes_in,
                bytes_out,
                ..
            } => {
                let labels = TopicLabels {
                    topic: topic.name.clone(),
                };
                for (family, value) in [
                    (&compactor.key_compaction_bytes_in, bytes_in),
                    (&compactor.key_compaction_bytes_out, bytes_out),
                    (&compactor.key_compaction_records_in, records.before),
                    (&compactor.key_compaction_records_out, records.after),
                ] {
                    family.get_or_create(&labels).inc_by(value);
                }
                // The partition's gauges follow at the next check, which reads it again.
                return Ok(KeyPass::Judged);
            }
            PassOutcome::Lost => return Ok(KeyPass::Lost),
        };
        let labels = PartitionLabels {
            topic: topic.name.clone(),
            partition,
        };
        compactor
            .dirty_ratio
            .get_or_create(&labels)
            .set(dirty.ratio());
        let age_s = dirty.oldest_ms.map_or(0.0, |oldest| {
            now_ms.saturating_sub(oldest).max(0) as f64 / 1000.0
        });
        compactor.oldest_dirty_age.get_or_create(&labels).set(age_s);
        let by_lag = dirty.oldest_ms.map(|oldest| {
            oldest
                .saturating_add(settings.lags.max_lag_ms)
                .saturating_add(1)
        });
        let due_ms = [by_lag, dirty.ripe_at_ms, cleaning.tombstones_due_ms]
            .into_iter()
            .flatten()
            .min();
        Ok(KeyPass::NotDue { due_ms })
    }

    /// Plans jobs for every partition and sends them to the queue.
    pub async fn plan(&self) -> Result<usize, StoreError> {
        let settings = PlannerSettings {
            target_bytes: self.config.target_bytes,
            small_bytes: self.config.small_bytes,
            window_ms: self.config.window_ms,
        };
        let mut planned = 0;
        for (topic, state) in self.partitions().await? {
            let (partition, log_start) = (state.partition_index, state.log_start_offset);
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
        for (topic, state) in self.partitions().await? {
            let (partition, log_start) = (state.partition_index, state.log_start_offset);
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
            // Before merges are planned, so its small outputs are merged in this pass; a
            // full pass looks at every compacted partition again (retention may have
            // changed what is dirty).
            self.seen().clear();
            report.key_compacted = self.compact_keys().await?;
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

    /// Passes every `compactor.interval_ms` until `shutdown`, and between passes checks
    /// compacted partitions every `compactor.key_compaction_check_ms`, so a partition due
    /// by `max.compaction.lag.ms` waits at most that long; a failed pass or check is logged
    /// and the next one tries again.
    pub async fn run(self, mut shutdown: Shutdown) {
        let interval = Duration::from_millis(self.config.interval_ms);
        let check = Duration::from_millis(self.config.key_compaction_check_ms);
        loop {
            if let Err(e) = self.pass(false, Some(&shutdown)).await {
                warn!(error = %e, "compactor pass failed");
            }
            let next_pass = yaks_common::clock::now() + interval;
            loop {
                let left = next_pass.saturating_duration_since(yaks_common::clock::now());
                if left.is_zero() {
                    break;
                }
                tokio::select! {
                    _ = yaks_common::clock::sleep(check.min(left)) => {}
                    _ = shutdown.wait() => return,
                }
                if yaks_common::clock::now() >= next_pass {
                    break;
                }
                if let Err(e) = self.compact_keys().await {
                    warn!(error = %e, "key compaction check failed");
                }
            }
        }
    }
}

/// A topic's retention limits (Kafka's defaults when unset; -1 is unlimited); none where
/// `cleanup.policy` leaves out `delete`.
fn retention_of(topic: &TopicMeta) -> Retention {
    let configs = TopicConfigs::new(&topic.configs);
    if !configs.deletes() {
        return Retention {
            max_age_ms: None,
            max_bytes: None,
        };
    }
    Retention {
        max_age_ms: configs.retention_ms(),
        max_bytes: configs.retention_bytes(),
    }
}

fn count_pass(outcome: &'static str) {
    metrics()
        .compactor
        .key_compaction_passes
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}

fn count_job(outcome: &'static str) {
    metrics()
        .compactor
        .jobs
        .get_or_create(&OutcomeLabels { outcome })
        .inc();
}
