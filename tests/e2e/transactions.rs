//! Transactions as clients see them (issue 23): what a read_committed consumer reads of
//! committed and aborted transactions, with every codec.

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::FutureRecord;
use yaks::roles;

use crate::harness::*;

/// The values of a transaction labelled `label`, sorted as the script sorts them.
fn values(labels: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = labels
        .iter()
        .flat_map(|label| (0..30).map(move |i| format!("{label}-{i}")))
        .collect();
    all.sort();
    all
}

/// Runs `script` (a transactional producer committing A, aborting B and committing C over
/// three partitions) with `codec`, then checks what read_committed and read_uncommitted
/// consumers read: A and C, and all three.
async fn check_transactions(
    bootstrap: &str,
    program: &'static str,
    script: &'static str,
    codec: &str,
) {
    let topic = format!("{}-{codec}", script.split('.').next().unwrap_or(script));
    let topic = topic.replace('_', "-");
    create_topic(bootstrap, &topic, 3).await;
    run_transactions(
        bootstrap,
        program,
        script,
        &topic,
        &format!("app-{topic}"),
        codec,
    )
    .await;
    let (committed, uncommitted) = read_isolated(bootstrap, &topic).await;
    assert_eq!(
        committed,
        values(&["A", "C"]),
        "{script} {codec}: read_committed"
    );
    assert_eq!(
        uncommitted,
        values(&["A", "B", "C"]),
        "{script} {codec}: read_uncommitted"
    );
}

/// Runs `script`: a transactional producer with id `transactional_id` committing A,
/// aborting B and committing C over the three partitions of `topic`.
async fn run_transactions(
    bootstrap: &str,
    program: &'static str,
    script: &'static str,
    topic: &str,
    transactional_id: &str,
    codec: &str,
) {
    let args = [
        bootstrap.to_owned(),
        topic.to_owned(),
        transactional_id.to_owned(),
        codec.to_owned(),
    ];
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_client(program, script, &args)
    })
    .await
    .expect("join");
}

/// What read_committed and read_uncommitted consumers read of `topic`'s three partitions
/// to their ends, each sorted.
async fn read_isolated(bootstrap: &str, topic: &str) -> (Vec<String>, Vec<String>) {
    let args = [bootstrap.to_owned(), topic.to_owned()];
    let printed = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_client("python3", "read_isolated.py", &args)
    })
    .await
    .expect("join");
    let read: serde_json::Value = serde_json::from_str(&printed).expect("json");
    let list = |key: &str| -> Vec<String> {
        read[key]
            .as_array()
            .expect("list")
            .iter()
            .map(|v| v.as_str().expect("text").to_owned())
            .collect()
    };
    (list("committed"), list("uncommitted"))
}

/// A confluent-kafka producer holding a transaction open (`confluent_txn_hold.py`).
struct Held {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Held {
    /// Starts the producer: transactional id `id`, values `label-0..29`, and waits until
    /// its records are stored, the transaction open.
    async fn open(bootstrap: &str, topic: &str, id: &str, label: &str, timeout_ms: u32) -> Held {
        Held::start(bootstrap, topic, id, label, timeout_ms, false).await
    }

    /// Starts the producer as [`Held::open`] does, `unflushed`: returning once its produce
    /// requests have left, acknowledged or not.
    async fn start(
        bootstrap: &str,
        topic: &str,
        id: &str,
        label: &str,
        timeout_ms: u32,
        unflushed: bool,
    ) -> Held {
        use std::io::BufRead;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
        let args = [
            format!("{dir}/confluent_txn_hold.py"),
            bootstrap.to_owned(),
            topic.to_owned(),
            id.to_owned(),
            label.to_owned(),
            timeout_ms.to_string(),
            if unflushed { "unflushed" } else { "flushed" }.to_owned(),
        ];
        let expected = if unflushed { "sent" } else { "open" };
        tokio::task::spawn_blocking(move || {
            let mut child = std::process::Command::new("python3")
                .args(&args)
                .current_dir(dir)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("python3 runs");
            let mut stdout =
                std::io::BufReader::new(child.stdout.take().expect("the producer's stdout"));
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read");
            assert_eq!(line.trim(), expected, "the held transaction did not open");
            Held { child, stdout }
        })
        .await
        .expect("join")
    }

