//! `yaks chaos`: the oracle against a split deployment while it is being broken.
//!
//! A run starts its own PostgreSQL, an S3 endpoint behind a fault proxy ([`s3proxy`]), and
//! two gateways, two writers and two readers as separate `yaks` processes ([`cluster`]).
//! While `yaks oracle` produces and reads back through both gateways, a fault driver:
//! - kills a role process with `kill -9` every `--kill-every` seconds, cycling writer,
//!   gateway, reader and the two instances of each, and restarts it on the same address;
//! - fails a share of S3 requests (503 SlowDown, 500 before, 500 after the write) and
//!   delays every one;
//! - stops PostgreSQL once (fast shutdown: sessions cut, open transactions rolled back)
//!   and starts it again after `--postgres-down` seconds;
//! - freezes one writer with SIGSTOP for `--writer-freeze` seconds, longer than the
//!   gateways' writer timeout and PostgreSQL's idle-in-transaction timeout, then thaws it.
//!
//! The run's verdict is the oracle's: every invariant must hold. The report adds what was
//! injected and when, so a failure can be matched to the faults around it; each process's
//! log is kept under the run's directory, the clients' beside them. Where an invariant
//! broke, the report shows the offending producer's batches around the first violations
//! and what its client decided meanwhile ([`context`]). [`run_series`] repeats runs with
//! varying seeds and [`summary`] says which invariants broke in how many of them.

pub mod cluster;
pub mod context;
pub mod s3proxy;

use std::path::PathBuf;
use std::time::Duration;
use yaks_common::clock::Instant;

use anyhow::Context;
use tracing::{info, warn};
use yaks_common::config::PostgresConfig;
use yaks_common::metastore::PgMetastore;
use yaks_common::objstore::S3ObjectStore;
use yaks_common::shutdown::Shutdown;

use crate::dev::postgres::{EmbeddedPostgres, free_port};
use crate::dev::s3::{ACCESS_KEY, DevS3, SECRET_KEY};
use crate::oracle::{self, OracleOptions, Workload, seconds};
use cluster::{Member, Role};
use s3proxy::{FaultyS3, S3FaultCounts, S3Faults};

/// Flags of `yaks chaos`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosOptions {
    /// Each run gets a fresh subdirectory here: PostgreSQL, S3 files, process logs, ledger.
    #[arg(long, default_value = ".yaks-chaos")]
    pub data_dir: PathBuf,
    /// The `yaks` binary the role processes run; default: this executable.
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// What the oracle produces.
    #[command(flatten)]
    pub workload: Workload,
    /// What is broken while it does.
    #[command(flatten)]
    pub faults: FaultPlan,
    /// Runs, one after another, each on a fresh deployment; run n (from 0) draws its S3
    /// faults from `--seed` + n, unless `--same-seed`.
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// Every run draws from `--seed` itself.
    #[arg(long)]
    pub same_seed: bool,
}

/// The faults of a run.
#[derive(Debug, Clone, clap::Args)]
pub struct FaultPlan {
    /// Seconds between two `kill -9`s of a role process (0: no kills).
    #[arg(long, default_value = "4", value_parser = seconds)]
    pub kill_every: Duration,
    /// Percent of S3 requests that fail (split 50/30/20 between 503 SlowDown, 500, and 500
    /// after the request took effect).
    #[arg(long, default_value_t = 10.0)]
    pub s3_error_percent: f64,
    /// Every S3 request is delayed by up to this many milliseconds.
    #[arg(long, default_value_t = 50)]
    pub s3_max_latency_ms: u64,
    /// Seconds PostgreSQL stays down in its one restart (0: no restart).
    #[arg(long, default_value = "2", value_parser = seconds)]
    pub postgres_down: Duration,
    /// Seconds one writer stays frozen by SIGSTOP (0: no freeze).
    #[arg(long, default_value = "15", value_parser = seconds)]
    pub writer_freeze: Duration,
    /// Seed of the S3 fault draws.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl Default for FaultPlan {
    /// The flags' defaults.
    fn default() -> Self {
        oracle::flag_defaults()
    }
}

/// The run's bucket.
const BUCKET: &str = "yaks-chaos";

