//! `yaks oracle`: evidence that acknowledged data is never lost.
//!
//! A run creates fresh topics, lets N idempotent producers (librdkafka, acks=all) send
//! records whose content is a function of (producer, sequence) ([`records`]), writes every
//! acknowledgement to a SQLite ledger ([`ledger`]), then reads every partition back from
//! its log start to its high watermark and checks seven invariants ([`check`]): nothing
//! acknowledged is missing or moved, nothing unsent appears, offsets are unique and
//! contiguous, each producer's order holds, bytes are intact, nothing is stored twice.
//!
//! With `--transactions N` the producers are transactional: N records a transaction, every
//! fifth aborted, each committed one with an offset of the producer's consumer group. Only
//! committed transactions' acknowledgements go to the ledger, the read back is
//! read_committed, and four more invariants are checked (Jepsen's, for Kafka's
//! transactions): no aborted read, no torn transaction, no lost committed transaction, and
//! a group's offsets visible exactly with their transaction's records; invariant 4 becomes
//! that read_committed reaches every high watermark, stuck behind no transaction.
//! It talks to any Kafka-compatible address, so it runs unchanged against `yaks dev`, a
//! split deployment under fault injection, or another system.

pub mod check;
pub mod ledger;
pub mod observed;
pub mod records;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use anyhow::Context;
use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tracing::{info, warn};

use check::{Ack, Consumed, Finding, PartitionLog, Sent, Transaction, TxnOutcome};
use ledger::Ledger;
use observed::{Latencies, Observed, ObservingContext};
use records::{HEADER, RecordId, content_hash};

/// Delivery reports awaited together before the next window is sent.
const WINDOW: u64 = 1_000;

/// What a run does; also the flags of `yaks oracle`.
#[derive(Debug, Clone, clap::Args)]
pub struct OracleOptions {
    /// Kafka bootstrap address of the system under test.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Where the SQLite ledger of acknowledgements is kept.
    #[arg(long, default_value = ".yaks-oracle")]
    pub data_dir: PathBuf,
    /// What is produced.
    #[command(flatten)]
    pub workload: Workload,
}

/// The records a run produces and how long it may take; shared by `yaks oracle` and
/// `yaks chaos`.
#[derive(Debug, Clone, clap::Args)]
pub struct Workload {
    /// Topics to create.
    #[arg(long, default_value_t = 2)]
    pub topics: u32,
    /// Partitions per topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Concurrent producers.
    #[arg(long, default_value_t = 8)]
    pub producers: u32,
    /// Records each producer sends.
    #[arg(long, default_value_t = 2_000)]
    pub records: u64,
    /// Seconds over which each producer spreads its sends (0: as fast as acknowledgements
    /// come), so that faults injected on a schedule meet a producing system.
    #[arg(long, default_value = "0", value_parser = seconds)]
    pub pace: Duration,
    /// Seconds reading back may take.
    #[arg(long, default_value = "300", value_parser = seconds)]
    pub consume_timeout: Duration,
    /// Seconds librdkafka may retry a record before its delivery fails (a failed delivery
    /// is not an acknowledgement, so not a violation).
    #[arg(long, default_value = "300", value_parser = seconds)]
    pub message_timeout: Duration,
    /// librdkafka debug contexts of the producers (`eos`, `msg`, `all`, …), logged to
    /// `clients.log` in the data directory; empty: none.
    #[arg(long, default_value = "")]
    pub client_debug: String,
    /// Records per transaction: each producer is transactional, aborts every fifth
    /// transaction, commits the rest with a consumer group offset, and the read back is
    /// read_committed, checked also for aborted reads, torn transactions, lost commits and
    /// offsets without their records. 0: idempotent producers, no transactions.
    #[arg(long, default_value_t = 0)]
    pub transactions: u64,
}

impl Default for Workload {
    /// The flags' defaults, so they are written once, in the `#[arg]`s.
    fn default() -> Self {
        flag_defaults()
    }
}

/// A flag group as it parses from no flags at all.
pub(crate) fn flag_defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let matches = T::augment_args(clap::Command::new("defaults"))
        .no_binary_name(true)
        .get_matches_from(std::iter::empty::<String>());
    T::from_arg_matches(&matches).expect("every flag of the group has a default")
}