    /// Asks the producer to `commit` or `abort`: what it says became of the transaction.
    async fn end(mut self, command: &'static str) -> String {
        use std::io::{BufRead, Write};
        tokio::task::spawn_blocking(move || {
            let mut stdin = self.child.stdin.take().expect("stdin");
            writeln!(stdin, "{command}").expect("write");
            drop(stdin);
            let mut line = String::new();
            self.stdout.read_line(&mut line).expect("read");
            assert!(self.child.wait().expect("exits").success());
            line.trim().to_owned()
        })
        .await
        .expect("join")
    }
}

/// Runs `yaks txn ARGS` against `infra` (its PostgreSQL and S3): what it printed on
/// standard output, then on standard error, and whether it succeeded.
async fn yaks_txn(infra: &Infra, args: &[&str]) -> (String, String, bool) {
    let env = infra.process_env("yaks-test");
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_yaks"))
            .arg("txn")
            .args(&args)
            .envs(env)
            .output()
            .expect("yaks runs")
    })
    .await
    .expect("join");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.success(),
    )
}

/// `reply` (a [`Held`] producer's) says its commit failed because it was fenced.
fn assert_fenced(reply: &str) {
    assert!(
        reply.starts_with("error ")
            && (reply.contains("FENCED") || reply.contains("INVALID_PRODUCER_EPOCH")),
        "the fenced producer's commit: {reply}"
    );
}

/// Committed A, aborted B, committed C over three partitions: read_committed sees A and C,
/// read_uncommitted all three, with each codec librdkafka writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_sees_committed_transactions_only_with_every_codec() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        check_transactions(&bootstrap, "python3", "confluent_txn.py", codec).await;
    }
    roles.stop().await;
}

/// The same with kafka-python's, kafkajs's and aiokafka's transactional producers, which
/// speak other versions of the transaction APIs (AddPartitionsToTxn and EndTxn v3, v1 and
/// v0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_kafkajs_and_aiokafka_transactions_are_read_committed_alike() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    check_transactions(&bootstrap, "python3", "kafka_python_txn.py", "gzip").await;
    check_transactions(&bootstrap, "node", "kafkajs_txn.js", "none").await;
    check_transactions(&bootstrap, "python3", "aiokafka_txn.py", "lz4").await;
    roles.stop().await;
}

/// kafkajs's consume-transform-produce: a group member sends its offsets to each
/// transaction with TxnOffsetCommit v0, which names no member, while its group is Stable.
/// Kafka takes that (only plain commits without a member need an empty group); the output
/// holds each input once and the group's offsets land with the transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkajs_sends_offsets_to_its_transactions_from_a_live_group() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    const RECORDS: usize = 90;
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "eos-in", 3).await;
    create_topic(&bootstrap, "eos-out", 3).await;
    let producer = producer(&bootstrap, &[]);
    let mut futures = Vec::new();
    for i in 0..RECORDS {
        let key = format!("k{i}");
        let value = format!("v{i}");
        futures.push(enqueue(
            &producer,
            FutureRecord::to("eos-in")
                .key(key.as_str())
                .payload(value.as_str())
                .partition((i % 3) as i32),
        ));
    }
    deliveries(futures).await;
    let args = [bootstrap.clone(), RECORDS.to_string()];
    tokio::task::spawn_blocking(move || {
        run_client(
            "node",
            "kafkajs_eos.js",
            &[
                &args[0],
                "eos-in",
                "eos-out",
                "eos-group",
                "eos-app",
                &args[1],
            ],
        )
    })
    .await
    .expect("join");

    let bootstrap_for_read = bootstrap.clone();
    let output = tokio::task::spawn_blocking(move || {
        read_committed_values(&bootstrap_for_read, "eos-out", 3)
    })
    .await
    .expect("join");
    let mut expected: Vec<String> = (0..RECORDS).map(|i| format!("V{i}")).collect();
    expected.sort();
    assert_eq!(output, expected, "each input once in the output");

    let committed = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "eos-group")
            .create()
            .expect("consumer");
        let mut partitions = TopicPartitionList::new();
        for partition in 0..3 {
            partitions.add_partition("eos-in", partition);
        }
        consumer
            .committed_offsets(partitions, std::time::Duration::from_secs(10))
            .expect("committed offsets")
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(offset) => offset,
                other => panic!("partition {} has no offset: {other:?}", e.partition()),
            })
            .sum::<i64>()
    })
    .await
    .expect("join");
    assert_eq!(
        committed, RECORDS as i64,
        "the group's offsets cover every input"
    );
    roles.stop().await;
}

