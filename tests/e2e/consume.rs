//! The read path through a real client: what was produced comes back byte for byte, from
//! every codec, from the cache on re-reads, at the tail within a flush interval, across a
//! reader's death, with offset resets and time lookups as Kafka clients expect.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Message, Offset, Timestamp, TopicPartitionList};

use crate::harness::*;

pub(crate) fn consumer(bootstrap: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-consume")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "500");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().expect("consumer")
}

pub(crate) fn assign(consumer: &BaseConsumer, topic: &str, partitions: i32, offset: Offset) {
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, offset)
            .expect("partition");
    }
    consumer.assign(&list).expect("assign");
}

/// Polls until `count` messages arrived or `timeout` passed; fetch errors fail the test.
pub(crate) fn poll_n(
    consumer: &BaseConsumer,
    count: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let deadline = yaks_common::clock::now() + timeout;
    let mut out = Vec::with_capacity(count);
    while out.len() < count && yaks_common::clock::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            out.push(message.expect("fetch succeeds").detach());
        }
    }
    out
}

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_over_four_partitions_come_back_byte_identical() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "identical", 4).await;

    const COUNT: usize = 10_000;
    const BASE_TS: i64 = 1_700_000_000_000;
    let producer = producer(&bootstrap, &[]);
    let keys: Vec<String> = (0..COUNT).map(|i| format!("key-{i}")).collect();
    let values: Vec<String> = (0..COUNT)
        .map(|i| format!("value-{i}-{}", "x".repeat(i % 300)))
        .collect();
    let mut futures = Vec::with_capacity(COUNT);
    for i in 0..COUNT {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "dup",
                value: Some(format!("first-{i}").as_bytes()),
            })
            .insert(Header {
                key: "dup",
                value: Some(format!("second-{i}").as_bytes()),
            })
            .insert(Header {
                key: "empty",
                value: None::<&[u8]>,
            });
        let record = FutureRecord::to("identical")
            .partition((i % 4) as i32)
            .key(keys[i].as_str())
            .payload(values[i].as_str())
            .timestamp(BASE_TS + i as i64)
            .headers(headers);
        futures.push(enqueue(&producer, record));
    }
    let delivered = deliveries(futures).await;
    let mut sent: HashMap<(i32, i64), usize> = HashMap::new();
    for (i, (partition, offset)) in delivered.into_iter().enumerate() {
        sent.insert((partition, offset), i);
    }

    let bootstrap_clone = bootstrap.clone();
    let received = blocking(move || {
        let consumer = consumer(&bootstrap_clone, &[]);
        assign(&consumer, "identical", 4, Offset::Beginning);
        poll_n(&consumer, COUNT, Duration::from_secs(120))
    })
    .await;
    assert_eq!(received.len(), COUNT, "every record comes back");
    for message in &received {
        let i = sent[&(message.partition(), message.offset())];
        assert_eq!(message.key(), Some(keys[i].as_bytes()), "key of {i}");
        assert_eq!(
            message.payload(),
            Some(values[i].as_bytes()),
            "value of {i}"
        );
        assert_eq!(
            message.timestamp(),
            Timestamp::CreateTime(BASE_TS + i as i64)
        );
        let headers = message.headers().expect("headers");
        let got: Vec<(String, Option<Vec<u8>>)> = headers
            .iter()
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("dup".to_owned(), Some(format!("first-{i}").into_bytes())),
                ("dup".to_owned(), Some(format!("second-{i}").into_bytes())),
                ("empty".to_owned(), None),
            ]
        );
    }
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_and_a_one_mib_record_round_trip() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        let producer = producer(&bootstrap, &[("compression.type", codec)]);
        let values: Vec<String> = (0..200).map(|i| format!("{codec} record {i}")).collect();
        let futures = values
            .iter()
            .map(|v| enqueue(&producer, FutureRecord::to(&topic).payload(v.as_str())))
            .collect();
        deliveries(futures).await;
        let bootstrap = bootstrap.clone();
        let got = blocking(move || {
            let consumer = consumer(&bootstrap, &[]);
            assign(&consumer, &topic, 1, Offset::Beginning);
            poll_n(&consumer, 200, Duration::from_secs(30))
        })
        .await;
        let got: Vec<&[u8]> = got
            .iter()
            .map(|m| m.payload().unwrap_or_default())
            .collect();
        let expected: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        assert_eq!(got, expected, "{codec} round-trips");
    }

    // Kafka's default max.message.bytes (1 MiB + 12) is just too small for 1 MiB plus overhead.
    admin(&bootstrap)
        .create_topics(
            &[NewTopic::new("big", 1, TopicReplication::Fixed(1))
                .set("max.message.bytes", "2097152")],
            &AdminOptions::new(),
        )
        .await
        .expect("create")
        .into_iter()
        .for_each(|r| {
            r.expect("created");
        });
    let big: String = (0..1024 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let producer = producer(&bootstrap, &[("message.max.bytes", "2000000")]);
    deliveries(vec![enqueue(
        &producer,
        FutureRecord::to("big").payload(big.as_str()),
    )])
    .await;
    let got = blocking(move || {
        // Smaller than the record: the first batch comes back whole anyway.
        let consumer = consumer(&bootstrap, &[("max.partition.fetch.bytes", "65536")]);
        assign(&consumer, "big", 1, Offset::Beginning);
        poll_n(&consumer, 1, Duration::from_secs(30))
    })
    .await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].payload(),
        Some(big.as_bytes()),
        "1 MiB record round-trips"
    );
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_consumer_gets_a_new_record_within_the_flush_interval() {
    let infra = Infra::start().await;
    let config = infra.config();
    let flush_ms = config.writer.flush_interval_ms;
    let roles = Roles::start(config).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "tail", 1).await;
    let producer = producer(&bootstrap, &[("linger.ms", "0")]);
    deliveries(vec![enqueue(
        &producer,
        FutureRecord::to("tail").payload("old"),
    )])
    .await;

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let bootstrap_clone = bootstrap.clone();
    let waiting = tokio::task::spawn_blocking(move || {
        let consumer = consumer(&bootstrap_clone, &[("fetch.wait.max.ms", "10000")]);
        assign(&consumer, "tail", 1, Offset::End);
        // Settle at the end of the partition (the reset and first fetches happen here).
        let _ = poll_n(&consumer, 1, Duration::from_secs(2));
        ready_tx.send(()).expect("signal");
        let got = poll_n(&consumer, 1, Duration::from_secs(20));
        (got, yaks_common::clock::now())
    });
    blocking(move || ready_rx.recv().expect("consumer ready")).await;
    let sent_at = yaks_common::clock::now();
    deliveries(vec![enqueue(
        &producer,
        FutureRecord::to("tail").payload("new"),
    )])
    .await;
    let (got, received_at) = waiting.await.expect("join");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload(), Some(&b"new"[..]));
    let latency = received_at.duration_since(sent_at);
    println!("tail latency: {latency:?} (flush interval {flush_ms} ms)");
    assert!(
        latency < Duration::from_millis(flush_ms + 500) * 3,
        "a tailing consumer sees a commit promptly: {latency:?}"
    );
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_reading_a_range_is_served_from_the_cache() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "cached", 2).await;
    let producer = producer(&bootstrap, &[]);
    let futures = (0..2_000)
        .map(|i| {
            let value = format!("cached {i}");
            enqueue(
                &producer,
                FutureRecord::to("cached")
                    .partition(i % 2)
                    .payload(value.as_str()),
            )
        })
        .collect();
    deliveries(futures).await;

    let read_all = |bootstrap: String| {
        blocking(move || {
            let consumer = consumer(&bootstrap, &[]);
            assign(&consumer, "cached", 2, Offset::Beginning);
            poll_n(&consumer, 2_000, Duration::from_secs(60)).len()
        })
    };
    assert_eq!(read_all(bootstrap.clone()).await, 2_000);
    let before = infra.s3.request_count();
    assert_eq!(read_all(bootstrap.clone()).await, 2_000);
    let gets = infra.s3.request_count() - before;
    println!("S3 requests while re-reading 2,000 records: {gets}");
    assert_eq!(gets, 0, "the second read is served from the cache");
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_offsets_reset_as_the_client_asks() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "reset", 1).await;
    create_topic(&bootstrap, "trimmed", 1).await;
    let producer = producer(&bootstrap, &[]);
    for topic in ["reset", "trimmed"] {
        let futures = (0..10)
            .map(|i| {
                let value = format!("{i}");
                enqueue(&producer, FutureRecord::to(topic).payload(value.as_str()))
            })
            .collect();
        deliveries(futures).await;
    }

    // Above the high watermark, earliest: back to offset 0.
    let b = bootstrap.clone();
    let got = blocking(move || {
        let consumer = consumer(&b, &[("auto.offset.reset", "earliest")]);
        assign(&consumer, "reset", 1, Offset::Offset(1_000));
        poll_n(&consumer, 10, Duration::from_secs(30))
    })
    .await;
    assert_eq!(got.first().map(Message::offset), Some(0));
    assert_eq!(got.len(), 10);

    // Above the high watermark, latest: only what comes next.
    let b = bootstrap.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let waiting = tokio::task::spawn_blocking(move || {
        let consumer = consumer(&b, &[("auto.offset.reset", "latest")]);
        assign(&consumer, "reset", 1, Offset::Offset(1_000));
        let early = poll_n(&consumer, 1, Duration::from_secs(2));
        ready_tx.send(()).expect("signal");
        (early, poll_n(&consumer, 1, Duration::from_secs(20)))
    });
    blocking(move || ready_rx.recv().expect("ready")).await;
    deliveries(vec![enqueue(
        &producer,
        FutureRecord::to("reset").payload("later"),
    )])
    .await;
    let (early, later) = waiting.await.expect("join");
    assert!(early.is_empty(), "nothing before the reset point");
    assert_eq!(later.first().map(Message::offset), Some(10));

    // Below the log start (moved as retention would), earliest: the log start.
    let sql = infra.sql().await;
    sql.execute(
        "UPDATE partitions SET log_start_offset = 5
         WHERE topic_id = (SELECT topic_id FROM topics WHERE name = 'trimmed')",
        &[],
    )
    .await
    .expect("move log start");
    let b = bootstrap.clone();
    let got = blocking(move || {
        let consumer = consumer(&b, &[("auto.offset.reset", "earliest")]);
        assign(&consumer, "trimmed", 1, Offset::Offset(2));
        poll_n(&consumer, 5, Duration::from_secs(30))
    })
    .await;
    assert_eq!(
        got.iter().map(Message::offset).collect::<Vec<_>>(),
        vec![5, 6, 7, 8, 9]
    );
    roles.stop().await;
}

