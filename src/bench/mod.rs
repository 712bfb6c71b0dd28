//! `yaks bench`: how close yaks gets to the limits of the machine and the object store.
//!
//! Self-contained by default: a private PostgreSQL (with `pg_stat_statements`, and the
//! writer connecting as its own role so its statements can be counted), the loopback S3
//! endpoint, and a gateway, a writer and a reader as separate `yaks` processes (so each
//! one's peak RSS is its own); the gateway presents `GATEWAY_BROKERS` brokers, as a
//! deployment serving latency-bound clients would. Each run measures the raw limits of
//! the same endpoints first ([`raw`]), then compacts a keyed partition with
//! `yaks compactor --once` ([`compaction`]), then drives yaks with librdkafka ([`load`]);
//! the table gives every figure with its reference and ratio, medians over `--runs`, and
//! whether the target holds.

pub mod compaction;
pub mod cpu;
pub mod load;
pub mod raw;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use tracing::info;
use yaks_common::config::{Config, WriterConfig};
use yaks_common::objstore::S3ObjectStore;

use crate::chaos::cluster::{Member, Role};
use crate::dev::postgres::{EmbeddedPostgres, free_port, free_ports};
use crate::dev::s3::DevS3;
use load::{Client, Isolation, ProduceLoad, ProduceResult};

/// The isolation of the consume rows that predate transactions: librdkafka's default.
const COMMITTED: Isolation = Isolation::ReadCommitted;

/// Options of `yaks bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchOptions {
    /// A smoke run: short phases, one run, small data (CI).
    #[arg(long)]
    pub quick: bool,
    /// Runs; figures are their medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Where the private PostgreSQL, S3 data, caches and logs go.
    #[arg(long, default_value = ".yaks-bench")]
    pub data_dir: PathBuf,
    /// The `yaks` binary to run the roles with (default: this one).
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Keep the run's directory (PostgreSQL, logs) instead of removing it at the end; a
    /// failed run always keeps it.
    #[arg(long)]
    pub keep: bool,
    /// Run only the client phases (produce plain, idempotent and Java-like, consume,
    /// end-to-end latency) against this Kafka bootstrap address instead of a private
    /// deployment, to put yaks beside Kafka, Redpanda or another broker with the same load.
    #[arg(long, value_name = "HOST:PORT")]
    pub brokers: Option<String>,
    /// Run the private deployment against this S3 endpoint (MinIO, LocalStack, AWS) instead
    /// of a loopback one, with credentials from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`; the bucket is created if missing and emptied after each run.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// The bucket on `--s3-endpoint`.
    #[arg(long, default_value = "yaks-bench")]
    pub s3_bucket: String,
    /// The region of `--s3-endpoint`.
    #[arg(long, default_value = "us-east-1")]
    pub s3_region: String,
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Scale {
    produce_for: Duration,
    raw_objects: usize,
    commits: usize,
    consume_records: u64,
    latency_samples: usize,
    many_producers: usize,
    /// Records each latency-bound client run sends: all queued at once, then acknowledged
    /// at the pace the protocol allows (a fixed count, so a slow run does not end in a
    /// long drain of whatever a time-bound one queued).
    latency_bound_records: u64,
    /// Records of 1 KiB in the key compaction row's partition, 10 versions of each key.
    compaction_records: u64,
}

impl Scale {
    fn of(options: &BenchOptions) -> Scale {
        if options.quick {
            Scale {
                produce_for: Duration::from_secs(2),
                raw_objects: 4,
                commits: 50,
                consume_records: 10_000,
                latency_samples: 20,
                many_producers: 10,
                latency_bound_records: 8 * 1024,
                compaction_records: 32 * 1024,
            }
        } else {
            Scale {
                produce_for: Duration::from_secs(8),
                raw_objects: 24,
                commits: 300,
                consume_records: 500_000,
                latency_samples: 100,
                many_producers: 50,
                latency_bound_records: 128 * 1024,
                compaction_records: 1024 * 1024,
            }
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
struct Run {
    s3: raw::S3Limits,
    commit_ms: [f64; 2],
    full: [ProduceResult; 2],
    half: [ProduceResult; 2],
    /// Idempotent producers on 1 partition, as fast as they are acknowledged.
    idempotent: ProduceResult,
    /// Producers with the Java client's defaults on 16 partitions.
    java_like: ProduceResult,
    consume_cold: f64,
    consume_warm: f64,
    warm_gets: f64,
    /// The full-load produce of 1 partition and the warm consume again, over the gateway's
    /// TLS listener (private deployment only).
    tls_produce: Option<ProduceResult>,
    tls_consume_warm: Option<f64>,
    /// 100-byte records over 16 partitions, produced and then read once.
    small_produce: ProduceResult,
    small_consume: load::ConsumeResult,
    e2e_ms: [f64; 2],
    flush_one: FlushCost,
    flush_idempotent: FlushCost,
    flush_java_like: FlushCost,
    flush_many: FlushCost,
    many: ProduceResult,
    /// The 1,000-partition load at half the rate the full one reached.
    many_half: ProduceResult,
    /// Key compaction of a partition with 10 % live keys (private deployment only).
    compaction: Option<compaction::CompactionCost>,
    /// Idempotent producers on 16 partitions: the transactional row's reference, from the
    /// round whose ratio is the median of the run's [`TXN_ROUNDS`].
    idempotent_16: ProduceResult,
    /// The same records in transactions of 1 MiB, committed one after another, from the
    /// same round.
    transactional: ProduceResult,
    /// The transactional topic read again (warm) read_uncommitted, then read_committed: the
    /// round of [`TXN_ROUNDS`] whose ratio is the median.
    txn_consume: [f64; 2],
    /// What the services spent on each MiB of `idempotent_16` and of `transactional`
    /// (private deployment only).
    txn_cpu: [CpuPerMib; 2],
}

/// CPU milliseconds the services spent per MiB a phase produced.
#[derive(Debug, Clone, Copy, Default)]
struct CpuPerMib {
    /// The gateway, writer and reader processes together.
    yaks_ms: f64,
    /// PostgreSQL: the postmaster and every backend.
    postgres_ms: f64,
}

/// CPU seconds the services have used so far: the yaks roles and PostgreSQL.
#[derive(Debug, Clone, Copy, Default)]
struct ServiceCpu {
    yaks_s: f64,
    postgres_s: f64,
}

impl ServiceCpu {
    /// What was spent between `before` and `self` on each of `mib` MiB.
    fn per_mib_since(&self, before: &ServiceCpu, mib: f64) -> CpuPerMib {
        let mib = mib.max(1e-9);
        CpuPerMib {
            yaks_ms: (self.yaks_s - before.yaks_s) * 1e3 / mib,
            postgres_ms: (self.postgres_s - before.postgres_s) * 1e3 / mib,
        }
    }
}

/// Which per-flush window of a run a table row shows.
type CostOf = fn(&Run) -> FlushCost;

/// Per-flush cost over a measured window.
#[derive(Debug, Clone, Copy, Default)]
struct FlushCost {
    flushes: f64,
    partitions: f64,
    s3_requests: f64,
    statements: f64,
    rows: f64,
    /// The writer's S3 requests per GiB flushed: what a load costs in requests.
    requests_per_gib: f64,
    /// Flushes brought forward because the buffer stopped growing, and flushes of a full
    /// buffer, in the window.
    idle: f64,
    full: f64,
    /// Bytes flushed (a counter in a snapshot).
    bytes: f64,
    /// Seconds spent uploading and committing flushes (per flush after `since`), where a
    /// latency-bound client's round trip goes.
    upload_s: f64,
    commit_s: f64,
    /// Appends (produce requests taken by the writer), and the seconds they spent waiting
    /// for their buffer's seal and in the writer altogether (per append after `since`).
    appends: f64,
    append_wait_s: f64,
    append_s: f64,
}

/// Runs the benchmark and returns the table.
pub async fn run(options: BenchOptions) -> anyhow::Result<String> {
    let scale = Scale::of(&options);
    let runs = if options.quick {
        1
    } else {
        options.runs.max(1)
    };
    let run_id = format!("{:x}", yaks_common::clock::system_clock().now_ms());
    let writer_config = WriterConfig::default();
    if let Some(brokers) = &options.brokers {
        info!(%brokers, "bench starting against an external broker");
        let mut results = Vec::new();
        for index in 0..runs {
            info!(run = index + 1, of = runs, "bench run");
            let context = RunContext {
                brokers,
                private: None,
                scale,
                tag: format!("{run_id}-r{index}"),
            };
            results.push(context.run().await?);
        }
        return Ok(table(&results, &[], None, runs));
    }
    let binary = match &options.binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe().context("finding the yaks binary")?,
    };
    let dir = std::path::absolute(options.data_dir.join(format!("run-{run_id}")))?;
    std::fs::create_dir_all(dir.join("logs"))?;
    info!(dir = %dir.display(), "bench starting");

    let postgres_dir = dir.join("postgres");
    let mut postgres =
        tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&postgres_dir)).await??;
    let postgres = enable_statement_counts(&mut postgres)
        .await
        .map(|()| postgres)?;
    let (s3, s3_config) = match &options.s3_endpoint {
        Some(endpoint) => (None, external_s3(endpoint, &options)?),
        None => {
            let s3 = DevS3::start(&dir.join("s3"), 0).await?;
            let config = s3.s3_config("yaks-bench");
            (Some(s3), config)
        }
    };
    let env = deployment_env(&postgres, &s3_config);
    let ca = crate::dev::tls::LocalCa::new("yaks bench CA")?;
    let tls_files = ca.write_gateway_files(&dir.join("tls"))?;
    let tls = TlsEndpoint {
        brokers: format!("localhost:{}", free_ports(GATEWAY_BROKERS)?),
        security: vec![
            ("security.protocol".into(), "SSL".into()),
            (
                "ssl.ca.location".into(),
                tls_files.ca_file.display().to_string(),
            ),
        ],
    };
    let mut members = members(&binary, &dir, &env, &postgres, &tls, &tls_files)?;
    let compactor = compaction::CompactorCommand {
        binary: binary.clone(),
        env,
        log: dir.join("logs").join("compactor.log"),
    };
    for member in &mut members {
        member.start().await?;
    }
    let gateway = members
        .iter()
        .find(|m| m.role == Role::Gateway)
        .map(|m| m.addr.clone())
        .context("gateway")?;
    let writer = url_of(&members, Role::Writer)?;
    let reader = url_of(&members, Role::Reader)?;