/// A reader remembers the ranges a read_committed fetch found no aborted transaction in,
/// so it does not ask PostgreSQL again for them; a transaction aborted after such a read,
/// at the offsets right behind it, is still listed and skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_aborted_after_a_clean_read_committed_read_is_still_skipped() {
    use rdkafka::producer::Producer;
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "txn-clean", 3).await;
    let producer = producer(
        &bootstrap,
        &[
            ("transactional.id", "txn-clean"),
            ("enable.idempotence", "true"),
        ],
    );
    let timeout = std::time::Duration::from_secs(30);
    producer.init_transactions(timeout).expect("init");
    let transaction = |label: &'static str, commit: bool| {
        let producer = producer.clone();
        async move {
            producer.begin_transaction().expect("begin");
            let values: Vec<String> = (0..30).map(|i| format!("{label}-{i}")).collect();
            let futures = values
                .iter()
                .enumerate()
                .map(|(i, value)| {
                    enqueue(
                        &producer,
                        FutureRecord::to("txn-clean")
                            .payload(value.as_str())
                            .partition(i as i32 % 3),
                    )
                })
                .collect();
            deliveries(futures).await;
            if commit {
                producer.commit_transaction(timeout).expect("commit");
            } else {
                producer.abort_transaction(timeout).expect("abort");
            }
        }
    };
    let read = |bootstrap: String| async move {
        tokio::task::spawn_blocking(move || read_committed_values(&bootstrap, "txn-clean", 3))
            .await
            .expect("join")
    };

    transaction("A", true).await;
    assert_eq!(read(bootstrap.clone()).await, values(&["A"]));
    // Read again: this time the reader answers from what it remembers.
    assert_eq!(read(bootstrap.clone()).await, values(&["A"]));
    transaction("B", false).await;
    transaction("C", true).await;
    assert_eq!(read(bootstrap.clone()).await, values(&["A", "C"]));
    roles.stop().await;
}

/// Key compaction keeps what read_committed consumers read: it drops aborted records and
/// never lets a record of an open transaction, which may yet abort, replace a committed
/// value (Kafka's cleaner stops at the last stable offset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_compaction_drops_aborted_records_and_leaves_open_transactions_alone() {
    let infra = Infra::start().await;
    let config = infra.config();
    let roles = Roles::start(config.clone()).await;
    let bootstrap = roles.bootstrap();
    let topic = "txn-compacted";
    let configs = [
        ("cleanup.policy", "compact"),
        ("min.cleanable.dirty.ratio", "0.01"),
    ];
    let new_topic = configs.iter().fold(
        NewTopic::new(topic, 3, TopicReplication::Fixed(1)),
        |t, (k, v)| t.set(k, v),
    );
    for result in admin(&bootstrap)
        .create_topics(&[new_topic], &AdminOptions::new())
        .await
        .expect("create topics request")
    {
        result.expect("topic created");
    }
    // The same 30 keys in every transaction: A committed, B aborted, C committed, then D
    // left open.
    run_transactions(
        &bootstrap,
        "python3",
        "confluent_txn.py",
        topic,
        "compacted-app",
        "gzip",
    )
    .await;
    let open = Held::open(&bootstrap, topic, "compacted-open", "D", 60_000).await;
    assert_eq!(
        read_isolated(&bootstrap, topic).await,
        (values(&["A", "C"]), values(&["A", "B", "C", "D"]))
    );

    let backends = roles::connect(&config).await.expect("backends");
    let compactor = roles::compactor(&config, &backends).await;
    let report = compactor.run_once(false).await.expect("pass");
    assert_eq!(report.key_compacted, 3, "{report:?}");
    // C is each key's newest committed value; D, open, is not compacted, so it could not
    // replace C even though it is newer.
    assert_eq!(
        read_isolated(&bootstrap, topic).await,
        (values(&["C"]), values(&["C", "D"]))
    );

    // D aborts: read_committed readers keep C, and the next pass drops D too.
    assert_eq!(open.end("abort").await, "aborted");
    assert_eq!(
        read_isolated(&bootstrap, topic).await,
        (values(&["C"]), values(&["C", "D"]))
    );
    let report = compactor.run_once(false).await.expect("pass");
    assert_eq!(report.key_compacted, 3, "{report:?}");
    assert_eq!(
        read_isolated(&bootstrap, topic).await,
        (values(&["C"]), values(&["C"]))
    );
    roles.stop().await;
}

