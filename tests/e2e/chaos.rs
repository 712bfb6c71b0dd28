//! `yaks chaos`: the oracle against two gateways, two writers and two readers as separate
//! processes while they are killed and frozen, PostgreSQL restarts and S3 fails.

use std::path::PathBuf;
use std::time::Duration;

use yaks::chaos::{ChaosOptions, FaultPlan, run};
use yaks::oracle::Workload;

use crate::harness::*;

/// One run of the default faults against this build's binary, with its data in `dir`.
fn options(dir: &tempfile::TempDir, workload: Workload) -> ChaosOptions {
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
    let dir = reachable_temp_dir("yaks-chaos-");
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
    let dir = reachable_temp_dir("yaks-chaos-txn-");
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
            client_debug: String::new(),
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