    let objects: Arc<dyn yaks_common::objstore::ObjectStore> =
        Arc::new(S3ObjectStore::connect(&s3_config).await?);
    let mut results = Vec::new();
    for index in 0..runs {
        info!(run = index + 1, of = runs, "bench run");
        let context = RunContext {
            brokers: &gateway,
            private: Some(Private {
                compactor: &compactor,
                writer: &writer,
                reader: &reader,
                postgres_url: postgres.url(),
                objects: objects.clone(),
                writer_config: &writer_config,
                tls: &tls,
                yaks_pids: members.iter().filter_map(Member::pid).collect(),
                postgres_pid: postgres.pid(),
            }),
            scale,
            tag: format!("r{index}"),
        };
        results.push(context.run().await?);
    }
    let rss: Vec<(String, u64)> = members
        .iter()
        .map(|m| (m.name.clone(), m.pid().map_or(0, peak_rss_bytes)))
        .collect();
    for member in &mut members {
        member.stop(Duration::from_secs(30)).await;
    }
    if let Some(s3) = s3 {
        s3.stop().await;
    }
    let mut postgres = postgres;
    let _ = tokio::task::spawn_blocking(move || postgres.stop()).await;
    if !options.keep {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(table(&results, &rss, Some(&writer_config), runs))
}

/// Settings for `--s3-endpoint`: credentials from the environment, as the AWS tools take them.
fn external_s3(
    endpoint: &str,
    options: &BenchOptions,
) -> anyhow::Result<yaks_common::config::S3Config> {
    let credential =
        |name: &str| std::env::var(name).with_context(|| format!("--s3-endpoint needs {name} set"));
    Ok(yaks_common::config::S3Config {
        bucket: options.s3_bucket.clone(),
        endpoint: Some(endpoint.to_owned()),
        region: options.s3_region.clone(),
        force_path_style: true,
        access_key_id: Some(credential("AWS_ACCESS_KEY_ID")?),
        secret_access_key: Some(credential("AWS_SECRET_ACCESS_KEY")?),
        create_bucket: true,
        ..yaks_common::config::S3Config::default()
    })
}

/// What only a private deployment can be asked: its roles' metrics, its PostgreSQL's
/// statement counts, its bucket.
struct Private<'a> {
    compactor: &'a compaction::CompactorCommand,
    writer: &'a str,
    reader: &'a str,
    postgres_url: String,
    objects: Arc<dyn yaks_common::objstore::ObjectStore>,
    writer_config: &'a WriterConfig,
    /// The gateway's TLS listener and the client settings that trust it.
    tls: &'a TlsEndpoint,
    /// The gateway, writer and reader processes, and the postmaster, whose CPU time the
    /// transactional row reads.
    yaks_pids: Vec<u32>,
    postgres_pid: Option<u32>,
}

/// The private gateway's `SSL` listener, as a client reaches it.
struct TlsEndpoint {
    brokers: String,
    security: Vec<(String, String)>,
}

struct RunContext<'a> {
    brokers: &'a str,
    /// `None` with `--brokers`: only the client phases run.
    private: Option<Private<'a>>,
    scale: Scale,
    tag: String,
}