/// A producer that lost its transactional id is fenced: a new incarnation's
/// `init_transactions` aborts what the old one left open, and the old one's commit fails
/// with PRODUCER_FENCED. A transaction open past its `transaction.timeout.ms` is aborted,
/// which lets read_committed readers past it; `yaks txn abort` does the same at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zombies_are_fenced_and_hanging_transactions_end_by_timeout_or_operator() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();

    // Zombie: the old incarnation holds Z open while a new one with its id runs A, B, C.
    create_topic(&bootstrap, "txn-zombie", 3).await;
    let zombie = Held::open(&bootstrap, "txn-zombie", "zombie-app", "Z", 60_000).await;
    run_transactions(
        &bootstrap,
        "python3",
        "confluent_txn.py",
        "txn-zombie",
        "zombie-app",
        "none",
    )
    .await;
    assert_fenced(&zombie.end("commit").await);
    assert_eq!(
        read_isolated(&bootstrap, "txn-zombie").await,
        (values(&["A", "C"]), values(&["A", "B", "C", "Z"]))
    );

    // Timeout: T is never ended; A and C after it become readable once it is aborted.
    create_topic(&bootstrap, "txn-timeout", 3).await;
    let hung = Held::open(&bootstrap, "txn-timeout", "hung-app", "T", 2_000).await;
    run_transactions(
        &bootstrap,
        "python3",
        "confluent_txn.py",
        "txn-timeout",
        "after-hung",
        "none",
    )
    .await;
    let deadline = yaks_common::clock::now() + std::time::Duration::from_secs(30);
    loop {
        let (committed, _) = read_isolated(&bootstrap, "txn-timeout").await;
        if committed == values(&["A", "C"]) {
            break;
        }
        assert!(
            committed.is_empty(),
            "read_committed past an open transaction: {committed:?}"
        );
        assert!(
            yaks_common::clock::now() < deadline,
            "the hung transaction was never aborted"
        );
        yaks_common::clock::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_fenced(&hung.end("commit").await);

    // Operator: `yaks txn` lists the open transaction, describes it and aborts it.
    create_topic(&bootstrap, "txn-operator", 3).await;
    let stuck = Held::open(&bootstrap, "txn-operator", "stuck-app", "S", 60_000).await;
    run_transactions(
        &bootstrap,
        "python3",
        "confluent_txn.py",
        "txn-operator",
        "after-stuck",
        "none",
    )
    .await;
    assert_eq!(
        read_isolated(&bootstrap, "txn-operator").await.0,
        Vec::<String>::new(),
        "held back by the open transaction"
    );
    let (listed, errors, ok) = yaks_txn(&infra, &["list", "--state", "Ongoing"]).await;
    assert!(ok, "{errors}");
    let rows: Vec<&str> = listed.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{listed}");
    assert!(rows[0].starts_with("stuck-app "), "{listed}");
    assert!(rows[0].contains(" Ongoing "), "{listed}");
    let (described, errors, ok) = yaks_txn(&infra, &["describe", "stuck-app"]).await;
    assert!(ok, "{errors}");
    for partition in ["txn-operator-0", "txn-operator-1", "txn-operator-2"] {
        assert!(described.contains(partition), "{described}");
    }
    let (aborted, errors, ok) = yaks_txn(&infra, &["abort", "stuck-app"]).await;
    assert!(ok, "{errors}");
    assert!(
        aborted.contains("aborted the transaction of stuck-app over 3 partitions"),
        "{aborted}"
    );
    let (_, errors, ok) = yaks_txn(&infra, &["abort", "stuck-app"]).await;
    assert!(!ok && errors.contains("no open transaction"), "{errors}");
    assert_eq!(
        read_isolated(&bootstrap, "txn-operator").await,
        (values(&["A", "C"]), values(&["A", "B", "C", "S"]))
    );
    assert_fenced(&stuck.end("commit").await);
    roles.stop().await;
}

