//! `yaks dev`: every role in one process, with embedded infrastructure.
//!
//! Unless `postgres.url` / `s3.endpoint` are set, a private PostgreSQL is started in
//! `DIR/postgres` and a loopback S3 endpoint serves `DIR/s3`; both keep their data across
//! restarts, as does the reader's disk cache in `DIR/cache`. The gateway reaches the writer
//! and the reader over loopback HTTP exactly as in a split deployment. On stop, the gateway
//! stops taking requests and finishes those in flight while the writer flushes and commits
//! at once; then the reader and the infrastructure stop. The compactor runs in-process
//! every `compactor.interval_ms` with an in-process job queue.
//!
//! With `--secure` the Kafka address is a `SASL_SSL` listener (SCRAM-SHA-256/512 and PLAIN)
//! whose certificate, for `127.0.0.1` and `localhost`, a private CA signs
//! (`DIR/tls/ca.pem`, kept across restarts); a user `admin` gets a password kept in
//! `DIR/admin.password` (mode 0600) and is the one super user, authorization with ACLs is
//! on (`yaks acl add` grants other users what they need), the roles' loopback HTTP requires
//! a token drawn at start (`internal.token`), and start-up prints how to connect.

use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tracing::info;
use yaks_common::config::{Config, ListenerConfig, SecurityProtocol};
use yaks_common::metastore::Credentials;
use yaks_common::shutdown::Shutdown;

use crate::dev::postgres::EmbeddedPostgres;
use crate::dev::s3::DevS3;
use crate::dev::tls::LocalCa;
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
    /// Serve the Kafka address as a SASL_SSL listener, with a private CA and a user
    /// `admin` (see the module's documentation).
    pub secure: bool,
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

    if options.secure && config.internal.token.is_none() && config.internal.token_file.is_none() {
        // The roles' loopback HTTP needs the same proof as a split deployment's.
        config.internal.token = Some(format!(
            "{:032x}{:032x}",
            yaks_common::random::u128(),
            yaks_common::random::u128()
        ));
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
    let secured = if options.secure {
        Some(secure(&mut config, &options.kafka_addr, &data_dir, &backends).await?)
    } else {
        None
    };
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
    match &secured {
        None => {
            info!(%kafka_addr, data_dir = %data_dir.display(), "yaks dev is ready; produce with: kcat -b {kafka_addr} -t test -P; metrics at http://{ops_addr}/metrics")
        }
        Some(secured) => info!(
            %kafka_addr, data_dir = %data_dir.display(),
            "yaks dev is ready (SASL_SSL); produce with: kcat -b {} -t test -P \
             -X security.protocol=SASL_SSL -X ssl.ca.location={} \
             -X sasl.mechanism=SCRAM-SHA-512 -X sasl.username=admin \
             -X sasl.password=\"$(cat {})\"; metrics at http://{ops_addr}/metrics",
            secured.bootstrap,
            secured.ca_file.display(),
            secured.password_file.display(),
        ),
    }

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

/// The super user of `yaks dev --secure`.
pub const DEV_ADMIN: &str = "admin";

/// What `yaks dev --secure` set up, for its start-up line.
#[derive(Debug)]
pub struct Secured {
    /// The address clients bootstrap from (the name the certificate is valid for).
    pub bootstrap: String,
    /// The CA certificate clients trust.
    pub ca_file: PathBuf,
    /// The file holding `admin`'s password.
    pub password_file: PathBuf,
}

/// `yaks dev --secure`: the Kafka address becomes a `SASL_SSL` listener with a certificate
/// for `127.0.0.1` and `localhost` signed by a private CA (`DATA_DIR/tls/ca.pem`, kept
/// across restarts so clients keep trusting it), and a user `admin` whose password is in
/// `DATA_DIR/admin.password` (mode 0600, made once), the only super user of the ACLs now
/// enforced. Listeners set in the settings win.
async fn secure(
    config: &mut Config,
    kafka_addr: &str,
    data_dir: &Path,
    backends: &roles::Backends,
) -> anyhow::Result<Secured> {
    let tls_dir = data_dir.join("tls");
    let ca_file = tls_dir.join("ca.pem");
    let cert_file = tls_dir.join("gateway.pem");
    let key_file = tls_dir.join("gateway.key");
    if !(ca_file.exists() && cert_file.exists() && key_file.exists()) {
        let ca = LocalCa::new("yaks dev CA")?;
        ca.write_gateway_files(&tls_dir)?;
    }
    let password_file = data_dir.join("admin.password");
    let password = match std::fs::read_to_string(&password_file) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
        _ => {
            let password = format!("{:032x}", yaks_common::random::u128());
            crate::dev::tls::write(&password_file, &format!("{password}\n"), 0o600)?;
            password
        }
    };
    for credential in crate::users::credentials(&password, 8192) {
        backends
            .metastore
            .upsert_scram_credential(DEV_ADMIN, &credential)
            .await
            .context("storing the admin user")?;
    }
    let addr: std::net::SocketAddr = kafka_addr
        .parse()
        .with_context(|| format!("--kafka-addr {kafka_addr} is not ip:port"))?;
    // Clients check the certificate against the name they connect to: loopback addresses
    // are advertised as `localhost`, which the certificate names.
    let advertised = addr
        .ip()
        .is_loopback()
        .then(|| format!("localhost:{}", addr.port()));
    if config.gateway.listeners.is_empty() {
        config.gateway.listeners = vec![ListenerConfig {
            name: "SECURE".into(),
            listen_addr: kafka_addr.to_owned(),
            advertised_addr: advertised.clone(),
            security_protocol: SecurityProtocol::SaslSsl,
        }];
    }
    config.gateway.tls.cert_file.get_or_insert(cert_file);
    config.gateway.tls.key_file.get_or_insert(key_file);
    // Authorization on, with admin added to any super users the settings name.
    let authorization = &mut config.gateway.authorization;
    authorization.enabled = true;
    let admin = format!("User:{DEV_ADMIN}");
    if !authorization.super_user_list().contains(&admin) {
        authorization.super_users = match authorization.super_users.trim() {
            "" => admin,
            others => format!("{others};{admin}"),
        };
    }
    Ok(Secured {
        bootstrap: advertised.unwrap_or_else(|| kafka_addr.to_owned()),
        ca_file,
        password_file,
    })
}
