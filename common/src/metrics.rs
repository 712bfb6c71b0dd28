//! Every Prometheus metric yaks exports, in one catalogue.
//!
//! One process-wide registry holds the metrics of every role, so `yaks dev` (all roles in one
//! process) and a split deployment (one role per process) export the same names; a process
//! shows samples only for the roles it runs. Names follow `yaks_<role>_<what>_<unit>`;
//! counters get `_total` from the encoder. `/metrics` on every role's HTTP port renders
//! [`render`] (OpenMetrics text, which Prometheus scrapes natively).
//!
//! Vocabulary:
//! - *share*: S3 requests that carry several topics' bytes (a writer's flush, a compaction
//!   input) are attributed to each topic by its share of the bytes, so the per-topic request
//!   counters are fractional and add up to the real request count. This is what makes S3
//!   cost visible per topic.
//! - *tier*: the reader cache's memory or disk tier.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry, Unit};

/// Label of S3 requests that belong to no single topic (listing, deleting garbage).
pub const NO_TOPIC: &str = "-";

/// A counter that takes fractional increments (per-topic shares of one request).
pub type FloatCounter = Counter<f64, std::sync::atomic::AtomicU64>;

/// A gauge of fractional values (ratios, ages in seconds).
pub type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Labels of a Kafka request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// API name (`Produce`, `Fetch`, ...).
    pub api: &'static str,
    /// Negotiated version.
    pub version: i16,
    /// Kafka error name of the response (`NONE` when it carries no error).
    pub error: &'static str,
}

/// Labels of a request's latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// API name.
    pub api: &'static str,
    /// Negotiated version.
    pub version: i16,
}

/// A topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    /// Topic name.
    pub topic: String,
}

/// A consumer group's lag on one topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupTopicLabels {
    /// Group id.
    pub group: String,
    /// Topic name.
    pub topic: String,
}

/// A SASL authentication's mechanism and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SaslLabels {
    /// `SCRAM-SHA-256`, `SCRAM-SHA-512`, `PLAIN`, or `none` before a mechanism was chosen.
    pub mechanism: &'static str,
    /// `ok`, `failed` (wrong credentials), `error` (the store did not answer), `refused`
    /// (a protocol violation: an unknown mechanism, a request before authentication).
    pub outcome: &'static str,
}

/// An authorization denied: what was asked, on what kind of resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabels {
    /// Kafka's operation name: `READ`, `WRITE`, `DESCRIBE`…
    pub operation: &'static str,
    /// Kafka's resource type name: `TOPIC`, `GROUP`, `CLUSTER`, `TRANSACTIONAL_ID`.
    pub resource_type: &'static str,
}

/// A transaction that ended: how, and on whose word.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TxnEndLabels {
    /// `commit` or `abort`.
    pub outcome: &'static str,
    /// `client` (EndTxn), `fence` (a new incarnation's InitProducerId) or `timeout`.
    pub reason: &'static str,
}

/// An S3 operation on behalf of a topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct S3Labels {
    /// `put`, `get`, `delete`, `list`, `head`.
    pub operation: &'static str,
    /// Topic name, or [`NO_TOPIC`].
    pub topic: String,
}

/// An operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// What was done.
    pub operation: &'static str,
}

/// A partition of a topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

/// How something ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok`, `failed`, ...
    pub outcome: &'static str,
}

/// What made a writer seal its buffer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// `full`, `idle`, `interval` or `shutdown`.
    pub trigger: &'static str,
}

/// A cache tier.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabels {
    /// `memory` or `disk`.
    pub tier: &'static str,
}

/// The registry, and the name and help of every family registered in it (a family with no
/// samples yet is not rendered, but it is in the catalogue).
#[derive(Default)]
struct Catalogue {
    registry: Registry,
    families: Vec<(String, String)>,
}

impl Catalogue {
    fn register(&mut self, name: impl Into<String>, help: &str, metric: impl Metric) {
        let name = name.into();
        self.families.push((name.clone(), help.to_owned()));
        self.registry.register(name, help, metric);
    }