/// Gateways give up on a writer after this long (`gateway.writer_timeout_ms`); the freeze
/// should outlast it.
const WRITER_TIMEOUT_MS: u64 = 10_000;
/// PostgreSQL ends a transaction left idle this long (`postgres.idle_in_transaction_timeout_ms`).
const IDLE_IN_TRANSACTION_MS: u64 = 3_000;

/// One kind of fault and how often it was injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultCount {
    /// What was done.
    pub fault: String,
    /// How many times.
    pub times: u64,
    /// Duration or share, for the table.
    pub detail: String,
}

/// The outcome of a chaos run.
#[derive(Debug)]
pub struct ChaosReport {
    /// Where the run's data and logs are.
    pub dir: PathBuf,
    /// Seed of its S3 fault draws.
    pub seed: u64,
    /// The oracle's verdict.
    pub oracle: oracle::Report,
    /// What was injected.
    pub faults: Vec<FaultCount>,
    /// The S3 proxy's counters.
    pub s3: S3FaultCounts,
    /// Faults as they happened, with the time since the start.
    pub timeline: Vec<String>,
    /// Problems of the harness itself (a process that would not come back); a run with
    /// any did not test what it meant to.
    pub harness_errors: Vec<String>,
    /// For each place a violation was found: the producer's batches around it and what
    /// its client decided meanwhile, as Markdown.
    pub explained: Vec<String>,
}

impl ChaosReport {
    /// True when every invariant held and every fault was injected as planned.
    pub fn holds(&self) -> bool {
        self.oracle.holds() && self.harness_errors.is_empty()
    }

    /// Times a fault was injected, by the start of its name (`"writer killed"`).
    pub fn times(&self, fault: &str) -> u64 {
        self.faults
            .iter()
            .filter(|f| f.fault.starts_with(fault))
            .map(|f| f.times)
            .sum()
    }

    /// Faults, then the oracle's table, as Markdown.
    pub fn table(&self) -> String {
        let mut out = String::from("| fault | times | detail |\n|---|---|---|\n");
        for fault in &self.faults {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                fault.fault, fault.times, fault.detail
            ));
        }
        out.push('\n');
        out.push_str(&self.oracle.table());
        for error in &self.harness_errors {
            out.push_str(&format!("\nharness error: {error}"));
        }
        if !self.explained.is_empty() {
            out.push_str("\n### Around the violations\n\n");
            out.push_str(&self.explained.join("\n"));
        }
        out.push_str(&format!(
            "\nprocess logs: {}\n",
            self.dir.join("logs").display()
        ));
        out
    }
}