/// The values a read_committed consumer reads of `topic`'s `partitions` partitions, from
/// the beginning to their last stable offsets, sorted.
fn read_committed_values(bootstrap: &str, topic: &str, partitions: i32) -> Vec<String> {
    let mut values: Vec<String> = read_committed(bootstrap, topic, partitions)
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    values.sort();
    values
}

/// The (key, value) records a read_committed consumer reads of `topic`'s `partitions`
/// partitions, from the beginning to their last stable offsets.
fn read_committed(bootstrap: &str, topic: &str, partitions: i32) -> Vec<(String, String)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "eos-checker")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut values = Vec::new();
    let mut ended = std::collections::HashSet::new();
    let deadline = yaks_common::clock::now() + std::time::Duration::from_secs(30);
    while ended.len() < partitions as usize {
        assert!(
            yaks_common::clock::now() < deadline,
            "the read never reached the end"
        );
        match consumer.poll(std::time::Duration::from_millis(500)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                ended.insert(partition);
            }
            Some(Err(e)) => panic!("consume failed: {e}"),
            Some(Ok(message)) => values.push((
                String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            )),
        }
    }
    values
}

/// Exactly once through a consume-transform-produce group: three members (confluent-kafka,
/// KIP-447's producer per process) each write their output and the offsets they consumed
/// in one transaction; one is killed with SIGKILL midway. Its open transaction is aborted
/// at its timeout, its partitions go to the others, which resume from the offsets of its
/// last commit: the output holds each input once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_transform_produce_keeps_exactly_once_through_a_member_killed_midway() {
    const RECORDS: usize = 3000;
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "eos-in", 6).await;
    create_topic(&bootstrap, "eos-out", 6).await;
    let input = producer(&bootstrap, &[]);
    let keys: Vec<String> = (0..RECORDS).map(|i| format!("k{i}")).collect();
    let values: Vec<String> = (0..RECORDS).map(|i| format!("v{i:04}")).collect();
    let futures = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| {
            enqueue(
                &input,
                FutureRecord::to("eos-in")
                    .key(k.as_str())
                    .payload(v.as_str()),
            )
        })
        .collect();
    deliveries(futures).await;

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
    let mut members: Vec<std::process::Child> = (0..3)
        .map(|member| {
            std::process::Command::new("python3")
                .arg(format!("{dir}/confluent_eos_member.py"))
                .args([&bootstrap, "eos-in", "eos-out", "eos-group"])
                .arg(format!("eos-member-{member}"))
                .current_dir(dir)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("python3 runs")
        })
        .collect();
    let read = |bootstrap: String| async move {
        tokio::task::spawn_blocking(move || read_committed_values(&bootstrap, "eos-out", 6))
            .await
            .expect("join")
    };
    let deadline = yaks_common::clock::now() + std::time::Duration::from_secs(120);
    while read(bootstrap.clone()).await.len() < RECORDS / 3 {
        assert!(
            yaks_common::clock::now() < deadline,
            "the members made no progress"
        );
        yaks_common::clock::sleep(std::time::Duration::from_millis(200)).await;
    }
    members[0].kill().expect("SIGKILL");
    members[0].wait().expect("reaped");
    let expected: Vec<String> = values.iter().map(|v| format!("out-{v}")).collect();
    loop {
        let output = read(bootstrap.clone()).await;
        if output.len() >= RECORDS {
            assert!(
                output == expected,
                "{} records, not each input once",
                output.len()
            );
            break;
        }
        assert!(
            yaks_common::clock::now() < deadline,
            "{} of {RECORDS} records out",
            output.len()
        );
        yaks_common::clock::sleep(std::time::Duration::from_millis(500)).await;
    }
    // Nothing more arrives later: no transaction of a killed or rebalanced member commits
    // what another already did.
    yaks_common::clock::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        read(bootstrap.clone()).await == expected,
        "duplicates arrived later"
    );
    for member in &mut members[1..] {
        member.kill().expect("kill");
        member.wait().expect("reaped");
    }
    roles.stop().await;
}