    fn register_with_unit(
        &mut self,
        name: impl Into<String>,
        help: &str,
        unit: Unit,
        metric: impl Metric,
    ) {
        let name = name.into();
        let suffix = match &unit {
            Unit::Bytes => "bytes",
            Unit::Seconds => "seconds",
            _ => "",
        };
        self.families
            .push((format!("{name}_{suffix}"), help.to_owned()));
        self.registry.register_with_unit(name, help, unit, metric);
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

fn bytes_histogram() -> Histogram {
    // 1 KiB to 256 MiB.
    Histogram::new(exponential_buckets(1024.0, 4.0, 10))
}

fn count_histogram() -> Histogram {
    // 1 to ~65k.
    Histogram::new(exponential_buckets(1.0, 4.0, 9))
}

fn latency_family<L: Clone + std::hash::Hash + Eq>() -> HistogramFamily<L> {
    Family::new_with_constructor(latency_histogram)
}

/// S3 traffic of one role, by operation and topic.
pub struct S3Metrics {
    requests: Family<S3Labels, FloatCounter>,
    bytes: Family<S3Labels, FloatCounter>,
    errors: Family<S3Labels, FloatCounter>,
    duration: HistogramFamily<OperationLabels>,
}

impl S3Metrics {
    fn register(registry: &mut Catalogue, role: &str) -> S3Metrics {
        let metrics = S3Metrics {
            requests: Family::default(),
            bytes: Family::default(),
            errors: Family::default(),
            duration: latency_family(),
        };
        registry.register(
            format!("yaks_{role}_s3_requests"),
            "S3 requests, attributed to topics by byte share",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            format!("yaks_{role}_s3"),
            "S3 bytes sent or received, by topic",
            Unit::Bytes,
            metrics.bytes.clone(),
        );
        registry.register(
            format!("yaks_{role}_s3_errors"),
            "S3 requests that failed after their retries, attributed to topics by byte share",
            metrics.errors.clone(),
        );
        registry.register_with_unit(
            format!("yaks_{role}_s3_request_duration"),
            "S3 request latency including retries",
            Unit::Seconds,
            metrics.duration.clone(),
        );
        metrics
    }

    /// Records one request of `operation` that moved `shares` bytes per topic (empty: no
    /// topic, e.g. a delete of garbage) and took `elapsed`; `ok` false when it failed.
    pub fn record<T: AsRef<str>>(
        &self,
        operation: &'static str,
        shares: &[(T, u64)],
        elapsed: Duration,
        ok: bool,
    ) {
        self.duration
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
        let total: u64 = shares.iter().map(|(_, bytes)| bytes).sum();
        if shares.is_empty() || total == 0 {
            let labels = S3Labels {
                operation,
                topic: shares
                    .first()
                    .map_or(NO_TOPIC, |(topic, _)| topic.as_ref())
                    .to_owned(),
            };
            self.count(&labels, 1.0, 0, ok);
            return;
        }
        for (topic, bytes) in shares {
            let labels = S3Labels {
                operation,
                topic: topic.as_ref().to_owned(),
            };
            self.count(&labels, *bytes as f64 / total as f64, *bytes, ok);
        }
    }

    /// Runs `call`, one request of `operation` moving `shares` bytes per topic, and
    /// records it.
    pub async fn measure<T, E, S: AsRef<str>>(
        &self,
        operation: &'static str,
        shares: &[(S, u64)],
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = crate::clock::now();
        let result = call.await;
        self.record(operation, shares, started.elapsed(), result.is_ok());
        result
    }

    fn count(&self, labels: &S3Labels, share: f64, bytes: u64, ok: bool) {
        self.requests.get_or_create(labels).inc_by(share);
        if ok {
            self.bytes.get_or_create(labels).inc_by(bytes as f64);
        } else {
            self.errors.get_or_create(labels).inc_by(share);
        }
    }
}

/// The gateway's metrics.
pub struct GatewayMetrics {
    /// Requests answered, by API, version and the response's error.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from a request's frame read to its response encoded.
    pub request_duration: HistogramFamily<ApiLabels>,
    /// Open client connections.
    pub connections: Gauge,
    /// Record bytes accepted for produce, by topic (valid batches only).
    pub produce_bytes: Family<TopicLabels, Counter>,
    /// Records accepted for produce, by topic.
    pub produce_records: Family<TopicLabels, Counter>,
    /// Client produce requests carried by each internal request to a writer: how much of
    /// the per-request cost of the HTTP hop a stream of small produces shares.
    pub produces_per_writer_request: Histogram,
    /// Record bytes returned by fetch, by topic.
    pub fetch_bytes: Family<TopicLabels, Counter>,
    /// Record batches returned by fetch, by topic.
    pub fetch_batches: Family<TopicLabels, Counter>,
    /// Consumer groups this gateway coordinates.
    pub groups: Gauge,
    /// Records between a group's committed offsets and the high watermarks, by topic.
    pub group_lag: Family<GroupTopicLabels, Gauge>,
    /// S3 reads (ListOffsets by timestamp).
    pub s3: S3Metrics,
    /// TLS handshakes on `SSL` listeners, by outcome (`ok`, `failed`): a rising `failed`
    /// is clients with the wrong CA, plaintext clients on a TLS port, or an expired
    /// certificate.
    pub tls_handshakes: Family<OutcomeLabels, Counter>,
    /// Reads of changed TLS files, by outcome (`ok`, `failed`; a failed one keeps the
    /// certificate in use).
    pub tls_reloads: Family<OutcomeLabels, Counter>,
    /// SASL authentications on `SASL_*` listeners, by mechanism and outcome.
    pub sasl_authentications: Family<SaslLabels, Counter>,
    /// Requests (or parts of them) refused by the ACLs, by operation and resource type.
    pub authorization_denials: Family<DenialLabels, Counter>,
    /// ACL bindings this gateway decides with.
    pub acl_bindings: Gauge,
    /// Reads of the ACL bindings, by outcome (`ok`, `failed`; a failed one keeps the
    /// bindings in use).
    pub acl_reloads: Family<OutcomeLabels, Counter>,
    /// Transactions this gateway ended, by outcome and reason.
    pub transactions_ended: Family<TxnEndLabels, Counter>,
    /// Time from EndTxn to its answer: markers uploaded and the end committed.
    pub transaction_end_seconds: Histogram,
}

/// The writer's metrics.
pub struct WriterMetrics {
    /// Flushes, by outcome (`committed`, `upload_failed`, `commit_failed`).
    pub flushes: Family<OutcomeLabels, Counter>,
    /// Buffers sealed, by what made them due: how often latency-bound producers had a
    /// flush brought forward (`idle`) against throughput filling objects (`full`).
    pub flush_triggers: Family<TriggerLabels, Counter>,
    /// Size of each flushed object.
    pub flush_size: Histogram,
    /// Partitions in each flushed object.
    pub flush_partitions: Histogram,
    /// Time to upload a flushed object.
    pub flush_upload_duration: Histogram,
    /// Time to commit a flushed object's offsets.
    pub flush_commit_duration: Histogram,
    /// Time from an append's acceptance to its buffer's seal: what a latency-bound
    /// producer waits before its flush even starts.
    pub append_wait: Histogram,
    /// Time from an append's acceptance to its answer: the writer's share of a produce.
    pub append_duration: Histogram,
    /// Bytes buffered or uploading (what back-pressure is measured against).
    pub buffered: Gauge,
    /// Flush uploads.
    pub s3: S3Metrics,
}

/// The reader's metrics.
pub struct ReaderMetrics {
    /// Cache lookups answered by a tier.
    pub cache_hits: Family<TierLabels, Counter>,
    /// Cache lookups a tier could not answer (a disk miss is an S3 GET).
    pub cache_misses: Family<TierLabels, Counter>,
    /// Blocks evicted from a tier.
    pub cache_evictions: Family<TierLabels, Counter>,
    /// Blocks not cached that a fetch started loading ahead of the reads it made.
    pub read_ahead_blocks: Counter,
    /// Time to answer an internal fetch, long-poll included.
    pub fetch_duration: Histogram,
    /// Block reads on cache misses.
    pub s3: S3Metrics,
}

/// The compactor's metrics.
pub struct CompactorMetrics {
    /// Compaction jobs, by outcome (`compacted`, `lost`, `failed`).
    pub jobs: Family<OutcomeLabels, Counter>,
    /// Objects read by successful jobs.
    pub objects_in: Counter,
    /// Objects written by successful jobs.
    pub objects_out: Counter,
    /// Bytes of objects deleted by garbage collection.
    pub reclaimed_bytes: Counter,
    /// Objects deleted by garbage collection.
    pub objects_deleted: Counter,
    /// Partitions whose log start retention moved.
    pub retention_moves: Counter,
    /// Key compaction: bytes of the batches judged, per topic.
    pub key_compaction_bytes_in: Family<TopicLabels, Counter>,
    /// Key compaction: bytes of what was kept of them.
    pub key_compaction_bytes_out: Family<TopicLabels, Counter>,
    /// Key compaction: records judged.
    pub key_compaction_records_in: Family<TopicLabels, Counter>,
    /// Key compaction: records kept.
    pub key_compaction_records_out: Family<TopicLabels, Counter>,
    /// Key compaction passes, by outcome (`compacted`, `lost`, `failed`).
    pub key_compaction_passes: Family<OutcomeLabels, Counter>,
    /// Share of a compacted partition's bytes not judged yet (`min.cleanable.dirty.ratio`
    /// compares with it), as of the last check that found no pass due.
    pub dirty_ratio: Family<PartitionLabels, FloatGauge>,
    /// Age of the oldest record not judged yet, seconds (`max.compaction.lag.ms` bounds
    /// it), as of the last check that found no pass due; 0 with nothing dirty.
    pub oldest_dirty_age: Family<PartitionLabels, FloatGauge>,
    /// Job inputs and outputs, garbage deletes and bucket listings.
    pub s3: S3Metrics,
}

/// The PostgreSQL metastore's metrics (one pool per process, shared by its roles).
pub struct MetastoreMetrics {
    /// Time spent waiting for a pooled connection.
    pub pool_wait: Histogram,
    /// Time an operation held its connection (its queries), by operation.
    pub operation_duration: HistogramFamily<OperationLabels>,
    /// PostgreSQL errors (connection losses, refused statements).
    pub errors: Counter,
}

/// Every metric, and the registry that renders them.
pub struct Metrics {
    /// Gateway.
    pub gateway: GatewayMetrics,
    /// Writer.
    pub writer: WriterMetrics,
    /// Reader.
    pub reader: ReaderMetrics,
    /// Compactor.
    pub compactor: CompactorMetrics,
    /// Metastore.
    pub metastore: MetastoreMetrics,
    catalogue: Catalogue,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// The process's metrics as OpenMetrics text, for `/metrics`.
pub fn render() -> String {
    let mut text = String::new();
    if let Err(e) =
        prometheus_client::encoding::text::encode(&mut text, &METRICS.catalogue.registry)
    {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    text
}

/// Every metric family yaks exports, as (name, help), in registration order. Names are
/// as exposed, without the `_total` counters get or a histogram's `_bucket/_sum/_count`.
pub fn families() -> &'static [(String, String)] {
    &METRICS.catalogue.families
}

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Metrics {
    fn new() -> Metrics {
        let mut catalogue = Catalogue::default();
        let gateway = GatewayMetrics::register(&mut catalogue);
        let writer = WriterMetrics::register(&mut catalogue);
        let reader = ReaderMetrics::register(&mut catalogue);
        let compactor = CompactorMetrics::register(&mut catalogue);
        let metastore = MetastoreMetrics::register(&mut catalogue);
        Metrics {
            gateway,
            writer,
            reader,
            compactor,
            metastore,
            catalogue,
        }
    }
}

impl GatewayMetrics {
    fn register(r: &mut Catalogue) -> GatewayMetrics {
        let m = GatewayMetrics {
            requests: Family::default(),
            request_duration: latency_family(),
            connections: Gauge::default(),
            produce_bytes: Family::default(),
            produce_records: Family::default(),
            produces_per_writer_request: count_histogram(),
            fetch_bytes: Family::default(),
            fetch_batches: Family::default(),
            groups: Gauge::default(),
            group_lag: Family::default(),
            s3: S3Metrics::register(r, "gateway"),
            tls_handshakes: Family::default(),
            tls_reloads: Family::default(),
            sasl_authentications: Family::default(),
            authorization_denials: Family::default(),
            acl_bindings: Gauge::default(),
            acl_reloads: Family::default(),
            transactions_ended: Family::default(),
            transaction_end_seconds: latency_histogram(),
        };
        r.register(
            "yaks_gateway_requests",
            "Kafka requests answered, by api, version and error",
            m.requests.clone(),
        );
        r.register_with_unit(
            "yaks_gateway_request_duration",
            "Kafka request latency, from frame read to response encoded",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register(
            "yaks_gateway_connections",
            "Open client connections",
            m.connections.clone(),
        );
        r.register_with_unit(
            "yaks_gateway_produce",
            "Record batch bytes accepted for produce, by topic",
            Unit::Bytes,
            m.produce_bytes.clone(),
        );
        r.register(
            "yaks_gateway_produce_records",
            "Records accepted for produce, by topic",
            m.produce_records.clone(),
        );
        r.register(
            "yaks_gateway_produces_per_writer_request",
            "Client produce requests carried by each internal request to a writer",
            m.produces_per_writer_request.clone(),
        );
        r.register_with_unit(
            "yaks_gateway_fetch",
            "Record batch bytes returned by fetch, by topic",
            Unit::Bytes,
            m.fetch_bytes.clone(),
        );
        r.register(
            "yaks_gateway_fetch_batches",
            "Record batches returned by fetch, by topic",
            m.fetch_batches.clone(),
        );
        r.register(
            "yaks_gateway_groups",
            "Consumer groups this gateway coordinates",
            m.groups.clone(),
        );
        r.register(
            "yaks_gateway_group_lag_records",
            "Records between a group's committed offsets and the high watermarks, by topic",
            m.group_lag.clone(),
        );
        r.register(
            "yaks_gateway_tls_handshakes",
            "TLS handshakes on TLS listeners, by outcome",
            m.tls_handshakes.clone(),
        );
        r.register(
            "yaks_gateway_tls_reloads",
            "Reads of changed TLS certificate files, by outcome",
            m.tls_reloads.clone(),
        );
        r.register(
            "yaks_gateway_sasl_authentications",
            "SASL authentications, by mechanism and outcome",
            m.sasl_authentications.clone(),
        );
        r.register(
            "yaks_gateway_authorization_denials",
            "Requests or parts of requests refused by the ACLs, by operation and resource type",
            m.authorization_denials.clone(),
        );
        r.register(
            "yaks_gateway_acl_bindings",
            "ACL bindings this gateway decides with",
            m.acl_bindings.clone(),
        );
        r.register(
            "yaks_gateway_acl_reloads",
            "Reads of the ACL bindings, by outcome",
            m.acl_reloads.clone(),
        );
        r.register(
            "yaks_gateway_transactions_ended",
            "Transactions ended, by outcome (commit, abort) and reason (client, fence, timeout)",
            m.transactions_ended.clone(),
        );
        r.register_with_unit(
            "yaks_gateway_transaction_end",
            "Time from EndTxn to its answer: markers uploaded and the end committed",
            Unit::Seconds,
            m.transaction_end_seconds.clone(),
        );
        m
    }
}

impl WriterMetrics {
    fn register(r: &mut Catalogue) -> WriterMetrics {
        let m = WriterMetrics {
            flushes: Family::default(),
            flush_triggers: Family::default(),
            flush_size: bytes_histogram(),
            flush_partitions: count_histogram(),
            flush_upload_duration: latency_histogram(),
            flush_commit_duration: latency_histogram(),
            append_wait: latency_histogram(),
            append_duration: latency_histogram(),
            buffered: Gauge::default(),
            s3: S3Metrics::register(r, "writer"),
        };
        r.register(
            "yaks_writer_flushes",
            "Flushes, by outcome",
            m.flushes.clone(),
        );
        r.register(
            "yaks_writer_flush_triggers",
            "Buffers sealed, by what made them due (full, idle, interval, shutdown)",
            m.flush_triggers.clone(),
        );
        r.register_with_unit(
            "yaks_writer_flush_size",
            "Size of each flushed object",
            Unit::Bytes,
            m.flush_size.clone(),
        );
        r.register(
            "yaks_writer_flush_partitions",
            "Partitions in each flushed object",
            m.flush_partitions.clone(),
        );
        r.register_with_unit(
            "yaks_writer_flush_upload",
            "Time to upload one flushed object",
            Unit::Seconds,
            m.flush_upload_duration.clone(),
        );
        r.register_with_unit(
            "yaks_writer_flush_commit",
            "Time to commit one flushed object's offsets to PostgreSQL",
            Unit::Seconds,
            m.flush_commit_duration.clone(),
        );
        r.register_with_unit(
            "yaks_writer_append_wait",
            "Time from an append's acceptance to the seal of the buffer holding it",
            Unit::Seconds,
            m.append_wait.clone(),
        );
        r.register_with_unit(
            "yaks_writer_append",
            "Time from an append's acceptance to its answer",
            Unit::Seconds,
            m.append_duration.clone(),
        );
        r.register_with_unit(
            "yaks_writer_buffered",
            "Bytes buffered or uploading",
            Unit::Bytes,
            m.buffered.clone(),
        );
        m
    }
}

impl ReaderMetrics {
    fn register(r: &mut Catalogue) -> ReaderMetrics {
        let m = ReaderMetrics {
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            cache_evictions: Family::default(),
            read_ahead_blocks: Counter::default(),
            fetch_duration: latency_histogram(),
            s3: S3Metrics::register(r, "reader"),
        };
        r.register(
            "yaks_reader_cache_hits",
            "Block lookups answered by a cache tier",
            m.cache_hits.clone(),
        );
        r.register(
            "yaks_reader_cache_misses",
            "Block lookups a cache tier could not answer",
            m.cache_misses.clone(),
        );
        r.register(
            "yaks_reader_cache_evictions",
            "Blocks evicted from a cache tier",
            m.cache_evictions.clone(),
        );
        r.register(
            "yaks_reader_read_ahead_blocks",
            "Blocks not cached that a fetch started loading ahead of its reads",
            m.read_ahead_blocks.clone(),
        );
        r.register_with_unit(
            "yaks_reader_fetch_duration",
            "Time to answer an internal fetch, long-poll included",
            Unit::Seconds,
            m.fetch_duration.clone(),
        );
        m
    }
}

impl CompactorMetrics {
    fn register(r: &mut Catalogue) -> CompactorMetrics {
        let m = CompactorMetrics {
            jobs: Family::default(),
            objects_in: Counter::default(),
            objects_out: Counter::default(),
            reclaimed_bytes: Counter::default(),
            objects_deleted: Counter::default(),
            retention_moves: Counter::default(),
            key_compaction_bytes_in: Family::default(),
            key_compaction_bytes_out: Family::default(),
            key_compaction_records_in: Family::default(),
            key_compaction_records_out: Family::default(),
            key_compaction_passes: Family::default(),
            dirty_ratio: Family::default(),
            oldest_dirty_age: Family::default(),
            s3: S3Metrics::register(r, "compactor"),
        };
        r.register(
            "yaks_compactor_jobs",
            "Compaction jobs, by outcome",
            m.jobs.clone(),
        );
        r.register(
            "yaks_compactor_objects_in",
            "Objects merged by successful jobs",
            m.objects_in.clone(),
        );
        r.register(
            "yaks_compactor_objects_out",
            "Objects written by successful jobs",
            m.objects_out.clone(),
        );
        r.register_with_unit(
            "yaks_compactor_reclaimed",
            "Bytes of objects deleted by garbage collection",
            Unit::Bytes,
            m.reclaimed_bytes.clone(),
        );
        r.register(
            "yaks_compactor_objects_deleted",
            "Objects deleted by garbage collection",
            m.objects_deleted.clone(),
        );
        r.register(
            "yaks_compactor_retention_moves",
            "Partitions whose log start offset retention moved",
            m.retention_moves.clone(),
        );
        r.register_with_unit(
            "yaks_compactor_key_compaction_in",
            "Bytes of batches key compaction judged, per topic",
            Unit::Bytes,
            m.key_compaction_bytes_in.clone(),
        );
        r.register_with_unit(
            "yaks_compactor_key_compaction_out",
            "Bytes key compaction kept of the batches it judged, per topic",
            Unit::Bytes,
            m.key_compaction_bytes_out.clone(),
        );
        r.register(
            "yaks_compactor_key_compaction_records_in",
            "Records key compaction judged, per topic",
            m.key_compaction_records_in.clone(),
        );
        r.register(
            "yaks_compactor_key_compaction_records_out",
            "Records key compaction kept, per topic",
            m.key_compaction_records_out.clone(),
        );
        r.register(
            "yaks_compactor_key_compaction_passes",
            "Key compaction passes over a partition, by outcome",
            m.key_compaction_passes.clone(),
        );
        r.register(
            "yaks_compactor_dirty_ratio",
            "Share of a compacted partition's bytes no key compaction has judged yet",
            m.dirty_ratio.clone(),
        );
        r.register_with_unit(
            "yaks_compactor_oldest_dirty_age",
            "Age of a compacted partition's oldest record no key compaction has judged yet",
            Unit::Seconds,
            m.oldest_dirty_age.clone(),
        );
        m
    }
}

impl MetastoreMetrics {
    fn register(r: &mut Catalogue) -> MetastoreMetrics {
        let m = MetastoreMetrics {
            pool_wait: latency_histogram(),
            operation_duration: latency_family(),
            errors: Counter::default(),
        };
        r.register_with_unit(
            "yaks_metastore_pool_wait",
            "Time waiting for a pooled PostgreSQL connection",
            Unit::Seconds,
            m.pool_wait.clone(),
        );
        r.register_with_unit(
            "yaks_metastore_operation_duration",
            "Time a metastore operation held its connection, by operation",
            Unit::Seconds,
            m.operation_duration.clone(),
        );
        r.register(
            "yaks_metastore_errors",
            "PostgreSQL errors: connection losses and refused statements",
            m.errors.clone(),
        );
        m
    }
}

/// The Kafka name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`), `NONE` for 0.
pub fn error_name(code: i16) -> &'static str {
    use kafka_protocol::ResponseError;
    if code == 0 {
        return "NONE";
    }
    static NAMES: LazyLock<std::collections::HashMap<i16, &'static str>> = LazyLock::new(|| {
        let mut names = std::collections::HashMap::new();
        for code in -1..=200i16 {
            if let Some(error) = ResponseError::try_from_code(code) {
                let name: &'static str = Box::leak(screaming_snake(&format!("{error:?}")).into());
                names.insert(code, name);
            }
        }
        names
    });
    NAMES.get(&code).copied().unwrap_or("UNKNOWN")
}

/// The name of a Kafka API (`Produce`, `ApiVersions`), as Kafka's own metrics spell it.
pub fn api_name(api_key: kafka_protocol::messages::ApiKey) -> &'static str {
    use kafka_protocol::messages::ApiKey;
    static NAMES: LazyLock<std::collections::HashMap<i16, &'static str>> = LazyLock::new(|| {
        let mut names = std::collections::HashMap::new();
        for key in 0..=200i16 {
            if let Ok(api) = ApiKey::try_from(key) {
                let name: &'static str = Box::leak(format!("{api:?}").into());
                names.insert(key, name);
            }
        }
        names
    });
    NAMES.get(&(api_key as i16)).copied().unwrap_or("Unknown")
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(i16::MAX), "UNKNOWN");
        assert_eq!(
            api_name(kafka_protocol::messages::ApiKey::ApiVersions),
            "ApiVersions"
        );
    }

    #[test]
    fn s3_shares_add_up_to_one_request() {
        let mut catalogue = Catalogue::default();
        let s3 = S3Metrics::register(&mut catalogue, "test");
        s3.record(
            "put",
            &[("a", 300), ("b", 100)],
            Duration::from_millis(5),
            true,
        );
        let a = S3Labels {
            operation: "put",
            topic: "a".into(),
        };
        let b = S3Labels {
            operation: "put",
            topic: "b".into(),
        };
        assert_eq!(s3.requests.get_or_create(&a).get(), 0.75);
        assert_eq!(s3.requests.get_or_create(&b).get(), 0.25);
        assert_eq!(s3.bytes.get_or_create(&a).get(), 300.0);
        s3.record::<&str>("delete", &[], Duration::from_millis(1), false);
        let none = S3Labels {
            operation: "delete",
            topic: NO_TOPIC.into(),
        };
        assert_eq!(s3.errors.get_or_create(&none).get(), 1.0);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &catalogue.registry).expect("encodes");
        assert!(
            text.contains("yaks_test_s3_requests_total{operation=\"put\",topic=\"a\"} 0.75"),
            "{text}"
        );
        assert!(text.contains("yaks_test_s3_bytes_total"), "{text}");
    }
}