/// Parses a whole number of seconds (command-line flags).
pub(crate) fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("a whole number of seconds: {e}"))
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Run id (also in topic names and the ledger).
    pub run: String,
    /// Records acknowledged.
    pub acknowledged: u64,
    /// Deliveries that failed after librdkafka's retries.
    pub failed: u64,
    /// Records read back.
    pub consumed: u64,
    /// Producing time.
    pub produce_time: Duration,
    /// Time from queueing a record to its acknowledgement.
    pub latency: Latencies,
    /// Produce requests the clients sent again.
    pub retries: u64,
    /// Errors the clients reported, by kind, most frequent first.
    pub client_errors: Vec<(String, u64)>,
    /// Transactions committed, aborted and of unknown outcome (a transactional run).
    pub transactions: [u64; 3],
    /// Verdict per invariant.
    pub findings: Vec<Finding>,
}

impl Report {
    /// True when no invariant was broken.
    pub fn holds(&self) -> bool {
        self.findings.iter().all(|f| f.violations == 0)
    }

    /// The findings as a Markdown table, with a summary line above.
    pub fn table(&self) -> String {
        let mut out = format!(
            "run {}: {} acknowledged, {} failed deliveries, {} read back, produced in {:.1} s \
             ({:.0} records/s)\n\n| invariant | checked | violations | first violation |\n|---|---|---|---|\n",
            self.run,
            self.acknowledged,
            self.failed,
            self.consumed,
            self.produce_time.as_secs_f64(),
            self.acknowledged as f64 / self.produce_time.as_secs_f64().max(0.001),
        );
        if self.transactions.iter().any(|n| *n > 0) {
            let [committed, aborted, unknown] = self.transactions;
            out.insert_str(
                out.find("\n\n").unwrap_or(out.len()),
                &format!(
                    "\ntransactions: {committed} committed, {aborted} aborted, {unknown} of unknown outcome"
                ),
            );
        }
        let errors = if self.client_errors.is_empty() {
            "none".to_owned()
        } else {
            let kinds: Vec<String> = self
                .client_errors
                .iter()
                .map(|(kind, n)| format!("{kind} ×{n}"))
                .collect();
            kinds.join(", ")
        };
        out.insert_str(
            out.find("\n\n").unwrap_or(out.len()),
            &format!(
                "\nclients saw: acknowledgement after {} ms (p50), {} ms (p99), {} ms (max); \
                 {} produce requests retried; errors reported: {errors}",
                self.latency.p50.as_millis(),
                self.latency.p99.as_millis(),
                self.latency.max.as_millis(),
                self.retries,
            ),
        );
        for finding in &self.findings {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                finding.invariant,
                finding.checked,
                finding.violations,
                finding.example.as_deref().unwrap_or("")
            ));
        }
        out
    }
}

