//! `yaks dev`: every role in one process, with embedded infrastructure.
//!
//! Unless `postgres.url` / `s3.endpoint` are set, a private PostgreSQL is started in
//! `DIR/postgres` and a loopback S3 endpoint serves `DIR/s3`; both keep their data across
//! restarts, as does the reader's disk cache in `DIR/cache`. The gateway reaches the writer
//! and the reader over loopback HTTP exactly as in a split deployment. On stop, the gateway
//! stops taking requests and finishes those in flight while the writer flushes and commits
//! at once; then the reader and the infrastructure stop. The compactor runs in-process
//! every `compactor.interval_ms` with an in-process job queue.

use std::future::Future;
use std::path::PathBuf;

use anyhow::Context;
use tracing::info;
use yaks_common::config::Config;
use yaks_common::shutdown::Shutdown;

use crate::dev::postgres::EmbeddedPostgres;
use crate::dev::s3::DevS3;
use crate::roles;

/// `gateway.group_initial_rebalance_delay_ms` of `yaks dev` unless set: a lone consumer is
/// assigned its partitions within a few hundred milliseconds.
pub const DEV_INITIAL_REBALANCE_DELAY_MS: u64 = 100;

/// Where `yaks dev` serves `/healthz`, `/readyz` and `/metrics` (all roles' metrics: they
/// share the process) unless `gateway.http_addr` is set.
pub const DEV_HTTP_ADDR: &str = "127.0.0.1:9096";

/// Options of `yaks dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Where the embedded PostgreSQL and S3 keep their data.
    pub data_dir: PathBuf,
    /// Kafka listener address.
    pub kafka_addr: String,
}

/// Runs everything until `stop` resolves.
pub async fn run(
    mut config: Config,
    options: DevOptions,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("creating {}", options.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&options.data_dir)?;

    let mut postgres = None;
    if config.postgres.url.is_none() {
        let dir = data_dir.join("postgres");
        let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir)).await??;
        config.postgres.url = Some(pg.url());
        postgres = Some(pg);
    }
    let mut s3 = None;
    if config.s3.endpoint.is_none() {
        let server = DevS3::start(&data_dir.join("s3"), 0).await?;
        let bucket = config.s3.bucket.clone();
        config.s3 = DevS3::s3_config(&server, &bucket);
        s3 = Some(server);
    }

    let backends = roles::connect(&config).await?;
    if config.writer.listen_addr == yaks_common::config::WriterConfig::default().listen_addr {
        config.writer.listen_addr = "127.0.0.1:0".into();
    }
    let writer = roles::bind_writer(&config, &backends).await?;
    let writer_url = format!("http://{}", writer.local_addr()?);
    if config.reader.listen_addr == yaks_common::config::ReaderConfig::default().listen_addr {
        config.reader.listen_addr = "127.0.0.1:0".into();
    }
    if config.reader.cache_dir.is_none() {
        config.reader.cache_dir = Some(data_dir.join("cache").display().to_string());
    }
    let reader = roles::bind_reader(&config, &backends).await?;
    config.gateway.listen_addr = options.kafka_addr.clone();
    if config.gateway.group_initial_rebalance_delay_ms
        == yaks_common::config::GatewayConfig::default().group_initial_rebalance_delay_ms
    {
        // One developer's consumers: no point waiting 3 s for more members to arrive.
        config.gateway.group_initial_rebalance_delay_ms = DEV_INITIAL_REBALANCE_DELAY_MS;
    }
    if config.gateway.http_addr == yaks_common::config::GatewayConfig::default().http_addr {
        config.gateway.http_addr = DEV_HTTP_ADDR.into();
    }
    config.gateway.writer_urls = vec![writer_url];
    config.gateway.reader_urls = vec![reader.url().to_owned()];
    let gateway = roles::bind_gateway(&config, &backends).await?;
    let kafka_addr = gateway.local_addr()?;
    let ops_addr = gateway.ops_addr()?;

    let (writer_trigger, writer_shutdown) = Shutdown::new();
    let (gateway_trigger, gateway_shutdown) = Shutdown::new();
    let (reader_trigger, reader_shutdown) = Shutdown::new();
    let writer_task = tokio::spawn(writer.run(writer_shutdown));
    let reader_task = tokio::spawn(reader.run(reader_shutdown));
    let gateway_task = tokio::spawn(gateway.run(gateway_shutdown));
    // The compactor runs in-process with an in-process job queue (no SQS here).
    let mut compactor_config = config.clone();
    compactor_config.compactor.queue_url = None;
    let compactor = roles::compactor(&compactor_config, &backends).await;
    let (compactor_trigger, compactor_shutdown) = Shutdown::new();
    let compactor_task = tokio::spawn(compactor.run(compactor_shutdown));
    info!(%kafka_addr, data_dir = %data_dir.display(), "yaks dev is ready; produce with: kcat -b {kafka_addr} -t test -P; metrics at http://{ops_addr}/metrics");

    stop.await;
    // Both at once: the gateway stops reading requests and finishes those in flight while
    // the writer flushes its buffer at once, so in-flight produces are committed and
    // answered instead of waiting out the flush interval.
    info!("stopping: gateway and writer drain (flush, commit, answer), then infrastructure");
    compactor_trigger.trigger();
    gateway_trigger.trigger();
    writer_trigger.trigger();
    let _ = compactor_task.await;
    let _ = gateway_task.await;
    let _ = writer_task.await;
    // Readers last: fetches in flight at the gateway were answered before it stopped.
    reader_trigger.trigger();
    let _ = reader_task.await;
    backends.metastore.close();
    if let Some(server) = s3 {
        server.stop().await;
    }
    if let Some(mut pg) = postgres {
        tokio::task::spawn_blocking(move || pg.stop()).await??;
    }
    info!("stopped");
    Ok(())
}
