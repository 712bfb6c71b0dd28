//! Key-compacted topics as a changelog's users see them: a topic created with
//! `cleanup.policy=compact` by a real client, an idempotent producer writing 20 keys × 100
//! versions and 5 tombstones, a record without a key refused, then after a compactor pass
//! librdkafka, kafka-python and kafkajs all read exactly the newest value of each key at its
//! original offset, across the gaps; the tombstones go once `delete.retention.ms` has
//! passed, the log's ends never move, and the idempotent producer goes on producing.

use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use yaks::roles;

use crate::harness::*;

const TOPIC: &str = "changelog";
const KEYS: usize = 20;
const VERSIONS: usize = 100;
const TOMBSTONES: usize = 5;
/// `delete.retention.ms` of the topic.
const DELETE_RETENTION_MS: u64 = 2_000;

/// A record as a consumer reads it: offset, key, value (`None` for a tombstone).
type Read = (i64, String, Option<String>);

/// The first `count` records of partition 0 from offset 0, with librdkafka.
fn read_with_librdkafka(bootstrap: &str, count: usize) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "changelog-readers")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Offset(0))
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let deadline = yaks_common::clock::now() + Duration::from_secs(30);
    let mut records = Vec::new();
    while records.len() < count && yaks_common::clock::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            records.push((
                m.offset(),
                m.key().map(text).unwrap_or_default(),
                m.payload().map(text),
            ));
        }
    }
    records
}

/// What the client scripts print: "offset key value" lines, value "null" for a tombstone.
fn parse(printed: &str) -> Vec<Read> {
    printed
        .lines()
        .map(|line| {
            let mut words = line.split(' ');
            let offset = words.next().and_then(|w| w.parse().ok()).expect("offset");
            let key = words.next().expect("key").to_owned();
            let value = words.next().expect("value");
            (offset, key, (value != "null").then(|| value.to_owned()))
        })
        .collect()
}

/// The newest value of every key not deleted, at the offset it was written at.
fn live() -> Vec<Read> {
    let last_round = ((VERSIONS - 1) * KEYS) as i64;
    (TOMBSTONES..KEYS)
        .map(|k| {
            (
                last_round + k as i64,
                format!("k{k}"),
                Some(format!("v{}", VERSIONS - 1)),
            )
        })
        .collect()
}

/// The tombstones, at their offsets.
fn tombstones() -> Vec<Read> {
    let first = (VERSIONS * KEYS) as i64;
    (0..TOMBSTONES)
        .map(|k| (first + k as i64, format!("k{k}"), None))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_changelog_keeps_the_newest_value_per_key_for_every_client() {
    let infra = Infra::start().await;
    let config = infra.config();
    let roles = Roles::start(config.clone()).await;
    let bootstrap = roles.bootstrap();
    let created = admin(&bootstrap)
        .create_topics(
            &[NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1))
                .set("cleanup.policy", "compact")
                .set("delete.retention.ms", &DELETE_RETENTION_MS.to_string())],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics request");
    assert!(created[0].is_ok(), "{created:?}");

    // Idempotent, as the changelog producers of Kafka Streams and Quix Streams are.
    let changelog = producer(&bootstrap, &[("enable.idempotence", "true")]);
    let mut futures = Vec::new();
    for version in 0..VERSIONS {
        for key in 0..KEYS {
            let (key, value) = (format!("k{key}"), format!("v{version}"));
            let record = FutureRecord::to(TOPIC)
                .key(key.as_str())
                .payload(value.as_str())
                .partition(0);
            futures.push(enqueue(&changelog, record));
        }
    }
    for key in 0..TOMBSTONES {
        let key = format!("k{key}");
        futures.push(enqueue(
            &changelog,
            FutureRecord::<str, str>::to(TOPIC)
                .key(key.as_str())
                .partition(0),
        ));
    }
    let offsets: Vec<i64> = deliveries(futures).await.iter().map(|d| d.1).collect();
    assert_eq!(
        offsets,
        (0..(VERSIONS * KEYS + TOMBSTONES) as i64).collect::<Vec<_>>()
    );

    // Kafka refuses a record without a key in a compacted topic, and so does yaks.
    let refused = producer(&bootstrap, &[("message.send.max.retries", "0")])
        .send(
            FutureRecord::<str, str>::to(TOPIC)
                .payload("no key")
                .partition(0),
            Duration::from_secs(30),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err((
                KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord),
                _
            ))
        ),
        "{refused:?}"
    );

    let backends = roles::connect(&config).await.expect("backends");
    let compactor = roles::compactor(&config, &backends).await;
    let report = compactor.run_once(false).await.expect("pass");
    assert_eq!(report.key_compacted, 1, "{report:?}");

    let expected = [live(), tombstones()].concat();
    let count = expected.len();
    let bootstrap_for_reads = bootstrap.clone();
    let (librdkafka, kafka_python, kafkajs) = tokio::task::spawn_blocking(move || {
        let count_text = count.to_string();
        let args = [bootstrap_for_reads.as_str(), TOPIC, count_text.as_str()];
        (
            read_with_librdkafka(&bootstrap_for_reads, count),
            parse(&run_client("python3", "kafka_python_read_keys.py", &args)),
            parse(&run_client("node", "kafkajs_read_keys.js", &args)),
        )
    })
    .await
    .expect("join");
    assert_eq!(librdkafka, expected, "librdkafka");
    assert_eq!(kafka_python, expected, "kafka-python");
    assert_eq!(kafkajs, expected, "kafkajs");

    // The tombstones stay delete.retention.ms after the pass that first kept them; the
    // next pass after that removes them, with nothing new produced.
    yaks_common::clock::sleep(Duration::from_millis(DELETE_RETENTION_MS + 200)).await;
    let report = compactor.run_once(false).await.expect("pass");
    assert_eq!(report.key_compacted, 1, "{report:?}");
    let after_tombstones = bootstrap.clone();
    let (read, watermarks) = tokio::task::spawn_blocking(move || {
        let read = read_with_librdkafka(&after_tombstones, live().len());
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &after_tombstones)
            .create()
            .expect("consumer");
        let watermarks = consumer
            .fetch_watermarks(TOPIC, 0, Duration::from_secs(10))
            .expect("watermarks");
        (read, watermarks)
    })
    .await
    .expect("join");
    assert_eq!(read, live());
    assert_eq!(
        watermarks,
        (0, (VERSIONS * KEYS + TOMBSTONES) as i64),
        "compaction moves neither end of the log"
    );

    // The idempotent producer goes on where it was.
    let more: Vec<_> = (0..KEYS)
        .map(|key| {
            let key = format!("k{key}");
            enqueue(
                &changelog,
                FutureRecord::to(TOPIC)
                    .key(key.as_str())
                    .payload("after")
                    .partition(0),
            )
        })
        .collect();
    let next = (VERSIONS * KEYS + TOMBSTONES) as i64;
    assert_eq!(
        deliveries(more)
            .await
            .iter()
            .map(|d| d.1)
            .collect::<Vec<_>>(),
        (next..next + KEYS as i64).collect::<Vec<_>>()
    );
    roles.stop().await;
}
