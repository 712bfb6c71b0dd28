//! Topic administration through a real client: CreateTopics, DeleteTopics, Metadata.

use std::time::Duration;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_delete_topics_answer_like_kafka() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let admin = admin(&roles.bootstrap());
    let options = AdminOptions::new();

    let results = admin
        .create_topics(
            &[
                NewTopic::new("fine", 4, TopicReplication::Fixed(3)).set("retention.ms", "60000"),
                NewTopic::new("bad name!", 1, TopicReplication::Fixed(1)),
                NewTopic::new("bad-config", 1, TopicReplication::Fixed(1))
                    .set("retention.ms", "soon"),
                NewTopic::new("unknown-config", 1, TopicReplication::Fixed(1)).set("no.such", "1"),
                NewTopic::new("zero-partitions", 0, TopicReplication::Fixed(1)),
            ],
            &options,
        )
        .await
        .expect("request");
    let codes: Vec<_> = results
        .iter()
        .map(|r| match r {
            Ok(_) => None,
            Err((_, code)) => Some(*code),
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            None,
            Some(RDKafkaErrorCode::InvalidTopic),
            Some(RDKafkaErrorCode::InvalidConfig),
            Some(RDKafkaErrorCode::InvalidConfig),
            Some(RDKafkaErrorCode::InvalidPartitions),
        ]
    );

    let again = admin
        .create_topics(
            &[NewTopic::new("fine", 4, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .expect("request");
    assert_eq!(
        again[0],
        Err(("fine".to_owned(), RDKafkaErrorCode::TopicAlreadyExists))
    );

    let validate_only = AdminOptions::new().validate_only(true);
    let checked = admin
        .create_topics(
            &[NewTopic::new("only-checked", 2, TopicReplication::Fixed(1))],
            &validate_only,
        )
        .await
        .expect("request");
    assert!(checked[0].is_ok());

    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    assert_eq!(names, vec!["fine"], "validate_only created nothing");
    assert_eq!(metadata.topics()[0].partitions().len(), 4);
    assert_eq!(metadata.brokers().len(), 1);

    let deleted = admin
        .delete_topics(&["fine", "never-was"], &options)
        .await
        .expect("request");
    assert!(deleted[0].is_ok());
    assert_eq!(
        deleted[1],
        Err((
            "never-was".to_owned(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))
    );
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topics_are_auto_created_or_refused_per_setting() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let producer = producer(&roles.bootstrap(), &[]);
    let delivery = producer
        .send(
            FutureRecord::<(), _>::to("auto-made").payload("x"),
            Duration::from_secs(30),
        )
        .await
        .expect("auto-created and delivered");
    assert_eq!(delivery.offset, 0);
    roles.stop().await;

    let mut config = infra.config();
    config.gateway.auto_create_topics = false;
    let roles = Roles::start(config).await;
    let strict = crate::harness::producer(&roles.bootstrap(), &[("message.timeout.ms", "3000")]);
    let refused = strict
        .send(
            FutureRecord::<(), _>::to("not-made").payload("x"),
            Duration::from_secs(10),
        )
        .await;
    let (error, _) = refused.expect_err("unknown topic refused");
    assert!(
        matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition)
                | Some(RDKafkaErrorCode::UnknownTopic)
                | Some(RDKafkaErrorCode::MessageTimedOut)
        ),
        "{error}"
    );
    let sql = infra.sql().await;
    let rows = sql
        .query("SELECT 1 FROM topics WHERE name = 'not-made'", &[])
        .await
        .expect("query");
    assert!(rows.is_empty(), "the topic was not created");
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_configs_are_described_altered_and_partitions_added() {
    use rdkafka::admin::ConfigSource;
    use rdkafka::admin::{AlterConfig, NewPartitions, ResourceSpecifier};

    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "configured", 2).await;
    let admin = admin(&bootstrap);
    let options = AdminOptions::new();
    let describe = |admin: &rdkafka::admin::AdminClient<_>| {
        let future = admin.describe_configs(&[ResourceSpecifier::Topic("configured")], &options);
        async move {
            let described = future.await.expect("describe configs");
            let resource = described
                .into_iter()
                .next()
                .expect("one resource")
                .expect("described");
            resource
                .entries
                .into_iter()
                .map(|e| (e.name, (e.value, e.source)))
                .collect::<std::collections::HashMap<_, _>>()
        }
    };
    let before = describe(&admin).await;
    assert_eq!(
        before.get("retention.ms"),
        Some(&(Some("604800000".to_owned()), ConfigSource::Default))
    );

    // AlterConfigs replaces the set.
    let altered = admin
        .alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("configured"))
                .set("retention.ms", "3600000")
                .set("max.message.bytes", "2000000")],
            &options,
        )
        .await
        .expect("alter configs");
    assert!(altered[0].is_ok(), "{altered:?}");
    let after = describe(&admin).await;
    assert_eq!(
        after.get("retention.ms"),
        Some(&(Some("3600000".to_owned()), ConfigSource::DynamicTopic))
    );
    // IncrementalAlterConfigs (confluent-kafka): set one, reset another to its default.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/confluent_alter_configs.py"
    );
    let output = std::process::Command::new("python3")
        .args([
            script,
            &bootstrap,
            "configured",
            "retention.bytes=1048576",
            "retention.ms",
        ])
        .output()
        .expect("python3 runs");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok");
    let after = describe(&admin).await;
    assert_eq!(
        after.get("retention.bytes"),
        Some(&(Some("1048576".to_owned()), ConfigSource::DynamicTopic))
    );
    assert_eq!(
        after.get("retention.ms"),
        Some(&(Some("604800000".to_owned()), ConfigSource::Default))
    );
    assert_eq!(
        after.get("max.message.bytes"),
        Some(&(Some("2000000".to_owned()), ConfigSource::DynamicTopic)),
        "incremental changes keep the other configs"
    );

    // CreatePartitions grows the topic; the new partition takes records at offset 0.
    let grown = admin
        .create_partitions(&[NewPartitions::new("configured", 3)], &options)
        .await
        .expect("create partitions");
    assert!(grown[0].is_ok(), "{grown:?}");
    let shrunk = admin
        .create_partitions(&[NewPartitions::new("configured", 2)], &options)
        .await
        .expect("create partitions");
    assert!(
        matches!(&shrunk[0], Err((_, RDKafkaErrorCode::InvalidPartitions))),
        "{shrunk:?}"
    );
    let producer = producer(&bootstrap, &[]);
    let delivery = producer
        .send(
            FutureRecord::<(), _>::to("configured")
                .partition(2)
                .payload("new"),
            Duration::from_secs(30),
        )
        .await
        .expect("delivered to the new partition");
    assert_eq!((delivery.partition, delivery.offset), (2, 0));

    // Asked for documentation (as `kafka-configs.sh --describe --all` asks), DescribeConfigs
    // says of each config whether yaks enforces it; not asked, it sends none.
    let mut stream = tokio::net::TcpStream::connect(roles.kafka)
        .await
        .expect("connect");
    let documented = |documentation: bool| {
        DescribeConfigsRequest::default()
            .with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("configured"))
                    .with_configuration_keys(None),
            ])
            .with_include_documentation(documentation)
    };
    let response: DescribeConfigsResponse =
        crate::protocol::exchange(&mut stream, ApiKey::DescribeConfigs, 4, &documented(true)).await;
    let documentation = |name: &str| {
        response.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == name)
            .and_then(|c| c.documentation.as_ref())
            .map(|d| d.to_string())
            .unwrap_or_default()
    };
    assert!(documentation("retention.ms").starts_with("Enforced by yaks"));
    assert!(documentation("segment.ms").starts_with("Accepted but not enforced by yaks"));
    let response: DescribeConfigsResponse =
        crate::protocol::exchange(&mut stream, ApiKey::DescribeConfigs, 4, &documented(false))
            .await;
    let configs = &response.results[0].configs;
    assert!(!configs.is_empty() && configs.iter().all(|c| c.documentation.is_none()));
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_the_log_start() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "trimmed", 1).await;
    let producer = producer(&bootstrap, &[]);
    let sends = (0..10)
        .map(|i| {
            let value = format!("record {i}");
            enqueue(
                &producer,
                FutureRecord::to("trimmed").payload(value.as_str()),
            )
        })
        .collect();
    deliveries(sends).await;

    let admin = admin(&bootstrap);
    let mut wanted = TopicPartitionList::new();
    wanted
        .add_partition_offset("trimmed", 0, Offset::Offset(5))
        .expect("offset");
    let deleted = admin
        .delete_records(&wanted, &AdminOptions::new())
        .await
        .expect("delete records");
    let element = deleted.find_partition("trimmed", 0).expect("partition");
    assert_eq!(element.error(), Ok(()));
    assert_eq!(element.offset(), Offset::Offset(5), "the new low watermark");

    let mut beyond = TopicPartitionList::new();
    beyond
        .add_partition_offset("trimmed", 0, Offset::Offset(20))
        .expect("offset");
    let refused = admin.delete_records(&beyond, &AdminOptions::new()).await;
    let refused_ok = match refused {
        Err(_) => true,
        Ok(list) => list
            .find_partition("trimmed", 0)
            .is_some_and(|e| e.error().is_err()),
    };
    assert!(refused_ok, "past the high watermark is OFFSET_OUT_OF_RANGE");

    let reader_bootstrap = bootstrap.clone();
    let (watermarks, first) = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &reader_bootstrap)
            .set("group.id", "trim-readers")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        let watermarks = consumer
            .fetch_watermarks("trimmed", 0, Duration::from_secs(10))
            .expect("watermarks");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset("trimmed", 0, Offset::Offset(0))
            .expect("assign");
        consumer.assign(&assignment).expect("assign");
        let deadline = yaks_common::clock::now() + Duration::from_secs(30);
        let mut first = None;
        while first.is_none() && yaks_common::clock::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                first = Some(message.offset());
            }
        }
        (watermarks, first)
    })
    .await
    .expect("join");
    assert_eq!(
        watermarks,
        (5, 10),
        "ListOffsets earliest is the new log start"
    );
    assert_eq!(
        first,
        Some(5),
        "a fetch below the log start is out of range and the consumer resets to it"
    );
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topics_stamp_batches_on_the_way_in() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, Timestamp, TopicPartitionList};

    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    let created = admin(&bootstrap)
        .create_topics(
            &[NewTopic::new("stamped", 1, TopicReplication::Fixed(1))
                .set("message.timestamp.type", "LogAppendTime")],
            &AdminOptions::new(),
        )
        .await
        .expect("create");
    assert!(created[0].is_ok(), "{created:?}");
    let before = yaks_common::clock::system_clock().now_ms();
    let producer = producer(&bootstrap, &[]);
    producer
        .send(
            FutureRecord::<(), _>::to("stamped")
                .payload("old")
                .timestamp(1_000),
            Duration::from_secs(30),
        )
        .await
        .expect("delivered");

    let reader_bootstrap = bootstrap.clone();
    let stamp = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &reader_bootstrap)
            .set("group.id", "stamp-readers")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset("stamped", 0, Offset::Offset(0))
            .expect("assign");
        consumer.assign(&assignment).expect("assign");
        let deadline = yaks_common::clock::now() + Duration::from_secs(30);
        while yaks_common::clock::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                assert_eq!(
                    message.payload(),
                    Some(&b"old"[..]),
                    "the record is unchanged"
                );
                return Some(message.timestamp());
            }
        }
        None
    })
    .await
    .expect("join");
    match stamp {
        Some(Timestamp::LogAppendTime(at)) => assert!(
            at >= before && at < before + 60_000,
            "stamped with the append time, not the producer's 1000: {at}"
        ),
        other => panic!("expected a LogAppendTime timestamp, got {other:?}"),
    }
    roles.stop().await;
}
