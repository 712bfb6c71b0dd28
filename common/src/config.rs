//! Settings for every role, loaded with figment.
//!
//! Precedence, lowest first: built-in defaults, a TOML file (`--config yaks.toml`), then
//! `YAKS_*` environment variables with `__` between nested keys (`YAKS_S3__BUCKET=b`).
//! Unknown keys in the file and invalid values stop start-up with a message naming the key,
//! because a typo silently ignored is worse than a refusal to start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Sections accepted at the top level, also used to filter `YAKS_*` variables so that
/// unrelated variables such as `YAKS_DATA_DIR` in a script do not count as typos.
const SECTIONS: &[&str] = &[
    "gateway",
    "writer",
    "reader",
    "postgres",
    "s3",
    "registry",
    "compactor",
    "log",
    "internal",
];

/// The whole settings tree.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Kafka front door.
    pub gateway: GatewayConfig,
    /// Produce buffering and commit.
    pub writer: WriterConfig,
    /// Fetch serving and the object cache.
    pub reader: ReaderConfig,
    /// The metastore.
    pub postgres: PostgresConfig,
    /// The object store.
    pub s3: S3Config,
    /// Service registry leases.
    pub registry: RegistryConfig,
    /// Compaction, retention and garbage collection.
    pub compactor: CompactorConfig,
    /// Logging.
    pub log: LogConfig,
    /// How roles prove themselves to each other.
    pub internal: InternalConfig,
}

/// How roles prove themselves to each other. With a token set, every role sends it on its
/// internal requests (produce to writers, fetch from readers) and writers and readers
/// refuse requests without it (401), so reaching a writer's port is not enough to store
/// batches; the operations endpoints (`/healthz`, `/readyz`, `/metrics`) stay open for
/// probes. Every role of a deployment must have the same token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct InternalConfig {
    /// The shared token.
    pub token: Option<String>,
    /// A file holding the token (its first line), as a mounted secret; read at start.
    pub token_file: Option<PathBuf>,
}

impl InternalConfig {
    /// The token, read from `token_file` if that is what is set.
    pub fn resolve_token(&self) -> Result<Option<String>, String> {
        let token = match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                return Err("set internal.token or internal.token_file, not both".into());
            }
            (Some(token), None) => token.trim().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("internal.token_file {}: {e}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
            (None, None) => return Ok(None),
        };
        if token.len() < 16 {
            return Err("internal.token must be at least 16 characters".into());
        }
        Ok(Some(token))
    }
}

/// Settings of the gateway role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the Kafka listener binds, when `listeners` is empty: then it is one
    /// `PLAINTEXT` listener of that name.
    pub listen_addr: String,
    /// `host:port` clients are told to connect to; defaults to the bound address. Goes with
    /// `listen_addr`.
    pub advertised_addr: Option<String>,
    /// Kafka listeners, as Kafka's `listeners` and `advertised.listeners`: each with a name,
    /// an address, an advertised address and a security protocol. Metadata answers a client
    /// with the addresses of the listener it came in on. Empty: one `PLAINTEXT` listener on
    /// `listen_addr`.
    pub listeners: Vec<ListenerConfig>,
    /// How many Kafka brokers this gateway presents: each registers its own broker id,
    /// and broker `i` listens on every listener's port + `i` (advertised port + `i` too).
    /// A client opens a connection per broker, and an idempotent or transactional client
    /// keeps at most five requests in flight per connection, each waiting out a writer
    /// flush; spreading a topic's partitions over more broker ids lets more of them be
    /// in flight at once. 1 is one broker per gateway, as Kafka has.
    pub brokers: u16,
    /// The certificate of `SSL` and `SASL_SSL` listeners, and client certificates.
    pub tls: TlsConfig,
    /// Authentication on `SASL_PLAINTEXT` and `SASL_SSL` listeners.
    pub sasl: SaslConfig,
    /// Whether requests are checked against ACLs, and who is exempt.
    pub authorization: AuthorizationConfig,
    /// Address of the HTTP listener serving `/healthz`, `/readyz` and `/metrics`.
    pub http_addr: String,
    /// Largest request frame accepted, checked before any allocation.
    pub max_frame_bytes: u32,
    /// Request bytes all connections may have read and not yet answered; a connection
    /// reads its next frame only once it fits (so memory is bounded by settings, not load).
    pub max_in_flight_bytes: u64,
    /// Writer base URLs (`http://host:port`). Empty: discover live writers in the registry.
    pub writer_urls: Vec<String>,
    /// Create unknown topics on Metadata/Produce, as Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Partition count of auto-created topics (Kafka's `num.partitions`).
    pub default_partitions: i32,
    /// Upper bound on partitions per topic accepted by CreateTopics.
    pub max_partitions_per_topic: i32,
    /// How long the gateway waits for a writer to answer a produce.
    pub writer_timeout_ms: u64,
    /// Reader base URLs (`http://host:port`). Empty: the live readers in the registry.
    pub reader_urls: Vec<String>,
    /// How long the first rebalance of an empty group waits for more members (Kafka's
    /// `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay_ms: u64,
    /// Smallest session timeout a group member may ask for (`group.min.session.timeout.ms`).
    pub group_min_session_timeout_ms: i32,
    /// Largest session timeout a group member may ask for (`group.max.session.timeout.ms`).
    pub group_max_session_timeout_ms: i32,
    /// Largest `transaction.timeout.ms` a transactional producer may ask for (Kafka's
    /// `transaction.max.timeout.ms`).
    pub transaction_max_timeout_ms: i32,
    /// A transactional id with no open transaction and no request for this long is
    /// forgotten (Kafka's `transactional.id.expiration.ms`, 7 days): abandoned ids do not
    /// pile up in ListTransactions, and one coming back starts with a new producer id.
    pub transactional_id_expiration_ms: i64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen_addr: "0.0.0.0:9092".into(),
            advertised_addr: None,
            listeners: Vec::new(),
            brokers: 1,
            tls: TlsConfig::default(),
            sasl: SaslConfig::default(),
            authorization: AuthorizationConfig::default(),
            http_addr: "0.0.0.0:9096".into(),
            max_frame_bytes: 100 * 1024 * 1024,
            max_in_flight_bytes: 256 * 1024 * 1024,
            writer_urls: Vec::new(),
            auto_create_topics: true,
            default_partitions: 1,
            max_partitions_per_topic: 10_000,
            writer_timeout_ms: 30_000,
            reader_urls: Vec::new(),
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
        }
    }
}

