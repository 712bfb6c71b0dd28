//! The binary as users run it: separate processes, and `yaks dev` restarts.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_two_readers_and_two_gateways_keep_offsets_and_survive_a_reader_death() {
    let infra = Infra::start().await;
    let common = infra.process_env("split");
    let writer_ports = [port(), port()];
    let gateway_ports = [port(), port()];
    let reader_ports = [port(), port()];
    let mut processes = Vec::new();
    // Readers are found through the registry: the gateways list none.
    let mut readers = Vec::new();
    for (i, reader_port) in reader_ports.iter().enumerate() {
        let mut env = common.clone();
        env.push((
            "YAKS_READER__LISTEN_ADDR".into(),
            format!("127.0.0.1:{reader_port}"),
        ));
        let process = Process::spawn(&format!("reader-{i}"), &["reader"], &env, infra.path());
        wait_for_port(&format!("127.0.0.1:{reader_port}"), Some(&process)).await;
        readers.push(process);
    }
    for (i, writer_port) in writer_ports.iter().enumerate() {
        let mut env = common.clone();
        env.push((
            "YAKS_WRITER__LISTEN_ADDR".into(),
            format!("127.0.0.1:{writer_port}"),
        ));
        let process = Process::spawn(&format!("writer-{i}"), &["writer"], &env, infra.path());
        wait_for_port(&format!("127.0.0.1:{writer_port}"), Some(&process)).await;
        processes.push(process);
    }
    for (i, gateway_port) in gateway_ports.iter().enumerate() {
        let mut env = common.clone();
        env.push((
            "YAKS_GATEWAY__LISTEN_ADDR".into(),
            format!("127.0.0.1:{gateway_port}"),
        ));
        // Each gateway lists both writers, in a different order.
        let (a, b) = if i == 0 { (0, 1) } else { (1, 0) };
        env.push((
            "YAKS_GATEWAY__WRITER_URLS".into(),
            format!(
                "[\"http://127.0.0.1:{}\", \"http://127.0.0.1:{}\"]",
                writer_ports[a], writer_ports[b]
            ),
        ));
        let process = Process::spawn(&format!("gateway-{i}"), &["gateway"], &env, infra.path());
        wait_for_port(&format!("127.0.0.1:{gateway_port}"), Some(&process)).await;
        processes.push(process);
    }
    let bootstraps: Vec<String> = gateway_ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    create_topic(&bootstraps[0], "shared", 3).await;
    // Both gateways must be registered before producers ask for metadata.
    yaks_common::clock::sleep(Duration::from_secs(1)).await;

    const PER_PARTITION: i64 = 300;
    let producers = (0..4).map(|p| {
        let bootstrap = bootstraps[p % 2].clone();
        async move {
            let producer = producer(&bootstrap, &[("compression.type", "zstd")]);
            let mut sends = Vec::new();
            for i in 0..PER_PARTITION * 3 {
                let partition = (i % 3) as i32;
                let value = format!("producer {p} record {i}");
                sends.push(enqueue(
                    &producer,
                    FutureRecord::to("shared")
                        .partition(partition)
                        .payload(value.as_str()),
                ));
            }
            deliveries(sends).await
        }
    });
    let per_producer = join_all(producers).await;

    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for offsets in &per_producer {
        let mut last: BTreeMap<i32, i64> = BTreeMap::new();
        for &(partition, offset) in offsets {
            // A producer's records to a partition are stored in the order it sent them.
            if let Some(previous) = last.insert(partition, offset) {
                assert!(
                    offset > previous,
                    "partition {partition}: {offset} after {previous}"
                );
            }
            by_partition.entry(partition).or_default().push(offset);
        }
    }
    for (partition, mut offsets) in by_partition {
        offsets.sort_unstable();
        let expected: Vec<i64> = (0..PER_PARTITION * 4).collect();
        assert_eq!(
            offsets, expected,
            "partition {partition}: unique and contiguous from 0"
        );
    }
    let sql = infra.sql().await;
    for partition in 0..3 {
        assert_index_contiguous(&sql, "shared", partition).await;
    }

    // Read everything back; halfway, the reader serving partition 0 dies (SIGKILL).
    let topic_id: uuid::Uuid = sql
        .query_one("SELECT topic_id FROM topics WHERE name = 'shared'", &[])
        .await
        .expect("topic")
        .get(0);
    let urls: Vec<String> = reader_ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let pool = yaks_gateway::readers::ReaderPool::new(urls.clone());
    let owners: Vec<String> = (0..3)
        .map(|p| pool.ranking(&urls, topic_id, p)[0].clone())
        .collect();
    println!("partition owners: {owners:?}");
    let victim = urls.iter().position(|u| *u == owners[0]).expect("owner");
    let total = (PER_PARTITION * 4 * 3) as usize;
    let bootstrap = bootstraps[0].clone();
    let (half_tx, half_rx) = std::sync::mpsc::channel();
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let reading = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "unused")
            .set("enable.auto.commit", "false")
            .set("fetch.message.max.bytes", "4096")
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        for partition in 0..3 {
            list.add_partition_offset("shared", partition, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&list).expect("assign");
        let mut seen = std::collections::BTreeSet::new();
        let deadline = yaks_common::clock::now() + Duration::from_secs(90);
        let mut signalled = false;
        while seen.len() < total && yaks_common::clock::now() < deadline {
            if !signalled && seen.len() >= total / 2 {
                half_tx.send(()).expect("signal");
                killed_rx.recv().expect("killed");
                signalled = true;
            }
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                let message = message.expect("fetch succeeds");
                seen.insert((message.partition(), message.offset()));
            }
        }
        seen.len()
    });
    tokio::task::spawn_blocking(move || half_rx.recv().expect("half read"))
        .await
        .expect("join");
    drop(readers.remove(victim));
    killed_tx.send(()).expect("resume");
    assert_eq!(
        reading.await.expect("join"),
        total,
        "every record is read back although a reader died"
    );
    for process in readers {
        assert!(process.interrupt().success(), "clean exit");
    }
    for process in processes {
        let status = process.interrupt();
        assert!(status.success(), "clean exit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaks_dev_flushes_on_ctrl_c_and_continues_offsets_after_restart() {
    let dir = reachable_temp_dir("yaks-dev-");
    let kafka = format!("127.0.0.1:{}", port());
    // Only the interval flushes: no flush is brought forward for an idle buffer.
    let flush_interval = |ms: &str| {
        vec![
            ("YAKS_WRITER__FLUSH_INTERVAL_MS".to_owned(), ms.to_owned()),
            ("YAKS_WRITER__FLUSH_IDLE_MS".to_owned(), "0".to_owned()),
        ]
    };

    // Round 0: a flush interval far longer than the test, so the records are still in the
    // writer's buffer when Ctrl-C arrives; they must be committed and acknowledged anyway.
    let process = start_dev(dir.path(), "dev-0", &kafka, &flush_interval("600000")).await;
    create_topic(&kafka, "restart", 1).await;
    let (_before, sends) = send_five(&kafka, "before");
    yaks_common::clock::sleep(Duration::from_secs(1)).await;
    let stopping = tokio::task::spawn_blocking(move || {
        let log = process.log_text();
        (process.interrupt(), log)
    });
    assert_eq!(
        deliveries(sends).await,
        offsets(0..5),
        "buffered records were flushed on Ctrl-C"
    );
    let (status, log) = stopping.await.expect("join");
    assert!(status.success(), "yaks dev exits cleanly on Ctrl-C\n{log}");

    // Round 1: same directory, offsets continue.
    let process = start_dev(dir.path(), "dev-1", &kafka, &flush_interval("20")).await;
    let (_after, sends) = send_five(&kafka, "after");
    assert_eq!(deliveries(sends).await, offsets(5..10), "offsets continue");
    assert!(process.interrupt().success());
}

/// Queues five records to partition 0 of `restart`. Keep the producer until the futures
/// resolve: dropping it purges what it has not delivered.
fn send_five(kafka: &str, label: &str) -> (FutureProducer, Vec<DeliveryFuture>) {
    let producer = producer(kafka, &[]);
    let sends = (0..5)
        .map(|i| {
            enqueue(
                &producer,
                FutureRecord::to("restart")
                    .partition(0)
                    .payload(format!("{label} {i}").as_str()),
            )
        })
        .collect();
    (producer, sends)
}

fn offsets(range: std::ops::Range<i64>) -> Vec<(i32, i64)> {
    range.map(|o| (0, o)).collect()
}
