//! `yaks`: one binary that starts any subset of roles.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing::{error, info};
use yaks::acls::{self, AclCommand};
use yaks::admin::{self, Connection, ConsumeArgs, GroupCommand, ProduceArgs, TopicCommand};
use yaks::bench::BenchOptions;
use yaks::chaos::ChaosOptions;
use yaks::devmode::{self, DevOptions};
use yaks::oracle::OracleOptions;
use yaks::roles;
use yaks::txns::{self, TxnCommand};
use yaks::users::{self, UserCommand};
use yaks_common::config::Config;
use yaks_common::ops::{OpsServer, Readiness};
use yaks_common::shutdown::Shutdown;

/// Kafka-compatible streaming on S3 and PostgreSQL.
#[derive(Parser, Debug)]
#[command(name = "yaks", version)]
struct Cli {
    /// Settings file (TOML), given before the command (`yaks --config yaks.toml writer`);
    /// `YAKS_*` environment variables override it. (After `topic`, `--config` sets a
    /// topic config, as in Kafka's tools.)
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the Kafka front door.
    Gateway,
    /// Run a writer (produce buffering, S3 upload, offset commit).
    Writer,
    /// Run a reader (fetch from S3 through the object cache, long-poll).
    Reader,
    /// Apply database migrations and exit.
    Migrate,
    /// Merge small objects, enforce retention, collect garbage: every
    /// `compactor.interval_ms`, or once (for a Kubernetes CronJob or an ECS scheduled task).
    Compactor {
        /// One pass (plan, work the queue, retention, garbage), then exit.
        #[arg(long)]
        once: bool,
        /// List what garbage collection would delete; change nothing (implies --once).
        #[arg(long)]
        dry_run: bool,
    },
    /// Produce with idempotent producers, read everything back, check that nothing
    /// acknowledged was lost; exits non-zero on any violation.
    Oracle(OracleOptions),
    /// Run the oracle against two gateways, two writers and two readers started as
    /// separate processes, while they are killed and frozen and PostgreSQL and S3 fail;
    /// exits non-zero on any violation.
    Chaos(ChaosOptions),
    /// Create, list, describe, alter or delete topics.
    Topic {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// Produce the lines of standard input, one record each.
    Produce {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        args: ProduceArgs,
    },
    /// Print a topic's records.
    Consume {
        #[command(flatten)]
        connection: Connection,
        #[command(flatten)]
        args: ConsumeArgs,
    },
    /// List or describe consumer groups, reset their offsets.
    Group {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Create, list and delete SASL/SCRAM users (in PostgreSQL, from the settings).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Add, list and remove ACL bindings (in PostgreSQL, from the settings), as Kafka's
    /// `kafka-acls`.
    Acl {
        #[command(subcommand)]
        command: AclCommand,
    },
    /// List and describe transactional ids, abort a hanging transaction (in PostgreSQL,
    /// from the settings), as Kafka's `kafka-transactions`.
    Txn {
        #[command(subcommand)]
        command: TxnCommand,
    },
    /// Measure throughput, latency, per-flush cost and memory against the raw limits of the
    /// same S3 endpoint and PostgreSQL, on a private deployment it starts; prints a table.
    Bench(BenchOptions),
    /// GET an HTTP URL and exit 0 on a 2xx answer: container health checks
    /// (`yaks probe http://127.0.0.1:9096/readyz`) in an image without curl.
    Probe {
        /// The URL, e.g. `http://127.0.0.1:9094/healthz`.
        url: String,
    },
    /// Run everything in one process with a private PostgreSQL and a loopback S3.
    Dev {
        /// Where the private PostgreSQL and S3 data live.
        #[arg(long, default_value = ".yaks")]
        data_dir: PathBuf,
        /// Kafka listener address.
        #[arg(long, default_value = "127.0.0.1:9092")]
        kafka_addr: String,
        /// Make the Kafka address a SASL_SSL listener (SCRAM-SHA-256/512, PLAIN) with a
        /// private CA in DATA_DIR/tls/ca.pem and a user `admin` whose password is in
        /// DATA_DIR/admin.password.
        #[arg(long)]
        secure: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("yaks: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("yaks: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = yaks_common::telemetry::init(
        &config.log,
        &format!("yaks-{}", cli.command.name()),
        runtime.handle().clone(),
    );
    let code = match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("yaks: {e:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

impl Command {
    /// The command's name, which names the process in exported traces (`yaks-gateway`).
    fn name(&self) -> &'static str {
        match self {
            Command::Gateway => "gateway",
            Command::Writer => "writer",
            Command::Reader => "reader",
            Command::Migrate => "migrate",
            Command::Compactor { .. } => "compactor",
            Command::Topic { .. } => "topic",
            Command::Produce { .. } => "produce",
            Command::Consume { .. } => "consume",
            Command::Group { .. } => "group",
            Command::User { .. } => "user",
            Command::Acl { .. } => "acl",
            Command::Txn { .. } => "txn",
            Command::Probe { .. } => "probe",
            Command::Bench(_) => "bench",
            Command::Oracle(_) => "oracle",
            Command::Chaos(_) => "chaos",
            Command::Dev { .. } => "dev",
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Migrate => {
            roles::connect(&config).await?;
            info!("migrations applied");
            Ok(())
        }
        Command::Writer => {
            let backends = roles::connect(&config).await?;
            let writer = roles::bind_writer(&config, &backends).await?;
            run_until_signal(|shutdown| writer.run(shutdown)).await
        }
        Command::Reader => {
            let backends = roles::connect(&config).await?;
            let reader = roles::bind_reader(&config, &backends).await?;
            run_until_signal(|shutdown| reader.run(shutdown)).await
        }
        Command::Gateway => {
            let backends = roles::connect(&config).await?;
            let gateway = roles::bind_gateway(&config, &backends).await?;
            run_until_signal(|shutdown| gateway.run(shutdown)).await
        }
        Command::Compactor { once, dry_run } => {
            let backends = roles::connect(&config).await?;
            let compactor = roles::compactor(&config, &backends).await;
            if once || dry_run {
                let report = compactor.run_once(dry_run).await?;
                println!(
                    "planned {} jobs: {} compacted, {} lost to another worker, {} failed; \
                     retention moved {} partitions; garbage: {} entries expired, {} objects \
                     marked, {} deleted, {} unrecorded deleted{}",
                    report.planned,
                    report.compacted,
                    report.lost,
                    report.failed,
                    report.retained,
                    report.gc.expired_entries,
                    report.gc.marked,
                    report.gc.deleted.len(),
                    report.gc.orphans.len(),
                    if dry_run {
                        " (dry run: would delete)"
                    } else {
                        ""
                    }
                );
                if dry_run {
                    for key in report.gc.deleted.iter().chain(&report.gc.orphans) {
                        println!("{key}");
                    }
                }
                Ok(())
            } else {
                let ops = OpsServer::bind(&config.compactor.http_addr).await?;
                info!(ops = ?ops.local_addr().ok(), "compactor serving /healthz, /readyz, /metrics");
                run_until_signal(|shutdown| async move {
                    let readiness = Readiness::new(
                        backends.metastore.clone(),
                        backends.objects.clone(),
                        None,
                        shutdown.clone(),
                    );
                    let (ops_trigger, ops_shutdown) = Shutdown::new();
                    let ops_task = tokio::spawn(ops.run(readiness, ops_shutdown));
                    compactor.run(shutdown).await;
                    ops_trigger.trigger();
                    let _ = ops_task.await;
                })
                .await
            }
        }
        Command::Topic {
            connection,
            command,
        } => admin::topic(&connection, command).await,
        Command::User { command } => users::run(&config, command).await,
        Command::Acl { command } => acls::run(&config, command).await,
        Command::Txn { command } => txns::run(&config, command).await,
        Command::Produce { connection, args } => admin::produce(&connection, args).await,
        Command::Consume { connection, args } => admin::consume(&connection, args).await,
        Command::Group {
            connection,
            command,
        } => admin::group(&connection, command).await,
        Command::Probe { url } => probe(&url).await,
        Command::Bench(options) => {
            println!("{}", yaks::bench::run(options).await?);
            Ok(())
        }
        Command::Oracle(options) => {
            let report = yaks::oracle::run(options).await?;
            println!("{}", report.table());
            if report.holds() {
                Ok(())
            } else {
                anyhow::bail!("invariants violated (see the table)")
            }
        }
        Command::Chaos(options) => {
            let series = options.runs > 1;
            let reports = yaks::chaos::run_series(options, |report| {
                if series {
                    println!("## run {} (seed {})\n", report.dir.display(), report.seed);
                }
                println!("{}", report.table());
            })
            .await?;
            if series {
                println!("## Summary\n\n{}", yaks::chaos::summary(&reports));
            }
            if reports.iter().all(|r| r.holds()) {
                Ok(())
            } else {
                anyhow::bail!("invariants violated or faults not injected (see the tables)")
            }
        }
        Command::Dev {
            data_dir,
            kafka_addr,
            secure,
        } => {
            devmode::run(
                config,
                DevOptions {
                    data_dir,
                    kafka_addr,
                    secure,
                },
                stop_signal(),
            )
            .await
        }
    }
}

/// `yaks probe URL`.
async fn probe(url: &str) -> anyhow::Result<()> {
    let client = yaks_common::rpc::RpcClient::new();
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), client.get(url, ""))
        .await
        .map_err(|_| anyhow::anyhow!("{url}: no answer within 5 s"))?
        .map_err(|_| anyhow::anyhow!("{url}: unreachable"))?;
    let status = response.status();
    let body = yaks_common::rpc::read_body(response)
        .await
        .unwrap_or_default();
    println!("{status} {}", String::from_utf8_lossy(&body).trim());
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
}

/// Runs a role until Ctrl-C or SIGTERM, then lets it shut down cleanly.
async fn run_until_signal<F, Fut>(role: F) -> anyhow::Result<()>
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(role(shutdown));
    stop_signal().await;
    trigger.trigger();
    task.await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    info!("stop signal received");
}