impl RunContext<'_> {
    async fn run(&self) -> anyhow::Result<Run> {
        let scale = self.scale;
        let mut run = Run::default();
        if let Some(private) = &self.private {
            blocking(|| {
                load::settle_disk();
                Ok(())
            })
            .await?;
            run.s3 = raw::s3(
                private.objects.clone(),
                scale.raw_objects,
                private.writer_config.flush_bytes as usize,
                Config::default().reader.cache_block_bytes as usize,
                private.writer_config.max_uploads_in_flight,
            )
            .await?;
            run.commit_ms = raw::postgres_commit(&private.postgres_url, scale.commits).await?;
            run.compaction = Some(self.key_compaction(private).await?);
        }

        for (slot, partitions) in [(0, 1), (1, 16)] {
            let topic = self.topic(&format!("p{partitions}"), partitions).await?;
            let before = self.flush_snapshot().await?;
            let full = self.produce(&topic, partitions, 4, None).await?;
            if partitions == 1 {
                run.flush_one = self.flush_snapshot().await?.since(&before);
            }
            let half = self
                .produce(&topic, partitions, 4, Some(full.records_per_s / 2.0))
                .await?;
            run.full[slot] = full;
            run.half[slot] = half;
            // The latency-bound clients, on the same topic and producer count.
            let (client, result) = if partitions == 1 {
                (Client::Idempotent, &mut run.idempotent)
            } else {
                (Client::JavaDefaults, &mut run.java_like)
            };
            let load = ProduceLoad::counted(
                topic.clone(),
                partitions,
                client,
                scale.latency_bound_records,
            );
            let brokers = self.brokers.to_owned();
            let before = self.flush_snapshot().await?;
            *result = blocking(move || load::produce(&brokers, &load)).await?;
            anyhow::ensure!(result.failed == 0, "{} records failed", result.failed);
            let cost = self.flush_snapshot().await?.since(&before);
            if partitions == 1 {
                run.flush_idempotent = cost;
            } else {
                run.flush_java_like = cost;
            }
        }

        // Transactions: the same records idempotent and in transactions of 1 MiB over 16
        // partitions, in alternating pairs, then the last transactional topic read warm both
        // ways. This machine's speed swings by half within minutes, and one pair of
        // phases a few seconds long can land on either side of a swing; the row takes the
        // pair whose ratio is the median of its rounds, each ratio of two neighbouring
        // phases.
        let mut pairs = Vec::with_capacity(TXN_ROUNDS);
        let (mut txn_topic, mut txn_records) = (String::new(), 0);
        for round in 0..TXN_ROUNDS {
            let mut pair: [(ProduceResult, CpuPerMib); 2] = Default::default();
            for (client, (result, cpu)) in [Client::Idempotent, Client::Transactional]
                .into_iter()
                .zip(pair.iter_mut())
            {
                let name = if client == Client::Transactional {
                    "txn"
                } else {
                    "idem16"
                };
                let topic = self.topic(&format!("{name}{round}"), 16).await?;
                let load =
                    ProduceLoad::counted(topic.clone(), 16, client, scale.latency_bound_records);
                let brokers = self.brokers.to_owned();
                let flushed_before = self.flush_snapshot().await?;
                let before = self.service_cpu();
                *result = blocking(move || load::produce(&brokers, &load)).await?;
                let mib = (result.acked * load::RECORD_BYTES as u64) as f64 / (1 << 20) as f64;
                *cpu = self.service_cpu().per_mib_since(&before, mib);
                // Where a latency-bound phase's time went, per flush and per append.
                let flush = self.flush_snapshot().await?.since(&flushed_before);
                info!(
                    round,
                    phase = name,
                    flushes = flush.flushes,
                    upload_ms = flush.upload_s * 1e3,
                    commit_ms = flush.commit_s * 1e3,
                    appends = flush.appends,
                    append_wait_ms = flush.append_wait_s * 1e3,
                    append_ms = flush.append_s * 1e3,
                    "transactions phase"
                );
                anyhow::ensure!(result.failed == 0, "{} records failed", result.failed);
                if client == Client::Transactional {
                    (txn_topic, txn_records) = (topic, result.acked);
                }
            }
            let [
                (idempotent, idempotent_cpu),
                (transactional, transactional_cpu),
            ] = &pair;
            info!(
                round,
                idempotent_mib_s = idempotent.mib_per_s,
                transactional_mib_s = transactional.mib_per_s,
                idempotent_yaks_cpu_ms_per_mib = idempotent_cpu.yaks_ms,
                idempotent_postgres_cpu_ms_per_mib = idempotent_cpu.postgres_ms,
                transactional_yaks_cpu_ms_per_mib = transactional_cpu.yaks_ms,
                transactional_postgres_cpu_ms_per_mib = transactional_cpu.postgres_ms,
                "transactions round"
            );
            pairs.push(pair);
        }
        let [
            (idempotent, idempotent_cpu),
            (transactional, transactional_cpu),
        ] = median_pair(pairs, |(r, _)| r.mib_per_s);
        [run.idempotent_16, run.transactional] = [idempotent, transactional];
        run.txn_cpu = [idempotent_cpu, transactional_cpu];
        // The transactional topic read warm: once to warm the cache, then read_uncommitted
        // and read_committed side by side, in rounds like the produce pairs (a warm read
        // of it lasts a fraction of a second).
        let read = |isolation: Isolation| {
            let (brokers, name) = (self.brokers.to_owned(), txn_topic.clone());
            blocking(move || load::consume(&brokers, &[], &name, 16, txn_records, isolation))
        };
        read(Isolation::ReadUncommitted).await?;
        let mut reads = Vec::with_capacity(TXN_ROUNDS);
        for _ in 0..TXN_ROUNDS {
            let uncommitted = read(Isolation::ReadUncommitted).await?.mib_per_s;
            let committed = read(Isolation::ReadCommitted).await?.mib_per_s;
            info!(uncommitted, committed, "read_committed round");
            reads.push([uncommitted, committed]);
        }
        run.txn_consume = median_pair(reads, |mib_per_s| *mib_per_s);

        // Consume: a bounded topic read twice; the second read must come from the cache.
        let topic = self.topic("consume", 16).await?;
        let brokers = self.brokers.to_owned();
        let load =
            ProduceLoad::counted(topic.clone(), 16, Client::Throughput, scale.consume_records);
        let records = blocking(move || load::produce(&brokers, &load))
            .await?
            .acked;
        let brokers = self.brokers.to_owned();
        let name = topic.clone();
        run.consume_cold =
            blocking(move || load::consume(&brokers, &[], &name, 16, records, COMMITTED))
                .await?
                .mib_per_s;
        let gets_before = self.reader_gets().await?;
        let brokers = self.brokers.to_owned();
        let name = topic.clone();
        run.consume_warm =
            blocking(move || load::consume(&brokers, &[], &name, 16, records, COMMITTED))
                .await?
                .mib_per_s;
        run.warm_gets = self.reader_gets().await? - gets_before;
        if let Some(private) = &self.private {
            // Over TLS: the same warm read, and the 1-partition full load on a topic of its
            // own, each against its plaintext figure of this run.
            let tls = private.tls;
            let (brokers, security, name) =
                (tls.brokers.clone(), tls.security.clone(), topic.clone());
            run.tls_consume_warm = Some(
                blocking(move || load::consume(&brokers, &security, &name, 16, records, COMMITTED))
                    .await?
                    .mib_per_s,
            );
            let tls_topic = self.topic("p1-tls", 1).await?;
            let load = ProduceLoad {
                topic: tls_topic,
                partitions: 1,
                producers: 4,
                duration: self.scale.produce_for,
                rate: None,
                records: None,
                client: Client::Throughput,
                record_bytes: load::RECORD_BYTES,
                keys: None,
                security: tls.security.clone(),
            };
            let brokers = tls.brokers.clone();
            let produced = blocking(move || load::produce(&brokers, &load)).await?;
            anyhow::ensure!(produced.failed == 0, "{} records failed", produced.failed);
            run.tls_produce = Some(produced);
        }

        // Small records: the same number, 100 bytes each, produced and then consumed.
        let topic = self.topic("small", 16).await?;
        let brokers = self.brokers.to_owned();
        let load = ProduceLoad {
            record_bytes: load::SMALL_RECORD_BYTES,
            ..ProduceLoad::counted(topic.clone(), 16, Client::Throughput, scale.consume_records)
        };
        run.small_produce = blocking(move || load::produce(&brokers, &load)).await?;
        anyhow::ensure!(
            run.small_produce.failed == 0,
            "{} records failed",
            run.small_produce.failed
        );
        let (brokers, name, records) = (self.brokers.to_owned(), topic, run.small_produce.acked);
        run.small_consume =
            blocking(move || load::consume(&brokers, &[], &name, 16, records, COMMITTED)).await?;

        let topic = self.topic("e2e", 1).await?;
        let brokers = self.brokers.to_owned();
        let samples = scale.latency_samples;
        run.e2e_ms = blocking(move || {
            load::end_to_end(&brokers, &topic, samples, Duration::from_millis(20))
        })
        .await?;

        let topic = self.topic("p1000", 1000).await?;
        let before = self.flush_snapshot().await?;
        run.many = self
            .produce(&topic, 1000, scale.many_producers, None)
            .await?;
        run.flush_many = self.flush_snapshot().await?.since(&before);
        // At half the rate the full load reached its acks show the flush pace, not a queue:
        // what a partition among many waits, against the same bound as one partition.
        run.many_half = self
            .produce(
                &topic,
                1000,
                scale.many_producers,
                Some(run.many.records_per_s / 2.0),
            )
            .await?;
        self.clear_bucket().await?;
        Ok(run)
    }

    /// The key compaction row: a compacted partition of 1 KiB records, 10 versions of each
    /// key, written by 4 producers and compacted by one `yaks compactor --once` (first in a
    /// run, so no other data is there to merge or collect).
    async fn key_compaction(
        &self,
        private: &Private<'_>,
    ) -> anyhow::Result<compaction::CompactionCost> {
        let topic = self
            .topic_with("compacted", 1, &[("cleanup.policy", "compact")])
            .await?;
        let records = self.scale.compaction_records;
        let load = ProduceLoad {
            keys: Some(records / 10),
            ..ProduceLoad::counted(topic, 1, Client::Throughput, records)
        };
        let brokers = self.brokers.to_owned();
        let produced = blocking(move || load::produce(&brokers, &load)).await?;
        anyhow::ensure!(produced.failed == 0, "{} records failed", produced.failed);
        let input_mib = produced.acked as f64 * load::RECORD_BYTES as f64 / (1 << 20) as f64;
        let command = private.compactor.clone();
        blocking(move || compaction::measure(&command, input_mib)).await
    }

    /// Deletes every object the run wrote: a run stores tens of GiB, and the runs after it
    /// (which use topics of their own) never read them.
    async fn clear_bucket(&self) -> anyhow::Result<()> {
        let Some(private) = &self.private else {
            return Ok(());
        };
        let keys = private.objects.list(String::new()).await?;
        let objects = private.objects.clone();
        futures::stream::iter(keys)
            .map(|key| {
                let objects = objects.clone();
                async move { objects.delete(key).await }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>()?;
        Ok(())
    }

    async fn topic(&self, what: &str, partitions: i32) -> anyhow::Result<String> {
        self.topic_with(what, partitions, &[]).await
    }

    /// A topic of this run with these configs.
    async fn topic_with(
        &self,
        what: &str,
        partitions: i32,
        configs: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let name = format!("bench-{what}-{}", self.tag);
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.brokers)
            .create()?;
        let mut topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        for result in admin.create_topics([&topic], &AdminOptions::new()).await? {
            result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
        }
        Ok(name)
    }

    async fn produce(
        &self,
        topic: &str,
        partitions: i32,
        producers: usize,
        rate: Option<f64>,
    ) -> anyhow::Result<ProduceResult> {
        let load = ProduceLoad {
            topic: topic.to_owned(),
            partitions,
            producers,
            duration: self.scale.produce_for,
            rate,
            records: None,
            client: Client::Throughput,
            record_bytes: load::RECORD_BYTES,
            keys: None,
            security: Vec::new(),
        };
        let brokers = self.brokers.to_owned();
        let result = blocking(move || load::produce(&brokers, &load)).await?;
        anyhow::ensure!(result.failed == 0, "{} records failed", result.failed);
        Ok(result)
    }

    /// CPU the services have used so far (zeros against an external broker).
    fn service_cpu(&self) -> ServiceCpu {
        let Some(private) = &self.private else {
            return ServiceCpu::default();
        };
        ServiceCpu {
            yaks_s: private
                .yaks_pids
                .iter()
                .filter_map(|&pid| cpu::process_s(pid))
                .sum(),
            postgres_s: private.postgres_pid.map_or(0.0, cpu::tree_s),
        }
    }

    /// The reader's S3 GETs so far (0 against an external broker).
    async fn reader_gets(&self) -> anyhow::Result<f64> {
        let Some(private) = &self.private else {
            return Ok(0.0);
        };
        let page = scrape(private.reader).await?;
        Ok(metric(
            &page,
            "yaks_reader_s3_requests_total",
            &["operation=\"get\""],
        ))
    }

    /// The writer's flush counters so far (zeros against an external broker).
    async fn flush_snapshot(&self) -> anyhow::Result<FlushCost> {
        let Some(private) = &self.private else {
            return Ok(FlushCost::default());
        };
        let page = scrape(private.writer).await?;
        let (statements, rows) = writer_statements(&private.postgres_url).await?;
        Ok(FlushCost {
            flushes: metric(
                &page,
                "yaks_writer_flushes_total",
                &["outcome=\"committed\""],
            ),
            partitions: metric(&page, "yaks_writer_flush_partitions_sum", &[]),
            s3_requests: metric(&page, "yaks_writer_s3_requests_total", &[]),
            statements,
            rows,
            requests_per_gib: 0.0,
            idle: metric(
                &page,
                "yaks_writer_flush_triggers_total",
                &["trigger=\"idle\""],
            ),
            full: metric(
                &page,
                "yaks_writer_flush_triggers_total",
                &["trigger=\"full\""],
            ),
            bytes: metric(&page, "yaks_writer_flush_size_bytes_sum", &[]),
            upload_s: metric(&page, "yaks_writer_flush_upload_seconds_sum", &[]),
            commit_s: metric(&page, "yaks_writer_flush_commit_seconds_sum", &[]),
            appends: metric(&page, "yaks_writer_append_seconds_count", &[]),
            append_wait_s: metric(&page, "yaks_writer_append_wait_seconds_sum", &[]),
            append_s: metric(&page, "yaks_writer_append_seconds_sum", &[]),
        })
    }
}

