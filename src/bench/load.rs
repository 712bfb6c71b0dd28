//! Kafka load for `yaks bench`: producers that record every acknowledgement's latency, a
//! consumer that measures throughput, and an end-to-end latency probe.
//!
//! Producers are librdkafka `ThreadedProducer`s (acks=all, as users run them) whose delivery
//! callback receives the send time as its opaque value, so latency costs no allocation or
//! task per record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use yaks_common::clock::{Instant, SystemClock};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

/// Record size the issue measures with.
pub const RECORD_BYTES: usize = 1024;

/// Record size of the small-record rows, where a per-record or per-request cost shows.
pub const SMALL_RECORD_BYTES: usize = 100;

/// Latencies and counts of acknowledged records, shared by the producers of one run.
#[derive(Default)]
pub struct Acks {
    /// Microseconds from send to acknowledgement, one per acknowledged record.
    latencies_us: Mutex<Vec<u32>>,
    acked: AtomicU64,
    failed: AtomicU64,
    /// When the last acknowledgement arrived, µs after `origin`.
    last_us: AtomicU64,
    /// Microseconds each transaction's commit took, its records already acknowledged: the
    /// EndTxn round trip as the client sees it.
    commits_us: Mutex<Vec<u32>>,
    origin: Mutex<Option<Instant>>,
}

impl Acks {
    fn origin(&self) -> Instant {
        *self
            .origin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(yaks_common::clock::now)
    }
}

struct Timed(Arc<Acks>);

/// The opaque of a producer's first record, acknowledged before the clock starts: a
/// client's start-up (librdkafka's idempotent producer waits half a second on a timer
/// before it asks for its producer id, whatever the broker) is not the throughput measured.
const WARM_UP: usize = usize::MAX;

impl ClientContext for Timed {}

