//! The I/O seams' shared suites, run against the real backends (the in-memory
//! implementations run them in unit tests).

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_object_store_passes_the_shared_suite() {
    let infra = Infra::start().await;
    let store = yaks_common::objstore::S3ObjectStore::connect(&infra.config().s3)
        .await
        .expect("connects and creates the bucket");
    yaks_common::objstore::conformance_suite(&store, "suite/").await;
}

/// A fresh PostgreSQL metastore, migrated, with the server it lives on.
struct TestPg {
    _infra: Infra,
    store: yaks_common::metastore::PgMetastore,
}

impl TestPg {
    async fn start() -> TestPg {
        let infra = Infra::start().await;
        let store =
            yaks_common::metastore::PgMetastore::connect(&infra.config().postgres).expect("pool");
        store.migrate().await.expect("migrations");
        TestPg {
            _infra: infra,
            store,
        }
    }
}

impl std::ops::Deref for TestPg {
    type Target = yaks_common::metastore::PgMetastore;

    fn deref(&self) -> &Self::Target {
        &self.store
    }
}

/// The PostgreSQL metastore passes the shared suite, one test per case.
mod postgres_metastore {
    use super::*;

    yaks_common::metastore_test_suite!(TestPg::start().await);
}

/// The fence behind commit deadlines: whatever a writer's statements checked earlier, a
/// transaction that stores an object is refused at COMMIT once its deadline has passed,
/// and nothing of it remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_a_commit_that_reaches_commit_after_its_deadline() {
    let infra = Infra::start().await;
    let store =
        yaks_common::metastore::PgMetastore::connect(&infra.config().postgres).expect("pool");
    store.migrate().await.expect("migrations");
    let mut sql = infra.sql().await;
    let deadline: i64 = sql
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 300",
            &[],
        )
        .await
        .expect("clock")
        .get(0);
    let tx = sql.transaction().await.expect("begin");
    tx.execute(
        "SELECT set_config('yaks.commit_deadline_ms', $1, true)",
        &[&deadline.to_string()],
    )
    .await
    .expect("set deadline");
    tx.execute(
        "INSERT INTO objects (object_id, object_key, size_bytes) VALUES ('late', 'k/late', 1)",
        &[],
    )
    .await
    .expect("insert before the deadline");
    // The writer pauses here (frozen, or its request sat in a socket) past the deadline.
    yaks_common::clock::sleep(std::time::Duration::from_millis(600)).await;
    let refused = tx.commit().await.expect_err("COMMIT after the deadline");
    assert_eq!(refused.code().map(|c| c.code()), Some("YK001"), "{refused}");
    let sql = infra.sql().await;
    let rows = sql
        .query("SELECT 1 FROM objects WHERE object_id = 'late'", &[])
        .await
        .expect("query");
    assert!(rows.is_empty(), "nothing of the late transaction remains");
}

/// A flush commit, a transaction's end and a log start move lock partition rows FOR NO KEY
/// UPDATE, never FOR UPDATE, because every insert naming a partition takes a KEY SHARE lock
/// on it for its foreign key, which FOR UPDATE waits for. Before migration V11,
/// AddPartitionsToTxn inserted such rows, in whatever order the client listed them: EndTxn
/// and AddPartitionsToTxn of two producers over the same partitions then deadlocked, each stalled for PostgreSQL's
/// deadlock timeout (1 s) before one was retried. Here an open transaction holds those KEY
/// SHARE locks, and every partition lock still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_check_on_a_partition_holds_up_no_commit() {
    let infra = Infra::start().await;
    let store =
        yaks_common::metastore::PgMetastore::connect(&infra.config().postgres).expect("pool");
    store.migrate().await.expect("migrations");
    let topic = yaks_common::metastore::Topics::create_topic(
        &store,
        "locked",
        2,
        &std::collections::BTreeMap::new(),
    )
    .await
    .expect("create")
    .expect("new topic");
    let mut sql = infra.sql().await;
    let holder = sql.transaction().await.expect("begin");
    let held = holder
        .execute(
            "SELECT 1 FROM partitions WHERE topic_id = $1 FOR KEY SHARE",
            &[&topic.topic_id],
        )
        .await
        .expect("key share");
    assert_eq!(held, 2);
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        yaks_common::metastore::suite::every_partition_lock_taken_once(&store, topic.topic_id),
    )
    .await
    .expect("no partition lock waits for a foreign-key check");
    holder.rollback().await.expect("rollback");
}

/// A flush commit sends BEGIN with its first statements and COMMIT with its last, outside
/// tokio-postgres' `Transaction`, which would have rolled back on drop. Abandoned while it
/// waits for a partition's lock (its future dropped, as a timeout drops it), it must not hand
/// its connection back to the pool inside its open transaction: the next commit would run
/// in it. The connection is closed instead, and the next commit, on a pool of one, stores
/// its batch at the offset the abandoned one never took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_flush_commit_leaves_no_open_transaction_behind() {
    use yaks_common::ids::ObjectId;
    use yaks_common::metastore::{BatchOutcome, Log, ObjectCommit, Topics};

    let infra = Infra::start().await;
    let mut config = infra.config().postgres;
    config.pool_size = 1;
    // The server's own limit on idle transactions (10 s by default) would end a leaked one
    // in time to hide it.
    config.idle_in_transaction_timeout_ms = 0;
    let store = yaks_common::metastore::PgMetastore::connect(&config).expect("pool");
    store.migrate().await.expect("migrations");
    let topic = store
        .create_topic("abandoned", 1, &std::collections::BTreeMap::new())
        .await
        .expect("create")
        .expect("new topic");
    let appends = [yaks_common::metastore::suite::plain_append(
        topic.topic_id,
        0,
        0,
        3,
        5,
    )];
    let commit = |object: ObjectId| ObjectCommit {
        object,
        object_key: "k/abandoned",
        size_bytes: 10,
        appends: &appends,
        now_ms: 100,
        producers_expire_before_ms: 0,
    };

    let mut sql = infra.sql().await;
    let holder = sql.transaction().await.expect("begin");
    holder
        .execute(
            "SELECT 1 FROM partitions WHERE topic_id = $1 FOR NO KEY UPDATE",
            &[&topic.topic_id],
        )
        .await
        .expect("lock the partition");
    let waited = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        store.commit_object(commit(ObjectId::new(1))),
    )
    .await;
    assert!(waited.is_err(), "the commit waits for the partition's lock");
    holder.rollback().await.expect("rollback");

    // The abandoned session goes away rather than sitting in its transaction.
    let sessions_in_transaction = || async {
        infra
            .sql()
            .await
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
                   AND backend_type = 'client backend'",
                &[],
            )
            .await
            .expect("sessions")
            .get::<_, i64>(0)
    };
    let deadline = yaks_common::clock::now() + std::time::Duration::from_secs(10);
    while sessions_in_transaction().await > 0 {
        assert!(
            yaks_common::clock::now() < deadline,
            "a session stays in the abandoned commit's transaction"
        );
        yaks_common::clock::sleep(std::time::Duration::from_millis(50)).await;
    }

    let results = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.commit_object(commit(ObjectId::new(2))),
    )
    .await
    .expect("the next commit is not held up")
    .expect("the next commit");
    assert_eq!(
        results[0].batches,
        vec![BatchOutcome::Appended { base_offset: 0 }],
        "the abandoned commit stored nothing"
    );
}
