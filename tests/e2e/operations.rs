//! Operating yaks: `/metrics` read by Prometheus's own parser, `/readyz` following
//! PostgreSQL, SIGTERM on a writer holding acknowledged-to-be data.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;

use crate::harness::*;

/// One sample of a `/metrics` page.
#[derive(Debug, serde::Deserialize)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Fetches `/metrics` from `addr` and parses it with the Prometheus project's parsers
/// (`tests/clients/parse_metrics.py`), which fail on anything malformed.
async fn scrape(addr: &str) -> Vec<Sample> {
    let (status, text) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("python3")
            .arg(format!("{dir}/parse_metrics.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs (scripts/setup installs prometheus-client)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        child.wait_with_output().expect("parser ran")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "the Prometheus parsers refuse /metrics: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("sample"))
        .collect()
}

/// Sum of the samples named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_produce_and_fetch_per_topic() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    let topic = "metered";
    create_topic(&bootstrap, topic, 2).await;
    let ops = roles.ops.to_string();

    let before = scrape(&ops).await;
    let produced = value(
        &before,
        "yaks_gateway_produce_records_total",
        &[("topic", topic)],
    );
    assert_eq!(produced, 0.0, "a new topic starts at zero");

    const RECORDS: usize = 200;
    let producer = producer(&bootstrap, &[]);
    let payload = "x".repeat(1000);
    let mut sends = Vec::new();
    for i in 0..RECORDS {
        sends.push(enqueue(
            &producer,
            FutureRecord::to(topic)
                .partition((i % 2) as i32)
                .key("k")
                .payload(payload.as_str()),
        ));
    }
    assert_eq!(deliveries(sends).await.len(), RECORDS);

    let bootstrap_for_consumer = bootstrap.clone();
    let consumed = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap_for_consumer)
            .set("group.id", "metrics-reader")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&["metered"]).expect("subscribe");
        let mut count = 0;
        let deadline = yaks_common::clock::now() + Duration::from_secs(60);
        while count < RECORDS && yaks_common::clock::now() < deadline {
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                let message = message.expect("fetch");
                assert_eq!(message.payload().map(<[u8]>::len), Some(1000));
                count += 1;
            }
        }
        count
    })
    .await
    .expect("join");
    assert_eq!(consumed, RECORDS);

    let after = scrape(&ops).await;
    let topic_label = [("topic", topic)];
    assert_eq!(
        value(&after, "yaks_gateway_produce_records_total", &topic_label),
        RECORDS as f64,
        "every acknowledged record is counted once"
    );
    assert!(
        value(&after, "yaks_gateway_produce_bytes_total", &topic_label)
            >= (RECORDS * payload.len()) as f64
    );
    assert!(
        value(&after, "yaks_gateway_fetch_bytes_total", &topic_label)
            >= (RECORDS * payload.len()) as f64,
        "what was consumed is counted"
    );
    // S3 traffic of the topic: the writer's uploads and the reader's cache misses.
    let put = [("operation", "put"), ("topic", topic)];
    assert!(value(&after, "yaks_writer_s3_bytes_total", &put) >= (RECORDS * 1000) as f64);
    assert!(value(&after, "yaks_writer_s3_requests_total", &put) > 0.0);
    let get = [("operation", "get"), ("topic", topic)];
    assert!(value(&after, "yaks_reader_s3_bytes_total", &get) > 0.0);
    assert!(value(&after, "yaks_reader_s3_requests_total", &get) >= 1.0);
    // Requests by api and error, latency histograms, flushes, cache and pool figures.
    assert!(
        value(
            &after,
            "yaks_gateway_requests_total",
            &[("api", "Produce"), ("error", "NONE")]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "yaks_gateway_request_duration_seconds_count",
            &[("api", "Fetch")]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "yaks_writer_flushes_total",
            &[("outcome", "committed")]
        ) >= 1.0
    );
    assert!(value(&after, "yaks_writer_flush_upload_seconds_count", &[]) >= 1.0);
    assert!(value(&after, "yaks_writer_flush_commit_seconds_count", &[]) >= 1.0);
    assert!(value(&after, "yaks_writer_append_wait_seconds_count", &[]) >= 1.0);
    assert!(value(&after, "yaks_writer_append_seconds_count", &[]) >= 1.0);
    assert!(
        value(
            &after,
            "yaks_reader_cache_misses_total",
            &[("tier", "memory")]
        ) >= 1.0
    );
    assert!(value(&after, "yaks_metastore_pool_wait_seconds_count", &[]) >= 1.0);
    assert!(
        value(
            &after,
            "yaks_metastore_operation_duration_seconds_count",
            &[("operation", "commit_object")]
        ) >= 1.0
    );
    // Writers and readers serve the same page on their own port.
    let writer = roles.writer_url.clone();
    assert!(!scrape(&writer).await.is_empty());
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_postgres_is_down_and_recovers() {
    let mut infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let gateway = roles.ops.to_string();
    let targets = [gateway.as_str(), &roles.writer_url, &roles.reader_url];
    for target in targets {
        assert_eq!(http_get(target, "/healthz").await.0, 200, "{target}");
        let (status, body) = http_get(target, "/readyz").await;
        assert_eq!(status, 200, "{target}: {body}");
    }

    tokio::task::block_in_place(|| infra.postgres.stop()).expect("postgres stops");
    for target in targets {
        let deadline = yaks_common::clock::now() + Duration::from_secs(20);
        loop {
            let (status, body) = http_get(target, "/readyz").await;
            if status == 503 {
                assert!(body.contains("postgres"), "{target}: {body}");
                break;
            }
            assert!(
                yaks_common::clock::now() < deadline,
                "{target} still ready with postgres down"
            );
            yaks_common::clock::sleep(Duration::from_millis(200)).await;
        }
        // Alive all the same: liveness does not depend on PostgreSQL.
        assert_eq!(http_get(target, "/healthz").await.0, 200);
    }

    tokio::task::block_in_place(|| infra.postgres.start_again()).expect("postgres starts");
    for target in targets {
        let deadline = yaks_common::clock::now() + Duration::from_secs(30);
        loop {
            let (status, body) = http_get(target, "/readyz").await;
            if status == 200 {
                break;
            }
            assert!(
                yaks_common::clock::now() < deadline,
                "{target} not ready again: {body}"
            );
            yaks_common::clock::sleep(Duration::from_millis(200)).await;
        }
    }
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_writer_commits_and_acknowledges_its_buffer() {
    let infra = Infra::start().await;
    let mut env = infra.process_env("sigterm");
    // Nothing is flushed by time or size during the test: only the shutdown flushes.
    env.push(("YAKS_WRITER__FLUSH_INTERVAL_MS".into(), "600000".into()));
    env.push(("YAKS_WRITER__FLUSH_IDLE_MS".into(), "0".into()));
    let (writer, writer_port) = spawn_listening(&infra, "writer", "writer", &env).await;
    let (reader, _) = spawn_listening(&infra, "reader", "reader", &env).await;
    let kafka = format!("127.0.0.1:{}", port());
    let mut gateway_env = env.clone();
    gateway_env.push(("YAKS_GATEWAY__LISTEN_ADDR".into(), kafka.clone()));
    gateway_env.push((
        "YAKS_GATEWAY__WRITER_URLS".into(),
        format!("[\"http://127.0.0.1:{writer_port}\"]"),
    ));
    let gateway = Process::spawn("gateway", &["gateway"], &gateway_env, infra.path());
    wait_for_port(&kafka, Some(&gateway)).await;
    create_topic(&kafka, "drained", 1).await;

    let producer = producer(&kafka, &[]);
    let sends: Vec<_> = (0..5)
        .map(|i| {
            let value = format!("buffered {i}");
            enqueue(
                &producer,
                FutureRecord::to("drained").key("k").payload(&value),
            )
        })
        .collect();
    // The records sit in the writer's buffer (the flush interval is ten minutes).
    yaks_common::clock::sleep(Duration::from_secs(1)).await;
    let sql = infra.sql().await;
    let stored: i64 = sql
        .query_one("SELECT count(*) FROM object_index", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(stored, 0, "nothing committed before the signal");

    let log = writer.log.clone();
    let stopping = tokio::task::spawn_blocking(move || writer.terminate());
    let offsets: Vec<i64> = deliveries(sends)
        .await
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    assert_eq!(
        offsets,
        vec![0, 1, 2, 3, 4],
        "acknowledged with their offsets"
    );
    let status = stopping.await.expect("join");
    assert!(
        status.success(),
        "the writer exits cleanly on SIGTERM\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let next_offset: i64 = sql
        .query_one(
            "SELECT p.next_offset FROM partitions p JOIN topics t USING (topic_id)
             WHERE t.name = 'drained' AND p.partition_index = 0",
            &[],
        )
        .await
        .expect("partition")
        .get(0);
    assert_eq!(next_offset, 5, "committed in PostgreSQL");
    for process in [gateway, reader] {
        assert!(process.terminate().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_and_a_fetch_are_each_one_trace_across_gateway_writer_and_reader() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let dir = reachable_temp_dir("yaks-otlp-");
    let kafka = format!("127.0.0.1:{}", port());
    let env = vec![
        (
            "YAKS_LOG__OTLP_ENDPOINT".to_owned(),
            format!("{}/v1/traces", collector.uri()),
        ),
        ("YAKS_LOG__OTLP_SAMPLE_RATIO".to_owned(), "1".to_owned()),
    ];
    let dev = start_dev(dir.path(), "dev", &kafka, &env).await;
    create_topic(&kafka, "traced", 1).await;
    let producer = producer(&kafka, &[]);
    let sends = vec![enqueue(
        &producer,
        FutureRecord::to("traced").key("k").payload("v"),
    )];
    assert_eq!(deliveries(sends).await.len(), 1);
    let bootstrap = kafka.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "traced")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&["traced"]).expect("subscribe");
        let deadline = yaks_common::clock::now() + Duration::from_secs(30);
        while yaks_common::clock::now() < deadline {
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                message.expect("fetch");
                return;
            }
        }
        panic!("nothing consumed");
    })
    .await
    .expect("join");

    // Spans arrive in batches; collect until a writer and a reader span joined a trace
    // started by a gateway request.
    let deadline = yaks_common::clock::now() + Duration::from_secs(30);
    loop {
        let mut spans = Vec::new();
        let mut services = Vec::new();
        for request in collector.received_requests().await.unwrap_or_default() {
            let export = ExportTraceServiceRequest::decode(request.body.as_slice())
                .expect("an OTLP protobuf export");
            for resource in export.resource_spans {
                if let Some(resource) = &resource.resource {
                    for attribute in &resource.attributes {
                        services.push(format!("{:?}", attribute.value));
                    }
                }
                for scope in resource.scope_spans {
                    spans.extend(scope.spans);
                }
            }
        }
        let joined = |name: &str| {
            spans.iter().any(|child| {
                child.name == name
                    && !child.parent_span_id.is_empty()
                    && spans
                        .iter()
                        .any(|root| root.name == "request" && root.trace_id == child.trace_id)
            })
        };
        if joined("produce") && joined("fetch") {
            assert!(
                services.iter().any(|s| s.contains("yaks-dev")),
                "spans name their service: {services:?}"
            );
            break;
        }
        assert!(
            yaks_common::clock::now() < deadline,
            "no trace spans gateway and writer/reader: {:?}",
            spans
                .iter()
                .map(|s| (&s.name, hex(&s.trace_id)))
                .collect::<Vec<_>>()
        );
        yaks_common::clock::sleep(Duration::from_millis(500)).await;
    }
    assert!(dev.interrupt().success());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    // Counters are sampled as `name_total`, histograms as `name_bucket/_sum/_count`.
    let families: std::collections::HashSet<&str> = yaks_common::metrics::families()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/infra/compose/grafana/dashboards/yaks.json"
        ))
        .expect("dashboard file"),
    )
    .expect("dashboard JSON");
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if !word.starts_with("yaks_") {
                    continue;
                }
                let family = ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| word.strip_suffix(suffix))
                    .unwrap_or(word);
                assert!(
                    families.contains(family) || families.contains(word),
                    "panel {:?} queries {word}, which yaks does not export",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(
        queried > 30,
        "the dashboard queries yaks metrics ({queried})"
    );
}

#[test]
fn the_readme_lists_every_metric() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    for (name, _) in yaks_common::metrics::families() {
        // The S3 families of every role are listed once, as `yaks_<role>_s3_...`.
        let generic = ["gateway", "writer", "reader", "compactor"]
            .iter()
            .find_map(|role| name.strip_prefix(&format!("yaks_{role}_s3_")))
            .map(|rest| format!("yaks_<role>_s3_{rest}"));
        let listed = readme.contains(&format!("`{name}`"))
            || generic.is_some_and(|g| readme.contains(&format!("`{g}`")));
        assert!(listed, "README does not list {name}");
    }
}