/// A split deployment (one gateway, one writer, one reader, as processes) of `infra`, the
/// writer flushing every `flush_ms`; each process can be killed and started again on its
/// port.
struct Split {
    env: Vec<(String, String)>,
    dir: std::path::PathBuf,
    ports: [u16; 3],
    processes: [Option<Process>; 3],
}

impl Split {
    const READER: usize = 0;
    const WRITER: usize = 1;
    const GATEWAY: usize = 2;

    async fn start(infra: &Infra, flush_ms: u32) -> Split {
        let mut env = infra.process_env("split-txn");
        env.retain(|(k, _)| k != "YAKS_WRITER__FLUSH_INTERVAL_MS");
        env.push((
            "YAKS_WRITER__FLUSH_INTERVAL_MS".into(),
            flush_ms.to_string(),
        ));
        // No early flush for a producer waiting on its answers: records stay buffered for
        // the whole interval.
        env.push(("YAKS_WRITER__FLUSH_IDLE_MS".into(), "0".into()));
        let ports = [port(), port(), port()];
        env.push((
            "YAKS_GATEWAY__WRITER_URLS".into(),
            format!("[\"http://127.0.0.1:{}\"]", ports[Split::WRITER]),
        ));
        let mut split = Split {
            env,
            dir: infra.path().to_path_buf(),
            ports,
            processes: [None, None, None],
        };
        for role in [Split::READER, Split::WRITER, Split::GATEWAY] {
            split.spawn(role).await;
        }
        split
    }

    async fn spawn(&mut self, role: usize) {
        let (name, variable) = [
            ("reader", "YAKS_READER__LISTEN_ADDR"),
            ("writer", "YAKS_WRITER__LISTEN_ADDR"),
            ("gateway", "YAKS_GATEWAY__LISTEN_ADDR"),
        ][role];
        let addr = format!("127.0.0.1:{}", self.ports[role]);
        let mut env = self.env.clone();
        env.push((variable.into(), addr.clone()));
        let process = Process::spawn(name, &[name], &env, &self.dir);
        wait_for_port(&addr, Some(&process)).await;
        self.processes[role] = Some(process);
    }

