//! S3 misbehaving: nothing is acknowledged before it is durable, and after recovery each
//! record lands exactly once.

use std::time::Duration;

use rdkafka::producer::FutureRecord;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::*;

const SLOW_DOWN: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"#;
const INTERNAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>"#;

async fn puts(server: &MockServer) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method == wiremock::http::Method::PUT)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_delay_the_ack_until_the_data_is_durable() {
    let infra = Infra::start().await;
    let s3 = MockServer::start().await;
    // Two 500s, then three SlowDowns, then success. With 3 attempts per flush, the first
    // produce attempt fails after three PUTs; the client retries; the sixth PUT succeeds.
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(500).set_body_string(INTERNAL))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&s3)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(503).set_body_string(SLOW_DOWN))
        .up_to_n_times(3)
        .with_priority(2)
        .mount(&s3)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200).insert_header("ETag", "\"0123456789abcdef\""))
        .with_priority(3)
        .mount(&s3)
        .await;

    let mut config = infra.config();
    config.s3.endpoint = Some(s3.uri());
    config.s3.create_bucket = false;
    config.s3.max_attempts = 3;
    config.s3.initial_backoff_ms = 50;
    let roles = Roles::start(config).await;
    create_topic(&roles.bootstrap(), "flaky", 1).await;

    let producer = producer(&roles.bootstrap(), &[("retry.backoff.ms", "100")]);
    let send = tokio::spawn(async move {
        producer
            .send(
                FutureRecord::<(), _>::to("flaky").payload("payload-landing-once"),
                Duration::from_secs(30),
            )
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| e.to_string())
    });
    // Until the successful PUT has been received, the producer must not have its ack.
    loop {
        let seen = puts(&s3).await.len();
        if send.is_finished() {
            assert!(
                seen >= 6,
                "acknowledged after only {seen} PUTs, before the data was durable"
            );
            break;
        }
        yaks_common::clock::sleep(Duration::from_millis(10)).await;
    }
    let delivered = send.await.expect("join").expect("delivered after recovery");
    assert_eq!(delivered, (0, 0));

    let all = puts(&s3).await;
    assert_eq!(all.len(), 6, "2 × 500, 3 × SlowDown, 1 success");
    // Integrity of the unsigned body rests on the checksum S3 verifies.
    assert!(
        all[5].headers.contains_key("x-amz-checksum-crc32"),
        "uploads carry a CRC32 checksum"
    );
    let stored = String::from_utf8_lossy(&all[5].body);
    assert_eq!(stored.matches("payload-landing-once").count(), 1);
    let sql = infra.sql().await;
    assert_eq!(
        next_offset(&sql, "flaky", 0).await,
        1,
        "the record landed once"
    );
    assert_index_contiguous(&sql, "flaky", 0).await;
    let objects: i64 = sql
        .query_one("SELECT count(*) FROM objects", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(objects, 1, "only the durable upload was committed");
    roles.stop().await;
}