/// Runs `options.runs` chaos runs one after another, handing each report to `each` as it
/// ends (so a long series shows its progress); returns them all.
pub async fn run_series(
    options: ChaosOptions,
    mut each: impl FnMut(&ChaosReport),
) -> anyhow::Result<Vec<ChaosReport>> {
    let mut reports = Vec::new();
    for n in 0..options.runs.max(1) {
        let mut one = options.clone();
        if !options.same_seed {
            one.faults.seed = options.faults.seed.wrapping_add(u64::from(n));
        }
        let report = run(one).await?;
        each(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// A series at a glance: one row per run, then how many runs broke each invariant.
pub fn summary(reports: &[ChaosReport]) -> String {
    let mut out = String::from(
        "| run | seed | acknowledged | failed deliveries | read back | broken invariants |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut broken: std::collections::BTreeMap<&str, (usize, u64)> = Default::default();
    for (n, report) in reports.iter().enumerate() {
        let mut names = Vec::new();
        for finding in report.oracle.findings.iter().filter(|f| f.violations > 0) {
            let entry = broken.entry(finding.invariant).or_default();
            entry.0 += 1;
            entry.1 += finding.violations;
            names.push(format!("{} ({})", finding.invariant, finding.violations));
        }
        if !report.harness_errors.is_empty() {
            names.push(format!("harness: {}", report.harness_errors.join("; ")));
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            n + 1,
            report.seed,
            report.oracle.acknowledged,
            report.oracle.failed,
            report.oracle.consumed,
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
    }
    out.push('\n');
    if broken.is_empty() {
        out.push_str(&format!(
            "every invariant held in all {} runs\n",
            reports.len()
        ));
    }
    for (invariant, (runs, violations)) in broken {
        out.push_str(&format!(
            "{invariant}: broken in {runs} of {} runs ({violations} violations in all)\n",
            reports.len()
        ));
    }
    out
}

/// Runs the oracle against a split deployment under faults.
pub async fn run(options: ChaosOptions) -> anyhow::Result<ChaosReport> {
    let binary = match options.binary.clone() {
        Some(binary) => binary,
        None => std::env::current_exe().context("finding the yaks binary")?,
    };
    let run_id = format!("{:x}", yaks_common::clock::system_clock().now_ms());
    let dir = std::path::absolute(options.data_dir.join(format!("run-{run_id}")))
        .context("data directory")?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    info!(dir = %dir.display(), "chaos run starting");

    let postgres_dir = dir.join("postgres");
    let postgres = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&postgres_dir))
        .await
        .context("postgres start task")??;
    let s3 = DevS3::start(&dir.join("s3"), 0).await?;
    let plan = &options.faults;
    let proxy = FaultyS3::start(
        &s3.endpoint(),
        S3Faults::with_error_percent(
            plan.s3_error_percent,
            Duration::from_millis(plan.s3_max_latency_ms),
        ),
        plan.seed,
    )
    .await?;

    let members = members(&binary, &dir, &postgres.url(), &proxy.endpoint())?;
    let gateways: Vec<String> = members
        .iter()
        .filter(|m| m.role == Role::Gateway)
        .map(|m| m.addr.clone())
        .collect();
    let mut driver = Driver {
        members,
        postgres: Some(postgres),
        plan: plan.clone(),
        started: yaks_common::clock::now(),
        timeline: Vec::new(),
        errors: Vec::new(),
        kills: Default::default(),
        restart_worst: Default::default(),
        postgres_restarts: 0,
        freezes: 0,
    };
    // Readers and writers first, so the gateways find them at once.
    for member in &mut driver.members {
        member.start().await?;
    }
    driver.started = yaks_common::clock::now();

    let (trigger, shutdown) = Shutdown::new();
    let span = options.workload.pace.max(Duration::from_secs(10));
    let driving = tokio::spawn(driver.drive(span, shutdown));
    let mut workload = options.workload.clone();
    if workload.client_debug.is_empty() {
        // What the clients decided (retries, epoch bumps) explains most violations.
        workload.client_debug = "eos".into();
    }
    let oracle = oracle::run(OracleOptions {
        brokers: gateways.join(","),
        data_dir: dir.join("oracle"),
        workload,
    })
    .await;
    trigger.trigger();
    let mut driver = driving.await.context("fault driver")?;
    for member in &mut driver.members {
        member.stop(Duration::from_secs(15)).await;
    }
    let explained = match (&oracle, &driver.postgres) {
        (Ok(report), Some(postgres)) if !report.holds() => {
            explain(report, &postgres.url(), &s3, &dir).await
        }
        _ => Vec::new(),
    };
    let s3_counts = proxy.counts();
    proxy.stop().await;
    s3.stop().await;
    if let Some(mut postgres) = driver.postgres.take() {
        let _ = tokio::task::spawn_blocking(move || postgres.stop()).await;
    }
    let oracle = oracle?;

    let faults = driver.counts(&s3_counts);
    Ok(ChaosReport {
        dir,
        seed: plan.seed,
        oracle,
        faults,
        s3: s3_counts,
        timeline: driver.timeline,
        harness_errors: driver.errors,
        explained,
    })
}

/// The batches around each place the oracle found a violation, with what the client
/// decided meanwhile (see [`context`]), as Markdown sections.
async fn explain(
    report: &oracle::Report,
    postgres_url: &str,
    s3: &DevS3,
    dir: &std::path::Path,
) -> Vec<String> {
    let s3_config = s3.s3_config(BUCKET);
    let metastore = PgMetastore::connect(&PostgresConfig {
        url: Some(postgres_url.to_owned()),
        ..PostgresConfig::default()
    });
    let objects = S3ObjectStore::connect(&s3_config).await;
    let (metastore, objects) = match (metastore, objects) {
        (Ok(metastore), Ok(objects)) => (metastore, objects),
        (Err(e), _) | (_, Err(e)) => {
            return vec![format!("no context: the run's stores did not open: {e}")];
        }
    };
    let commits = context::commits_in_logs(&dir.join("logs"));
    let mut sections = Vec::new();
    for finding in &report.findings {
        for place in &finding.places {
            let mut section = format!(
                "#### {} — {}/{} offset {}: producer {} sequence {}{}

",
                finding.invariant,
                place.topic,
                place.partition,
                place.offset,
                place.id.producer,
                place.id.sequence,
                place
                    .earlier
                    .map_or_else(String::new, |o| format!(" (earlier: offset {o})")),
            );
            let batches = match context::batches_around(
                &metastore,
                &objects,
                &s3_config.key_prefix,
                &commits,
                place,
            )
            .await
            {
                Ok(batches) => batches,
                Err(e) => {
                    section.push_str(&format!(
                        "batches not read: {e:#}
"
                    ));
                    sections.push(section);
                    continue;
                }
            };
            section.push_str(&context::table(&batches));
            // What the client decided from a little before the first of these batches
            // was sealed to a little after the last one was.
            let times: Vec<&str> = batches.iter().map(|b| b.object_time.as_str()).collect();
            if let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) {
                let decisions = context::client_decisions(
                    &dir.join("oracle").join("clients.log"),
                    place.id.producer,
                    &shift(first, -15_000),
                    &shift(last, 2_000),
                );
                if !decisions.is_empty() {
                    section.push_str(&format!(
                        "
client {} meanwhile:
```
{}
```
",
                        place.id.producer,
                        decisions.join("\n")
                    ));
                }
            }
            sections.push(section);
        }
    }
    sections
}

/// A time of day (`HH:MM:SS.mmm`) moved by `ms`.
fn shift(time: &str, ms: i64) -> String {
    let parts: Vec<i64> = time
        .split([':', '.'])
        .filter_map(|p| p.parse().ok())
        .collect();
    let [h, m, s, milli] = parts[..] else {
        return time.to_owned();
    };
    oracle::observed::time_of_day(((h * 60 + m) * 60 + s) * 1_000 + milli + ms)
}

/// Two readers, two writers, two gateways on free loopback ports, all sharing PostgreSQL
/// and the S3 proxy, with timeouts short enough for faults to resolve within a run.
fn members(
    binary: &std::path::Path,
    dir: &std::path::Path,
    postgres_url: &str,
    s3_endpoint: &str,
) -> anyhow::Result<Vec<Member>> {
    let common: Vec<(String, String)> = [
        ("YAKS_POSTGRES__URL", postgres_url.to_owned()),
        ("YAKS_POSTGRES__POOL_SIZE", "8".into()),
        (
            "YAKS_POSTGRES__IDLE_IN_TRANSACTION_TIMEOUT_MS",
            IDLE_IN_TRANSACTION_MS.to_string(),
        ),
        ("YAKS_S3__ENDPOINT", s3_endpoint.to_owned()),
        ("YAKS_S3__BUCKET", BUCKET.into()),
        ("YAKS_S3__FORCE_PATH_STYLE", "true".into()),
        ("YAKS_S3__CREATE_BUCKET", "true".into()),
        ("YAKS_S3__ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("YAKS_S3__SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ("YAKS_S3__ATTEMPT_TIMEOUT_MS", "2000".into()),
        ("YAKS_S3__OPERATION_TIMEOUT_MS", "8000".into()),
        (
            "YAKS_GATEWAY__WRITER_TIMEOUT_MS",
            WRITER_TIMEOUT_MS.to_string(),
        ),
        ("YAKS_WRITER__FLUSH_INTERVAL_MS", "100".into()),
        ("YAKS_REGISTRY__HEARTBEAT_MS", "500".into()),
        ("YAKS_REGISTRY__LEASE_MS", "3000".into()),
        // Gateways restart on the same Kafka port; their metrics port is any free one.
        ("YAKS_GATEWAY__HTTP_ADDR", "127.0.0.1:0".into()),
        // Which writer stored which object, for the context of a violation.
        ("RUST_LOG", "info,yaks_writer::committer=debug".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let logs = dir.join("logs");
    let addr = || -> anyhow::Result<String> { Ok(format!("127.0.0.1:{}", free_port()?)) };
    let mut members = Vec::new();
    for index in 0..2 {
        let listen = addr()?;
        let mut env = common.clone();
        env.push(("YAKS_READER__LISTEN_ADDR".into(), listen.clone()));
        env.push((
            "YAKS_READER__CACHE_DIR".into(),
            dir.join(format!("cache/reader-{index}"))
                .display()
                .to_string(),
        ));
        env.push(("YAKS_READER__CACHE_MEMORY_BYTES".into(), "67108864".into()));
        env.push(("YAKS_READER__CACHE_DISK_BYTES".into(), "67108864".into()));
        members.push(Member::new(binary, Role::Reader, index, listen, env, &logs));
    }
    let mut writer_urls = Vec::new();
    for index in 0..2 {
        let listen = addr()?;
        writer_urls.push(format!("\"http://{listen}\""));
        let mut env = common.clone();
        env.push(("YAKS_WRITER__LISTEN_ADDR".into(), listen.clone()));
        members.push(Member::new(binary, Role::Writer, index, listen, env, &logs));
    }
    for index in 0..2 {
        let listen = addr()?;
        let mut env = common.clone();
        env.push(("YAKS_GATEWAY__LISTEN_ADDR".into(), listen.clone()));
        // Each gateway lists the writers in its own order, so both carry traffic.
        writer_urls.rotate_left(index);
        env.push((
            "YAKS_GATEWAY__WRITER_URLS".into(),
            format!("[{}]", writer_urls.join(",")),
        ));
        members.push(Member::new(
            binary,
            Role::Gateway,
            index,
            listen,
            env,
            &logs,
        ));
    }
    Ok(members)
}

/// The fault driver: owns the processes and PostgreSQL while the oracle runs.
struct Driver {
    members: Vec<Member>,
    postgres: Option<EmbeddedPostgres>,
    plan: FaultPlan,
    started: Instant,
    timeline: Vec<String>,
    errors: Vec<String>,
    kills: std::collections::BTreeMap<Role, u64>,
    restart_worst: std::collections::BTreeMap<Role, Duration>,
    postgres_restarts: u64,
    freezes: u64,
}

/// The order kills go round the roles.
const KILL_ORDER: [Role; 3] = [Role::Writer, Role::Gateway, Role::Reader];

impl Driver {
    /// Injects faults until `shutdown`: kills on their interval, and the one PostgreSQL
    /// restart and one writer freeze at 30 % and 50 % of `span` (the producing time).
    async fn drive(mut self, span: Duration, mut shutdown: Shutdown) -> Driver {
        let start = self.started;
        let plan = self.plan.clone();
        let mut postgres_at = (!plan.postgres_down.is_zero()).then(|| start + span.mul_f64(0.3));
        let mut freeze_at = (!plan.writer_freeze.is_zero()).then(|| start + span.mul_f64(0.5));
        let mut thaw_at: Option<(usize, Instant)> = None;
        let mut next_kill = (!plan.kill_every.is_zero()).then(|| start + plan.kill_every);
        let mut turn = 0usize;
        loop {
            let next = [postgres_at, freeze_at, thaw_at.map(|(_, at)| at), next_kill]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else {
                shutdown.wait().await;
                break;
            };
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = yaks_common::clock::sleep_until(next) => {}
            }
            let now = yaks_common::clock::now();
            if let Some((index, at)) = thaw_at
                && now >= at
            {
                thaw_at = None;
                self.thaw(index).await;
            }
            if postgres_at.is_some_and(|at| now >= at) {
                postgres_at = None;
                self.restart_postgres().await;
            }
            if freeze_at.is_some_and(|at| now >= at) {
                freeze_at = None;
                if let Some(index) = self.freeze_a_writer().await {
                    thaw_at = Some((index, yaks_common::clock::now() + plan.writer_freeze));
                }
            }
            if next_kill.is_some_and(|at| now >= at) {
                self.kill_next(turn).await;
                turn += 1;
                next_kill = Some(yaks_common::clock::now() + plan.kill_every);
            }
        }
        if let Some((index, _)) = thaw_at {
            self.thaw(index).await;
        }
        self
    }

    fn note(&mut self, event: String) {
        info!("chaos: {event}");
        self.timeline.push(format!(
            "{:>7.1} s  {event}",
            self.started.elapsed().as_secs_f64()
        ));
    }

    fn fail(&mut self, error: String) {
        warn!("chaos: {error}");
        self.errors.push(error);
    }

    /// `kill -9` of the `turn`-th member in kill order, then a restart on its address.
    async fn kill_next(&mut self, turn: usize) {
        let role = KILL_ORDER[turn % KILL_ORDER.len()];
        let instance = (turn / KILL_ORDER.len()) % 2;
        // A frozen writer stays frozen until its thaw; kill the other one.
        let candidates: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].role == role && !self.members[i].is_frozen())
            .collect();
        let Some(&index) = candidates.get(instance % candidates.len().max(1)) else {
            return;
        };
        let name = self.members[index].name.clone();
        self.members[index].kill().await;
        let killed = yaks_common::clock::now();
        self.note(format!("kill -9 {name}"));
        *self.kills.entry(role).or_default() += 1;
        // An orchestrator restarts a crashed task after a moment, not at once.
        yaks_common::clock::sleep(Duration::from_millis(300)).await;
        match self.members[index].start().await {
            Ok(()) => {
                let took = killed.elapsed();
                let worst = self.restart_worst.entry(role).or_default();
                *worst = (*worst).max(took);
                self.note(format!(
                    "{name} listening again after {} ms",
                    took.as_millis()
                ));
            }
            Err(e) => self.fail(format!("{name} did not come back: {e:#}")),
        }
    }

    /// Fast shutdown of PostgreSQL, `postgres_down` of nothing, then a start on the same
    /// port and data.
    async fn restart_postgres(&mut self) {
        let Some(mut postgres) = self.postgres.take() else {
            return;
        };
        let stopped = tokio::task::spawn_blocking(move || {
            let result = postgres.stop();
            (postgres, result)
        })
        .await;
        let Ok((mut postgres, result)) = stopped else {
            self.fail("postgres stop task panicked".into());
            return;
        };
        if let Err(e) = result {
            self.postgres = Some(postgres);
            self.fail(format!("stopping postgres: {e:#}"));
            return;
        }
        self.note("postgresql stopped (fast shutdown)".into());
        yaks_common::clock::sleep(self.plan.postgres_down).await;
        let started = tokio::task::spawn_blocking(move || {
            let result = postgres.start_again();
            (postgres, result)
        })
        .await;
        let Ok((postgres, result)) = started else {
            self.fail("postgres start task panicked".into());
            return;
        };
        self.postgres = Some(postgres);
        match result {
            Ok(()) => {
                self.postgres_restarts += 1;
                self.note("postgresql started again".into());
            }
            Err(e) => self.fail(format!("starting postgres again: {e:#}")),
        }
    }

    async fn freeze_a_writer(&mut self) -> Option<usize> {
        let index = self.members.iter().position(|m| m.role == Role::Writer)?;
        let name = self.members[index].name.clone();
        match self.members[index].freeze().await {
            Ok(()) => {
                self.freezes += 1;
                self.note(format!("SIGSTOP {name}"));
                Some(index)
            }
            Err(e) => {
                self.fail(format!("freezing {name}: {e:#}"));
                None
            }
        }
    }

    async fn thaw(&mut self, index: usize) {
        let name = self.members[index].name.clone();
        match self.members[index].thaw().await {
            Ok(()) => self.note(format!("SIGCONT {name}")),
            Err(e) => self.fail(format!("thawing {name}: {e:#}")),
        }
    }

    fn counts(&self, s3: &S3FaultCounts) -> Vec<FaultCount> {
        let mut faults = Vec::new();
        for role in KILL_ORDER {
            let worst = self.restart_worst.get(&role).copied().unwrap_or_default();
            faults.push(FaultCount {
                fault: format!("{} killed (kill -9), restarted", role.command()),
                times: self.kills.get(&role).copied().unwrap_or(0),
                detail: format!("listening again within {} ms", worst.as_millis()),
            });
        }
        faults.push(FaultCount {
            fault: "postgresql stopped (fast) and started".into(),
            times: self.postgres_restarts,
            detail: format!("down {} s", self.plan.postgres_down.as_secs()),
        });
        faults.push(FaultCount {
            fault: "writer frozen (SIGSTOP), then SIGCONT".into(),
            times: self.freezes,
            detail: format!(
                "{} s; gateway writer timeout {} s, idle-in-transaction timeout {} s",
                self.plan.writer_freeze.as_secs(),
                WRITER_TIMEOUT_MS / 1000,
                IDLE_IN_TRANSACTION_MS / 1000
            ),
        });
        let share = |n: u64| {
            format!(
                "{:.1} % of {} requests",
                100.0 * n as f64 / s3.requests.max(1) as f64,
                s3.requests
            )
        };
        faults.push(FaultCount {
            fault: "s3 503 SlowDown".into(),
            times: s3.throttled,
            detail: share(s3.throttled),
        });
        faults.push(FaultCount {
            fault: "s3 500 before the request".into(),
            times: s3.refused,
            detail: share(s3.refused),
        });
        faults.push(FaultCount {
            fault: "s3 500 after the request took effect".into(),
            times: s3.answers_lost,
            detail: share(s3.answers_lost),
        });
        faults.push(FaultCount {
            fault: "s3 latency".into(),
            times: s3.requests,
            detail: format!("uniform 0–{} ms", self.plan.s3_max_latency_ms),
        });
        faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seed: u64, reordered: u64) -> ChaosReport {
        let finding = |invariant, violations| oracle::check::Finding {
            invariant,
            checked: 10,
            violations,
            example: None,
            places: Vec::new(),
        };
        ChaosReport {
            dir: PathBuf::from("run"),
            seed,
            oracle: oracle::Report {
                run: "r".into(),
                acknowledged: 10,
                failed: 0,
                consumed: 10 + reordered,
                produce_time: Duration::from_secs(1),
                latency: Default::default(),
                retries: 0,
                client_errors: Vec::new(),
                transactions: [0; 3],
                findings: vec![finding("1 completeness", 0), finding("5 order", reordered)],
            },
            faults: Vec::new(),
            s3: Default::default(),
            timeline: Vec::new(),
            harness_errors: Vec::new(),
            explained: Vec::new(),
        }
    }

    #[test]
    fn a_summary_counts_the_runs_that_broke_each_invariant() {
        let text = summary(&[report(1, 0), report(2, 3), report(3, 1)]);
        assert!(
            text.contains("| 2 | 2 | 10 | 0 | 13 | 5 order (3) |"),
            "{text}"
        );
        assert!(text.contains("| 1 | 1 | 10 | 0 | 10 | none |"), "{text}");
        assert!(
            text.contains("5 order: broken in 2 of 3 runs (4 violations in all)"),
            "{text}"
        );
        assert!(!text.contains("completeness:"), "{text}");
        assert!(summary(&[report(1, 0)]).contains("every invariant held in all 1 runs"));
    }

    #[test]
    fn times_of_day_shift_across_the_second_and_the_minute() {
        assert_eq!(shift("18:24:09.615", 500), "18:24:10.115");
        assert_eq!(shift("18:24:09.615", -15_000), "18:23:54.615");
        assert_eq!(shift("not a time", 1), "not a time");
    }

    #[test]
    fn defaults_are_the_flags_defaults() {
        let plan = FaultPlan::default();
        assert_eq!(plan.kill_every, Duration::from_secs(4));
        assert_eq!(plan.writer_freeze, Duration::from_secs(15));
        assert_eq!(plan.s3_error_percent, 10.0);
        let workload = Workload::default();
        assert_eq!((workload.producers, workload.records), (8, 2_000));
        assert_eq!(workload.pace, Duration::ZERO);
    }
}