impl GatewayConfig {
    /// The listeners to bind: `listeners`, or one `PLAINTEXT` listener on `listen_addr`.
    pub fn effective_listeners(&self) -> Vec<ListenerConfig> {
        if !self.listeners.is_empty() {
            return self.listeners.clone();
        }
        vec![ListenerConfig {
            name: "PLAINTEXT".into(),
            listen_addr: self.listen_addr.clone(),
            advertised_addr: self.advertised_addr.clone(),
            security_protocol: SecurityProtocol::Plaintext,
        }]
    }
}

/// One Kafka listener (Kafka's `listeners` entry with its `advertised.listeners` address
/// and its `listener.security.protocol.map` entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Its name (letters, digits and `_`), which clients never see but a gateway uses to
    /// pick the addresses it tells a client about.
    pub name: String,
    /// Address it binds.
    pub listen_addr: String,
    /// `host:port` clients are told to connect to; defaults to the bound address.
    #[serde(default)]
    pub advertised_addr: Option<String>,
    /// What a connection must do before it is served.
    pub security_protocol: SecurityProtocol,
}

/// Kafka's security protocols, by their Kafka names.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    /// Neither encryption nor authentication.
    Plaintext,
    /// TLS; the principal is the client certificate's subject, if there is one.
    Ssl,
    /// SASL authentication, no encryption.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether connections start with a TLS handshake.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether connections must authenticate with SASL before they are served.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

/// Whether TLS listeners ask clients for a certificate (Kafka's `ssl.client.auth`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Never asked for.
    #[default]
    None,
    /// Asked for; a client without one is served as `User:ANONYMOUS`.
    Requested,
    /// A client without a certificate signed by `client_ca_file` is refused.
    Required,
}

/// TLS settings of the gateway's `SSL` and `SASL_SSL` listeners. The files are PEM and are
/// read again when they change, so a rotated certificate (cert-manager, a renewed secret)
/// takes effect without a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, the gateway's own first.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Certificates of the authorities that sign client certificates.
    pub client_ca_file: Option<PathBuf>,
    /// Whether clients are asked for a certificate.
    pub client_auth: ClientAuth,
    /// How often the files are checked for changes.
    pub reload_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            client_auth: ClientAuth::None,
            reload_interval_ms: 10_000,
        }
    }
}

/// Authorization with Kafka's ACLs (Kafka's `authorizer.class.name` set to its
/// `StandardAuthorizer`, and `super.users`). Off, every connection may do everything, as in
/// Kafka without an authorizer, and CreateAcls, DescribeAcls and DeleteAcls answer
/// SECURITY_DISABLED. On, a request is served only if an ACL allows it or its principal is a
/// super user (`allow.everyone.if.no.acl.found` false).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// Whether requests are checked against the ACLs.
    pub enabled: bool,
    /// Principals allowed everything, `;`-separated as Kafka's `super.users`:
    /// `User:admin;User:CN=ops,O=example`.
    pub super_users: String,
}

