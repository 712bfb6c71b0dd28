//! The clients users have — Debian's kcat (librdkafka 2.0.2), confluent-kafka, kafka-python
//! and kafkajs — producing to `yaks dev` as the README tells them to, then reading back with
//! rdkafka, kcat (`-C -o beginning`), confluent-kafka with manual assignment, and as
//! consumer group members: kcat `-G` and confluent-kafka `subscribe()`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::harness::*;

/// Runs kcat against `bootstrap` with `args` and returns the lines it printed.
async fn kcat_lines(bootstrap: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["-b".to_owned(), bootstrap.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let output = tokio::task::spawn_blocking(move || Command::new("kcat").args(&all).output())
        .await
        .expect("join")
        .expect("kcat ran");
    assert!(
        output.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn expected_offsets(from: i64) -> String {
    (from..from + 10)
        .map(|o| o.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn consume_all(bootstrap: &str, topic: &str, expected: usize) -> Vec<(i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(0))
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let deadline = yaks_common::clock::now() + Duration::from_secs(30);
    let mut records = Vec::new();
    while records.len() < expected && yaks_common::clock::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message.expect("fetch");
            let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
            records.push((message.offset(), value));
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_confluent_kafka_python_and_kafkajs_produce_to_yaks_dev() {
    let dir = reachable_temp_dir("yaks-clients-");
    let kafka = format!("127.0.0.1:{}", port());
    let env = [("YAKS_WRITER__FLUSH_INTERVAL_MS".to_owned(), "20".to_owned())];
    let process = start_dev(dir.path(), "dev", &kafka, &env).await;

    // kcat as in the README; the topic is auto-created.
    let mut kcat = Command::new("kcat")
        .args(["-b", &kafka, "-t", "from-clients", "-P", "-z", "gzip"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat is installed (scripts/setup installs Debian's kcat)");
    let mut stdin = kcat.stdin.take().expect("stdin");
    for i in 0..5 {
        writeln!(stdin, "kcat {i}").expect("write");
    }
    drop(stdin);
    let output = tokio::task::spawn_blocking(move || kcat.wait_with_output())
        .await
        .expect("join")
        .expect("kcat ran");
    assert!(
        output.status.success(),
        "kcat failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        process.log_text()
    );

    let clients = [
        ("python3", "confluent_produce.py", "confluent"),
        ("python3", "kafka_python_produce.py", "kafka-python"),
        ("node", "kafkajs_produce.js", "kafkajs"),
    ];
    let mut next = 5;
    for (program, script, _) in clients {
        let bootstrap = kafka.clone();
        let offsets = tokio::task::spawn_blocking(move || {
            run_client(program, script, &[&bootstrap, "from-clients"])
        })
        .await
        .expect("join");
        assert_eq!(
            offsets,
            expected_offsets(next),
            "{script} deliveries follow the earlier ones"
        );
        next += 10;
    }

    let bootstrap = kafka.clone();
    let records = tokio::task::spawn_blocking(move || consume_all(&bootstrap, "from-clients", 35))
        .await
        .expect("join");
    let mut expected: Vec<(i64, String)> = (0..5).map(|i| (i, format!("kcat {i}"))).collect();
    for (n, (_, _, label)) in clients.iter().enumerate() {
        let base = 5 + 10 * n as i64;
        expected.extend((0..10).map(|i| (base + i, format!("{label} {i}"))));
    }
    assert_eq!(records, expected);
    let values: Vec<String> = expected.iter().map(|(_, v)| v.clone()).collect();

    // Read back from the beginning as users do: kcat, then confluent-kafka.
    let read = kcat_lines(
        &kafka,
        &["-t", "from-clients", "-C", "-o", "beginning", "-e"],
    )
    .await;
    assert_eq!(read, values, "kcat -C -o beginning reads everything back");

    let bootstrap = kafka.clone();
    let printed = tokio::task::spawn_blocking(move || {
        run_client(
            "python3",
            "confluent_consume.py",
            &[&bootstrap, "from-clients", "35"],
        )
    })
    .await
    .expect("join");
    let read: Vec<String> = printed.lines().map(str::to_owned).collect();
    assert_eq!(
        read, values,
        "confluent-kafka with manual assignment reads it back"
    );

    // As group members: kcat's balanced consumer (-G) and confluent-kafka's subscribe().
    let read = kcat_lines(
        &kafka,
        &[
            "-G",
            "kcat-group",
            "-X",
            "auto.offset.reset=earliest",
            "-e",
            "from-clients",
        ],
    )
    .await;
    assert_eq!(read, values, "kcat -G reads everything as a group member");

    let bootstrap = kafka.clone();
    let printed = tokio::task::spawn_blocking(move || {
        run_client(
            "python3",
            "confluent_subscribe.py",
            &[&bootstrap, "from-clients", "subscribers", "35"],
        )
    })
    .await
    .expect("join");
    let read: Vec<String> = printed.lines().map(str::to_owned).collect();
    assert_eq!(read, values, "confluent-kafka subscribe() reads it back");
    assert!(process.interrupt().success());
}