/// Runs the oracle once.
pub async fn run(options: OracleOptions) -> anyhow::Result<Report> {
    let run = format!("{:x}", yaks_common::clock::system_clock().now_ms());
    let workload = &options.workload;
    let topics: Vec<String> = (0..workload.topics)
        .map(|i| format!("oracle-{run}-{i}"))
        .collect();
    create_topics(&options, &topics).await?;
    let targets: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| (0..workload.partitions).map(move |p| (t.clone(), p)))
        .collect();

    // The ledger lives on its own thread; delivery reports reach it through a channel.
    let mut ledger = Ledger::open(&options.data_dir)?;
    let (to_ledger, from_producers) = std_mpsc::channel::<Vec<Ack>>();
    let ledger_run = run.clone();
    let ledger_thread = std::thread::spawn(move || -> anyhow::Result<Ledger> {
        for acks in from_producers {
            ledger.record(&ledger_run, &acks)?;
        }
        Ok(ledger)
    });

    let started = yaks_common::clock::now();
    let observed = Arc::new(if workload.client_debug.is_empty() {
        Observed::default()
    } else {
        let path = options.data_dir.join("clients.log");
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Observed::logging_to(file)
    });
    let mut producers = Vec::new();
    for producer in 0..workload.producers {
        producers.push(tokio::spawn(produce(
            run.clone(),
            options.brokers.clone(),
            workload.clone(),
            ObservingContext {
                observed: observed.clone(),
                producer,
            },
            targets.clone(),
            to_ledger.clone(),
        )));
    }
    drop(to_ledger);
    let mut failed = 0;
    let mut latencies = Vec::new();
    let mut transactions = Vec::new();
    for task in producers {
        let produced = task.await.context("producer task")??;
        failed += produced.failed;
        latencies.extend(produced.latencies);
        transactions.extend(produced.transactions);
    }
    let produce_time = started.elapsed();
    observed.flush_client_log();
    let ledger = ledger_thread
        .join()
        .map_err(|_| anyhow::anyhow!("ledger thread panicked"))??;
    let acks = ledger.acks(&run)?;
    info!(
        acknowledged = acks.len(),
        failed, "producing done; reading back"
    );

    let brokers = options.brokers.clone();
    let timeout = workload.consume_timeout;
    let consume_targets = targets.clone();
    let logs = tokio::task::spawn_blocking(move || read_back(&brokers, &consume_targets, timeout))
        .await
        .context("consumer task")??;
    let consumed = logs.values().map(|l| l.records.len() as u64).sum();
    let transactional = workload.transactions > 0;
    let mut findings = check::check(
        &acks,
        &logs,
        Sent {
            producers: workload.producers,
            records_per_producer: workload.records,
            transactional,
        },
    );
    if transactional {
        let brokers = options.brokers.clone();
        let groups: Vec<(u32, String)> = (0..workload.producers)
            .map(|p| (p, group_of(&run, p)))
            .collect();
        let anchor = targets[0].clone();
        let group_offsets =
            tokio::task::spawn_blocking(move || committed_offsets(&brokers, &groups, &anchor))
                .await
                .context("offsets task")??;
        findings.extend(check::check_transactions(
            &transactions,
            &logs,
            &group_offsets,
        ));
    }
    let count = |outcome| transactions.iter().filter(|t| t.outcome == outcome).count() as u64;
    Ok(Report {
        run,
        acknowledged: acks.len() as u64,
        failed,
        consumed,
        produce_time,
        latency: Latencies::of(&mut latencies),
        retries: observed.retries(),
        client_errors: observed.errors(),
        transactions: [
            count(TxnOutcome::Committed),
            count(TxnOutcome::Aborted),
            count(TxnOutcome::Unknown),
        ],
        findings,
    })
}

/// The consumer group producer `producer` of run `run` commits its offsets to, in a
/// transactional run.
fn group_of(run: &str, producer: u32) -> String {
    format!("oracle-{run}-g{producer}")
}

/// Whether a producer aborts its transaction number `index` (every fifth, at a different
/// place for each producer).
fn aborts(producer: u32, index: u64) -> bool {
    (u64::from(producer) + index) % 5 == 4
}

/// Each group's committed offset of `anchor` (the partition every transaction commits an
/// offset of), read as a read_committed consumer of the group would.
fn committed_offsets(
    brokers: &str,
    groups: &[(u32, String)],
    anchor: &(String, i32),
) -> anyhow::Result<BTreeMap<u32, i64>> {
    let mut offsets = BTreeMap::new();
    for (producer, group) in groups {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("isolation.level", "read_committed")
            .create()
            .context("consumer")?;
        let mut list = TopicPartitionList::new();
        list.add_partition(&anchor.0, anchor.1);
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(30))
            .with_context(|| format!("offsets of group {group}"))?;
        if let Some(Offset::Offset(offset)) = committed.elements().first().map(|e| e.offset()) {
            offsets.insert(*producer, offset);
        }
    }
    Ok(offsets)
}

async fn create_topics(options: &OracleOptions, topics: &[String]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &options.brokers)
        .create()
        .context("admin client")?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, options.workload.partitions, TopicReplication::Fixed(1)))
        .collect();
    // Retried: under fault injection the gateway asked may be down for a moment.
    let deadline = yaks_common::clock::now() + Duration::from_secs(60);
    loop {
        let attempt = admin
            .create_topics(
                &new,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await;
        let failure = match attempt {
            Ok(results) => results.into_iter().find_map(|r| match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                Err((topic, code)) => Some(format!("{topic}: {code}")),
            }),
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => return Ok(()),
            Some(reason) if yaks_common::clock::now() < deadline => {
                warn!(%reason, "creating oracle topics failed; retrying");
                yaks_common::clock::sleep(Duration::from_millis(500)).await;
            }
            Some(reason) => anyhow::bail!("creating oracle topics: {reason}"),
        }
    }
}

/// What one producer's sends came to.
struct Produced {
    /// Deliveries that failed.
    failed: u64,
    /// Queue-to-acknowledgement time of each acknowledged record.
    latencies: Vec<Duration>,
    /// Its transactions, in a transactional run.
    transactions: Vec<Transaction>,
}