impl ProducerContext for Timed {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_us: usize) {
        if sent_us == WARM_UP {
            if result.is_err() {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let now_us = self.0.origin().elapsed().as_micros() as u64;
        match result {
            Ok(_) => {
                self.0.acked.fetch_add(1, Ordering::Relaxed);
                self.0.last_us.fetch_max(now_us, Ordering::Relaxed);
                let latency = now_us.saturating_sub(sent_us as u64).min(u32::MAX as u64) as u32;
                self.0
                    .latencies_us
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(latency);
            }
            Err(_) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// What a produce run achieved.
#[derive(Debug, Clone, Default)]
pub struct ProduceResult {
    /// Records acknowledged.
    pub acked: u64,
    /// Records that failed.
    pub failed: u64,
    /// Acknowledged MiB per second, first send to last acknowledgement.
    pub mib_per_s: f64,
    /// Acknowledged records per second.
    pub records_per_s: f64,
    /// Acknowledgement latency percentiles, ms: p50, p99, p99.9.
    pub ack_ms: [f64; 3],
    /// Transactional producers: the commit's latency percentiles, ms: p50, p99.
    pub commit_ms: [f64; 2],
}

/// Which producer settings a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Client {
    /// Tuned for throughput: large batches, no idempotence, librdkafka's deep pipelining.
    #[default]
    Throughput,
    /// The same with `enable.idempotence=true`: at most 5 requests in flight per
    /// connection, as every idempotent client keeps.
    Idempotent,
    /// The Java client's defaults since Kafka 3.0, in librdkafka terms: idempotence,
    /// `batch.size` 16384, `linger.ms` 5, 5 requests in flight, a 32 MiB buffer.
    JavaDefaults,
    /// Idempotent, in transactions of [`TXN_RECORDS`] records each (1 MiB of 1 KiB
    /// records), committed one after another, as an exactly-once processor commits.
    Transactional,
}

/// Records per transaction of a [`Client::Transactional`] producer.
pub const TXN_RECORDS: u64 = 1024;

/// Waits for a transactional producer's records, then commits: the commit's time alone is
/// the EndTxn round trip (librdkafka's commit would otherwise wait for the records too).
fn commit(producer: &ThreadedProducer<Timed>, acks: &Acks) -> anyhow::Result<()> {
    wait_for_acks(producer, Duration::from_secs(120))?;
    let started = yaks_common::clock::now();
    producer
        .commit_transaction(Duration::from_secs(60))
        .map_err(|e| anyhow::anyhow!("committing: {e}"))?;
    let took = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
    acks.commits_us
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(took);
    Ok(())
}

/// Waits until every record `producer` was given is acknowledged (its delivery report
/// served by the producer's own polling thread). Not `flush`: rust-rdkafka's flush polls
/// the event queue itself in waits of up to 100 ms, and when that thread takes the last
/// reports first, the flush sleeps out its wait: up to 100 ms added to every transaction
/// (the transactional row moved 34.8 → 51.3 MiB/s when this replaced it).
fn wait_for_acks(producer: &ThreadedProducer<Timed>, timeout: Duration) -> anyhow::Result<()> {
    let started = yaks_common::clock::now();
    while producer.in_flight_count() > 0 {
        if started.elapsed() > timeout {
            anyhow::bail!("records still unacknowledged after {timeout:?}");
        }
        yaks_common::clock::sleep_blocking(Duration::from_millis(1));
    }
    Ok(())
}

/// How a produce run is driven.
#[derive(Debug, Clone)]
pub struct ProduceLoad {
    /// Topic to write.
    pub topic: String,
    /// Its partition count; records go round-robin over them.
    pub partitions: i32,
    /// Producers (each a librdkafka client with its own connections).
    pub producers: usize,
    /// How long producers send.
    pub duration: Duration,
    /// Total records per second over all producers; `None`: as fast as acknowledged.
    pub rate: Option<f64>,
    /// Stop after this many records in all (split evenly over the producers).
    pub records: Option<u64>,
    /// The producers' settings.
    pub client: Client,
    /// Size of each record's value.
    pub record_bytes: usize,
    /// Records carry keys cycling through this many distinct ones (a changelog's shape);
    /// `None`: no keys.
    pub keys: Option<u64>,
    /// Client settings for the connection itself (`security.protocol`, `ssl.ca.location`).
    pub security: Vec<(String, String)>,
}

impl ProduceLoad {
    /// `records` records of 1 KiB without keys, from 4 producers as fast as they are
    /// acknowledged, over plaintext: the shape of most of the bench's loads.
    pub fn counted(topic: String, partitions: i32, client: Client, records: u64) -> ProduceLoad {
        ProduceLoad {
            topic,
            partitions,
            producers: 4,
            duration: super::raw::PHASE_TIMEOUT,
            rate: None,
            records: Some(records),
            client,
            record_bytes: RECORD_BYTES,
            keys: None,
            security: Vec::new(),
        }
    }
}

/// Writes the machine's dirty pages to disk before a measured phase, so that the phase does
/// not pay for the writeback of what the phases before it wrote. The loopback S3 endpoint
/// keeps objects in files, and a run writes tens of GiB of them; the kernel writes a file's
/// pages back some 30 s after they were written, which lands in a later phase. Meanwhile
/// PostgreSQL's commits, whose WAL shares that disk, wait behind the writeback (I/O wait
/// of up to three quarters of the machine in 1-second samples during the transactional
/// rounds), which a latency-bound phase (one commit per transaction) pays in full and a
/// pipelined one hides. Deployed, the objects go to S3 over the network and PostgreSQL
/// has a disk of its own. Best effort: without `sync`, phases run as before.
pub fn settle_disk() {
    let started = yaks_common::clock::now();
    match std::process::Command::new("sync").status() {
        Ok(status) if status.success() => {
            tracing::debug!(
                took_ms = started.elapsed().as_millis() as u64,
                "disk settled"
            );
        }
        Ok(status) => tracing::debug!(%status, "sync failed; the phase starts unsettled"),
        Err(e) => tracing::debug!(error = %e, "no sync; the phase starts unsettled"),
    }
}

/// Runs `load` against `brokers` and waits for every acknowledgement.
pub fn produce(brokers: &str, load: &ProduceLoad) -> anyhow::Result<ProduceResult> {
    settle_disk();
    let acks = Arc::new(Acks::default());
    let started_together = Arc::new(std::sync::Barrier::new(load.producers));
    let payload = vec![b'y'; load.record_bytes];
    let mut threads = Vec::new();
    for index in 0..load.producers {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.kbytes", "65536")
            .set("queue.buffering.max.messages", "1000000");
        for (key, value) in &load.security {
            config.set(key, value);
        }
        match load.client {
            Client::Throughput => {}
            Client::Idempotent => {
                config.set("enable.idempotence", "true");
            }
            Client::JavaDefaults => {
                config
                    .set("enable.idempotence", "true")
                    .set("batch.size", "16384")
                    .set("max.in.flight.requests.per.connection", "5")
                    .set("queue.buffering.max.kbytes", "32768");
            }
            Client::Transactional => {
                config.set(
                    "transactional.id",
                    format!("yaks-bench-{}-{index}", load.topic),
                );
            }
        }
        let transactional = load.client == Client::Transactional;
        let load = load.clone();
        let payload = payload.clone();
        let acks = acks.clone();
        let started_together = started_together.clone();
        // Named, so that a profile tells the clients' sending threads apart.
        let thread = std::thread::Builder::new().name(format!("bench-producer-{index}"));
        threads.push(thread.spawn(move || {
            yield_to_services();
            // Created here, so librdkafka's threads inherit this thread's priority.
            let producer: ThreadedProducer<Timed> = config
                .create_with_context(Timed(acks.clone()))
                .context("creating a bench producer")?;
            let partition = (index % load.partitions as usize) as i32;
            let begin = || -> anyhow::Result<()> {
                if transactional {
                    producer
                        .begin_transaction()
                        .map_err(|e| anyhow::anyhow!("beginning a transaction: {e}"))?;
                }
                Ok(())
            };
            let warm_up = (|| -> anyhow::Result<()> {
                if transactional {
                    producer
                        .init_transactions(Duration::from_secs(60))
                        .map_err(|e| anyhow::anyhow!("init_transactions: {e}"))?;
                }
                begin()?;
                producer
                    .send(
                        BaseRecord::<[u8], [u8], usize>::with_opaque_to(&load.topic, WARM_UP)
                            .key(&b"warm-up"[..])
                            .payload(&payload[..])
                            .partition(partition),
                    )
                    .map_err(|(e, _)| anyhow::anyhow!("producing: {e}"))?;
                producer
                    .flush(Duration::from_secs(60))
                    .map_err(|e| anyhow::anyhow!("warming up: {e}"))?;
                if transactional {
                    producer
                        .commit_transaction(Duration::from_secs(60))
                        .map_err(|e| anyhow::anyhow!("committing: {e}"))?;
                }
                Ok(())
            })();
            // Every producer reaches the barrier, failed or not, so none waits forever.
            started_together.wait();
            warm_up?;
            let origin = acks.origin();
            let per_producer_rate = load.rate.map(|r| r / load.producers as f64);
            let started = yaks_common::clock::now();
            let limit = load
                .records
                .map_or(u64::MAX, |r| r.div_ceil(load.producers as u64));
            let mut sent: u64 = 0;
            while sent < limit && started.elapsed() < load.duration {
                if let Some(rate) = per_producer_rate {
                    let due = (started.elapsed().as_secs_f64() * rate) as u64;
                    if sent >= due {
                        yaks_common::clock::sleep_blocking(Duration::from_micros(500));
                        continue;
                    }
                }
                if transactional && sent.is_multiple_of(TXN_RECORDS) {
                    begin()?;
                }
                let partition = ((sent as usize + index) % load.partitions as usize) as i32;
                let sent_us = origin.elapsed().as_micros() as usize;
                let key = load.keys.map(|keys| format!("key-{:012}", sent % keys));
                let mut record =
                    BaseRecord::<[u8], [u8], usize>::with_opaque_to(&load.topic, sent_us)
                        .payload(&payload[..])
                        .partition(partition);
                if let Some(key) = &key {
                    record = record.key(key.as_bytes());
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            yaks_common::clock::sleep_blocking(Duration::from_millis(1));
                        }
                        Err((e, _)) => return Err(anyhow::anyhow!("producing: {e}")),
                    }
                }
                sent += 1;
                if transactional && sent.is_multiple_of(TXN_RECORDS) {
                    commit(&producer, &acks)?;
                }
            }
            if transactional && !sent.is_multiple_of(TXN_RECORDS) {
                commit(&producer, &acks)?;
            }
            producer
                .flush(Duration::from_secs(120))
                .map_err(|e| anyhow::anyhow!("waiting for acknowledgements: {e}"))?;
            Ok(sent)
        })?);
    }
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a producer thread panicked"))??;
    }
    let acked = acks.acked.load(Ordering::Relaxed);
    let seconds = (acks.last_us.load(Ordering::Relaxed) as f64 / 1e6).max(1e-3);
    let mut latencies =
        std::mem::take(&mut *acks.latencies_us.lock().unwrap_or_else(|p| p.into_inner()));
    latencies.sort_unstable();
    let mut commits =
        std::mem::take(&mut *acks.commits_us.lock().unwrap_or_else(|p| p.into_inner()));
    commits.sort_unstable();
    Ok(ProduceResult {
        acked,
        failed: acks.failed.load(Ordering::Relaxed),
        mib_per_s: acked as f64 * load.record_bytes as f64 / (1 << 20) as f64 / seconds,
        records_per_s: acked as f64 / seconds,
        ack_ms: [
            percentile_us(&latencies, 0.50) / 1e3,
            percentile_us(&latencies, 0.99) / 1e3,
            percentile_us(&latencies, 0.999) / 1e3,
        ],
        commit_ms: [
            percentile_us(&commits, 0.50) / 1e3,
            percentile_us(&commits, 0.99) / 1e3,
        ],
    })
}

