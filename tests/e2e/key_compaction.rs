//! Key-compacted topics as a changelog's users see them: a topic created with
//! `cleanup.policy=compact` by a real client, an idempotent producer writing 20 keys × 100
//! versions and 5 tombstones, a record without a key refused, then after a compactor pass
//! librdkafka, kafka-python and kafkajs all read exactly the newest value of each key at its
//! original offset, across the gaps; the tombstones go once `delete.retention.ms` has
//! passed, the log's ends never move, and the idempotent producer goes on producing.
//! `compact,delete` applies retention and compaction both; a key map smaller than the keys
//! takes several passes and gets the same result; zstd-compressed batches are compacted;
//! under `yaks dev`'s defaults the maximum compaction lag compacts what the dirty ratio
//! would not, and the minimum lag protects young records; a Quix Streams application
//! restores its state from its compacted changelog.

use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use yaks::roles;
use yaks_common::clock::{Clock, SystemClock};

use crate::harness::*;

const TOPIC: &str = "changelog";
const KEYS: usize = 20;
const VERSIONS: usize = 100;
const TOMBSTONES: usize = 5;
/// `delete.retention.ms` of the topic.
const DELETE_RETENTION_MS: u64 = 2_000;

/// A record as a consumer reads it: offset, key, value (`None` for a tombstone).
type Read = (i64, String, Option<String>);

/// Every record of partition 0 of `topic` from its log start up to its end (librdkafka's
/// end-of-partition event), with librdkafka.
fn read_to_end(bootstrap: &str, topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "changelog-readers")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let deadline = yaks_common::clock::now() + Duration::from_secs(30);
    let mut records = Vec::new();
    while yaks_common::clock::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                records.push((
                    m.offset(),
                    m.key().map(text).unwrap_or_default(),
                    m.payload().map(text),
                ));
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            _ => {}
        }
    }
    records
}

/// Creates `topic` (one partition) with `configs`.
async fn create(bootstrap: &str, topic: &str, configs: &[(&str, &str)]) {
    let mut new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    for (name, value) in configs {
        new_topic = new_topic.set(name, value);
    }
    let created = admin(bootstrap)
        .create_topics(&[new_topic], &AdminOptions::new())
        .await
        .expect("create topics request");
    assert!(created[0].is_ok(), "{created:?}");
}

/// Produces one record per key `k0`..`k{keys - 1}` with `value` (a tombstone for `None`),
/// timestamped `timestamp_ms` if given, and waits for them; returns their offsets.
async fn produce_round(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    keys: usize,
    value: Option<&str>,
    timestamp_ms: Option<i64>,
) -> Vec<i64> {
    let futures = (0..keys)
        .map(|key| {
            let key = format!("k{key}");
            let mut record = FutureRecord::<str, str>::to(topic)
                .key(key.as_str())
                .partition(0);
            if let Some(value) = value {
                record = record.payload(value);
            }
            if let Some(timestamp) = timestamp_ms {
                record = record.timestamp(timestamp);
            }
            enqueue(producer, record)
        })
        .collect();
    deliveries(futures).await.iter().map(|d| d.1).collect()
}