impl AuthorizationConfig {
    /// The super users, each `Type:name`.
    pub fn super_user_list(&self) -> Vec<String> {
        self.super_users
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// SASL settings of the gateway's `SASL_PLAINTEXT` and `SASL_SSL` listeners.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SaslConfig {
    /// Mechanisms offered (Kafka's `sasl.enabled.mechanisms`): `SCRAM-SHA-256`,
    /// `SCRAM-SHA-512`, `PLAIN`. Users and their SCRAM credentials live in PostgreSQL
    /// (`yaks user`, AlterUserScramCredentials); `PLAIN` passwords are checked against them.
    pub mechanisms: Vec<String>,
    /// How long a failed authentication waits before its answer and the close (Kafka's
    /// `connection.failed.authentication.delay.ms`), so guessing passwords is slow.
    pub failed_authentication_delay_ms: u64,
    /// How `OAUTHBEARER` tokens are checked.
    pub oauthbearer: OauthBearerConfig,
}

/// How `OAUTHBEARER` tokens (JWTs from an identity provider) are checked, as Kafka's
/// `sasl.oauthbearer.*` broker settings: the signature against the provider's published
/// keys, the expiry, and the issuer and audience when set; the principal is one claim.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct OauthBearerConfig {
    /// Where the provider publishes its keys (JWKS), `https://…/.well-known/jwks.json`
    /// (Kafka's `sasl.oauthbearer.jwks.endpoint.url`). Required for `OAUTHBEARER`.
    pub jwks_url: Option<String>,
    /// The `iss` tokens must carry (`sasl.oauthbearer.expected.issuer`); unset: any.
    pub issuer: Option<String>,
    /// An `aud` tokens must include (`sasl.oauthbearer.expected.audience`); unset: any.
    pub audience: Option<String>,
    /// The claim naming the principal (`sasl.oauthbearer.sub.claim.name`).
    pub principal_claim: String,
    /// How often the keys are fetched again (`sasl.oauthbearer.jwks.endpoint.refresh.ms`);
    /// a token signed with a key not seen yet also fetches them, at most every 10 s.
    pub jwks_refresh_ms: u64,
    /// Clock difference allowed on `exp` and `nbf` (`sasl.oauthbearer.clock.skew.seconds`).
    pub clock_skew_s: u64,
}

impl Default for OauthBearerConfig {
    fn default() -> Self {
        Self {
            jwks_url: None,
            issuer: None,
            audience: None,
            principal_claim: "sub".into(),
            jwks_refresh_ms: 3_600_000,
            clock_skew_s: 30,
        }
    }
}

impl Default for SaslConfig {
    fn default() -> Self {
        Self {
            mechanisms: vec![
                "SCRAM-SHA-256".into(),
                "SCRAM-SHA-512".into(),
                "PLAIN".into(),
            ],
            failed_authentication_delay_ms: 100,
            oauthbearer: OauthBearerConfig::default(),
        }
    }
}

/// The SASL mechanisms yaks serves.
pub const SASL_MECHANISMS: &[&str] = &["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"];

/// Settings of the writer role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WriterConfig {
    /// Address the internal HTTP listener binds.
    pub listen_addr: String,
    /// Base URL gateways reach this writer at (`http://host:port`), published in the
    /// registry for gateways without `gateway.writer_urls`; defaults to the bound address
    /// (on ECS, the task's address).
    pub advertised_url: Option<String>,
    /// A buffer holding this many bytes is flushed at once.
    pub flush_bytes: u64,
    /// A non-empty buffer is flushed at the latest this long after its first batch.
    pub flush_interval_ms: u64,
    /// A non-empty buffer nothing was added to for this long is flushed without waiting out
    /// `flush_interval_ms`: its producers are waiting for their answers before they send
    /// more (an idempotent producer, the Java client's five requests in flight, a
    /// `send().get()` loop). 0 turns this off.
    pub flush_idle_ms: u64,
    /// A buffer holding less than `flush_bytes` is flushed at least this long after the
    /// previous flush, so one writer makes at most `1000 / min_flush_interval_ms` such
    /// small objects a second, whatever the load: the bound on what a latency-bound
    /// workload costs in S3 requests. Full buffers are not held back, and a shorter
    /// `flush_interval_ms` wins.
    pub min_flush_interval_ms: u64,
    /// Produce requests wait (back-pressure) while this many bytes are buffered or uploading.
    pub max_buffered_bytes: u64,
    /// Flushes whose upload may overlap; commits still happen in flush order.
    pub max_uploads_in_flight: usize,
    /// What a partition remembers of an idempotent producer is forgotten this long after
    /// the producer last wrote to it (Kafka's `producer.id.expiration.ms`); after that, its
    /// next batch is taken whatever its sequence.
    pub producer_id_expiration_ms: u64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            listen_addr: "0.0.0.0:9094".into(),
            advertised_url: None,
            flush_bytes: 8 * 1024 * 1024,
            flush_interval_ms: 250,
            flush_idle_ms: 2,
            min_flush_interval_ms: 20,
            max_buffered_bytes: 256 * 1024 * 1024,
            max_uploads_in_flight: 4,
            producer_id_expiration_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// Settings of the reader role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReaderConfig {
    /// Address the internal HTTP listener binds.
    pub listen_addr: String,
    /// Base URL gateways reach this reader at (`http://host:port`), published in the
    /// registry; defaults to the bound address.
    pub advertised_url: Option<String>,
    /// Memory tier of the object cache.
    pub cache_memory_bytes: u64,
    /// Disk tier of the object cache; 0 turns it off.
    pub cache_disk_bytes: u64,
    /// Directory of the disk tier. Unset: no disk tier (`yaks dev` uses `DIR/cache`).
    pub cache_dir: Option<String>,
    /// Objects are read from S3 and cached in aligned blocks of this size.
    pub cache_block_bytes: u64,
    /// A fetch also starts loading up to this many blocks past those it reads (the next
    /// blocks of the partitions' index), so a consumer reading history finds its next fetch
    /// cached; at most this many such GETs are in flight per reader, which bounds the memory
    /// read-ahead holds to this many blocks. 0 turns read-ahead off.
    pub read_ahead_blocks: u64,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        Self {
            listen_addr: "0.0.0.0:9095".into(),
            advertised_url: None,
            cache_memory_bytes: 512 * 1024 * 1024,
            cache_disk_bytes: 8 * 1024 * 1024 * 1024,
            cache_dir: None,
            cache_block_bytes: 4 * 1024 * 1024,
            read_ahead_blocks: 8,
        }
    }
}

