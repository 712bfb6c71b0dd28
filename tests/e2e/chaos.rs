//! `yaks chaos`: the oracle against two gateways, two writers and two readers as separate
//! processes while they are killed and frozen, PostgreSQL restarts and S3 fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use yaks::chaos::{ChaosOptions, FaultPlan, run};
use yaks::oracle::Workload;

use crate::harness::*;

/// A chaos run's directory, kept (not deleted) when the test fails, with the warnings and
/// errors of its process and client logs printed: a failure seen once in CI can then be
/// explained without running it again.
struct RunDir(Option<tempfile::TempDir>);

impl RunDir {
    fn new(prefix: &str) -> RunDir {
        RunDir(Some(reachable_temp_dir(prefix)))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().expect("directory").path()
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Some(dir) = self.0.take() else { return };
        let kept = dir.keep();
        eprintln!("chaos run kept in {}", kept.display());
        let mut logs = Vec::new();
        let mut pending = vec![kept];
        while let Some(next) = pending.pop() {
            for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() && !path.ends_with("postgres") && !path.ends_with("s3") {
                    pending.push(path);
                } else if path.extension().is_some_and(|e| e == "log") {
                    logs.push(path);
                }
            }
        }
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let notable: Vec<&str> = text
                .lines()
                .filter(|l| {
                    [
                        "ERROR",
                        "WARN",
                        "rror",
                        "fatal",
                        "Fatal",
                        "desynchron",
                        "SEQUENCE",
                    ]
                    .iter()
                    .any(|w| l.contains(w))
                })
                .collect();
            eprintln!(
                "--- {} ({} notable lines, last 60)",
                log.display(),
                notable.len()
            );
            for line in &notable[notable.len().saturating_sub(60)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// One run of the default faults against this build's binary, with its data in `dir`.
fn options(dir: &RunDir, workload: Workload) -> ChaosOptions {
    ChaosOptions {
        data_dir: dir.path().to_path_buf(),
        binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_yaks"))),
        workload,
        faults: FaultPlan::default(),
        runs: 1,
        same_seed: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_record_is_lost_while_processes_die_and_postgres_and_s3_fail() {
    let dir = RunDir::new("yaks-chaos-");
    let report = run(options(
        &dir,
        Workload {
            topics: 2,
            partitions: 4,
            producers: 8,
            records: 2_000,
            pace: Duration::from_secs(30),
            consume_timeout: Duration::from_secs(120),
            message_timeout: Duration::from_secs(120),
            client_debug: String::new(),
            transactions: 0,
        },
    ))
    .await
    .expect("chaos run");
    println!("{}", report.table());
    println!("{}", report.timeline.join("\n"));
    assert!(report.holds(), "{}", report.table());
    assert_eq!(
        report.oracle.acknowledged, 16_000,
        "retries got everything through"
    );
    for fault in ["writer killed", "gateway killed", "reader killed"] {
        assert!(report.times(fault) >= 1, "{fault}: {}", report.table());
    }
    assert_eq!(report.times("postgresql stopped"), 1);
    assert_eq!(report.times("writer frozen"), 1);
    assert!(report.s3.throttled + report.s3.refused + report.s3.answers_lost > 0);
}

/// The same faults under transactional producers (`--transactions`): no aborted read, no
/// torn transaction, no lost commit, offsets with their records, and read_committed never
/// left behind an open transaction, whatever dies mid-transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_stay_whole_while_processes_die_and_postgres_and_s3_fail() {
    let dir = RunDir::new("yaks-chaos-txn-");
    let report = run(options(
        &dir,
        Workload {
            topics: 2,
            partitions: 4,
            producers: 4,
            records: 1_000,
            transactions: 25,
            pace: Duration::from_secs(30),
            consume_timeout: Duration::from_secs(120),
            // A record stuck behind a sequence gap is given up after this, and its
            // transaction aborted.
            message_timeout: Duration::from_secs(60),
            // What librdkafka's transaction manager decided, in `clients.log`: printed if
            // the run fails.
            client_debug: "eos,msg".into(),
        },
    ))
    .await
    .expect("chaos run");
    println!("{}", report.table());
    println!("{}", report.timeline.join("\n"));
    assert!(report.holds(), "{}", report.table());
    assert_eq!(report.oracle.findings.len(), 11);
    // 160 transactions, every fifth aborted by choice; a few more may abort on a record
    // given up.
    let [committed, aborted, unknown] = report.oracle.transactions;
    assert!(
        committed >= 96 && aborted >= 32 && committed + aborted + unknown == 160,
        "transactions ended mostly as their producers chose: {}",
        report.table()
    );
    for fault in ["writer killed", "gateway killed"] {
        assert!(report.times(fault) >= 1, "{fault}: {}", report.table());
    }
}
