//! Transactions as clients see them (issue 23): what a read_committed consumer reads of
//! committed and aborted transactions, with every codec.

use crate::harness::*;

/// The values of a transaction labelled `label`, sorted as the script sorts them.
fn values(labels: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = labels
        .iter()
        .flat_map(|label| (0..30).map(move |i| format!("{label}-{i}")))
        .collect();
    all.sort();
    all
}

/// Committed A, aborted B, committed C over three partitions: read_committed sees A and C,
/// read_uncommitted all three, with each codec librdkafka writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_sees_committed_transactions_only_with_every_codec() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("txn-{codec}");
        create_topic(&bootstrap, &topic, 3).await;
        let args = [
            bootstrap.clone(),
            topic.clone(),
            format!("app-{codec}"),
            codec.to_owned(),
        ];
        let printed = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_client("python3", "confluent_txn.py", &args)
        })
        .await
        .expect("join");
        let read: serde_json::Value = serde_json::from_str(&printed).expect("json");
        let list = |key: &str| -> Vec<String> {
            read[key]
                .as_array()
                .expect("list")
                .iter()
                .map(|v| v.as_str().expect("text").to_owned())
                .collect()
        };
        assert_eq!(
            list("committed"),
            values(&["A", "C"]),
            "{codec}: read_committed"
        );
        assert_eq!(
            list("uncommitted"),
            values(&["A", "B", "C"]),
            "{codec}: read_uncommitted"
        );
    }
    roles.stop().await;
}
