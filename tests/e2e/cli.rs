//! The admin CLI against `yaks dev`: topics, records and group offsets round-trip.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::*;

/// Runs `yaks ARGS -b BROKERS` with `input` on standard input; returns standard output.
async fn yaks(brokers: &str, args: &[&str], input: &str) -> String {
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.extend(["--brokers".to_owned(), brokers.to_owned()]);
    let input = input.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_yaks"))
            .args(&all)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("yaks runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        let output = child.wait_with_output().expect("yaks ends");
        (all, output)
    })
    .await
    .expect("join");
    let (all, output) = output;
    assert!(
        output.status.success(),
        "yaks {all:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The lag column of `yaks group describe`'s lines for topic `cli`.
fn lags_of(described: &str) -> Vec<i64> {
    described
        .lines()
        .filter(|l| l.starts_with("cli "))
        .map(|l| {
            l.split_whitespace()
                .last()
                .expect("lag")
                .parse()
                .expect("number")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_round_trips_topics_records_and_group_offsets() {
    let dir = reachable_temp_dir("yaks-cli-");
    let kafka = format!("127.0.0.1:{}", port());
    let ops = format!("127.0.0.1:{}", port());
    let env = [("YAKS_GATEWAY__HTTP_ADDR".to_owned(), ops.clone())];
    let dev = start_dev(dir.path(), "dev", &kafka, &env).await;
    let b = kafka.as_str();

    // Topics.
    yaks(
        b,
        &[
            "topic",
            "create",
            "cli",
            "-p",
            "3",
            "-c",
            "retention.ms=3600000",
        ],
        "",
    )
    .await;
    assert!(
        yaks(b, &["topic", "list"], "")
            .await
            .lines()
            .any(|l| l == "cli")
    );
    let described = yaks(b, &["topic", "describe", "cli"], "").await;
    assert!(described.contains("cli: 3 partitions"), "{described}");
    assert!(
        described.contains("retention.ms = 3600000 (set)"),
        "{described}"
    );
    yaks(
        b,
        &[
            "topic",
            "alter",
            "cli",
            "-p",
            "4",
            "-c",
            "max.message.bytes=2000000",
        ],
        "",
    )
    .await;
    let described = yaks(b, &["topic", "describe", "cli"], "").await;
    assert!(described.contains("cli: 4 partitions"), "{described}");
    assert!(
        described.contains("retention.ms = 3600000 (set)"),
        "configs not named keep their values: {described}"
    );
    assert!(
        described.contains("max.message.bytes = 2000000 (set)"),
        "{described}"
    );

    // A compacted topic: describe adds where key compaction stands, from the gateway.
    yaks(
        b,
        &[
            "topic",
            "create",
            "cli-compacted",
            "-c",
            "cleanup.policy=compact",
        ],
        "",
    )
    .await;
    yaks(
        b,
        &["produce", "cli-compacted", "--key-separator", ":"],
        "a:1\nb:1\na:2\n",
    )
    .await;
    let described = yaks(
        b,
        &["topic", "describe", "cli-compacted", "--ops", &ops],
        "",
    )
    .await;
    assert!(described.contains("key compaction:"), "{described}");
    assert!(described.contains("dirty ratio"), "{described}");
    assert!(
        described
            .lines()
            .skip_while(|l| !l.starts_with("key compaction:"))
            .any(|l| l.split_whitespace().next() == Some("0")),
        "a line for partition 0: {described}"
    );
    let plain = yaks(b, &["topic", "describe", "cli", "--ops", &ops], "").await;
    assert!(!plain.contains("key compaction"), "{plain}");

    // Records: lines in, the same lines out.
    let lines: Vec<String> = (0..20).map(|i| format!("key-{i}:value {i}")).collect();
    let input = lines.join("\n") + "\n";
    yaks(b, &["produce", "cli", "--key-separator", ":"], &input).await;
    let out = yaks(
        b,
        &[
            "consume",
            "cli",
            "--from-beginning",
            "--max-messages",
            "20",
            "--timeout-ms",
            "20000",
            "--format",
            "key-value",
            "--key-separator",
            ":",
        ],
        "",
    )
    .await;
    let got: BTreeSet<&str> = out.lines().collect();
    let sent: BTreeSet<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(got, sent, "every line comes back as key:value");
    let json = yaks(
        b,
        &[
            "consume",
            "cli",
            "--offset",
            "0",
            "--partition",
            "0",
            "--max-messages",
            "1",
            "--timeout-ms",
            "20000",
            "--format",
            "json",
        ],
        "",
    )
    .await;
    let record: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
    assert_eq!(record["offset"], 0);
    assert!(
        record["value"]
            .as_str()
            .is_some_and(|v| v.starts_with("value "))
    );

    // Group offsets: a group reads everything and commits; reset to earliest re-reads.
    let read_group = || {
        yaks(
            b,
            &[
                "consume",
                "cli",
                "--group",
                "cli-group",
                "--from-beginning",
                "--max-messages",
                "20",
                "--timeout-ms",
                "20000",
            ],
            "",
        )
    };
    assert_eq!(read_group().await.lines().count(), 20);
    assert!(
        yaks(b, &["group", "list"], "")
            .await
            .lines()
            .any(|l| l.starts_with("cli-group"))
    );
    let described = yaks(b, &["group", "describe", "cli-group"], "").await;
    let lags = lags_of(&described);
    assert_eq!(lags.len(), 4, "one line per partition: {described}");
    assert!(lags.iter().all(|lag| *lag == 0), "{described}");
    let dry = yaks(
        b,
        &[
            "group",
            "reset-offsets",
            "cli-group",
            "--topic",
            "cli",
            "--to-earliest",
        ],
        "",
    )
    .await;
    assert!(dry.contains("dry run"), "{dry}");
    yaks(
        b,
        &[
            "group",
            "reset-offsets",
            "cli-group",
            "--topic",
            "cli",
            "--to-earliest",
            "--execute",
        ],
        "",
    )
    .await;
    let described = yaks(b, &["group", "describe", "cli-group"], "").await;
    let total_lag: i64 = lags_of(&described).iter().sum();
    assert_eq!(
        total_lag, 20,
        "after the reset everything is unread: {described}"
    );
    assert_eq!(
        read_group().await.lines().count(),
        20,
        "re-read after the reset"
    );

    yaks(b, &["topic", "delete", "cli"], "").await;
    assert!(
        !yaks(b, &["topic", "list"], "")
            .await
            .lines()
            .any(|l| l == "cli")
    );
    assert!(dev.interrupt().success());
}