/// What a librdkafka consumer's `offsets_for_times` answers for partition 0 of `topic` at
/// each of `times`.
async fn offsets_for_times(bootstrap: &str, topic: &str, times: &[i64]) -> BTreeMap<i64, Offset> {
    let (bootstrap, topic, times) = (bootstrap.to_owned(), topic.to_owned(), times.to_vec());
    blocking(move || {
        let consumer = consumer(&bootstrap, &[]);
        let mut out = BTreeMap::new();
        for t in times {
            let mut query = TopicPartitionList::new();
            query
                .add_partition_offset(&topic, 0, Offset::Offset(t))
                .expect("query");
            let found = consumer
                .offsets_for_times(query, Duration::from_secs(10))
                .expect("offsets for times");
            out.insert(t, found.elements()[0].offset());
        }
        out
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_by_timestamp_finds_the_first_record_at_or_after_it() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "times", 1).await;
    // Empty, the partition's earliest and latest are both 0, under either isolation: a
    // -1 for earliest leaves a Java consumer that resets to earliest waiting out its
    // request timeout before it starts.
    assert_eq!(raw_earliest_latest(&roles, "times", 0).await, (0, 0));
    assert_eq!(raw_earliest_latest(&roles, "times", 1).await, (0, 0));
    const BASE: i64 = 1_800_000_000_000;
    let producer = producer(&bootstrap, &[]);
    // Ten records a second apart, in a few batches and objects.
    let mut futures = Vec::new();
    for i in 0..10i64 {
        futures.push(enqueue(
            &producer,
            FutureRecord::to("times")
                .payload("t")
                .timestamp(BASE + i * 1_000),
        ));
        if i % 4 == 3 {
            deliveries(std::mem::take(&mut futures)).await;
        }
    }
    deliveries(futures).await;

    let times = [BASE - 5, BASE, BASE + 2_500, BASE + 9_000, BASE + 9_001];
    let answers = offsets_for_times(&bootstrap, "times", &times).await;
    assert_eq!(answers[&(BASE - 5)], Offset::Offset(0));
    assert_eq!(answers[&BASE], Offset::Offset(0));
    assert_eq!(answers[&(BASE + 2_500)], Offset::Offset(3));
    assert_eq!(answers[&(BASE + 9_000)], Offset::Offset(9));
    assert_eq!(answers[&(BASE + 9_001)], Offset::End, "nothing that late");
    roles.stop().await;
}

/// ListOffsets earliest and latest of partition 0 of `topic`, over the wire as the Java
/// client asks them (v7), under `isolation` (0 read_uncommitted, 1 read_committed).
async fn raw_earliest_latest(roles: &Roles, topic: &str, isolation: i8) -> (i64, i64) {
    use kafka_protocol::messages::{
        ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse, list_offsets_request,
    };
    let mut stream = tokio::net::TcpStream::connect(roles.kafka)
        .await
        .expect("connect");
    let mut at = Vec::new();
    for timestamp in [-2, -1] {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation)
            .with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(yaks_common::kafka::topic_name(topic))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_timestamp(timestamp),
                    ]),
            ]);
        let response: ListOffsetsResponse =
            crate::protocol::exchange(&mut stream, ApiKey::ListOffsets, 7, &request).await;
        let partition = &response.topics[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        at.push(partition.offset);
    }
    (at[0], at[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_by_timestamp_looks_inside_compressed_batches() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "zipped-times", 1).await;
    const BASE: i64 = 1_800_000_000_000;
    // Ten records a second apart in one lz4 batch: the header alone says only its bounds.
    let producer = producer(
        &bootstrap,
        &[("compression.type", "lz4"), ("linger.ms", "500")],
    );
    let mut futures = Vec::new();
    for i in 0..10i64 {
        futures.push(enqueue(
            &producer,
            FutureRecord::to("zipped-times")
                .payload("t")
                .timestamp(BASE + i * 1_000),
        ));
    }
    deliveries(futures).await;

    let times = [BASE - 5, BASE + 2_500, BASE + 9_000, BASE + 9_001];
    let answers = offsets_for_times(&bootstrap, "zipped-times", &times).await;
    assert_eq!(answers[&(BASE - 5)], Offset::Offset(0));
    assert_eq!(
        answers[&(BASE + 2_500)],
        Offset::Offset(3),
        "inside the batch"
    );
    assert_eq!(answers[&(BASE + 9_000)], Offset::Offset(9));
    assert_eq!(answers[&(BASE + 9_001)], Offset::End, "nothing that late");
    roles.stop().await;
}