/// Largest `reader.cache_block_bytes`: a quarter of the disk tier's 16 MiB eviction block,
/// because foyer silently drops disk entries that do not fit one.
pub const MAX_CACHE_BLOCK_BYTES: u64 = 4 * 1024 * 1024;

/// Settings of the PostgreSQL metastore.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user:pass@host:port/db`. `yaks dev` starts a private server when unset.
    pub url: Option<String>,
    /// Connections in each process's pool.
    pub pool_size: usize,
    /// Time allowed to open one connection.
    pub connect_timeout_ms: u64,
    /// PostgreSQL ends a yaks session that sits this long inside an open transaction
    /// (`idle_in_transaction_session_timeout`; 0 turns it off). yaks never pauses inside
    /// one, so this only fires for a process that was frozen (SIGSTOP, a stalled VM)
    /// mid-commit: its partition locks are released for the other writers, and its commit
    /// fails when it wakes instead of landing late.
    pub idle_in_transaction_timeout_ms: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 16,
            connect_timeout_ms: 5_000,
            idle_in_transaction_timeout_ms: 10_000,
        }
    }
}

/// Settings of the compactor role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CompactorConfig {
    /// Time between two passes of `yaks compactor` (and of `yaks dev`'s compactor).
    pub interval_ms: u64,
    /// Time between two checks of compacted partitions between passes (Kafka's
    /// `log.cleaner.backoff.ms`): a partition due by `max.compaction.lag.ms` waits at most
    /// this long. A check reads only partitions that grew or came due by time.
    pub key_compaction_check_ms: u64,
    /// A compaction job's inputs add up to at most this many bytes (its output's size).
    pub target_bytes: i64,
    /// Index entries shorter than this are merged.
    pub small_bytes: i64,
    /// A job's records span at most this much time, so retention can drop whole outputs.
    pub window_ms: i64,
    /// Objects are deleted this long after no index entry refers to them (or, for
    /// uploads never committed, after they were written): longer than any read takes.
    pub grace_ms: u64,
    /// Memory for the key map of a key compaction pass (24 bytes per distinct key, 90 %
    /// full at most): a partition with more keys in its dirty part is compacted in several
    /// passes, whatever its size.
    pub key_map_bytes: usize,
    /// SQS queue URL for compaction jobs; unset: an in-process queue (one compactor).
    pub queue_url: Option<String>,
    /// SQS endpoint (LocalStack, moto); unset: AWS's. Region and static credentials are
    /// the `s3` ones.
    pub sqs_endpoint: Option<String>,
    /// How long a received job stays invisible to other workers; longer than a job takes.
    pub visibility_timeout_s: i32,
    /// Receives after which the in-process queue sets a job aside as dead (SQS: the
    /// queue's redrive policy decides).
    pub max_receives: u32,
    /// Address of the HTTP listener serving `/healthz`, `/readyz` and `/metrics` while
    /// `yaks compactor` runs as a loop (`--once` serves none).
    pub http_addr: String,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        Self {
            interval_ms: 60_000,
            key_compaction_check_ms: 5_000,
            target_bytes: 8 << 20,
            small_bytes: 4 << 20,
            window_ms: 3_600_000,
            grace_ms: 600_000,
            key_map_bytes: 64 << 20,
            queue_url: None,
            sqs_endpoint: None,
            visibility_timeout_s: 300,
            max_receives: 5,
            http_addr: "0.0.0.0:9097".into(),
        }
    }
}

