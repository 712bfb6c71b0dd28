//! Wiring of roles to configuration.
//!
//! Every role starts the same way: connect the metastore (applying migrations under the
//! advisory lock), connect the object store, then bind and run. Binding is separate from
//! running so callers (tests, `yaks dev`) can learn the bound addresses first.

use std::sync::Arc;

use anyhow::Context;
use yaks_common::clock::system_clock;
use yaks_common::config::Config;
use yaks_common::failpoint::FailPoints;
use yaks_common::metastore::PgMetastore;
use yaks_common::objstore::{S3ObjectStore, SharedObjectStore};
use yaks_common::rpc::PeerToken;
use yaks_compactor::queue::{JobQueue, MemoryQueue, SqsQueue};
use yaks_compactor::run::Compactor;
use yaks_gateway::Gateway;
use yaks_reader::Reader;
use yaks_writer::{Writer, WriterContext};

/// The two backends every role needs.
#[derive(Clone)]
pub struct Backends {
    /// PostgreSQL: every domain; each role is handed it as the store it asks for.
    pub metastore: Arc<PgMetastore>,
    /// S3.
    pub objects: SharedObjectStore,
}

/// Connects to PostgreSQL (migrating it) and S3.
pub async fn connect(config: &Config) -> anyhow::Result<Backends> {
    let metastore = PgMetastore::connect(&config.postgres).context("postgres settings")?;
    metastore
        .migrate()
        .await
        .context("applying migrations to postgres")?;
    let objects = S3ObjectStore::connect(&config.s3)
        .await
        .with_context(|| format!("connecting to s3 bucket {}", config.s3.bucket))?;
    Ok(Backends {
        metastore: Arc::new(metastore),
        objects: Arc::new(objects),
    })
}

/// Environment variable arming fail points in a process, for fault-injection tests
/// (see `yaks_common::failpoint`). Never set in production.
pub const FAIL_POINTS_ENV: &str = "YAKS_FAIL_POINTS";

/// The deployment's internal token (`internal.token` or `internal.token_file`).
pub fn peer_token(config: &Config) -> anyhow::Result<Option<PeerToken>> {
    let token = config
        .internal
        .resolve_token()
        .map_err(|problem| anyhow::anyhow!("invalid configuration: {problem}"))?;
    Ok(token.as_deref().map(PeerToken::new))
}

/// Binds a writer.
pub async fn bind_writer(config: &Config, backends: &Backends) -> anyhow::Result<Writer> {
    let fail_points = match std::env::var(FAIL_POINTS_ENV) {
        Ok(spec) => {
            FailPoints::from_spec(&spec).map_err(|e| anyhow::anyhow!("{FAIL_POINTS_ENV}: {e}"))?
        }
        Err(_) => FailPoints::default(),
    };
    let context = WriterContext {
        config: config.writer.clone(),
        s3: config.s3.clone(),
        metastore: backends.metastore.clone(),
        objects: backends.objects.clone(),
        clock: system_clock(),
        fail_points: Arc::new(fail_points),
        peer_token: peer_token(config)?,
    };
    Writer::bind(context, config.registry.clone())
        .await
        .with_context(|| format!("binding writer on {}", config.writer.listen_addr))
}

/// Binds a gateway and registers it.
pub async fn bind_gateway(config: &Config, backends: &Backends) -> anyhow::Result<Gateway> {
    Gateway::bind(
        config.gateway.clone(),
        config.registry.clone(),
        backends.metastore.clone(),
        backends.objects.clone(),
        config.s3.key_prefix.clone(),
        system_clock(),
        peer_token(config)?,
    )
    .await
    .context("starting gateway")
}

/// Binds a reader, opens its cache and registers it.
pub async fn bind_reader(config: &Config, backends: &Backends) -> anyhow::Result<Reader> {
    Reader::bind(
        config.reader.clone(),
        config.registry.clone(),
        backends.metastore.clone(),
        backends.objects.clone(),
        peer_token(config)?,
    )
    .await
    .context("starting reader")
}

/// A compactor with its job queue: SQS at `compactor.queue_url`, else an in-process queue.
pub async fn compactor(config: &Config, backends: &Backends) -> Compactor {
    let settings = &config.compactor;
    let queue: Arc<dyn JobQueue> = match &settings.queue_url {
        Some(url) => Arc::new(SqsQueue::new(
            SqsQueue::client(settings, &config.s3).await,
            url.clone(),
            settings.visibility_timeout_s,
        )),
        None => Arc::new(MemoryQueue::new(
            std::time::Duration::from_secs(settings.visibility_timeout_s.max(1) as u64),
            settings.max_receives,
        )),
    };
    Compactor::new(
        backends.metastore.clone(),
        backends.objects.clone(),
        queue,
        settings.clone(),
        config.s3.key_prefix.clone(),
        system_clock(),
    )
}
