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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_metastore_passes_the_shared_suite() {
    let infra = Infra::start().await;
    let store =
        yaks_common::metastore::PgMetastore::connect(&infra.config().postgres).expect("pool");
    store.migrate().await.expect("migrations");
    yaks_common::metastore::conformance_suite(&store).await;
}