/// One producer's sends.
async fn produce(
    run: String,
    brokers: String,
    workload: Workload,
    context: ObservingContext,
    targets: Vec<(String, i32)>,
    ledger: std_mpsc::Sender<Vec<Ack>>,
) -> anyhow::Result<Produced> {
    let producer = context.producer;
    let mut config = ClientConfig::new();
    if !workload.client_debug.is_empty() {
        // The level otherwise follows the `log` crate's, which yaks does not use.
        config
            .set("debug", &workload.client_debug)
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
    }
    let transactional = workload.transactions > 0;
    if transactional {
        config
            .set("transactional.id", format!("oracle-{run}-t{producer}"))
            // Twice the message timeout (within the gateways' 15-minute maximum): a
            // transaction is ended by its producer, which gives up a stuck record and
            // aborts first, not fenced by its coordinator's timeout.
            .set(
                "transaction.timeout.ms",
                (workload.message_timeout.as_millis() * 2)
                    .min(900_000)
                    .to_string(),
            );
    }
    config
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            workload.message_timeout.as_millis().to_string(),
        )
        .set("statistics.interval.ms", "1000");
    let observed = context.observed.clone();
    let mut client: FutureProducer<ObservingContext> =
        config.create_with_context(context).context("producer")?;
    // A transactional producer's consumer group, whose metadata goes with its offsets.
    let group = if transactional {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", group_of(&run, producer))
            .create()
            .context("consumer")?;
        let metadata = consumer.group_metadata().context("the group's metadata")?;
        tokio::task::block_in_place(|| client.init_transactions(Duration::from_secs(60)))
            .context("init_transactions")?;
        Some((consumer, metadata))
    } else {
        None
    };
    let window = if transactional {
        workload.transactions
    } else {
        WINDOW
    };
    let mut latencies = Vec::with_capacity(workload.records as usize);
    let mut transactions = Vec::new();
    let started = yaks_common::clock::now();
    let mut failed = 0;
    let mut sequence = 0;
    while sequence < workload.records {
        let end = (sequence + window).min(workload.records);
        let index = transactions.len() as u64;
        if transactional {
            client.begin_transaction().context("begin_transaction")?;
        }
        let mut sent = Vec::with_capacity((end - sequence) as usize);
        let mut deliveries = Vec::with_capacity((end - sequence) as usize);
        for n in sequence..end {
            if !workload.pace.is_zero() {
                let due = workload.pace.mul_f64(n as f64 / workload.records as f64);
                yaks_common::clock::sleep_until(started + due).await;
            }
            let id = RecordId {
                producer,
                sequence: n,
            };
            let (topic, partition) =
                &targets[((u64::from(producer) + n) % targets.len() as u64) as usize];
            let content = id.content();
            let headers = OwnedHeaders::new().insert(Header {
                key: HEADER,
                value: Some(&content.header),
            });
            let mut record = FutureRecord::to(topic)
                .partition(*partition)
                .key(&content.key)
                .payload(&content.value)
                .headers(headers);
            let delivery = loop {
                match client.send_result(record) {
                    Ok(delivery) => break Some(delivery),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        yaks_common::clock::sleep(Duration::from_millis(10)).await;
                    }
                    // The transaction failed meanwhile (an abortable error): the rest of
                    // its records are not sent, and ending it aborts it.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::State), _))
                        if transactional =>
                    {
                        break None;
                    }
                    Err((e, _)) => anyhow::bail!("queueing a record: {e}"),
                }
            };
            let Some(delivery) = delivery else {
                warn!(
                    producer,
                    index, "the transaction must abort; its other records are not sent"
                );
                break;
            };
            sent.push((
                id,
                topic.clone(),
                content_hash(&content.key, &content.value),
            ));
            // Awaited in its own task, so the latency ends when the report arrives, not
            // when the window is collected.
            let queued = yaks_common::clock::now();
            deliveries.push(tokio::spawn(
                async move { (delivery.await, queued.elapsed()) },
            ));
        }
        let outcome = match &group {
            Some((_, metadata)) => {
                let mut offsets = TopicPartitionList::new();
                offsets.add_partition_offset(
                    &targets[0].0,
                    targets[0].1,
                    Offset::Offset(index as i64 + 1),
                )?;
                let commit = !aborts(producer, index);
                let outcome = tokio::task::block_in_place(|| {
                    end_transaction(&client, &offsets, metadata, commit)
                });
                transactions.push(Transaction {
                    producer,
                    index,
                    records: sent.iter().map(|(id, _, _)| *id).collect(),
                    outcome,
                });
                Some(outcome)
            }
            None => None,
        };
        // Only a committed transaction's records must be read back: an aborted one's
        // deliveries were acknowledged or purged, and neither counts.
        let counts = matches!(outcome, None | Some(TxnOutcome::Committed));
        let mut acks = Vec::with_capacity(sent.len());
        for ((id, topic, hash), joined) in sent.into_iter().zip(join_all(deliveries).await) {
            let (report, latency) = joined.context("delivery task")?;
            match report {
                Ok(Ok(delivery)) if counts => {
                    latencies.push(latency);
                    acks.push(Ack {
                        topic,
                        partition: delivery.partition,
                        offset: delivery.offset,
                        id,
                        hash,
                    });
                }
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) if counts => {
                    failed += 1;
                    warn!(?id, error = %e, "delivery failed");
                }
                Ok(Err(_)) => {}
                Err(_) => failed += 1,
            }
        }
        ledger
            .send(acks)
            .map_err(|_| anyhow::anyhow!("the ledger thread stopped"))?;
        sequence = end;
        if outcome == Some(TxnOutcome::Unknown) {
            // The producer failed for good (a fatal error, fenced, or out of retries). As
            // an application would, a new incarnation takes over, which ends what the old
            // one left open; if none can start, what is not sent counts as failed.
            warn!(
                producer,
                index, "transaction of unknown outcome; a new incarnation takes over"
            );
            drop(client);
            let context = ObservingContext {
                observed: observed.clone(),
                producer,
            };
            match successor(&config, context).await {
                Some(next) => client = next,
                None => {
                    failed += workload.records - end;
                    break;
                }
            }
        }
    }
    Ok(Produced {
        failed,
        latencies,
        transactions,
    })
}