/// Settings of the S3 object store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Bucket holding every object.
    pub bucket: String,
    /// Custom endpoint (MinIO, LocalStack, moto). `yaks dev` starts one on loopback when unset.
    pub endpoint: Option<String>,
    /// Signing region.
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most S3 emulators.
    pub force_path_style: bool,
    /// Static credentials; when unset the AWS default chain (env, profile, ECS, IMDS) is used.
    pub access_key_id: Option<String>,
    /// Static credentials, with `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Prefix in front of every key, to share a bucket between clusters.
    pub key_prefix: String,
    /// Attempts per request, including the first, on 5xx/SlowDown/timeouts.
    pub max_attempts: u32,
    /// First retry delay; later ones back off exponentially with jitter.
    pub initial_backoff_ms: u64,
    /// Time allowed for one attempt.
    pub attempt_timeout_ms: u64,
    /// Time allowed for a request including all its retries; kept below
    /// `gateway.writer_timeout_ms` so a flush fails before the gateway gives up on it.
    pub operation_timeout_ms: u64,
    /// Create the bucket at start-up when it does not exist (on in `yaks dev`).
    pub create_bucket: bool,
    /// Sign the SHA-256 of uploaded bodies. Off: bodies are protected by the CRC32 checksum
    /// S3 verifies; turn on for S3-compatible stores that refuse unsigned payloads.
    pub sign_payload: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: "yaks".into(),
            endpoint: None,
            region: "us-east-1".into(),
            force_path_style: false,
            access_key_id: None,
            secret_access_key: None,
            key_prefix: String::new(),
            max_attempts: 8,
            initial_backoff_ms: 100,
            attempt_timeout_ms: 10_000,
            operation_timeout_ms: 20_000,
            create_bucket: false,
            sign_payload: false,
        }
    }
}

/// Settings of the service registry (who is alive).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// A registration not renewed for this long counts as dead.
    pub lease_ms: u64,
    /// How often each process renews its lease.
    pub heartbeat_ms: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            lease_ms: 10_000,
            heartbeat_ms: 2_000,
        }
    }
}

/// Settings of logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter (`info`, `yaks_writer=debug,info`); `RUST_LOG` wins when set.
    pub filter: String,
    /// OTLP/HTTP traces endpoint of a collector (`http://localhost:4318/v1/traces`);
    /// unset: no spans are exported.
    pub otlp_endpoint: Option<String>,
    /// Share of traces exported (0 to 1), decided where a trace starts (the gateway).
    pub otlp_sample_ratio: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            filter: "info".into(),
            otlp_endpoint: None,
            otlp_sample_ratio: 0.05,
        }
    }
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Figment's message names the key and the source.
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value that parses but makes no sense.
    #[error("invalid configuration: `{key}` {problem}")]
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// The most broker ids one gateway presents (`gateway.brokers`): enough to give every
/// partition of a wide topic its own connection, few enough that ports stay manageable.
pub const MAX_BROKERS_PER_GATEWAY: u16 = 64;

/// Why `gateway.listeners` cannot be served, if it cannot.
fn validate_listeners(gateway: &GatewayConfig) -> Result<(), String> {
    let listeners = gateway.effective_listeners();
    let mut names = std::collections::HashSet::new();
    for listener in &listeners {
        let name = &listener.name;
        if gateway.brokers > 1 {
            let listen_port = listener
                .listen_addr
                .parse::<SocketAddr>()
                .map_or(0, |a| a.port());
            let advertised_port = listener
                .advertised_addr
                .as_deref()
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .unwrap_or(0);
            if listen_port == 0 && advertised_port != 0 {
                return Err(format!(
                    "{name}: with gateway.brokers above 1, an advertised port needs a fixed \
                     listen port (broker i listens on both + i)"
                ));
            }
            let last = u32::from(listen_port.max(advertised_port)) + u32::from(gateway.brokers) - 1;
            if listen_port != 0 && last > u32::from(u16::MAX) {
                return Err(format!(
                    "{name}: {} brokers from port {listen_port} run past port 65535",
                    gateway.brokers
                ));
            }
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "has a listener named {name:?}: names are letters, digits and `_`"
            ));
        }
        if !names.insert(name.to_ascii_uppercase()) {
            return Err(format!("names {name:?} twice"));
        }
        if listener.listen_addr.parse::<SocketAddr>().is_err() {
            return Err(format!(
                "{name}: listen_addr {:?} must be an ip:port such as 0.0.0.0:9092",
                listener.listen_addr
            ));
        }
        if listener.security_protocol.uses_tls()
            && (gateway.tls.cert_file.is_none() || gateway.tls.key_file.is_none())
        {
            return Err(format!(
                "{name}: {} needs gateway.tls.cert_file and gateway.tls.key_file",
                listener.security_protocol.name()
            ));
        }
        if listener.security_protocol.uses_sasl() && gateway.sasl.mechanisms.is_empty() {
            return Err(format!(
                "{name}: {} needs at least one mechanism in gateway.sasl.mechanisms",
                listener.security_protocol.name()
            ));
        }
    }
    Ok(())
}