/// Lowers the calling thread's priority (nice 10), for the client threads it creates from
/// then on. Clients and the services they measure share this machine's cores, and a
/// client that busy-waits takes CPU a client on its own machine would not: librdkafka's
/// idempotent producer spins in `poll()` while its one batch per partition awaits an
/// answer (its broker thread computes a wake-up from the queued messages' linger before
/// it applies the in-flight cap), which took 60 % of this 2-core machine from the
/// services under test. At a lower priority the clients still use every idle cycle.
/// Best effort: without `renice`, the threads keep the default priority.
fn yield_to_services() {
    let Ok(me) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = me.file_name().and_then(|tid| tid.to_str()) else {
        return;
    };
    let reniced = std::process::Command::new("renice")
        .args(["-n", "10", "-p", tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !matches!(reniced, Ok(status) if status.success()) {
        tracing::debug!("bench clients keep the default priority");
    }
}

/// The `q` quantile of sorted microsecond samples.
pub fn percentile_us(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index] as f64
}

/// What a consume run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsumeResult {
    /// Record values read per second, in MiB.
    pub mib_per_s: f64,
    pub records_per_s: f64,
}

/// Which records a consumer reads of transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Committed ones only, up to the last stable offset (librdkafka's default).
    ReadCommitted,
    /// Every record, up to the high watermark.
    ReadUncommitted,
}

