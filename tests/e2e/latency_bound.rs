//! Latency-bound producers through `yaks dev`: clients that wait for their answers before
//! sending more (idempotence, the Java client's defaults) deliver as a plain producer does,
//! and their flushes are brought forward rather than waiting out the interval.

use std::collections::BTreeMap;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;

use crate::harness::*;

/// Records each producer delivers.
const RECORDS: usize = 20_000;

/// A kind of producer: the topic it writes, over how many partitions, with which
/// librdkafka settings.
struct Kind {
    name: &'static str,
    partitions: i32,
    settings: &'static [(&'static str, &'static str)],
}

const PRODUCERS: [Kind; 3] = [
    Kind {
        name: "plain",
        partitions: 4,
        settings: &[("acks", "all")],
    },
    Kind {
        name: "idempotent",
        partitions: 1,
        settings: &[("enable.idempotence", "true"), ("acks", "all")],
    },
    // The Java client's defaults since Kafka 3.0.
    Kind {
        name: "java-like",
        partitions: 16,
        settings: &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("batch.size", "16384"),
            ("linger.ms", "5"),
            ("max.in.flight.requests.per.connection", "5"),
            ("queue.buffering.max.kbytes", "32768"),
        ],
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_idempotent_and_java_like_producers_each_deliver_every_record() {
    let dir = reachable_temp_dir("yaks-latency-");
    let kafka = format!("127.0.0.1:{}", port());
    let metrics_addr = format!("127.0.0.1:{}", port());
    let dev = start_dev(
        dir.path(),
        "dev",
        &kafka,
        &[("YAKS_GATEWAY__HTTP_ADDR".into(), metrics_addr.clone())],
    )
    .await;
    let payload = "y".repeat(1024);
    for Kind {
        name,
        partitions,
        settings,
    } in PRODUCERS
    {
        create_topic(&kafka, name, partitions).await;
        let idle_before = idle_flushes(&metrics_addr).await;
        let producer = producer(&kafka, settings);
        let mut sends = Vec::with_capacity(RECORDS);
        for i in 0..RECORDS {
            let partition = (i % partitions as usize) as i32;
            sends.push(enqueue(
                &producer,
                FutureRecord::to(name)
                    .partition(partition)
                    .key("k")
                    .payload(payload.as_str()),
            ));
        }
        // Every record acknowledged once, at the next offset of its partition.
        let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for (partition, offset) in deliveries(sends).await {
            offsets.entry(partition).or_default().push(offset);
        }
        for (partition, mut got) in offsets {
            got.sort_unstable();
            let expected: Vec<i64> = (0..got.len() as i64).collect();
            assert_eq!(got, expected, "{name}, partition {partition}");
        }
        let watermarks = stored(&kafka, name, partitions).await;
        assert_eq!(watermarks, RECORDS as i64, "{name}: records stored");
        if name != "plain" {
            // Each answer the client waited for came from a flush brought forward.
            let idle = idle_flushes(&metrics_addr).await - idle_before;
            assert!(idle > 0.0, "{name}: no flush was brought forward");
        }
    }
    dev.interrupt();
}

/// Flushes the writer brought forward because its buffer stopped growing.
async fn idle_flushes(metrics_addr: &str) -> f64 {
    let (_, page) = http_get(metrics_addr, "/metrics").await;
    page.lines()
        .find(|line| line.starts_with("yaks_writer_flush_triggers_total{trigger=\"idle\"}"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// The sum of the topic's high watermarks, as a consumer sees them.
async fn stored(kafka: &str, topic: &str, partitions: i32) -> i64 {
    let (kafka, topic) = (kafka.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka)
            .set("group.id", "latency-bound-check")
            .create()
            .expect("consumer");
        (0..partitions)
            .map(|partition| {
                consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            })
            .sum()
    })
    .await
    .expect("watermarks task")
}
