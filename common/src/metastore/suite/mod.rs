//! The behaviour every metastore implementation must share, one case per behaviour.
//!
//! [`metastore_test_suite!`](crate::metastore_test_suite) turns each case into its own test
//! against a fresh store, so a failing case does not hide the others: the in-memory backend
//! runs it in this crate's unit tests, the PostgreSQL one in `tests/e2e/seams.rs` against a
//! real server. Compiled only for tests (the `test-suite` feature lets other crates' tests
//! use it). A new domain adds its file here and its cases to the macro's list.

mod acls;
mod cluster;
mod credentials;
mod groups;
mod log;
mod objects;
mod producers;
mod topics;
mod transactions;

pub use acls::*;
pub use cluster::*;
pub use credentials::*;
pub use groups::*;
pub use log::*;
pub use objects::*;
pub use producers::*;
pub use topics::*;
pub use transactions::*;

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::*;
use crate::error::StoreError;
use crate::ids::ObjectId;

/// Defines one `#[tokio::test]` per case of the shared suite. `$store` is evaluated afresh
/// in each test and must give a pointer to an empty store (a `Box` of one, or a guard that
/// also keeps its server alive and derefs to it).
#[macro_export]
macro_rules! metastore_test_suite {
    ($store:expr) => {
        $crate::metastore_test_suite!(@cases $store;
            the_cluster_has_an_id_and_answers,
            leases_give_stable_node_ids_and_run_out,
            a_restarted_instance_keeps_its_predecessors_node_id,
            topics_are_created_once_and_listed,
            topic_configs_change_and_topics_grow,
            commits_take_the_next_offsets_and_are_announced,
            entries_are_found_by_time,
            deleting_a_topic_takes_its_partitions_and_index,
            a_batch_past_its_commit_deadline_is_not_stored,
            idempotent_batches_are_judged_at_commit,
            a_swap_replaces_entries_once,
            a_compaction_swap_moves_cleaned_through_once,
            replaced_and_expired_objects_are_marked_then_forgotten,
            group_writes_are_fenced_by_the_coordinator_epoch,
            deleting_a_topic_deletes_its_committed_offsets,
            scram_credentials_are_kept_per_user_and_mechanism,
            acl_bindings_are_kept_once_and_deleted_by_filter,
            a_transaction_ends_with_all_its_markers_and_offsets_at_once,
            an_expired_transaction_is_aborted_and_its_producer_fenced,
            transactional_batches_are_judged_against_their_transaction,
            a_transaction_ends_after_one_of_its_topics_is_deleted,
        );
    };
    (@cases $store:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $store;
                $crate::metastore::suite::$case(&*store).await;
            }
        )*
    };
}

/// Creates `orders` (two partitions, `retention.ms` set), checking what it got back.
async fn create_orders(store: &dyn Metastore) -> TopicMeta {
    let mut configs = BTreeMap::new();
    configs.insert("retention.ms".to_owned(), Some("1000".to_owned()));
    let orders = store
        .create_topic("orders", 2, &configs)
        .await
        .expect("create")
        .expect("new topic");
    assert_eq!(orders.partition_count, 2);
    assert_eq!(orders.configs, configs);
    orders
}

/// One batch of `offset_count` records without a producer id, 10 bytes at `byte_offset` of
/// its object, for partition `partition_index` of `topic_id`: what a plain producer sends.
pub fn plain_append(
    topic_id: Uuid,
    partition_index: i32,
    byte_offset: i64,
    offset_count: i64,
    max_timestamp: i64,
) -> PartitionAppend {
    PartitionAppend {
        topic_id,
        partition_index,
        batches: vec![AppendBatch {
            byte_offset,
            byte_length: 10,
            offset_count,
            max_timestamp,
            producer: None,
            commit_deadline_ms: None,
        }],
    }
}

/// A flush commit of `appends` as object `object`, 20 bytes long.
fn commit<'a>(
    object: ObjectId,
    object_key: &'a str,
    appends: &'a [PartitionAppend],
    now_ms: i64,
) -> ObjectCommit<'a> {
    ObjectCommit {
        object,
        object_key,
        size_bytes: 20,
        appends,
        now_ms,
        producers_expire_before_ms: now_ms - 1_000,
    }
}
