//! Producing through a real client: offsets are real, in order, contiguous.

use std::time::Duration;

use rdkafka::producer::FutureRecord;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_partitions_get_offsets_in_send_order() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "orders", 3).await;

    for codec in ["none", "lz4"] {
        let producer = producer(&bootstrap, &[("compression.type", codec)]);
        let mut sends = Vec::new();
        for partition in 0..3 {
            for i in 0..500 {
                let key = format!("key-{partition}-{i}");
                let value = format!("{codec} value {i} for partition {partition}");
                sends.push(enqueue(
                    &producer,
                    FutureRecord::to("orders")
                        .partition(partition)
                        .key(key.as_str())
                        .payload(value.as_str()),
                ));
            }
        }
        let base = if codec == "none" { 0 } else { 500 };
        for (n, (partition, offset)) in deliveries(sends).await.into_iter().enumerate() {
            let i = (n % 500) as i64;
            assert_eq!(partition, (n / 500) as i32);
            assert_eq!(
                offset,
                base + i,
                "record {i} of partition {partition} ({codec})"
            );
        }
    }

    let sql = infra.sql().await;
    for partition in 0..3 {
        assert_eq!(next_offset(&sql, "orders", partition).await, 1000);
        assert_index_contiguous(&sql, "orders", partition).await;
    }
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_writer_makes_no_s3_requests() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    // Produce once so the writer has done real work before it goes idle.
    create_topic(&roles.bootstrap(), "idle", 1).await;
    let producer = producer(&roles.bootstrap(), &[]);
    producer
        .send(
            FutureRecord::<(), _>::to("idle").payload("one"),
            Duration::from_secs(30),
        )
        .await
        .expect("delivered");
    yaks_common::clock::sleep(Duration::from_millis(500)).await;

    let before = infra.s3.request_count();
    yaks_common::clock::sleep(Duration::from_secs(5)).await;
    let after = infra.s3.request_count();
    println!("s3 requests while idle for 5 s: {}", after - before);
    assert_eq!(after, before, "an idle writer must not touch S3");
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_is_stored_without_a_response() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    create_topic(&roles.bootstrap(), "fire-and-forget", 1).await;
    let producer = producer(&roles.bootstrap(), &[("acks", "0")]);
    let sends = (0..100)
        .map(|i| {
            enqueue(
                &producer,
                FutureRecord::to("fire-and-forget").payload(format!("v{i}").as_str()),
            )
        })
        .collect();
    deliveries(sends).await;
    let sql = infra.sql().await;
    let deadline = yaks_common::clock::now() + Duration::from_secs(10);
    while next_offset(&sql, "fire-and-forget", 0).await < 100 {
        assert!(
            yaks_common::clock::now() < deadline,
            "acks=0 records were not stored"
        );
        yaks_common::clock::sleep(Duration::from_millis(50)).await;
    }
    assert_index_contiguous(&sql, "fire-and-forget", 0).await;
    roles.stop().await;
}
