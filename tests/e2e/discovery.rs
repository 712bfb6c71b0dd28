//! Writers found through the registry (no `gateway.writer_urls`), and addresses taken from
//! ECS task metadata.

use std::time::Duration;

use rdkafka::producer::FutureRecord;
use yaks::roles;
use yaks_common::shutdown::Shutdown;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_find_writers_in_the_registry_and_move_off_one_that_stops() {
    let infra = Infra::start().await;
    let mut config = infra.config();
    let backends = roles::connect(&config).await.expect("backends");
    let mut writers = Vec::new();
    for _ in 0..2 {
        let writer = roles::bind_writer(&config, &backends)
            .await
            .expect("writer binds");
        let (trigger, shutdown) = Shutdown::new();
        let url = writer.url().to_owned();
        writers.push((url, trigger, tokio::spawn(writer.run(shutdown))));
    }
    config.reader.listen_addr = "127.0.0.1:0".into();
    let reader = roles::bind_reader(&config, &backends)
        .await
        .expect("reader binds");
    let (reader_trigger, reader_shutdown) = Shutdown::new();
    let reader_task = tokio::spawn(reader.run(reader_shutdown));
    assert!(config.gateway.writer_urls.is_empty());
    let gateway = roles::bind_gateway(&config, &backends)
        .await
        .expect("a gateway starts without writer_urls");
    let kafka = gateway.local_addr().expect("addr").to_string();
    let (gateway_trigger, gateway_shutdown) = Shutdown::new();
    let gateway_task = tokio::spawn(gateway.run(gateway_shutdown));
    create_topic(&kafka, "found", 2).await;

    let send = |from: usize| {
        let producer = producer(&kafka, &[]);
        async move {
            let sends: Vec<_> = (from..from + 50)
                .map(|i| {
                    let value = format!("record {i}");
                    enqueue(
                        &producer,
                        FutureRecord::to("found")
                            .partition((i % 2) as i32)
                            .payload(&value),
                    )
                })
                .collect();
            deliveries(sends).await.len()
        }
    };
    assert_eq!(
        send(0).await,
        50,
        "produce works through registered writers"
    );

    // One writer stops: it leaves the registry, and new produce goes to the other.
    let (_, trigger, task) = writers.remove(0);
    trigger.trigger();
    task.await.expect("writer stops");
    yaks_common::clock::sleep(Duration::from_millis(config.registry.heartbeat_ms * 2)).await;
    assert_eq!(
        send(50).await,
        50,
        "produce continues on the remaining writer"
    );

    let sql = infra.sql().await;
    let registered: i64 = sql
        .query_one(
            "SELECT count(*) FROM services WHERE role = 'writer' AND lease_expires_at > now()",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(registered, 1, "the stopped writer left the registry");
    let stored: i64 = sql
        .query_one("SELECT sum(next_offset)::bigint FROM partitions", &[])
        .await
        .expect("sum")
        .get(0);
    assert_eq!(stored, 100);

    gateway_trigger.trigger();
    let _ = gateway_task.await;
    for (_, trigger, task) in writers {
        trigger.trigger();
        let _ = task.await;
    }
    reader_trigger.trigger();
    let _ = reader_task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_on_ecs_registers_its_task_ip() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    // The container metadata ECS serves (v4), trimmed to what matters.
    let metadata = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "DockerId": "43481a6ce4842eec8fe72fc28500c6b52edcc0917f105b83379f88cac1ff3946",
            "Name": "reader",
            "Networks": [{
                "NetworkMode": "awsvpc",
                "IPv4Addresses": ["10.0.2.106"]
            }]
        })))
        .mount(&metadata)
        .await;
    assert_eq!(
        yaks_common::advertise::ecs_task_ip(&metadata.uri())
            .await
            .expect("ip")
            .to_string(),
        "10.0.2.106"
    );

    // A reader process listening on all interfaces, with no advertised URL set.
    let infra = Infra::start().await;
    let mut env = infra.process_env("ecs");
    let reader_port = port();
    env.push((
        "YAKS_READER__LISTEN_ADDR".into(),
        format!("0.0.0.0:{reader_port}"),
    ));
    env.push((
        yaks_common::advertise::ECS_METADATA_ENV.into(),
        metadata.uri(),
    ));
    let reader = Process::spawn("reader", &["reader"], &env, infra.path());
    wait_for_port(&format!("127.0.0.1:{reader_port}"), Some(&reader)).await;
    let sql = infra.sql().await;
    let deadline = yaks_common::clock::now() + Duration::from_secs(20);
    loop {
        let addresses: Vec<String> = sql
            .query("SELECT address FROM services WHERE role = 'reader'", &[])
            .await
            .expect("services")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !addresses.is_empty() {
            assert_eq!(addresses, vec![format!("http://10.0.2.106:{reader_port}")]);
            break;
        }
        assert!(
            yaks_common::clock::now() < deadline,
            "{}",
            reader.log_text()
        );
        yaks_common::clock::sleep(Duration::from_millis(100)).await;
    }
    assert!(reader.terminate().success());
}