impl FlushCost {
    /// Per-flush figures of the window between `before` and `self`.
    fn since(&self, before: &FlushCost) -> FlushCost {
        let flushes = (self.flushes - before.flushes).max(1.0);
        let appends = self.appends - before.appends;
        FlushCost {
            flushes,
            partitions: (self.partitions - before.partitions) / flushes,
            s3_requests: (self.s3_requests - before.s3_requests) / flushes,
            statements: (self.statements - before.statements) / flushes,
            rows: (self.rows - before.rows) / flushes,
            requests_per_gib: (self.s3_requests - before.s3_requests)
                / ((self.bytes - before.bytes) / (1u64 << 30) as f64).max(1e-9),
            idle: self.idle - before.idle,
            full: self.full - before.full,
            bytes: self.bytes - before.bytes,
            upload_s: (self.upload_s - before.upload_s) / flushes,
            commit_s: (self.commit_s - before.commit_s) / flushes,
            appends,
            append_wait_s: (self.append_wait_s - before.append_wait_s) / appends.max(1.0),
            append_s: (self.append_s - before.append_s) / appends.max(1.0),
        }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::time::timeout(raw::PHASE_TIMEOUT, tokio::task::spawn_blocking(work))
        .await
        .context("a bench phase took more than 300 s")??
}

/// Role that connects the writer, so `pg_stat_statements` can tell its statements apart.
const WRITER_ROLE: &str = "yaks_writer";

/// Loads `pg_stat_statements` (a restart) and creates the writer's role.
async fn enable_statement_counts(postgres: &mut EmbeddedPostgres) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls)
        .await
        .context("connecting to the bench postgres")?;
    let task = tokio::spawn(connection);
    client
        .batch_execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        .await?;
    client
        .batch_execute(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{WRITER_ROLE}') THEN
                 CREATE ROLE {WRITER_ROLE} LOGIN SUPERUSER;
               END IF;
             END $$;"
        ))
        .await?;
    drop(client);
    let _ = task.await;
    tokio::task::block_in_place(|| -> anyhow::Result<()> {
        postgres.stop()?;
        postgres.start_again()
    })?;
    let (client, connection) =
        tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .context("pg_stat_statements (part of the postgresql package)")?;
    Ok(())
}

