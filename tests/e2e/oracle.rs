//! `yaks oracle` against the in-process roles: every invariant holds on a healthy system.

use std::time::Duration;

use yaks::oracle::{OracleOptions, Report, Workload, run};

use crate::harness::*;

/// The oracle against `roles`: 4 producers of 500 records over 2 topics of 2 partitions,
/// sending `transactions` records a transaction (0: none).
async fn healthy_run(infra: &Infra, roles: &Roles, transactions: u64) -> Report {
    let report = run(OracleOptions {
        brokers: roles.bootstrap(),
        data_dir: infra.path().join("oracle"),
        workload: Workload {
            topics: 2,
            partitions: 2,
            producers: 4,
            records: 500,
            transactions,
            consume_timeout: Duration::from_secs(60),
            message_timeout: Duration::from_secs(60),
            ..Workload::default()
        },
    })
    .await
    .expect("oracle runs");
    println!("{}", report.table());
    assert!(report.holds(), "{}", report.table());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oracle_finds_every_acknowledged_record_on_a_healthy_system() {
    let infra = Infra::start().await;
    let roles = Roles::start_with_writers(infra.config(), 2).await;
    let report = healthy_run(&infra, &roles, 0).await;
    assert_eq!((report.acknowledged, report.failed), (2_000, 0));
    assert_eq!(report.consumed, 2_000);
    assert!(infra.path().join("oracle/oracle.sqlite").exists());
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invariant_holds_when_writers_fail_between_stages() {
    use yaks_common::failpoint::{COMMITTED_NOT_ACKED, FailAction, UPLOADED_NOT_COMMITTED};

    let infra = Infra::start().await;
    let roles = Roles::start_with_writers(infra.config(), 2).await;
    // Each writer loses the answers of three committed flushes and fails three uploads'
    // commits: clients see timeouts and storage errors, and retry.
    for writer in &roles.writers {
        writer
            .fail_points
            .arm(COMMITTED_NOT_ACKED, FailAction::LoseAnswer, Some(3));
        writer
            .fail_points
            .arm(UPLOADED_NOT_COMMITTED, FailAction::Error, Some(3));
    }
    let report = run(OracleOptions {
        brokers: roles.bootstrap(),
        data_dir: infra.path().join("oracle"),
        workload: Workload {
            topics: 2,
            partitions: 3,
            producers: 4,
            records: 1_000,
            consume_timeout: Duration::from_secs(60),
            message_timeout: Duration::from_secs(120),
            ..Workload::default()
        },
    })
    .await
    .expect("oracle runs");
    println!("{}", report.table());
    assert!(report.holds(), "{}", report.table());
    assert_eq!(report.acknowledged, 4_000, "retries got everything through");
    let fired: u64 = roles
        .writers
        .iter()
        .map(|w| {
            w.fail_points.fired(COMMITTED_NOT_ACKED) + w.fail_points.fired(UPLOADED_NOT_COMMITTED)
        })
        .sum();
    assert!(fired >= 2, "the faults happened ({fired} fired)");
    roles.stop().await;
}

/// The transactional mode on a healthy system: every fifth transaction aborted, the rest
/// committed with their group offsets, and all eleven invariants hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oracle_checks_transactions_on_a_healthy_system() {
    let infra = Infra::start().await;
    let roles = Roles::start_with_writers(infra.config(), 2).await;
    let report = healthy_run(&infra, &roles, 100).await;
    assert_eq!(report.findings.len(), 11);
    assert_eq!(report.transactions, [16, 4, 0]);
    assert_eq!((report.acknowledged, report.failed), (1_600, 0));
    assert_eq!(report.consumed, 1_600);
    roles.stop().await;
}