/// The broker that coordinates `key` (`key_type` 0 for a group, 1 for a transactional
/// id), as FindCoordinator v4 tells a client.
async fn coordinator(bootstrap: &str, key_type: i8, key: &str) -> i32 {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
    let mut stream = tokio::net::TcpStream::connect(bootstrap)
        .await
        .expect("connect");
    let request = FindCoordinatorRequest::default()
        .with_key_type(key_type)
        .with_coordinator_keys(vec![yaks_common::kafka::str_bytes(key)]);
    let response: FindCoordinatorResponse =
        crate::protocol::exchange(&mut stream, ApiKey::FindCoordinator, 4, &request).await;
    assert_eq!(response.coordinators[0].error_code, 0, "{key}");
    response.coordinators[0].node_id.0
}

/// A gateway presenting four brokers (`gateway.brokers = 4`): clients see four broker
/// ids at four ports, a 16-partition topic's partitions are led four by each, and a
/// transaction and a consumer group coordinated by a broker other than the one the
/// client bootstrapped from work end to end: the process answers as every broker it
/// presents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_presenting_four_brokers_spreads_leaders_and_coordinates_as_each() {
    use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
    use rdkafka::producer::{FutureProducer, Producer};
    use rdkafka::{ClientConfig, Message};

    let infra = Infra::start().await;
    let mut config = infra.config();
    config.gateway.brokers = 4;
    let roles = Roles::start(config).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "wide", 16).await;

    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("client");
    let metadata = probe
        .fetch_metadata(Some("wide"), Duration::from_secs(10))
        .expect("metadata");
    let brokers: Vec<(i32, i32)> = metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), b.port()))
        .collect();
    assert_eq!(brokers.len(), 4, "{brokers:?}");
    let ports: std::collections::HashSet<i32> = brokers.iter().map(|b| b.1).collect();
    assert_eq!(ports.len(), 4, "each broker has its own port: {brokers:?}");
    let first = brokers
        .iter()
        .find(|b| b.1 == i32::from(roles.kafka.port()))
        .map(|b| b.0)
        .expect("the bootstrap address is one of the brokers");
    let mut led = std::collections::HashMap::<i32, usize>::new();
    for partition in metadata.topics()[0].partitions() {
        *led.entry(partition.leader()).or_default() += 1;
    }
    assert!(
        led.len() == 4 && led.values().all(|&n| n == 4),
        "four partitions per broker: {led:?}"
    );

    // Ids the bootstrap broker does not coordinate: the client has to go to another port.
    let mut txn_id = None;
    let mut group_id = None;
    for i in 0..64 {
        let candidate = format!("spread-{i}");
        if txn_id.is_none() && coordinator(&bootstrap, 1, &candidate).await != first {
            txn_id = Some(candidate.clone());
        }
        if group_id.is_none() && coordinator(&bootstrap, 0, &candidate).await != first {
            group_id = Some(candidate);
        }
    }
    let (txn_id, group_id) = (txn_id.expect("a txn id"), group_id.expect("a group id"));

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", &txn_id)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).expect("init");
    for (label, commit) in [("A", true), ("B", false), ("C", true)] {
        producer.begin_transaction().expect("begin");
        let values: Vec<String> = (0..64).map(|i| format!("{label}{i}")).collect();
        let sends: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                enqueue(
                    &producer,
                    FutureRecord::to("wide")
                        .partition((i % 16) as i32)
                        .key(value.as_str())
                        .payload(value.as_str()),
                )
            })
            .collect();
        assert_eq!(deliveries(sends).await.len(), 64);
        if commit {
            producer.commit_transaction(timeout).expect("commit");
        } else {
            producer.abort_transaction(timeout).expect("abort");
        }
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group_id)
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&["wide"]).expect("subscribe");
    let mut seen = Vec::new();
    while seen.len() < 128 {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("the group reads every committed record")
            .expect("a record");
        seen.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
    }
    assert!(
        seen.iter().all(|v| !v.starts_with('B')),
        "nothing of the aborted transaction: {seen:?}"
    );
    consumer
        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .expect("the group's coordinator takes the offsets");
    let committed = consumer
        .committed(Duration::from_secs(10))
        .expect("committed offsets");
    // Per partition: A's 4 records and marker, B's, then C's 4 records at offsets 10..=13
    // and its marker at 14. The group stands past C's records, and past its marker once
    // the client has read that.
    let offsets: Vec<i64> = committed
        .elements()
        .iter()
        .map(|e| e.offset().to_raw().unwrap_or(-1))
        .collect();
    assert_eq!(offsets.len(), 16);
    assert!(offsets.iter().all(|&o| o == 14 || o == 15), "{offsets:?}");
    roles.stop().await;
}