/// Every key's newest value, `value`, at offsets from `first`.
fn round(first: i64, keys: std::ops::Range<usize>, value: &str) -> Vec<Read> {
    keys.map(|k| (first + k as i64, format!("k{k}"), Some(value.to_owned())))
        .collect()
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
    let delete_retention = DELETE_RETENTION_MS.to_string();
    create(
        &bootstrap,
        TOPIC,
        &[
            ("cleanup.policy", "compact"),
            ("delete.retention.ms", &delete_retention),
        ],
    )
    .await;

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
    let (librdkafka, kafka_python, kafkajs, by_time) = tokio::task::spawn_blocking(move || {
        let count_text = count.to_string();
        let args = [bootstrap_for_reads.as_str(), TOPIC, count_text.as_str()];
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap_for_reads)
            .create()
            .expect("consumer");
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset(TOPIC, 0, Offset::Offset(0))
            .expect("query");
        let by_time = consumer
            .offsets_for_times(query, Duration::from_secs(10))
            .expect("offsets for times")
            .elements()[0]
            .offset();
        (
            read_to_end(&bootstrap_for_reads, TOPIC),
            parse(&run_client("python3", "kafka_python_read_keys.py", &args)),
            parse(&run_client("node", "kafkajs_read_keys.js", &args)),
            by_time,
        )
    })
    .await
    .expect("join");
    assert_eq!(
        by_time,
        Offset::Offset(expected[0].0),
        "ListOffsets by time finds the first record compaction kept"
    );
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
        let read = read_to_end(&after_tombstones, TOPIC);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_delete_applies_both_and_a_small_key_map_takes_several_passes() {
    let infra = Infra::start().await;
    let mut config = infra.config();
    // 42 slots, 37 keys: 200 keys take several passes.
    config.compactor.key_map_bytes = 1024;
    let roles = Roles::start(config.clone()).await;
    let bootstrap = roles.bootstrap();
    create(
        &bootstrap,
        "both",
        &[
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "3600000"),
        ],
    )
    .await;
    create(
        &bootstrap,
        "wide",
        &[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    )
    .await;
    let producer = producer(&bootstrap, &[]);
    // Two rounds two hours old, each acknowledged (so flushed) before the next: retention
    // takes them; then two current rounds, of which compaction keeps the newest.
    let two_hours_ago = SystemClock.now_ms() - 7_200_000;
    for value in ["old0", "old1"] {
        produce_round(&producer, "both", 20, Some(value), Some(two_hours_ago)).await;
    }
    for value in ["new0", "new1"] {
        produce_round(&producer, "both", 20, Some(value), None).await;
    }
    for version in 0..3 {
        produce_round(&producer, "wide", 200, Some(&format!("v{version}")), None).await;
    }
    // Compressed batches are opened, judged and rewritten.
    create(&bootstrap, "zstd", &[("cleanup.policy", "compact")]).await;
    let zstd = crate::harness::producer(&bootstrap, &[("compression.type", "zstd")]);
    for version in 0..5 {
        produce_round(&zstd, "zstd", 20, Some(&format!("z{version}")), None).await;
    }
    // Half the keys once more: the last full round's batch keeps only its other half.
    produce_round(&zstd, "zstd", 10, Some("z5"), None).await;

    let backends = roles::connect(&config).await.expect("backends");
    let compactor = roles::compactor(&config, &backends).await;
    let mut passes = 0;
    loop {
        let report = compactor.run_once(false).await.expect("pass");
        if passes == 0 {
            assert_eq!(
                report.retained, 1,
                "retention moved one log start: {report:?}"
            );
        }
        if report.key_compacted == 0 {
            break;
        }
        passes += 1;
        assert!(passes < 50, "passes end");
    }
    assert!(
        passes > 5,
        "a map of 37 keys takes several passes over 200: {passes}"
    );

    let reads = bootstrap.clone();
    let (both, wide, zstd_read, watermarks) = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &reads)
            .create()
            .expect("consumer");
        let watermarks = consumer
            .fetch_watermarks("both", 0, Duration::from_secs(10))
            .expect("watermarks");
        (
            read_to_end(&reads, "both"),
            read_to_end(&reads, "wide"),
            read_to_end(&reads, "zstd"),
            watermarks,
        )
    })
    .await
    .expect("join");
    assert_eq!(
        watermarks,
        (40, 80),
        "retention moved the log start past the old rounds"
    );
    assert_eq!(
        both,
        round(60, 0..20, "new1"),
        "compaction kept the newest of the rest"
    );
    assert_eq!(wide, round(400, 0..200, "v2"));
    assert_eq!(
        zstd_read,
        [round(80, 10..20, "z4"), round(100, 0..10, "z5")].concat(),
        "zstd batches compacted, one rewritten keeping half its records"
    );
    roles.stop().await;
}