/// Starts a new incarnation of a transactional producer that failed for good, as an
/// application restarting it would: its InitProducerId ends what the failed one left open
/// (aborted, unless its commit was already decided). Without it, that transaction stays
/// open until `transaction.timeout.ms`, and read_committed readers and `require_stable`
/// offset fetches of its group wait behind it. The failed transaction's outcome stays
/// unknown to the checks, which hold it to all or nothing. `None` if it cannot start.
async fn successor(
    config: &ClientConfig,
    context: ObservingContext,
) -> Option<FutureProducer<ObservingContext>> {
    let producer = context.producer;
    let config = config.clone();
    let started = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let successor: FutureProducer<ObservingContext> =
            config.create_with_context(context).context("producer")?;
        // Retried: under fault injection its coordinator may be down for a while.
        let deadline = yaks_common::clock::now() + Duration::from_secs(120);
        loop {
            match successor.init_transactions(Duration::from_secs(30)) {
                Ok(()) => return Ok(successor),
                Err(e) if yaks_common::clock::now() < deadline => {
                    warn!(producer, error = %e, "starting a new incarnation; retrying");
                    yaks_common::clock::sleep_blocking(Duration::from_secs(1));
                }
                Err(e) => anyhow::bail!("init_transactions: {e}"),
            }
        }
    })
    .await;
    match started {
        Ok(Ok(successor)) => {
            info!(
                producer,
                "a new incarnation ended the failed one's transaction"
            );
            Some(successor)
        }
        Ok(Err(e)) => {
            warn!(producer, error = %e, "no new incarnation could start");
            None
        }
        Err(e) => {
            warn!(producer, error = %e, "the task starting a new incarnation failed");
            None
        }
    }
}