    /// SIGKILL, then the same role again on its port.
    async fn kill_and_restart(&mut self, role: usize) {
        if let Some(mut process) = self.processes[role].take() {
            process.child.kill().expect("SIGKILL");
            process.child.wait().expect("reaped");
        }
        self.spawn(role).await;
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.ports[Split::GATEWAY])
    }

    /// The processes' logs since they started (the killed ones' logs were replaced by their
    /// successors'), for a failure's message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for process in self.processes.iter().flatten() {
            let text = process.log_text();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} (last 80 lines)\n", process.name));
            for line in &lines[lines.len().saturating_sub(80)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// A transaction whose coordinating gateway is killed between AddPartitionsToTxn and
/// EndTxn, and one whose records are in a writer's buffer when the writer is killed: each
/// ends wholly committed (or, if the client is told to abort, wholly aborted), and
/// read_committed readers are not left behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_is_whole_after_its_gateway_or_writer_is_killed_midway() {
    let infra = Infra::start().await;
    let mut split = Split::start(&infra, 2_000).await;
    let bootstrap = split.bootstrap();
    create_topic(&bootstrap, "txn-killed", 3).await;
    // Both registered before clients ask for metadata.
    yaks_common::clock::sleep(std::time::Duration::from_secs(1)).await;

    // The gateway, the only one so the coordinator, dies with G's partitions added and its
    // records stored.
    let held = Held::open(&bootstrap, "txn-killed", "gateway-killed", "G", 60_000).await;
    split.kill_and_restart(Split::GATEWAY).await;
    assert_eq!(held.end("commit").await, "committed");

    // The writer dies with W's records in its buffer (a 2 s flush interval).
    let held = Held::start(&bootstrap, "txn-killed", "writer-killed", "W", 60_000, true).await;
    yaks_common::clock::sleep(std::time::Duration::from_millis(300)).await;
    split.kill_and_restart(Split::WRITER).await;
    let asked = yaks_common::clock::now();
    let outcome = held.end("commit").await;
    println!(
        "the transaction whose writer was killed: {outcome} after {:?}",
        asked.elapsed()
    );
    let (committed, uncommitted) = read_isolated(&bootstrap, "txn-killed").await;
    match outcome.as_str() {
        "committed" => assert_eq!(committed, values(&["G", "W"])),
        other => {
            assert!(
                other.starts_with("aborted after"),
                "{other}\n{}",
                split.logs()
            );
            assert_eq!(committed, values(&["G"]));
        }
    }
    assert!(
        uncommitted.iter().filter(|v| v.starts_with('W')).count() <= 30,
        "no record of W stored twice: {uncommitted:?}"
    );
}

/// Quix Streams with `processing_guarantee="exactly-once"` through `yaks dev`: a stateful
/// count per key whose output, changelog and offsets go in one transaction per checkpoint.
/// It stops, loses its local state, restores it from its changelog and goes on: the output
/// holds each key's counts 1, 2, … once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quix_streams_counts_exactly_once_through_yaks_dev_after_losing_its_state() {
    const PYTHON: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/quix-venv/bin/python"
    );
    let dir = reachable_temp_dir("yaks-quix-eos-");
    let kafka = format!("127.0.0.1:{}", port());
    let _dev = start_dev(dir.path(), "dev", &kafka, &[]).await;
    create_topic(&kafka, "clicks", 3).await;
    create_topic(&kafka, "click-counts", 3).await;
    let input = producer(&kafka, &[]);
    let send = |round: String| {
        let futures: Vec<_> = (0..10)
            .map(|k| {
                let key = format!("k{k}");
                enqueue(
                    &input,
                    FutureRecord::to("clicks")
                        .key(key.as_str())
                        .payload(round.as_str()),
                )
            })
            .collect();
        deliveries(futures)
    };
    for round in 0..10 {
        send(format!("e{round}")).await;
    }
    let state = dir.path().join("quix-state");
    let state_arg = state.to_str().expect("utf-8").to_owned();
    let quix = |records: &'static str| {
        let args = [kafka.clone(), state_arg.clone()];
        tokio::task::spawn_blocking(move || {
            run_client(
                PYTHON,
                "quix_eos.py",
                &[&args[0], "clicks", "click-counts", &args[1], records],
            )
        })
    };
    quix("100").await.expect("join");
    std::fs::remove_dir_all(&state).expect("local state deleted");
    send("again".to_owned()).await;
    quix("10").await.expect("join");

    let reads = kafka.clone();
    let output = tokio::task::spawn_blocking(move || read_committed(&reads, "click-counts", 3))
        .await
        .expect("join");
    let mut counts: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for (key, value) in output {
        counts
            .entry(key)
            .or_default()
            .push(value.parse().expect("a count"));
    }
    let expected: Vec<i64> = (1..=11).collect();
    assert_eq!(counts.len(), 10, "{counts:?}");
    for (key, mut seen) in counts {
        seen.sort_unstable();
        assert_eq!(seen, expected, "key {key}: each count once");
    }
}
