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