/// Sends `offsets` to the open transaction and commits it (or aborts it, sending none),
/// retrying what librdkafka says may be retried; a commit it says cannot happen is aborted
/// instead.
fn end_transaction(
    client: &FutureProducer<ObservingContext>,
    offsets: &TopicPartitionList,
    metadata: &ConsumerGroupMetadata,
    commit: bool,
) -> TxnOutcome {
    #[derive(Clone, Copy)]
    enum Step {
        Offsets,
        Commit,
        Abort,
    }
    let timeout = Duration::from_secs(60);
    let mut step = if commit { Step::Offsets } else { Step::Abort };
    for _ in 0..10 {
        let result = match step {
            Step::Offsets => client.send_offsets_to_transaction(offsets, metadata, timeout),
            Step::Commit => client.commit_transaction(timeout),
            Step::Abort => client.abort_transaction(timeout),
        };
        match (result, step) {
            (Ok(()), Step::Offsets) => step = Step::Commit,
            (Ok(()), Step::Commit) => return TxnOutcome::Committed,
            (Ok(()), Step::Abort) => return TxnOutcome::Aborted,
            (Err(KafkaError::Transaction(e)), _) if e.txn_requires_abort() => {
                warn!(error = %e, "the transaction must abort");
                step = Step::Abort;
            }
            (Err(KafkaError::Transaction(e)), _) if e.is_retriable() => {
                warn!(error = %e, "ending the transaction failed; retrying");
            }
            // rdkafka flushes before it commits: records still unacknowledged when the
            // timeout passes (a frozen writer, a restarting gateway) are still being
            // retried, and the commit is asked again.
            (Err(KafkaError::Flush(code)), _) => {
                warn!(error = %code, "the transaction's records are not all acknowledged yet; retrying");
            }
            (Err(e), _) => {
                warn!(error = %e, "ending the transaction failed for good");
                return TxnOutcome::Unknown;
            }
        }
    }
    TxnOutcome::Unknown
}

/// Reads every partition from its log start to the high watermark it had when reading began.
fn read_back(
    brokers: &str,
    targets: &[(String, i32)],
    timeout: Duration,
) -> anyhow::Result<BTreeMap<(String, i32), PartitionLog>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "yaks-oracle")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "200")
        .create()
        .context("consumer")?;
    let deadline = yaks_common::clock::now() + timeout;
    let mut logs = BTreeMap::new();
    let mut list = TopicPartitionList::new();
    for (topic, partition) in targets {
        let (low, high) = loop {
            match consumer.fetch_watermarks(topic, *partition, Duration::from_secs(10)) {
                Ok(marks) => break marks,
                Err(e) if yaks_common::clock::now() < deadline => {
                    warn!(topic, partition, error = %e, "reading watermarks failed; retrying");
                    yaks_common::clock::sleep_blocking(Duration::from_millis(500));
                }
                Err(e) => anyhow::bail!("watermarks of {topic}/{partition}: {e}"),
            }
        };
        logs.insert(
            (topic.clone(), *partition),
            PartitionLog {
                log_start: low,
                high_watermark: high,
                records: Vec::new(),
                read_to: low,
            },
        );
        list.add_partition_offset(topic, *partition, Offset::Offset(low))?;
    }
    consumer.assign(&list).context("assign")?;
    let done = |logs: &BTreeMap<(String, i32), PartitionLog>| {
        logs.values().all(|log| {
            log.records
                .last()
                .map_or(log.high_watermark <= log.log_start, |r| {
                    r.offset + 1 >= log.high_watermark
                })
        })
    };
    // Where the consumer stands in each partition: past the last record read, and past
    // transaction markers and aborted records, which a read_committed consumer skips.
    let positions = |logs: &mut BTreeMap<(String, i32), PartitionLog>| {
        if let Ok(positions) = consumer.position() {
            for element in positions.elements() {
                let key = (element.topic().to_owned(), element.partition());
                if let (Some(log), Offset::Offset(at)) = (logs.get_mut(&key), element.offset()) {
                    log.read_to = at;
                }
            }
        }
    };
    let past_all = |logs: &BTreeMap<(String, i32), PartitionLog>| {
        logs.values().all(|log| log.read_to >= log.high_watermark)
    };
    while !done(&logs) && yaks_common::clock::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            positions(&mut logs);
            if past_all(&logs) {
                break;
            }
            continue;
        };
        let message = match message {
            Ok(message) => message,
            Err(e) => {
                warn!(error = %e, "fetch failed; the consumer retries");
                continue;
            }
        };
        let key = message.key().unwrap_or_default();
        let value = message.payload().unwrap_or_default();
        let id = RecordId::from_key(key);
        let intact = id.is_some_and(|id| {
            let expected = id.content();
            let header_ok = message.headers().is_some_and(|h| {
                h.count() == 1
                    && h.get(0).key == HEADER
                    && h.get(0).value == Some(expected.header.as_slice())
            });
            key == expected.key && value == expected.value && header_ok
        });
        let Some(log) = logs.get_mut(&(message.topic().to_owned(), message.partition())) else {
            continue;
        };
        if message.offset() >= log.high_watermark {
            continue; // Written after reading began; not part of the run.
        }
        log.records.push(Consumed {
            offset: message.offset(),
            id,
            hash: content_hash(key, value),
            intact,
        });
    }
    positions(&mut logs);
    Ok(logs)
}