/// `yaks dev` with its defaults: a superseded value goes within `max.compaction.lag.ms`
/// (plus one check) although the dirty ratio never reaches `min.cleanable.dirty.ratio`;
/// `min.compaction.lag.ms` keeps young records whatever the ratio, and once they are old
/// enough a check compacts them with nothing new written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_yaks_dev_the_maximum_lag_compacts_and_the_minimum_lag_protects() {
    let dir = reachable_temp_dir("yaks-compacted-");
    let kafka = format!("127.0.0.1:{}", port());
    let metrics_addr = format!("127.0.0.1:{}", port());
    let env = [("YAKS_GATEWAY__HTTP_ADDR".to_owned(), metrics_addr.clone())];
    let dev = start_dev(dir.path(), "dev", &kafka, &env).await;
    const MAX_LAG_MS: u64 = 8_000;
    const MIN_LAG_MS: u64 = 6_000;
    let max_lag = MAX_LAG_MS.to_string();
    create(
        &kafka,
        "lagged",
        &[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0.99"),
            ("max.compaction.lag.ms", &max_lag),
        ],
    )
    .await;
    create(
        &kafka,
        "young",
        &[
            ("cleanup.policy", "compact"),
            ("min.compaction.lag.ms", "3600000"),
        ],
    )
    .await;
    let producer = producer(&kafka, &[]);
    produce_round(&producer, "lagged", 20, Some("v0"), None).await;
    produce_round(&producer, "young", 20, Some("v0"), None).await;
    // Young records wait out min.compaction.lag.ms, then a check compacts them without
    // anything more being written.
    create(
        &kafka,
        "ripening",
        &[
            ("cleanup.policy", "compact"),
            ("min.compaction.lag.ms", &MIN_LAG_MS.to_string()),
        ],
    )
    .await;
    let ripening_since = yaks_common::clock::now();
    for value in ["v0", "v1"] {
        produce_round(&producer, "ripening", 20, Some(value), None).await;
    }
    // The first round is all dirty (ratio 1): a check compacts it (nothing to remove).
    let deadline = yaks_common::clock::now() + Duration::from_secs(30);
    loop {
        let (_, page) = http_get(&metrics_addr, "/metrics").await;
        if page.lines().any(|l| {
            l.starts_with("yaks_compactor_key_compaction_passes_total{outcome=\"compacted\"}")
        }) {
            break;
        }
        assert!(
            yaks_common::clock::now() < deadline,
            "no key compaction pass within 30 s\n{}",
            dev.log_text()
        );
        yaks_common::clock::sleep(Duration::from_millis(250)).await;
    }

    // A second round makes half the bytes dirty, below the 0.99 ratio: only the maximum
    // lag compacts it.
    let produced = yaks_common::clock::now();
    produce_round(&producer, "lagged", 20, Some("v1"), None).await;
    produce_round(&producer, "young", 20, Some("v1"), None).await;
    let reads = kafka.clone();
    let compacted = tokio::task::spawn_blocking(move || {
        let before = read_to_end(&reads, "lagged");
        let deadline = yaks_common::clock::now() + Duration::from_secs(30);
        loop {
            let read = read_to_end(&reads, "lagged");
            if read.len() == 20 || yaks_common::clock::now() > deadline {
                return (before, read, produced.elapsed());
            }
            yaks_common::clock::sleep_blocking(Duration::from_millis(500));
        }
    })
    .await
    .expect("join");
    let (before, after, waited) = compacted;
    assert!(
        before.len() == 40 || waited >= Duration::from_millis(MAX_LAG_MS),
        "the ratio alone does not compact: {} records right after",
        before.len()
    );
    assert_eq!(
        after,
        round(20, 0..20, "v1"),
        "compacted within the maximum lag"
    );
    assert!(
        waited >= Duration::from_millis(MAX_LAG_MS - 1_000),
        "not before the maximum lag: {waited:?}"
    );
    assert!(
        waited <= Duration::from_millis(MAX_LAG_MS + 15_000),
        "within the maximum lag and a check: {waited:?}"
    );

    let reads = kafka.clone();
    let young = tokio::task::spawn_blocking(move || read_to_end(&reads, "young"))
        .await
        .expect("join");
    assert_eq!(
        young,
        [round(0, 0..20, "v0"), round(20, 0..20, "v1")].concat(),
        "records younger than min.compaction.lag.ms are all there"
    );

    let reads = kafka.clone();
    let (ripened, waited) = tokio::task::spawn_blocking(move || {
        let deadline = yaks_common::clock::now() + Duration::from_secs(30);
        loop {
            let read = read_to_end(&reads, "ripening");
            if read.len() == 20 || yaks_common::clock::now() > deadline {
                return (read, ripening_since.elapsed());
            }
            yaks_common::clock::sleep_blocking(Duration::from_millis(500));
        }
    })
    .await
    .expect("join");
    assert_eq!(ripened, round(20, 0..20, "v1"), "compacted once old enough");
    assert!(
        waited <= Duration::from_millis(MIN_LAG_MS + 15_000),
        "within the minimum lag and a check, not at the next full pass: {waited:?}"
    );
    assert!(dev.interrupt().success());
}

/// Quix Streams, a stateful stream-processing library, counts records per key in state
/// backed by a changelog it creates compacted; the compactor compacts the changelog, the
/// application's local state is deleted, and it restores its counts from what compaction
/// kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quix_streams_restores_its_state_from_a_compacted_changelog() {
    const PYTHON: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/quix-venv/bin/python"
    );
    const CHANGELOG: &str = "changelog__counter--events--default";
    let infra = Infra::start().await;
    let config = infra.config();
    let roles = Roles::start(config.clone()).await;
    let bootstrap = roles.bootstrap();
    create(&bootstrap, "events", &[]).await;
    let producer = producer(&bootstrap, &[]);
    for version in 0..10 {
        produce_round(&producer, "events", 10, Some(&format!("e{version}")), None).await;
    }
    let state = tempfile::tempdir().expect("state dir");
    let state_dir = state.path().join("state");
    let state_arg = state_dir.to_str().expect("utf-8").to_owned();
    let counts = |n: usize| -> String {
        (0..10)
            .map(|k| format!("k{k} {n}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let quix = |records: &'static str| {
        let args = [bootstrap.clone(), "events".to_owned(), state_arg.clone()];
        tokio::task::spawn_blocking(move || {
            run_client(
                PYTHON,
                "quix_count.py",
                &[&args[0], &args[1], &args[2], records],
            )
        })
    };
    assert_eq!(quix("100").await.expect("join"), counts(10));

    let backends = roles::connect(&config).await.expect("backends");
    let compactor = roles::compactor(&config, &backends).await;
    let report = compactor.run_once(false).await.expect("pass");
    assert!(report.key_compacted >= 1, "{report:?}");
    let reads = bootstrap.clone();
    let changelog = tokio::task::spawn_blocking(move || read_to_end(&reads, CHANGELOG))
        .await
        .expect("join");
    assert_eq!(
        changelog.len(),
        10,
        "one state record per key is left of the changelog: {changelog:?}"
    );

    std::fs::remove_dir_all(&state_dir).expect("local state deleted");
    produce_round(&producer, "events", 10, Some("again"), None).await;
    assert_eq!(
        quix("10").await.expect("join"),
        counts(11),
        "the counts restored from the compacted changelog, plus one"
    );
    roles.stop().await;
}