/// Statements the writer's role ran, and rows they touched, lease renewals left out.
async fn writer_statements(url: &str) -> anyhow::Result<(f64, f64)> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT coalesce(sum(s.calls), 0)::float8, coalesce(sum(s.rows), 0)::float8
             FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
             WHERE r.rolname = $1 AND s.query NOT ILIKE '%services%'",
            &[&WRITER_ROLE],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// One reader, one writer (connecting as [`WRITER_ROLE`]), one gateway finding both in the
/// registry.
/// The settings every `yaks` process of the private deployment shares, as environment
/// variables.
fn deployment_env(
    postgres: &EmbeddedPostgres,
    s3: &yaks_common::config::S3Config,
) -> Vec<(String, String)> {
    [
        ("YAKS_POSTGRES__URL", postgres.url()),
        ("YAKS_S3__ENDPOINT", s3.endpoint.clone().unwrap_or_default()),
        ("YAKS_S3__BUCKET", s3.bucket.clone()),
        ("YAKS_S3__REGION", s3.region.clone()),
        ("YAKS_S3__FORCE_PATH_STYLE", "true".into()),
        ("YAKS_S3__CREATE_BUCKET", "true".into()),
        (
            "YAKS_S3__ACCESS_KEY_ID",
            s3.access_key_id.clone().unwrap_or_default(),
        ),
        (
            "YAKS_S3__SECRET_ACCESS_KEY",
            s3.secret_access_key.clone().unwrap_or_default(),
        ),
        ("YAKS_GATEWAY__HTTP_ADDR", "127.0.0.1:0".into()),
        ("RUST_LOG", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Brokers the private gateway presents (`gateway.brokers`): enough that a 16-partition
/// topic's partitions are led four per broker, within the five requests an idempotent or
/// transactional client keeps in flight per connection.
const GATEWAY_BROKERS: u16 = 4;

fn members(
    binary: &std::path::Path,
    dir: &std::path::Path,
    common: &[(String, String)],
    postgres: &EmbeddedPostgres,
    tls: &TlsEndpoint,
    tls_files: &crate::dev::tls::GatewayFiles,
) -> anyhow::Result<Vec<Member>> {
    let common = common.to_vec();
    let logs = dir.join("logs");
    let addr = || -> anyhow::Result<String> { Ok(format!("127.0.0.1:{}", free_port()?)) };
    let mut members = Vec::new();

    let listen = addr()?;
    let mut env = common.clone();
    env.push(("YAKS_READER__LISTEN_ADDR".into(), listen.clone()));
    env.push((
        "YAKS_READER__CACHE_DIR".into(),
        dir.join("cache").display().to_string(),
    ));
    env.push((
        "YAKS_READER__CACHE_MEMORY_BYTES".into(),
        "1073741824".into(),
    ));
    env.push(("YAKS_READER__CACHE_DISK_BYTES".into(), "4294967296".into()));
    members.push(Member::new(binary, Role::Reader, 0, listen, env, &logs));

    let listen = addr()?;
    let mut env = common.clone();
    env.push(("YAKS_WRITER__LISTEN_ADDR".into(), listen.clone()));
    env.push((
        "YAKS_POSTGRES__URL".into(),
        postgres
            .url()
            .replacen("//yaks@", &format!("//{WRITER_ROLE}@"), 1),
    ));
    members.push(Member::new(binary, Role::Writer, 0, listen, env, &logs));

    let listen = format!("127.0.0.1:{}", free_ports(GATEWAY_BROKERS)?);
    let mut env = common;
    env.push(("YAKS_GATEWAY__BROKERS".into(), GATEWAY_BROKERS.to_string()));
    let tls_port = tls.brokers.rsplit_once(':').map_or("0", |(_, port)| port);
    env.push((
        "YAKS_GATEWAY__LISTENERS".into(),
        format!(
            "[{{name=\"PLAINTEXT\",listen_addr=\"{listen}\",security_protocol=\"PLAINTEXT\"}},\
             {{name=\"TLS\",listen_addr=\"127.0.0.1:{tls_port}\",advertised_addr=\"{}\",\
             security_protocol=\"SSL\"}}]",
            tls.brokers
        ),
    ));
    env.push((
        "YAKS_GATEWAY__TLS__CERT_FILE".into(),
        tls_files.cert_file.display().to_string(),
    ));
    env.push((
        "YAKS_GATEWAY__TLS__KEY_FILE".into(),
        tls_files.key_file.display().to_string(),
    ));
    members.push(Member::new(binary, Role::Gateway, 0, listen, env, &logs));
    Ok(members)
}

fn url_of(members: &[Member], role: Role) -> anyhow::Result<String> {
    members
        .iter()
        .find(|m| m.role == role)
        .map(|m| format!("http://{}", m.addr))
        .with_context(|| format!("no {role:?}"))
}

async fn scrape(base: &str) -> anyhow::Result<String> {
    let client = yaks_common::rpc::RpcClient::new();
    let response = client
        .get(base, "/metrics")
        .await
        .map_err(|_| anyhow::anyhow!("{base}/metrics unreachable"))?;
    let body = yaks_common::rpc::read_body(response).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Sum of the samples of `name` whose labels contain every one of `labels`.
fn metric(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, l)) => (n, l),
                None => (series, ""),
            };
            (series_name == name && labels.iter().all(|l| series_labels.contains(l)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

/// A process's peak resident set (VmHWM), bytes.
fn peak_rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Rounds of the idempotent and transactional produce pair in each run.
const TXN_ROUNDS: usize = 3;

/// Of `(reference, measured)` pairs, the one whose ratio of `mib_per_s`, measured over
/// reference, is the median.
fn median_pair<T>(mut pairs: Vec<[T; 2]>, mib_per_s: impl Fn(&T) -> f64) -> [T; 2] {
    let ratio = |pair: &[T; 2]| mib_per_s(&pair[1]) / mib_per_s(&pair[0]).max(1e-9);
    pairs.sort_by(|a, b| ratio(a).total_cmp(&ratio(b)));
    let middle = pairs.len() / 2;
    pairs.swap_remove(middle)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return 0.0;
    }
    values[values.len() / 2]
}

/// The table: each figure with its reference, their ratio, the target and verdict.
/// The table of `runs`; `writer` is the private deployment's writer settings, `None` when
/// the client phases ran against an external broker (rows about yaks' insides left out).
fn table(
    runs: &[Run],
    rss: &[(String, u64)],
    writer: Option<&WriterConfig>,
    count: usize,
) -> String {
    let m = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let put = m(&|r| r.s3.put_mib_per_s);
    let put_p99 = m(&|r| r.s3.put_p99_ms);
    let get = m(&|r| r.s3.get_mib_per_s);
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut row = |what: &str, value: String, reference: String, target: String| {
        rows.push([what.to_owned(), value, reference, target]);
    };
    let verdict = |ok: bool| if ok { "yes" } else { "NO" }.to_owned();
    let mut verdicts = Vec::new();
    // What a half-loaded producer's ack p99 may reach: a flush interval of waiting, an
    // upload that may be retried once, and the commit and the network.
    let half_load_verdict =
        |p99: f64, verdicts: &mut Vec<(String, bool)>, what: String| match writer {
            Some(writer) => {
                let bound = writer.flush_interval_ms as f64 + 2.0 * put_p99 + 50.0;
                let ok = p99 <= bound;
                verdicts.push((what, ok));
                (
                    format!(
                        "bound {bound:.0} ms = flush {} + 2 × PUT p99 + 50",
                        writer.flush_interval_ms
                    ),
                    format!("p99 ≤ bound: {}", verdict(ok)),
                )
            }
            None => (String::new(), String::new()),
        };

    if writer.is_some() {
        row(
            "raw S3 PUT (8 MiB objects, 4 at once)",
            format!("{put:.1} MiB/s, p99 {put_p99:.0} ms"),
            String::new(),
            String::new(),
        );
        row(
            "raw S3 ranged GET (4 MiB, 4 at once)",
            format!("{get:.1} MiB/s"),
            String::new(),
            String::new(),
        );
        let commit = [m(&|r| r.commit_ms[0]), m(&|r| r.commit_ms[1])];
        row(
            "raw PostgreSQL one-row commit",
            format!("p50 {:.2} ms, p99 {:.2} ms", commit[0], commit[1]),
            String::new(),
            String::new(),
        );
        let compaction = |f: fn(&compaction::CompactionCost) -> f64| {
            m(&|r: &Run| r.compaction.as_ref().map_or(0.0, f))
        };
        let per_core = compaction(compaction::CompactionCost::mib_per_core_s);
        let ok = per_core >= 50.0;
        verdicts.push(("key compaction per core".into(), ok));
        row(
            &format!(
                "key compaction, {:.0} MiB partition, 10 % live keys",
                compaction(|c| c.input_mib)
            ),
            format!(
                "{per_core:.0} MiB/s per core ({:.1} s, {:.1} CPU-s), peak RSS {:.0} MiB",
                compaction(|c| c.wall_s),
                compaction(|c| c.cpu_s),
                compaction(|c| c.peak_rss_bytes as f64) / (1 << 20) as f64
            ),
            format!(
                "key map {} MiB",
                Config::default().compactor.key_map_bytes >> 20
            ),
            format!("≥ 50 MiB/s per core: {}", verdict(ok)),
        );
    }
    for (slot, partitions) in [(0, 1), (1, 16)] {
        let mib = m(&|r| r.full[slot].mib_per_s);
        let records = m(&|r| r.full[slot].records_per_s);
        let ack = [
            m(&|r| r.full[slot].ack_ms[0]),
            m(&|r| r.full[slot].ack_ms[1]),
            m(&|r| r.full[slot].ack_ms[2]),
        ];
        let (reference, target) = if writer.is_some() {
            let ratio = mib / put.max(1e-9);
            let ok = ratio >= 0.75;
            verdicts.push((format!("produce {partitions}p"), ok));
            (
                format!("{:.0}% of raw PUT", ratio * 100.0),
                format!("≥ 75% of raw PUT: {}", verdict(ok)),
            )
        } else {
            (String::new(), String::new())
        };
        row(
            &format!("produce, {partitions} partition(s), full load"),
            format!(
                "{mib:.1} MiB/s, {records:.0} rec/s, ack p50/p99/p999 {:.0}/{:.0}/{:.0} ms",
                ack[0], ack[1], ack[2]
            ),
            reference,
            target,
        );
        let half = [
            m(&|r| r.half[slot].ack_ms[0]),
            m(&|r| r.half[slot].ack_ms[1]),
            m(&|r| r.half[slot].ack_ms[2]),
        ];
        let (reference, target) = half_load_verdict(
            half[1],
            &mut verdicts,
            format!("half-load p99 {partitions}p"),
        );
        row(
            &format!("produce, {partitions} partition(s), half load"),
            format!(
                "{:.1} MiB/s, ack p50/p99/p999 {:.0}/{:.0}/{:.0} ms",
                m(&|r| r.half[slot].mib_per_s),
                half[0],
                half[1],
                half[2]
            ),
            reference,
            target,
        );
        // Latency-bound clients against the plain producer on the same partitions.
        let (what, share, of): (&str, f64, fn(&Run) -> &ProduceResult) = if partitions == 1 {
            ("produce, idempotent, 1 partition", 0.5, |r| &r.idempotent)
        } else {
            ("produce, Java client defaults, 16 partitions", 0.25, |r| {
                &r.java_like
            })
        };
        let bound_mib = m(&|r| of(r).mib_per_s);
        let ratio = bound_mib / mib.max(1e-9);
        let ok = ratio >= share;
        verdicts.push((what.to_owned(), ok));
        row(
            what,
            format!(
                "{bound_mib:.1} MiB/s, ack p50/p99/p999 {:.0}/{:.0}/{:.0} ms",
                m(&|r| of(r).ack_ms[0]),
                m(&|r| of(r).ack_ms[1]),
                m(&|r| of(r).ack_ms[2])
            ),
            format!("{:.1}% of plain full load", ratio * 100.0),
            format!("≥ {:.0}% of plain: {}", share * 100.0, verdict(ok)),
        );
    }
    let idempotent = m(&|r| r.idempotent_16.mib_per_s);
    let transactional = m(&|r| r.transactional.mib_per_s);
    // Each run's own ratio, of phases run side by side, rather than a ratio of medians
    // taken from different runs.
    let ratio = m(&|r| r.transactional.mib_per_s / r.idempotent_16.mib_per_s.max(1e-9));
    let ok = ratio >= 0.8;
    verdicts.push(("transactional produce".into(), ok));
    row(
        "produce, transactions of 1 MiB, 16 partitions",
        format!(
            "{transactional:.1} MiB/s, ack p50/p99 {:.0}/{:.0} ms",
            m(&|r| r.transactional.ack_ms[0]),
            m(&|r| r.transactional.ack_ms[1])
        ),
        format!(
            "{:.0}% of idempotent ({idempotent:.1} MiB/s)",
            ratio * 100.0
        ),
        format!("≥ 80% of idempotent: {}", verdict(ok)),
    );
    if writer.is_some() {
        let cpu = |slot: usize| {
            let yaks = m(&|r| r.txn_cpu[slot].yaks_ms);
            let postgres = m(&|r| r.txn_cpu[slot].postgres_ms);
            format!("yaks {yaks:.1} ms, PostgreSQL {postgres:.1} ms")
        };
        row(
            "services' CPU per MiB, transactional produce",
            cpu(1),
            format!("idempotent: {}", cpu(0)),
            String::new(),
        );
    }
    let commit = [
        m(&|r| r.transactional.commit_ms[0]),
        m(&|r| r.transactional.commit_ms[1]),
    ];
    let (reference, target) = half_load_verdict(commit[1], &mut verdicts, "commit latency".into());
    row(
        "commit (EndTxn sent → answered)",
        format!("p50 {:.0} ms, p99 {:.0} ms", commit[0], commit[1]),
        reference,
        target,
    );
    let [uncommitted, committed] = [0, 1].map(|slot| m(&|r| r.txn_consume[slot]));
    let ratio = m(&|r| r.txn_consume[1] / r.txn_consume[0].max(1e-9));
    let ok = ratio >= 0.9;
    verdicts.push(("read_committed consume".into(), ok));
    row(
        "consume read_committed, transactional topic (warm)",
        format!("{committed:.1} MiB/s"),
        format!(
            "{:.0}% of read_uncommitted ({uncommitted:.1} MiB/s)",
            ratio * 100.0
        ),
        format!("≥ 90% of read_uncommitted: {}", verdict(ok)),
    );
    let cold = m(&|r| r.consume_cold);
    let warm = m(&|r| r.consume_warm);
    let gets = m(&|r| r.warm_gets);
    let ok = warm >= 3.0 * cold && gets == 0.0;
    if writer.is_some() {
        let ratio = cold / get.max(1e-9);
        let ok = ratio >= 0.6;
        verdicts.push(("cold consume".into(), ok));
        row(
            "consume cold (cache empty)",
            format!("{cold:.1} MiB/s"),
            format!("{:.0}% of raw GET", ratio * 100.0),
            format!("≥ 60% of raw GET: {}", verdict(ok)),
        );
    } else {
        row(
            "consume (first read)",
            format!("{cold:.1} MiB/s"),
            String::new(),
            String::new(),
        );
    }
    if writer.is_some() {
        verdicts.push(("warm consume".into(), ok));
        row(
            "consume warm (same data again)",
            format!("{warm:.1} MiB/s, {gets:.0} S3 GETs"),
            format!("{:.1} × cold", warm / cold.max(1e-9)),
            format!("≥ 3 × cold, 0 GETs: {}", verdict(ok)),
        );
    } else {
        row(
            "consume again (same data)",
            format!("{warm:.1} MiB/s"),
            format!("{:.1} × first read", warm / cold.max(1e-9)),
            String::new(),
        );
    }
    if runs.iter().all(|r| r.tls_produce.is_some()) {
        let plain = m(&|r| r.full[0].mib_per_s);
        let over_tls = m(&|r| r.tls_produce.as_ref().map_or(0.0, |p| p.mib_per_s));
        let ratio = over_tls / plain.max(1e-9);
        let ok = ratio >= 0.8;
        verdicts.push(("produce over TLS".into(), ok));
        row(
            "produce over TLS, 1 partition, full load",
            format!(
                "{over_tls:.1} MiB/s, ack p50/p99 {:.0}/{:.0} ms",
                m(&|r| r.tls_produce.as_ref().map_or(0.0, |p| p.ack_ms[0])),
                m(&|r| r.tls_produce.as_ref().map_or(0.0, |p| p.ack_ms[1]))
            ),
            format!("{:.0}% of plaintext", ratio * 100.0),
            format!("≥ 80% of plaintext: {}", verdict(ok)),
        );
        let over_tls = m(&|r| r.tls_consume_warm.unwrap_or(0.0));
        let ratio = over_tls / warm.max(1e-9);
        let ok = ratio >= 0.8;
        verdicts.push(("consume over TLS".into(), ok));
        row(
            "consume warm over TLS",
            format!("{over_tls:.1} MiB/s"),
            format!("{:.0}% of plaintext", ratio * 100.0),
            format!("≥ 80% of plaintext: {}", verdict(ok)),
        );
    }
    let produced = m(&|r| r.small_produce.records_per_s);
    let consumed = m(&|r| r.small_consume.records_per_s);
    let ok = consumed >= produced;
    verdicts.push(("small-record consume".into(), ok));
    row(
        "100-byte records, 16 partitions: produce, then consume",
        format!(
            "produce {produced:.0} rec/s ({:.1} MiB/s), consume {consumed:.0} rec/s ({:.1} MiB/s)",
            m(&|r| r.small_produce.mib_per_s),
            m(&|r| r.small_consume.mib_per_s)
        ),
        format!("{:.2} × produce", consumed / produced.max(1e-9)),
        format!("consume ≥ produce: {}", verdict(ok)),
    );
    row(
        "end-to-end latency (1 record / 20 ms)",
        format!(
            "p50 {:.0} ms, p99 {:.0} ms",
            m(&|r| r.e2e_ms[0]),
            m(&|r| r.e2e_ms[1])
        ),
        String::new(),
        String::new(),
    );
    if let Some(writer) = writer {
        let costs: [(&str, CostOf); 2] = [
            ("per flush, 1 partition", |r| r.flush_one),
            ("per flush, 1,000-partition topic", |r| r.flush_many),
        ];
        for (what, cost) in costs {
            row(
                what,
                format!(
                    "{:.0} partitions, {:.2} S3 requests, {:.1} SQL statements, {:.1} rows",
                    m(&|r| cost(r).partitions),
                    m(&|r| cost(r).s3_requests),
                    m(&|r| cost(r).statements),
                    m(&|r| cost(r).rows)
                ),
                String::new(),
                String::new(),
            );
        }
        // What each load costs in S3 requests: the latency-bound ones pay for their early
        // flushes, bounded by `writer.min_flush_interval_ms`; the plain one must not.
        let costs: [(&str, CostOf); 4] = [
            ("plain, 1 partition", |r| r.flush_one),
            ("idempotent, 1 partition", |r| r.flush_idempotent),
            ("Java client defaults, 16 partitions", |r| r.flush_java_like),
            ("1,000 partitions × many producers", |r| r.flush_many),
        ];
        // A throughput-bound load makes objects of about `flush_bytes`: one PUT per object.
        let full_objects_per_gib = (1u64 << 30) as f64 / writer.flush_bytes as f64;
        for (index, (what, cost)) in costs.into_iter().enumerate() {
            let per_gib = m(&|r| cost(r).requests_per_gib);
            let (reference, target) = if index == 0 {
                let bound = 1.1 * full_objects_per_gib;
                let ok = per_gib <= bound;
                verdicts.push(("plain producer's S3 requests".into(), ok));
                (
                    format!("{full_objects_per_gib:.0} objects of flush_bytes per GiB"),
                    format!("≤ {bound:.0}: {}", verdict(ok)),
                )
            } else {
                (String::new(), String::new())
            };
            row(
                &format!("S3 requests per GiB, {what}"),
                format!(
                    "{per_gib:.0}, {:.1} MiB per object; flushes: {:.0} full, {:.0} idle; \
                     upload {:.0} ms, commit {:.0} ms",
                    m(&|r| cost(r).bytes / cost(r).flushes / (1 << 20) as f64),
                    m(&|r| cost(r).full),
                    m(&|r| cost(r).idle),
                    m(&|r| cost(r).upload_s * 1e3),
                    m(&|r| cost(r).commit_s * 1e3)
                ),
                reference,
                target,
            );
        }
        let one = m(&|r| r.flush_one.statements);
        let many_statements = m(&|r| r.flush_many.statements);
        let ok = (many_statements - one).abs() <= 0.5;
        verdicts.push(("statements per flush".into(), ok));
        row(
            "SQL statements per flush, 1,000 vs 1 partition",
            format!("{many_statements:.1} vs {one:.1}"),
            String::new(),
            format!("same: {}", verdict(ok)),
        );
    }
    let many = m(&|r| r.many.mib_per_s);
    let single = m(&|r| r.full[0].mib_per_s);
    let ok = many >= 0.8 * single;
    verdicts.push(("1,000 partitions".into(), ok));
    row(
        "1,000 partitions × many producers",
        format!(
            "{many:.1} MiB/s, ack p99 {:.0} ms",
            m(&|r| r.many.ack_ms[1])
        ),
        format!("{:.0}% of 1 partition", many / single.max(1e-9) * 100.0),
        format!("≥ 80%: {}", verdict(ok)),
    );
    let half = [
        m(&|r| r.many_half.ack_ms[0]),
        m(&|r| r.many_half.ack_ms[1]),
        m(&|r| r.many_half.ack_ms[2]),
    ];
    let (reference, target) =
        half_load_verdict(half[1], &mut verdicts, "half-load p99 1,000p".into());
    row(
        "1,000 partitions × many producers, half load",
        format!(
            "{:.1} MiB/s, ack p50/p99/p999 {:.0}/{:.0}/{:.0} ms",
            m(&|r| r.many_half.mib_per_s),
            half[0],
            half[1],
            half[2]
        ),
        reference,
        target,
    );
    for (name, bytes) in rss {
        let mib = *bytes as f64 / (1 << 20) as f64;
        let target = if let Some(writer) = writer
            && name.starts_with("writer")
        {
            let bound = writer.max_buffered_bytes as f64 / (1 << 20) as f64 + 256.0;
            let ok = mib <= bound;
            verdicts.push(("writer memory".into(), ok));
            format!(
                "≤ max_buffered_bytes + 256 MiB ({bound:.0} MiB): {}",
                verdict(ok)
            )
        } else {
            String::new()
        };
        row(
            &format!("peak RSS, {name}"),
            format!("{mib:.0} MiB"),
            String::new(),
            target,
        );
    }
    let widths: [usize; 4] = std::array::from_fn(|c| {
        rows.iter()
            .map(|r| r[c].chars().count())
            .max()
            .unwrap_or(0)
            .max(10)
    });
    let mut out = format!(
        "yaks bench: medians of {count} run(s); targets met: {} of {}\n",
        verdicts.iter().filter(|(_, ok)| *ok).count(),
        verdicts.len()
    );
    let header = ["what", "figure", "reference", "target"].map(str::to_owned);
    let rule = widths.map(|w| "-".repeat(w));
    for cells in std::iter::once(&header).chain([&rule]).chain(&rows) {
        out.push('|');
        for (cell, width) in cells.iter().zip(widths) {
            out.push_str(&format!(" {cell:width$} |"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(reference: f64, measured: f64) -> [ProduceResult; 2] {
        [reference, measured].map(|mib_per_s| ProduceResult {
            mib_per_s,
            ..ProduceResult::default()
        })
    }

    #[test]
    fn the_median_pair_is_chosen_by_its_ratio_not_by_either_figure() {
        // Ratios 0.5, 1.5 (a slow reference phase) and 0.6: the median is 0.6, the pair
        // of neither the fastest nor the slowest phases.
        let chosen = median_pair(
            vec![pair(100.0, 50.0), pair(30.0, 45.0), pair(90.0, 54.0)],
            |r| r.mib_per_s,
        );
        assert_eq!(chosen.map(|r| r.mib_per_s), [90.0, 54.0]);
    }
}
