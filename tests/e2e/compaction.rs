//! Compaction against real PostgreSQL and S3, read through real clients: many small
//! flushes of a partition are merged into one object, and every consumer still reads the
//! same bytes at the same offsets, ListOffsets by time answers the same, and two workers
//! racing on one job swap exactly once.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use yaks::roles;
use yaks_compactor::planner::{PlannerSettings, plan_partition};
use yaks_compactor::worker::{JobOutcome, JobTarget, run_job};

use crate::harness::*;

/// Every record of partition 0 as (offset, key, value, timestamp), and the offsets
/// ListOffsets gives for each record's timestamp.
type Read = (Vec<(i64, Vec<u8>, Vec<u8>, i64)>, Vec<i64>);

fn read_all(bootstrap: &str, topic: &str, count: usize) -> Read {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "compaction-readers")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(0))
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut records = Vec::new();
    while records.len() < count && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            records.push((
                m.offset(),
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
                m.timestamp().to_millis().unwrap_or(-1),
            ));
        }
    }
    let mut by_time = Vec::new();
    for (_, _, _, timestamp) in &records {
        let mut wanted = TopicPartitionList::new();
        wanted
            .add_partition_offset(topic, 0, Offset::Offset(*timestamp))
            .expect("time");
        let found = consumer
            .offsets_for_times(wanted, Duration::from_secs(10))
            .expect("offsets for times");
        let offset = found
            .find_partition(topic, 0)
            .and_then(|e| e.offset().to_raw())
            .unwrap_or(-1);
        by_time.push(offset);
    }
    (records, by_time)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_flushes_merge_and_every_read_stays_identical() {
    let infra = Infra::start().await;
    let config = infra.config();
    let roles_before = Roles::start(config.clone()).await;
    let bootstrap = roles_before.bootstrap();
    create_topic(&bootstrap, "small-flushes", 1).await;
    let producer = producer(&bootstrap, &[]);
    const RECORDS: usize = 40;
    for i in 0..RECORDS {
        let key = format!("key {i}");
        let value = format!("value {i}");
        // One at a time: each record is its own flush, its own object.
        producer
            .send(
                FutureRecord::to("small-flushes")
                    .key(key.as_str())
                    .payload(value.as_str()),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered");
    }
    let reader_bootstrap = bootstrap.clone();
    let before =
        tokio::task::spawn_blocking(move || read_all(&reader_bootstrap, "small-flushes", RECORDS))
            .await
            .expect("join");
    assert_eq!(before.0.len(), RECORDS);
    roles_before.stop().await;

    let sql = infra.sql().await;
    let count_live = "SELECT count(*) FROM objects WHERE state = 'live'";
    let live_before: i64 = sql.query_one(count_live, &[]).await.expect("count").get(0);
    assert!(
        live_before >= RECORDS as i64,
        "{live_before} objects for {RECORDS} flushes"
    );

    let backends = roles::connect(&config).await.expect("backends");
    let topic = backends
        .metastore
        .topics(Some(&["small-flushes".to_owned()]))
        .await
        .expect("topics")
        .remove(0);
    let entries = backends
        .metastore
        .index_entries(&[(topic.topic_id, 0, 0)], 1_000)
        .await
        .expect("entries")
        .remove(0);
    let settings = PlannerSettings {
        target_bytes: 8 << 20,
        small_bytes: 1 << 20,
        window_ms: i64::MAX,
    };
    let jobs = plan_partition(&entries, &settings);
    assert_eq!(jobs.len(), 1, "one run of {} entries", entries.len());
    let target = JobTarget {
        topic_id: topic.topic_id,
        partition_index: 0,
        key_prefix: &config.s3.key_prefix,
    };
    // Two workers race on the same job: exactly one swap wins.
    let (a, b) = tokio::join!(
        run_job(
            backends.metastore.as_ref(),
            backends.objects.as_ref(),
            &target,
            &jobs[0],
            1
        ),
        run_job(
            backends.metastore.as_ref(),
            backends.objects.as_ref(),
            &target,
            &jobs[0],
            2
        ),
    );
    let outcomes = [a.expect("worker a"), b.expect("worker b")];
    let swapped = outcomes
        .iter()
        .filter(|o| matches!(o, JobOutcome::Swapped { .. }))
        .count();
    assert_eq!(swapped, 1, "{outcomes:?}");
    let live_after: i64 = sql.query_one(count_live, &[]).await.expect("count").get(0);
    assert_eq!(live_after, 1, "the inputs are marked, one output is live");
    let marked: i64 = sql
        .query_one("SELECT count(*) FROM objects WHERE state = 'marked'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(marked, live_before);

    // A fresh reader (no cache) reads the compacted object: the same records, offsets,
    // bytes, timestamps, and the same answers by time.
    let roles_after = Roles::start(config.clone()).await;
    let after_bootstrap = roles_after.bootstrap();
    let after =
        tokio::task::spawn_blocking(move || read_all(&after_bootstrap, "small-flushes", RECORDS))
            .await
            .expect("join");
    assert_eq!(after.0, before.0, "identical records at identical offsets");
    assert_eq!(after.1, before.1, "ListOffsets by timestamp unchanged");
    roles_after.stop().await;
}
