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

/// Runs `script` (a transactional producer committing A, aborting B and committing C over
/// three partitions) with `codec`, then checks what read_committed and read_uncommitted
/// consumers read: A and C, and all three.
async fn check_transactions(
    bootstrap: &str,
    program: &'static str,
    script: &'static str,
    codec: &str,
) {
    let topic = format!("{}-{codec}", script.split('.').next().unwrap_or(script));
    let topic = topic.replace('_', "-");
    create_topic(bootstrap, &topic, 3).await;
    let args = [
        bootstrap.to_owned(),
        topic.clone(),
        format!("app-{topic}"),
        codec.to_owned(),
    ];
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_client(program, script, &args)
    })
    .await
    .expect("join");
    let args = [bootstrap.to_owned(), topic.clone()];
    let printed = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_client("python3", "read_isolated.py", &args)
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
        "{script} {codec}: read_committed"
    );
    assert_eq!(
        list("uncommitted"),
        values(&["A", "B", "C"]),
        "{script} {codec}: read_uncommitted"
    );
}

/// Committed A, aborted B, committed C over three partitions: read_committed sees A and C,
/// read_uncommitted all three, with each codec librdkafka writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_sees_committed_transactions_only_with_every_codec() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        check_transactions(&bootstrap, "python3", "confluent_txn.py", codec).await;
    }
    roles.stop().await;
}

/// The same with kafka-python's and kafkajs's transactional producers, which speak other
/// versions of the transaction APIs (AddPartitionsToTxn v3 and v1, EndTxn v3 and v1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_and_kafkajs_transactions_are_read_committed_alike() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    check_transactions(&bootstrap, "python3", "kafka_python_txn.py", "gzip").await;
    check_transactions(&bootstrap, "node", "kafkajs_txn.js", "none").await;
    roles.stop().await;
}
