//! Compaction against real PostgreSQL and S3 endpoints, read through real clients: 200 small
//! flushes on 4 partitions merge into one object per partition and every consumer reads
//! the same bytes at the same offsets, ListOffsets by time answers the same, two workers
//! racing on one job swap exactly once, producers and consumers keep their invariants while
//! the compactor runs, a worker dying before its swap leaves only an orphan, and
//! `yaks compactor --once` against moto's S3 and SQS compacts, enforces retention, collects
//! garbage and sends poison jobs to the dead-letter queue.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use yaks::roles;
use yaks_common::metastore::{Log, Topics};
use yaks_compactor::planner::{PlannerSettings, plan_partition};
use yaks_compactor::worker::{JobOutcome, JobTarget, run_job};

use crate::harness::*;

/// Every record of partitions `0..partitions` as (offset, key, value, timestamp), in
/// partition then offset order, and the offsets ListOffsets gives for the timestamps of
/// every 25th of them.
type Read = (Vec<(i64, Vec<u8>, Vec<u8>, i64)>, Vec<i64>);

fn read_all(bootstrap: &str, topic: &str, count: usize) -> Read {
    read_partitions(bootstrap, topic, 1, count)
}

fn read_partitions(bootstrap: &str, topic: &str, partitions: i32, count: usize) -> Read {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "compaction-readers")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(0))
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = yaks_common::clock::now() + Duration::from_secs(60);
    let mut records = Vec::new();
    while records.len() < count && yaks_common::clock::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            records.push((
                m.partition(),
                m.offset(),
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
                m.timestamp().to_millis().unwrap_or(-1),
            ));
        }
    }
    records.sort_by_key(|r| (r.0, r.1));
    let mut by_time = Vec::new();
    // ListOffsets by time for a sample of the records (every 25th), one call each: a list
    // holds one timestamp per partition.
    for (partition, _, _, _, timestamp) in records.iter().step_by(25) {
        let mut one = TopicPartitionList::new();
        one.add_partition_offset(topic, *partition, Offset::Offset(*timestamp))
            .expect("time");
        let found = consumer
            .offsets_for_times(one, Duration::from_secs(10))
            .expect("offsets for times");
        by_time.push(
            found
                .find_partition(topic, *partition)
                .and_then(|e| e.offset().to_raw())
                .unwrap_or(-1),
        );
    }
    (
        records
            .into_iter()
            .map(|(_, offset, key, value, time)| (offset, key, value, time))
            .collect(),
        by_time,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_flushes_merge_and_every_read_stays_identical() {
    let infra = Infra::start().await;
    let config = infra.config();
    let roles_before = Roles::start(config.clone()).await;
    let bootstrap = roles_before.bootstrap();
    const PARTITIONS: i32 = 4;
    const FLUSHES: usize = 200;
    create_topic(&bootstrap, "small-flushes", PARTITIONS).await;
    let producer = producer(&bootstrap, &[]);
    for i in 0..FLUSHES {
        // One record per partition, awaited together: each round is its own flush.
        let sends = (0..PARTITIONS)
            .map(|partition| {
                let key = format!("key {i}");
                let value = format!("value {i} of {partition}");
                enqueue(
                    &producer,
                    FutureRecord::to("small-flushes")
                        .partition(partition)
                        .key(key.as_str())
                        .payload(value.as_str()),
                )
            })
            .collect();
        deliveries(sends).await;
    }
    let total = FLUSHES * PARTITIONS as usize;
    let reader_bootstrap = bootstrap.clone();
    let before = tokio::task::spawn_blocking(move || {
        read_partitions(&reader_bootstrap, "small-flushes", PARTITIONS, total)
    })
    .await
    .expect("join");
    assert_eq!(before.0.len(), total);
    roles_before.stop().await;

    let sql = infra.sql().await;
    let count_live = "SELECT count(*) FROM objects WHERE state = 'live'";
    let live_before: i64 = sql.query_one(count_live, &[]).await.expect("count").get(0);
    assert!(
        live_before >= FLUSHES as i64 / 2,
        "{live_before} objects for {FLUSHES} flushes"
    );

    let backends = roles::connect(&config).await.expect("backends");
    let topic = backends
        .metastore
        .topics(Some(&["small-flushes".to_owned()]))
        .await
        .expect("topics")
        .remove(0);
    let settings = PlannerSettings {
        target_bytes: 8 << 20,
        small_bytes: 1 << 20,
        window_ms: i64::MAX,
    };
    for partition in 0..PARTITIONS {
        let entries = backends
            .metastore
            .index_entries(&[(topic.topic_id, partition, 0)], 1_000)
            .await
            .expect("entries")
            .remove(0);
        let jobs = plan_partition(&entries, &settings);
        assert_eq!(jobs.len(), 1, "one run of {} entries", entries.len());
        let target = JobTarget {
            topic_id: topic.topic_id,
            topic: &topic.name,
            partition_index: partition,
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
    }
    let live_after: i64 = sql.query_one(count_live, &[]).await.expect("count").get(0);
    assert_eq!(
        live_after,
        i64::from(PARTITIONS),
        "one object per partition; the {live_before} flushes' objects are marked"
    );
    let marked: i64 = sql
        .query_one("SELECT count(*) FROM objects WHERE state = 'marked'", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(marked, live_before);

    // A fresh reader (no cache) reads the compacted objects: the same records, offsets,
    // bytes, timestamps, and the same answers by time.
    let roles_after = Roles::start(config.clone()).await;
    let after_bootstrap = roles_after.bootstrap();
    let after = tokio::task::spawn_blocking(move || {
        read_partitions(&after_bootstrap, "small-flushes", PARTITIONS, total)
    })
    .await
    .expect("join");
    assert_eq!(after.0, before.0, "identical records at identical offsets");
    assert_eq!(after.1, before.1, "ListOffsets by timestamp unchanged");
    roles_after.stop().await;
}

/// An S3 + SQS endpoint (moto's server) on a free port, stopped when dropped.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Moto {
    async fn start() -> Moto {
        let port = port();
        let child = std::process::Command::new("python3")
            .args(["-m", "moto.server", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto's server (scripts/setup installs moto[server])");
        let address = format!("127.0.0.1:{port}");
        wait_for_port(&address, None).await;
        Moto {
            child,
            endpoint: format!("http://{address}"),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compactor_once_with_sqs_compacts_retains_collects_and_dead_letters_poison() {
    use aws_sdk_sqs::types::QueueAttributeName;
    use yaks_compactor::queue::SqsQueue;

    let moto = Moto::start().await;
    let infra = Infra::start().await;
    let mut config = infra.config();
    config.compactor.sqs_endpoint = Some(moto.endpoint.clone());
    config.compactor.visibility_timeout_s = 1;
    config.compactor.grace_ms = 0;
    // moto is the S3 endpoint too here.
    config.s3.endpoint = Some(moto.endpoint.clone());
    config.s3.bucket = "compaction".into();
    config.s3.create_bucket = true;
    config.s3.force_path_style = true;
    config.s3.region = "us-east-1".into();
    config.s3.access_key_id = Some("testing".into());
    config.s3.secret_access_key = Some("testing".into());
    // Queues: jobs, and a dead-letter queue taking what was received twice.
    let sqs = SqsQueue::client(&config.compactor, &config.s3).await;
    let dead = sqs
        .create_queue()
        .queue_name("compaction-dead")
        .send()
        .await
        .expect("create dead-letter queue");
    let dead_url = dead.queue_url.expect("url");
    let dead_arn = sqs
        .get_queue_attributes()
        .queue_url(&dead_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("arn");
    let jobs = sqs
        .create_queue()
        .queue_name("compaction")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dead_arn}","maxReceiveCount":"2"}}"#),
        )
        .send()
        .await
        .expect("create queue");
    let jobs_url = jobs.queue_url.expect("url");
    config.compactor.queue_url = Some(jobs_url.clone());

    let roles = Roles::start(config.clone()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "compact-me", 1).await;
    let created = admin(&bootstrap)
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                "expiring",
                1,
                rdkafka::admin::TopicReplication::Fixed(1),
            )
            .set("retention.ms", "60000")],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .expect("create");
    assert!(created[0].is_ok());
    let producer = producer(&bootstrap, &[]);
    for i in 0..20 {
        let value = format!("value {i}");
        producer
            .send(
                FutureRecord::<(), _>::to("compact-me").payload(value.as_str()),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered");
    }
    for _ in 0..3 {
        // Written with a timestamp far in the past: expired by retention.ms at once.
        producer
            .send(
                FutureRecord::<(), _>::to("expiring")
                    .payload("old")
                    .timestamp(1_000),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered");
    }
    let reader_bootstrap = bootstrap.clone();
    let before = tokio::task::spawn_blocking(move || read_all(&reader_bootstrap, "compact-me", 20))
        .await
        .expect("join");
    roles.stop().await;

    // A poison job waits on the queue.
    sqs.send_message()
        .queue_url(&jobs_url)
        .message_body("{not a job")
        .send()
        .await
        .expect("send poison");

    let backends = roles::connect(&config).await.expect("backends");
    let compactor = roles::compactor(&config, &backends).await;
    let first = compactor.run_once(false).await.expect("pass");
    assert_eq!(first.planned, 1, "{first:?}");
    assert_eq!(first.compacted, 1, "{first:?}");
    assert!(first.failed >= 1, "the poison job failed: {first:?}");
    assert_eq!(
        first.retained, 1,
        "retention moved the expiring partition: {first:?}"
    );
    // The poison job comes back after its visibility timeout and then goes to the
    // dead-letter queue; the garbage of the first pass is deleted (grace 0).
    let deadline = yaks_common::clock::now() + Duration::from_secs(30);
    let dead_body = loop {
        yaks_common::clock::sleep(Duration::from_millis(1_200)).await;
        compactor.run_once(false).await.expect("pass");
        let received = sqs
            .receive_message()
            .queue_url(&dead_url)
            .send()
            .await
            .expect("receive dead letters");
        if let Some(message) = received.messages.unwrap_or_default().into_iter().next() {
            break message.body.unwrap_or_default();
        }
        assert!(
            yaks_common::clock::now() < deadline,
            "the poison job never reached the dead-letter queue"
        );
    };
    assert_eq!(dead_body, "{not a job");

    let sql = infra.sql().await;
    let live: i64 = sql
        .query_one("SELECT count(*) FROM objects WHERE state = 'live'", &[])
        .await
        .expect("count")
        .get(0);
    let marked: i64 = sql
        .query_one("SELECT count(*) FROM objects", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        live, 1,
        "20 flushes became one object; the expired ones are gone"
    );
    assert_eq!(
        marked, live,
        "marked objects were deleted after the (zero) grace"
    );
    let keys = backends
        .objects
        .list(config.s3.key_prefix.clone())
        .await
        .expect("list");
    assert_eq!(keys.len(), 1, "the bucket holds only the compacted object");

    let roles = Roles::start(config.clone()).await;
    let after_bootstrap = roles.bootstrap();
    let (after, watermarks) = tokio::task::spawn_blocking(move || {
        let read = read_all(&after_bootstrap, "compact-me", 20);
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &after_bootstrap)
            .create()
            .expect("consumer");
        let watermarks = consumer
            .fetch_watermarks("expiring", 0, Duration::from_secs(10))
            .expect("watermarks");
        (read, watermarks)
    })
    .await
    .expect("join");
    assert_eq!(after.0, before.0, "identical records after compaction");
    assert_eq!(
        watermarks,
        (3, 3),
        "retention moved the log start past the old records"
    );
    roles.stop().await;
    drop(moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_and_consumers_keep_going_while_the_compactor_runs() {
    use yaks::oracle::{OracleOptions, Workload, run};
    use yaks_common::shutdown::Shutdown;

    let infra = Infra::start().await;
    let mut config = infra.config();
    config.compactor.interval_ms = 300;
    // Longer than the test: readers holding entries of swapped-out objects keep reading them.
    config.compactor.grace_ms = 600_000;
    config.compactor.window_ms = i64::MAX;
    let roles = Roles::start_with_writers(config.clone(), 2).await;
    let backends = roles::connect(&config).await.expect("backends");
    let compactor = roles::compactor(&config, &backends).await;
    let (stop, shutdown) = Shutdown::new();
    let compacting = tokio::spawn(compactor.run(shutdown));
    let report = run(OracleOptions {
        brokers: roles.bootstrap(),
        data_dir: infra.path().join("oracle"),
        workload: Workload {
            topics: 1,
            partitions: 4,
            producers: 4,
            records: 1_000,
            pace: Duration::from_secs(8),
            consume_timeout: Duration::from_secs(60),
            message_timeout: Duration::from_secs(60),
            ..Workload::default()
        },
    })
    .await
    .expect("oracle runs");
    stop.trigger();
    let _ = compacting.await;
    println!("{}", report.table());
    assert!(report.holds(), "{}", report.table());
    assert_eq!(report.consumed, 4_000);
    let sql = infra.sql().await;
    let marked: i64 = sql
        .query_one("SELECT count(*) FROM objects WHERE state = 'marked'", &[])
        .await
        .expect("count")
        .get(0);
    assert!(
        marked > 0,
        "the compactor merged objects while the oracle ran"
    );
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_before_its_swap_leaves_only_an_orphan_to_collect() {
    use yaks_compactor::gc::{GcSettings, collect};

    let infra = Infra::start().await;
    let config = infra.config();
    let roles = Roles::start(config.clone()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "crashy", 1).await;
    let producer = producer(&bootstrap, &[]);
    for i in 0..5 {
        let value = format!("value {i}");
        producer
            .send(
                FutureRecord::<(), _>::to("crashy").payload(value.as_str()),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered");
    }
    let backends = roles::connect(&config).await.expect("backends");
    let topic = backends
        .metastore
        .topics(Some(&["crashy".to_owned()]))
        .await
        .expect("topics")
        .remove(0);
    let entries = backends
        .metastore
        .index_entries(&[(topic.topic_id, 0, 0)], 100)
        .await
        .expect("entries")
        .remove(0);
    // The worker wrote its output and died: the output is in the bucket, nothing else
    // changed.
    let mut body = Vec::new();
    for entry in &entries {
        let start = entry.byte_offset as u64;
        let bytes = backends
            .objects
            .get_range(
                entry.object_key.clone(),
                start..start + entry.byte_length as u64,
            )
            .await
            .expect("read");
        body.extend_from_slice(&bytes);
    }
    let orphan = yaks_common::ids::ObjectId::new(1).key(&config.s3.key_prefix);
    backends
        .objects
        .put(orphan.clone(), bytes::Bytes::from(body))
        .await
        .expect("put");
    let reader_bootstrap = bootstrap.clone();
    let read = tokio::task::spawn_blocking(move || read_all(&reader_bootstrap, "crashy", 5))
        .await
        .expect("join");
    let values: Vec<&[u8]> = read.0.iter().map(|r| r.2.as_slice()).collect();
    let expected: Vec<String> = (0..5).map(|i| format!("value {i}")).collect();
    assert_eq!(
        values,
        expected.iter().map(|v| v.as_bytes()).collect::<Vec<_>>(),
        "no loss, no duplicate"
    );
    let report = collect(
        backends.metastore.as_ref(),
        backends.objects.as_ref(),
        &GcSettings {
            grace: Duration::from_secs(60),
            key_prefix: config.s3.key_prefix.clone(),
            dry_run: false,
        },
        yaks_common::clock::system_clock().now_ms(),
    )
    .await
    .expect("gc");
    assert_eq!(report.orphans, vec![orphan], "collected as an orphan later");
    assert!(report.deleted.is_empty(), "nothing referenced is touched");
    roles.stop().await;
}