/// Reads `records` records of `topic` (all `partitions`) from the log start.
pub fn consume(
    brokers: &str,
    security: &[(String, String)],
    topic: &str,
    partitions: i32,
    records: u64,
    isolation: Isolation,
) -> anyhow::Result<ConsumeResult> {
    settle_disk();
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set(
            "isolation.level",
            match isolation {
                Isolation::ReadCommitted => "read_committed",
                Isolation::ReadUncommitted => "read_uncommitted",
            },
        )
        .set("group.id", "yaks-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("fetch.wait.max.ms", "100");
    for (key, value) in security {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create().context("creating a bench consumer")?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let deadline = yaks_common::clock::now() + Duration::from_secs(300);
    // The clock starts at the first record: the client's start-up (its offset lookup, a
    // first fetch of one partition, then a pause before it asks for all of them) is not
    // reading, and on small topics it would be most of the time measured.
    let mut started = None;
    let mut read = 0u64;
    let mut bytes = 0u64;
    while read < records {
        anyhow::ensure!(
            yaks_common::clock::now() < deadline,
            "read {read} of {records} records in 300 s"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.context("fetching")?;
            started.get_or_insert_with(yaks_common::clock::now);
            bytes += message.payload().map_or(0, <[u8]>::len) as u64;
            read += 1;
        }
    }
    let seconds = started
        .map_or(0.0, |started| started.elapsed().as_secs_f64())
        .max(1e-3);
    Ok(ConsumeResult {
        mib_per_s: bytes as f64 / (1 << 20) as f64 / seconds,
        records_per_s: read as f64 / seconds,
    })
}

/// End-to-end latency: one record every `every`, `count` times, each carrying its send
/// time; a consumer tailing the partition measures when it arrives. Returns p50 and p99 ms.
pub fn end_to_end(
    brokers: &str,
    topic: &str,
    count: usize,
    every: Duration,
) -> anyhow::Result<[f64; 2]> {
    settle_disk();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "yaks-bench-e2e")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "500")
        .create()
        .context("creating the latency consumer")?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::End)?;
    consumer.assign(&assignment)?;
    // Let the consumer reach the end before the first record is sent.
    let warm = yaks_common::clock::now();
    while warm.elapsed() < Duration::from_secs(2) {
        consumer.poll(Duration::from_millis(100));
    }
    let brokers = brokers.to_owned();
    let topic_name = topic.to_owned();
    let sender = std::thread::spawn(move || -> anyhow::Result<()> {
        let producer: ThreadedProducer<Timed> = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("acks", "all")
            .set("linger.ms", "0")
            .create_with_context(Timed(Arc::new(Acks::default())))?;
        for _ in 0..count {
            let now_us = SystemClock.now_us().to_string();
            let record = BaseRecord::<(), str, usize>::with_opaque_to(&topic_name, 0)
                .payload(&now_us)
                .partition(0);
            producer
                .send(record)
                .map_err(|(e, _)| anyhow::anyhow!("{e}"))?;
            yaks_common::clock::sleep_blocking(every);
        }
        producer
            .flush(Duration::from_secs(60))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    });
    let mut latencies = Vec::with_capacity(count);
    let deadline = yaks_common::clock::now() + every * count as u32 + Duration::from_secs(30);
    while latencies.len() < count && yaks_common::clock::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.context("fetching")?;
        let received_us = SystemClock.now_us() as u64;
        if let Some(sent_us) = message
            .payload()
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|s| s.parse::<u64>().ok())
        {
            latencies.push(received_us.saturating_sub(sent_us).min(u32::MAX as u64) as u32);
        }
    }
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("latency sender panicked"))??;
    anyhow::ensure!(!latencies.is_empty(), "no record arrived at the consumer");
    latencies.sort_unstable();
    Ok([
        percentile_us(&latencies, 0.50) / 1e3,
        percentile_us(&latencies, 0.99) / 1e3,
    ])
}