impl Config {
    /// Loads defaults, then `file` when given, then `YAKS_*` variables, then validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::figment(file)
            .extract::<Config>()
            .map_err(Box::new)?
            .validated()
    }

    /// The figment behind [`Config::load`], exposed so callers can layer overrides on top.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let env = Env::prefixed("YAKS_").split("__").filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            SECTIONS.iter().any(|s| key.starts_with(&format!("{s}.")))
        });
        figment.merge(env)
    }

    /// Checks what serde cannot.
    pub fn validated(self) -> Result<Config, ConfigError> {
        fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                problem: problem.into(),
            }
        }
        if self.gateway.listen_addr.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "gateway.listen_addr",
                "must be an ip:port such as 0.0.0.0:9092",
            ));
        }
        if let Some(bad) = self
            .gateway
            .authorization
            .super_user_list()
            .into_iter()
            .find(|p| {
                !p.split_once(':')
                    .is_some_and(|(kind, name)| !kind.is_empty() && !name.is_empty())
            })
        {
            return Err(invalid(
                "gateway.authorization.super_users",
                format!("has {bad:?}: each principal is `Type:name`, such as `User:admin`"),
            ));
        }
        if !(1..=MAX_BROKERS_PER_GATEWAY).contains(&self.gateway.brokers) {
            return Err(invalid(
                "gateway.brokers",
                format!("must be 1 to {MAX_BROKERS_PER_GATEWAY}"),
            ));
        }
        validate_listeners(&self.gateway)
            .map_err(|problem| invalid("gateway.listeners", problem))?;
        if let Some(unknown) = self
            .gateway
            .sasl
            .mechanisms
            .iter()
            .find(|m| !SASL_MECHANISMS.contains(&m.as_str()))
        {
            return Err(invalid(
                "gateway.sasl.mechanisms",
                format!(
                    "names {unknown:?}; yaks serves {}",
                    SASL_MECHANISMS.join(", ")
                ),
            ));
        }
        let oauth = &self.gateway.sasl.oauthbearer;
        if self
            .gateway
            .sasl
            .mechanisms
            .iter()
            .any(|m| m == "OAUTHBEARER")
        {
            match oauth.jwks_url.as_deref() {
                Some(url) if url.starts_with("https://") || url.starts_with("http://") => {}
                _ => {
                    return Err(invalid(
                        "gateway.sasl.oauthbearer.jwks_url",
                        "must be the identity provider's JWKS URL when OAUTHBEARER is offered",
                    ));
                }
            }
        }
        if oauth.principal_claim.is_empty() {
            return Err(invalid(
                "gateway.sasl.oauthbearer.principal_claim",
                "must name a claim",
            ));
        }
        if self.gateway.tls.reload_interval_ms < 100 {
            return Err(invalid(
                "gateway.tls.reload_interval_ms",
                "must be at least 100",
            ));
        }
        if self.gateway.tls.client_auth != ClientAuth::None
            && self.gateway.tls.client_ca_file.is_none()
        {
            return Err(invalid(
                "gateway.tls.client_ca_file",
                "must be set when gateway.tls.client_auth asks for client certificates",
            ));
        }
        if self.gateway.http_addr.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "gateway.http_addr",
                "must be an ip:port such as 0.0.0.0:9096",
            ));
        }
        if self.compactor.http_addr.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "compactor.http_addr",
                "must be an ip:port such as 0.0.0.0:9097",
            ));
        }
        if self.writer.listen_addr.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "writer.listen_addr",
                "must be an ip:port such as 0.0.0.0:9094",
            ));
        }
        if self.writer.producer_id_expiration_ms < 1000 {
            return Err(invalid(
                "writer.producer_id_expiration_ms",
                "must be at least 1000",
            ));
        }
        if self.gateway.max_frame_bytes < 1024 {
            return Err(invalid("gateway.max_frame_bytes", "must be at least 1024"));
        }
        if self.gateway.max_in_flight_bytes < u64::from(self.gateway.max_frame_bytes) {
            return Err(invalid(
                "gateway.max_in_flight_bytes",
                "must be at least gateway.max_frame_bytes",
            ));
        }
        if self.gateway.default_partitions < 1 {
            return Err(invalid("gateway.default_partitions", "must be at least 1"));
        }
        if self.gateway.max_partitions_per_topic < 1 {
            return Err(invalid(
                "gateway.max_partitions_per_topic",
                "must be at least 1",
            ));
        }
        if self.compactor.key_compaction_check_ms < 100 {
            return Err(invalid(
                "compactor.key_compaction_check_ms",
                "must be at least 100",
            ));
        }
        if self.compactor.key_map_bytes < 1024 {
            return Err(invalid("compactor.key_map_bytes", "must be at least 1024"));
        }
        if self.compactor.small_bytes > self.compactor.target_bytes
            || self.compactor.target_bytes < 1
        {
            return Err(invalid(
                "compactor.small_bytes",
                "must be at most compactor.target_bytes (which must be positive)",
            ));
        }
        if self.compactor.visibility_timeout_s < 1 || self.compactor.max_receives < 1 {
            return Err(invalid(
                "compactor.visibility_timeout_s",
                "visibility_timeout_s and max_receives must be at least 1",
            ));
        }
        if self.gateway.group_min_session_timeout_ms < 1
            || self.gateway.group_min_session_timeout_ms > self.gateway.group_max_session_timeout_ms
        {
            return Err(invalid(
                "gateway.group_min_session_timeout_ms",
                "must be at least 1 and at most gateway.group_max_session_timeout_ms",
            ));
        }
        if self.gateway.transactional_id_expiration_ms < 1 {
            return Err(invalid(
                "gateway.transactional_id_expiration_ms",
                "must be at least 1",
            ));
        }
        if self.gateway.transaction_max_timeout_ms < 1 {
            return Err(invalid(
                "gateway.transaction_max_timeout_ms",
                "must be at least 1",
            ));
        }
        for url in &self.gateway.writer_urls {
            if !url.starts_with("http://") {
                return Err(invalid(
                    "gateway.writer_urls",
                    format!("entries must start with http:// (got {url:?})"),
                ));
            }
        }
        for url in &self.gateway.reader_urls {
            if !url.starts_with("http://") {
                return Err(invalid(
                    "gateway.reader_urls",
                    format!("entries must start with http:// (got {url:?})"),
                ));
            }
        }
        if self.reader.listen_addr.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "reader.listen_addr",
                "must be an ip:port such as 0.0.0.0:9095",
            ));
        }
        if let Some(url) = &self.reader.advertised_url
            && !url.starts_with("http://")
        {
            return Err(invalid(
                "reader.advertised_url",
                format!("must start with http:// (got {url:?})"),
            ));
        }
        if let Some(url) = &self.writer.advertised_url
            && !url.starts_with("http://")
        {
            return Err(invalid(
                "writer.advertised_url",
                format!("must start with http:// (got {url:?})"),
            ));
        }
        if self.reader.cache_block_bytes < 64 * 1024
            || self.reader.cache_block_bytes > MAX_CACHE_BLOCK_BYTES
        {
            return Err(invalid(
                "reader.cache_block_bytes",
                format!("must be between 64 KiB and {MAX_CACHE_BLOCK_BYTES} bytes"),
            ));
        }
        if self.reader.cache_memory_bytes < self.reader.cache_block_bytes {
            return Err(invalid(
                "reader.cache_memory_bytes",
                "must hold at least one block (reader.cache_block_bytes)",
            ));
        }
        if self.reader.cache_disk_bytes > 0 && self.reader.cache_disk_bytes < 64 * 1024 * 1024 {
            return Err(invalid(
                "reader.cache_disk_bytes",
                "must be 0 (no disk tier) or at least 64 MiB",
            ));
        }
        if self.writer.flush_bytes == 0 {
            return Err(invalid("writer.flush_bytes", "must be greater than 0"));
        }
        if self.writer.flush_interval_ms == 0 {
            return Err(invalid(
                "writer.flush_interval_ms",
                "must be greater than 0",
            ));
        }
        // 0 would leave the request rate of a latency-bound load unbounded.
        if self.writer.min_flush_interval_ms == 0 {
            return Err(invalid(
                "writer.min_flush_interval_ms",
                "must be greater than 0",
            ));
        }
        if self.writer.max_buffered_bytes < self.writer.flush_bytes {
            return Err(invalid(
                "writer.max_buffered_bytes",
                "must be at least writer.flush_bytes",
            ));
        }
        if self.writer.max_uploads_in_flight == 0 {
            return Err(invalid(
                "writer.max_uploads_in_flight",
                "must be at least 1",
            ));
        }
        if self.postgres.pool_size == 0 {
            return Err(invalid("postgres.pool_size", "must be at least 1"));
        }
        if self.s3.bucket.is_empty() {
            return Err(invalid("s3.bucket", "must not be empty"));
        }
        if self.s3.max_attempts == 0 {
            return Err(invalid("s3.max_attempts", "must be at least 1"));
        }
        if self.s3.attempt_timeout_ms == 0
            || self.s3.attempt_timeout_ms > self.s3.operation_timeout_ms
        {
            return Err(invalid(
                "s3.attempt_timeout_ms",
                "must be positive and at most s3.operation_timeout_ms",
            ));
        }
        if self.gateway.writer_timeout_ms <= self.s3.operation_timeout_ms {
            return Err(invalid(
                "gateway.writer_timeout_ms",
                "must exceed s3.operation_timeout_ms, so a writer's failed upload is reported \
                 before the gateway stops waiting for it",
            ));
        }
        if self.s3.access_key_id.is_some() != self.s3.secret_access_key.is_some() {
            return Err(invalid(
                "s3.access_key_id",
                "and s3.secret_access_key must be set together",
            ));
        }
        if self.registry.heartbeat_ms == 0
            || self.registry.heartbeat_ms * 2 > self.registry.lease_ms
        {
            return Err(invalid(
                "registry.heartbeat_ms",
                "must be positive and at most half of registry.lease_ms",
            ));
        }
        if let Some(endpoint) = &self.log.otlp_endpoint
            && !endpoint.starts_with("http://")
        {
            return Err(invalid(
                "log.otlp_endpoint",
                format!(
                    "must be an http:// URL such as http://localhost:4318/v1/traces (got {endpoint:?})"
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.log.otlp_sample_ratio) {
            return Err(invalid("log.otlp_sample_ratio", "must be between 0 and 1"));
        }
        if self.log.format != "text" && self.log.format != "json" {
            return Err(invalid("log.format", "must be `text` or `json`"));
        }
        Ok(self)
    }
}

#[cfg(test)]
// figment's Jail closures return its large error type by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validated().is_ok());
    }

    #[test]
    fn file_then_env_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "yaks.toml",
                "[s3]\nbucket = \"from-file\"\nregion = \"eu-west-1\"\n",
            )?;
            jail.set_env("YAKS_S3__BUCKET", "from-env");
            jail.set_env("YAKS_DATA_DIR", "/ignored");
            let config = Config::load(Some(Path::new("yaks.toml"))).expect("loads");
            assert_eq!(config.s3.bucket, "from-env");
            assert_eq!(config.s3.region, "eu-west-1");
            assert_eq!(config.writer, WriterConfig::default());
            Ok(())
        });
    }

    #[test]
    fn invalid_values_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("YAKS_WRITER__FLUSH_BYTES", "lots");
            let err = Config::load(None).expect_err("rejects");
            assert!(
                err.to_string()
                    .to_lowercase()
                    .contains("writer.flush_bytes"),
                "{err}"
            );

            jail.set_env("YAKS_WRITER__FLUSH_BYTES", "0");
            let err = Config::load(None).expect_err("rejects");
            assert!(err.to_string().contains("writer.flush_bytes"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("yaks.toml", "[writer]\nflush_byte = 5\n")?;
            let err = Config::load(Some(Path::new("yaks.toml"))).expect_err("rejects");
            assert!(err.to_string().contains("flush_byte"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn listeners_come_from_the_file_or_one_variable_and_are_checked() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "yaks.toml",
                r#"
[[gateway.listeners]]
name = "INTERNAL"
listen_addr = "127.0.0.1:9092"
security_protocol = "PLAINTEXT"

[[gateway.listeners]]
name = "EXTERNAL"
listen_addr = "0.0.0.0:9093"
advertised_addr = "kafka.example.com:9093"
security_protocol = "SSL"

[gateway.tls]
cert_file = "/etc/yaks/tls.crt"
key_file = "/etc/yaks/tls.key"
"#,
            )?;
            let config = Config::load(Some(Path::new("yaks.toml"))).expect("loads");
            let listeners = config.gateway.effective_listeners();
            assert_eq!(listeners.len(), 2);
            assert_eq!(listeners[1].security_protocol, SecurityProtocol::Ssl);
            assert_eq!(
                listeners[1].advertised_addr.as_deref(),
                Some("kafka.example.com:9093")
            );

            // TLS without a certificate is refused, naming the listener.
            jail.create_file(
                "no-tls.toml",
                "[[gateway.listeners]]\nname = \"EXTERNAL\"\nlisten_addr = \"0.0.0.0:9093\"\n\
                 security_protocol = \"SSL\"\n",
            )?;
            let err = Config::load(Some(Path::new("no-tls.toml"))).expect_err("rejects");
            assert!(
                err.to_string().contains("gateway.listeners")
                    && err.to_string().contains("EXTERNAL"),
                "{err}"
            );

            jail.set_env(
                "YAKS_GATEWAY__LISTENERS",
                r#"[{name="A",listen_addr="127.0.0.1:1",security_protocol="PLAINTEXT"},{name="a",listen_addr="127.0.0.1:2",security_protocol="PLAINTEXT"}]"#,
            );
            let err = Config::load(None).expect_err("rejects");
            assert!(err.to_string().contains("twice"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn without_listeners_listen_addr_is_one_plaintext_listener() {
        let listeners = GatewayConfig::default().effective_listeners();
        assert_eq!(listeners.len(), 1);
        assert_eq!(listeners[0].name, "PLAINTEXT");
        assert_eq!(listeners[0].listen_addr, "0.0.0.0:9092");
        assert_eq!(listeners[0].security_protocol, SecurityProtocol::Plaintext);
    }

    #[test]
    fn brokers_per_gateway_are_bounded_and_need_ports_they_can_count_up_from() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("YAKS_GATEWAY__BROKERS", "4");
            let config = Config::load(None).expect("loads");
            assert_eq!(config.gateway.brokers, 4);

            jail.set_env("YAKS_GATEWAY__BROKERS", "0");
            let err = Config::load(None).expect_err("rejects");
            assert!(err.to_string().contains("gateway.brokers"), "{err}");

            // Broker i advertises port + i, which only means something if it listens there.
            jail.set_env("YAKS_GATEWAY__BROKERS", "2");
            jail.set_env("YAKS_GATEWAY__LISTEN_ADDR", "127.0.0.1:0");
            jail.set_env("YAKS_GATEWAY__ADVERTISED_ADDR", "kafka.example.com:9092");
            let err = Config::load(None).expect_err("rejects");
            assert!(err.to_string().contains("fixed listen port"), "{err}");

            jail.set_env("YAKS_GATEWAY__LISTEN_ADDR", "127.0.0.1:65535");
            jail.set_env("YAKS_GATEWAY__ADVERTISED_ADDR", "kafka.example.com:0");
            let err = Config::load(None).expect_err("rejects");
            assert!(err.to_string().contains("past port 65535"), "{err}");
            Ok(())
        });
    }
}
