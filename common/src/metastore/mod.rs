//! The metastore seam: everything that must be agreed on.
//!
//! Topics and their configs, partitions (`next_offset` is the high watermark,
//! `log_start_offset` moves with retention), committed objects, the object index (one row
//! per partition per object), idempotent-producer state and the service registry. Roles see
//! it as the [`Metastore`] trait; Kafka semantics live in the roles and in pure modules the
//! backends call, the backends stay dumb.
//!
//! - [`postgres`]: [`PgMetastore`], what the product runs on.
//! - [`memory`]: [`MemoryMetastore`], for unit tests of the roles' logic.
//! - [`model`]: the types both speak.
//! - [`producers`]: the idempotent-producer rules (duplicates, sequence gaps, epochs).
//! - [`plan`]: what a flush commit writes, decided from what it read; shared by both backends.
//! - [`groups`]: consumer groups and committed offsets as stored, with the members' encoding.
//! - [`conformance_suite`]: the behaviour every implementation must share, run against both.

pub mod groups;
pub mod memory;
pub mod model;
pub mod plan;
pub mod postgres;
pub mod producers;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::error::StoreError;
use crate::ids::ObjectId;

pub use groups::*;
pub use memory::MemoryMetastore;
pub use model::*;
pub use postgres::PgMetastore;

/// Agreed state of the cluster.
#[async_trait]
pub trait Metastore: Send + Sync + 'static {
    /// The cluster's id, reported to clients.
    async fn cluster_id(&self) -> Result<String, StoreError>;

    /// Checks the store answers and its schema has every migration this build knows.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The store's clock, ms since the epoch: the clock of commit deadlines
    /// ([`AppendBatch::commit_deadline_ms`]), which gateways sample to set them.
    async fn server_time_ms(&self) -> Result<i64, StoreError>;

    /// Creates a topic with partitions `0..partition_count` and its explicit configs.
    /// `None` when a topic of that name exists.
    async fn create_topic(
        &self,
        name: &str,
        partition_count: i32,
        configs: &BTreeMap<String, Option<String>>,
    ) -> Result<Option<TopicMeta>, StoreError>;

    /// Replaces a topic's explicit configs; false when the topic is absent.
    async fn set_topic_configs(
        &self,
        topic_id: Uuid,
        configs: &BTreeMap<String, Option<String>>,
    ) -> Result<bool, StoreError>;

    /// Grows a topic to `partition_count` partitions (new ones start empty at offset 0).
    /// Returns the count before, or `None` when the topic is absent; a count that is not
    /// larger than the current one is refused with [`StoreError::Invalid`] and nothing
    /// changes.
    async fn add_partitions(
        &self,
        topic_id: Uuid,
        partition_count: i32,
    ) -> Result<Option<i32>, StoreError>;

    /// Moves a partition's log start offset up to `offset` (-1: the high watermark), as
    /// DeleteRecords does; records below it are no longer served, and the compactor
    /// collects their objects.
    async fn advance_log_start(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        offset: i64,
    ) -> Result<LogStartMove, StoreError>;

    /// Topics by name, in name order; `None` lists every topic; unknown names are absent.
    async fn topics(&self, names: Option<&[String]>) -> Result<Vec<TopicMeta>, StoreError>;

    /// Topics by id, in name order; unknown ids are absent.
    async fn topics_by_id(&self, ids: &[Uuid]) -> Result<Vec<TopicMeta>, StoreError>;

    /// Deletes a topic with its partitions and index entries; false when absent. Its
    /// objects stay until the compactor collects them.
    async fn delete_topic(&self, topic_id: Uuid) -> Result<bool, StoreError>;

    /// Offsets of the given partitions; missing partitions are absent.
    async fn partition_states(
        &self,
        partitions: &[(Uuid, i32)],
    ) -> Result<Vec<PartitionState>, StoreError>;

    /// Index entries of several partitions at once: for each `(topic, partition,
    /// from_offset)`, the entries whose last offset is at least `from_offset`, in offset
    /// order, at most `limit` of them. One list per request, in request order.
    async fn index_entries(
        &self,
        wanted: &[(Uuid, i32, i64)],
        limit: i64,
    ) -> Result<Vec<Vec<IndexEntry>>, StoreError>;

    /// Index entries of one object, for readers following the commit feed.
    async fn object_entries(&self, object_id: &str) -> Result<Vec<PartitionEntry>, StoreError>;

    /// The first index entry of a partition (in offset order) holding a record whose
    /// timestamp is at least `timestamp`, judged by the entries' max timestamps.
    async fn entry_at_time(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        timestamp: i64,
    ) -> Result<Option<IndexEntry>, StoreError>;

    /// The index entry holding a partition's largest timestamp (the earliest such entry).
    async fn entry_with_max_timestamp(
        &self,
        topic_id: Uuid,
        partition_index: i32,
    ) -> Result<Option<IndexEntry>, StoreError>;

    /// Subscribes to commits: every object committed after this call returns is reported,
    /// in commit order, or a [`CommitEvent::Gap`] says some may have been missed. The feed
    /// ends when the receiver is dropped.
    async fn commit_feed(&self) -> Result<tokio::sync::mpsc::Receiver<CommitEvent>, StoreError>;

    /// Atomically commits an uploaded object: under the partitions' locks, decides each
    /// batch by the idempotent-producer rules ([`plan::plan_commit`]), gives the stored ones
    /// the partition's next offsets, indexes them, records producer state and announces the
    /// object on the commit feed. Partitions that no longer exist are skipped (absent from
    /// the result). An object none of whose batches was stored is not recorded.
    async fn commit_object(
        &self,
        commit: ObjectCommit<'_>,
    ) -> Result<Vec<AppendResult>, StoreError>;

    /// Compare-and-swap of index entries for compaction: if every input entry is still
    /// indexed as named, records the new object, replaces the inputs with one entry over it
    /// (their offsets, largest timestamp and batches) and marks input objects no entry
    /// refers to any more; returns false and changes nothing otherwise (another compaction
    /// or a topic deletion won). Inputs that are not contiguous, or a size that is not
    /// their total, are refused with [`StoreError::Invalid`].
    async fn swap_entries(&self, swap: EntrySwap<'_>) -> Result<bool, StoreError>;

    /// Removes index entries wholly below their partition's log start offset (retention,
    /// DeleteRecords) and marks objects left without entries; returns how many entries went.
    async fn drop_expired_entries(&self) -> Result<u64, StoreError>;

    /// Marks live objects no index entry refers to (a deleted topic's) that were recorded
    /// at least `min_age_ms` ago by the store's clock; returns how many.
    async fn mark_unreferenced(&self, min_age_ms: i64) -> Result<u64, StoreError>;

    /// Objects marked at least `min_age_ms` ago (store's clock), at most `limit`: what the
    /// garbage collector may delete from the bucket.
    async fn marked_objects(
        &self,
        min_age_ms: i64,
        limit: i64,
    ) -> Result<Vec<MarkedObject>, StoreError>;

    /// Forgets objects, once deleted from the bucket.
    async fn forget_objects(&self, object_ids: &[String]) -> Result<(), StoreError>;

    /// Which of these object ids are recorded (live or marked).
    async fn known_objects(&self, object_ids: &[String]) -> Result<Vec<String>, StoreError>;

    /// Reserves the next block of [`PRODUCER_ID_BLOCK`] producer ids; returns its first id.
    /// Blocks never overlap, whoever asks.
    async fn allocate_producer_ids(&self) -> Result<i64, StoreError>;

    /// Moves an allocated producer from `producer_epoch` to the next epoch (KIP-360) unless
    /// something newer is known (an earlier bump past it, a partition that saw a newer
    /// epoch) or the id was never handed out; then `None`, and the caller hands out a new id.
    /// A claim ahead of the recorded epoch is fine: clients may bump locally.
    async fn bump_producer_epoch(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: i64,
    ) -> Result<Option<i16>, StoreError>;

    /// Forgets producer state and epochs last written before `before_ms`; returns how many
    /// entries went.
    async fn expire_producers(&self, before_ms: i64) -> Result<u64, StoreError>;

    /// Registers or renews a process's lease; returns its node id, stable per instance.
    async fn renew_lease(
        &self,
        role: Role,
        instance_id: &str,
        address: &str,
        lease_ms: i64,
    ) -> Result<i32, StoreError>;

    /// Removes a registration.
    async fn deregister(&self, instance_id: &str) -> Result<(), StoreError>;

    /// Members of `role` whose lease has not run out, by node id.
    async fn live_members(&self, role: Role) -> Result<Vec<ServiceMember>, StoreError>;

    /// Takes over a consumer group as its coordinator: bumps the group's coordinator epoch
    /// (fencing the previous coordinator's writes) and returns it with the last recorded
    /// generation.
    async fn claim_group(&self, group_id: &str) -> Result<GroupClaim, StoreError>;

    /// Records a generation of a group, if `epoch` is still the group's coordinator epoch.
    async fn store_group(
        &self,
        epoch: i64,
        group: &StoredGroup,
        now_ms: i64,
    ) -> Result<GroupWrite, StoreError>;

    /// Stores committed offsets (replacing earlier ones of the same partitions), if `epoch`
    /// is still the group's coordinator epoch; a group with no recorded generation gets an
    /// empty one, so it is listed.
    async fn commit_offsets(
        &self,
        group_id: &str,
        epoch: i64,
        offsets: &[CommittedOffset],
        now_ms: i64,
    ) -> Result<GroupWrite, StoreError>;

    /// Committed offsets of a group, by topic and partition; `None` returns all of them.
    /// Partitions without a commit are absent.
    async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<CommittedOffset>, StoreError>;

    /// Deletes committed offsets of some partitions, if `epoch` is still current.
    async fn delete_offsets(
        &self,
        group_id: &str,
        epoch: i64,
        partitions: &[(String, i32)],
    ) -> Result<GroupWrite, StoreError>;

    /// Deletes a group's recorded generation and offsets, if `epoch` is still current;
    /// [`GroupWrite::NotFound`] when it has neither.
    async fn delete_group(&self, group_id: &str, epoch: i64) -> Result<GroupWrite, StoreError>;

    /// Every group with a recorded generation, by id.
    async fn list_groups(&self) -> Result<Vec<GroupListing>, StoreError>;
}

/// Producer ids are handed out in blocks this large, so a gateway asks the metastore once
/// per this many InitProducerId calls.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// A shared metastore handle.
pub type SharedMetastore = Arc<dyn Metastore>;

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

/// Producer ids, epochs and sequence checks across commits, on an empty one-partition topic.
async fn idempotence_suite(store: &dyn Metastore, topic: &TopicMeta) {
    let first_block = store.allocate_producer_ids().await.expect("block");
    let second_block = store.allocate_producer_ids().await.expect("block");
    assert!(
        (first_block - second_block).abs() >= PRODUCER_ID_BLOCK,
        "blocks never overlap"
    );
    let producer_id = first_block;
    let batch = |byte_offset, epoch, first_sequence| AppendBatch {
        byte_offset,
        byte_length: 10,
        offset_count: 2,
        max_timestamp: 5,
        producer: Some(ProducerBatch {
            producer_id,
            producer_epoch: epoch,
            first_sequence,
            last_sequence: first_sequence + 1,
        }),
        commit_deadline_ms: None,
    };
    let one = |batches| {
        vec![PartitionAppend {
            topic_id: topic.topic_id,
            partition_index: 0,
            batches,
        }]
    };
    let outcomes = |results: Vec<AppendResult>| results[0].batches.clone();

    // Sequences 0..=1 and 2..=3, with a retry of the first inside the same flush.
    let appends = one(vec![batch(0, 0, 0), batch(10, 0, 0), batch(20, 0, 2)]);
    let flush = ObjectId::new(10);
    let results = store
        .commit_object(commit(flush, "k/p1", &appends, 10_000))
        .await
        .expect("commit");
    assert_eq!(
        outcomes(results),
        vec![
            BatchOutcome::Appended { base_offset: 0 },
            BatchOutcome::Duplicate { base_offset: 0 },
            BatchOutcome::Appended { base_offset: 2 },
        ]
    );
    let entries = store
        .object_entries(&flush.to_string())
        .await
        .expect("entries");
    assert_eq!(
        entries
            .iter()
            .map(|e| (
                e.entry.base_offset,
                e.entry.byte_offset,
                e.entry.byte_length
            ))
            .collect::<Vec<_>>(),
        vec![(0, 0, 10), (2, 20, 10)],
        "the duplicate's bytes are not indexed; entries come in offset order"
    );

    // A later flush (any writer) retrying 2..=3 gets the original offset and stores
    // nothing, so the object is not recorded; a gap waits for what it misses, an old
    // epoch is refused.
    let retry = one(vec![batch(0, 0, 2)]);
    let results = store
        .commit_object(commit(ObjectId::new(11), "k/p2", &retry, 11_000))
        .await
        .expect("commit");
    assert_eq!(
        outcomes(results),
        vec![BatchOutcome::Duplicate { base_offset: 2 }]
    );
    assert!(
        store
            .object_entries(&ObjectId::new(11).to_string())
            .await
            .expect("entries")
            .is_empty()
    );
    let gap = one(vec![batch(0, 0, 7)]);
    let results = store
        .commit_object(commit(ObjectId::new(12), "k/p3", &gap, 11_000))
        .await
        .expect("commit");
    assert_eq!(
        outcomes(results),
        vec![BatchOutcome::Rejected(SequenceError::Ahead)]
    );
    let states = store
        .partition_states(&[(topic.topic_id, 0)])
        .await
        .expect("states");
    assert_eq!(states[0].next_offset, 4, "refused batches take no offsets");

    // Epochs: only the current epoch moves on; a new epoch starts at sequence 0.
    assert_eq!(
        store
            .bump_producer_epoch(producer_id, 0, 11_000)
            .await
            .expect("bump"),
        Some(1)
    );
    assert_eq!(
        store
            .bump_producer_epoch(producer_id, 0, 11_000)
            .await
            .expect("bump"),
        None,
        "epoch 0 is no longer current"
    );
    assert_eq!(
        store
            .bump_producer_epoch(
                second_block.max(first_block) + 10 * PRODUCER_ID_BLOCK,
                0,
                11_000
            )
            .await
            .expect("bump"),
        None,
        "never handed out"
    );
    let new_epoch = one(vec![batch(0, 1, 0)]);
    let results = store
        .commit_object(commit(ObjectId::new(13), "k/p4", &new_epoch, 12_000))
        .await
        .expect("commit");
    assert_eq!(
        outcomes(results),
        vec![BatchOutcome::Appended { base_offset: 4 }]
    );
    let stale = one(vec![batch(0, 0, 4)]);
    let results = store
        .commit_object(commit(ObjectId::new(14), "k/p5", &stale, 12_000))
        .await
        .expect("commit");
    assert_eq!(
        outcomes(results),
        vec![BatchOutcome::Rejected(SequenceError::StaleEpoch)]
    );

    // A client that bumped its epoch locally (as Java's does) may claim an epoch ahead of
    // the record, never one behind it.
    assert_eq!(
        store
            .bump_producer_epoch(producer_id, 3, 12_000)
            .await
            .expect("bump"),
        Some(4)
    );
    assert_eq!(
        store
            .bump_producer_epoch(producer_id, 1, 12_000)
            .await
            .expect("bump"),
        None
    );

    // Expired state is gone: any sequence is taken again.
    assert!(store.expire_producers(12_001).await.expect("expire") >= 1);
    let results = store
        .commit_object(commit(ObjectId::new(15), "k/p6", &gap, 12_500))
        .await
        .expect("commit");
    assert_eq!(
        outcomes(results),
        vec![BatchOutcome::Appended { base_offset: 6 }]
    );
}

/// The behaviour every [`Metastore`] must share. Expects an empty store.
#[doc(hidden)]
pub async fn conformance_suite(store: &dyn Metastore) {
    assert!(!store.cluster_id().await.expect("cluster id").is_empty());
    store.ping().await.expect("ping");

    // Topics.
    let mut configs = BTreeMap::new();
    configs.insert("retention.ms".to_owned(), Some("1000".to_owned()));
    let orders = store
        .create_topic("orders", 2, &configs)
        .await
        .expect("create")
        .expect("new topic");
    assert_eq!(orders.partition_count, 2);
    assert_eq!(orders.configs, configs);
    assert!(
        store
            .create_topic("orders", 5, &BTreeMap::new())
            .await
            .expect("create")
            .is_none()
    );
    let audit = store
        .create_topic("audit", 1, &BTreeMap::new())
        .await
        .expect("create")
        .expect("new topic");
    let all = store.topics(None).await.expect("list");
    assert_eq!(all, vec![audit.clone(), orders.clone()], "name order");
    let some = store
        .topics(Some(&["orders".to_owned(), "missing".to_owned()]))
        .await
        .expect("by name");
    assert_eq!(some, vec![orders.clone()]);
    let by_id = store
        .topics_by_id(&[orders.topic_id, Uuid::nil()])
        .await
        .expect("by id");
    assert_eq!(by_id, vec![orders.clone()]);

    // Commits assign contiguous offsets per partition, in commit order, and are announced
    // on the commit feed in that order.
    let mut feed = store.commit_feed().await.expect("commit feed");
    let append = |topic_id, partition_index, offset_count, byte_offset| PartitionAppend {
        topic_id,
        partition_index,
        batches: vec![AppendBatch {
            byte_offset,
            byte_length: 10,
            offset_count,
            max_timestamp: 1_000 + offset_count,
            producer: None,
            commit_deadline_ms: None,
        }],
    };
    let first = ObjectId::new(1);
    let results = store
        .commit_object(commit(
            first,
            "k/first",
            &[
                append(orders.topic_id, 0, 3, 0),
                append(orders.topic_id, 1, 5, 10),
            ],
            0,
        ))
        .await
        .expect("commit");
    let mut bases: Vec<(i32, Option<i64>)> = results
        .iter()
        .map(|r| (r.partition_index, r.batches[0].base_offset()))
        .collect();
    bases.sort();
    assert_eq!(bases, vec![(0, Some(0)), (1, Some(0))]);
    let second = ObjectId::new(2);
    let results = store
        .commit_object(commit(
            second,
            "k/second",
            &[
                append(orders.topic_id, 1, 2, 0),
                append(Uuid::from_u128(99), 0, 1, 10),
            ],
            0,
        ))
        .await
        .expect("commit");
    assert_eq!(results.len(), 1, "the unknown partition is skipped");
    assert_eq!(
        (
            results[0].partition_index,
            results[0].batches[0].base_offset()
        ),
        (1, Some(5))
    );

    let mut states = store
        .partition_states(&[
            (orders.topic_id, 0),
            (orders.topic_id, 1),
            (orders.topic_id, 7),
        ])
        .await
        .expect("states");
    states.sort_by_key(|s| s.partition_index);
    assert_eq!(
        states
            .iter()
            .map(|s| (s.partition_index, s.next_offset, s.log_start_offset))
            .collect::<Vec<_>>(),
        vec![(0, 3, 0), (1, 7, 0)]
    );
    let mut lists = store
        .index_entries(
            &[
                (orders.topic_id, 1, 5),
                (orders.topic_id, 0, 0),
                (orders.topic_id, 1, 0),
            ],
            10,
        )
        .await
        .expect("entries");
    assert_eq!(lists.len(), 3, "one list per request, in request order");
    assert_eq!(
        lists[1].iter().map(|e| e.base_offset).collect::<Vec<_>>(),
        vec![0]
    );
    let entries = lists.remove(0);
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (
            entries[0].base_offset,
            entries[0].last_offset,
            entries[0].object_key.as_str()
        ),
        (5, 6, "k/second")
    );
    let entries = lists.remove(1);
    assert_eq!(
        entries.iter().map(|e| e.base_offset).collect::<Vec<_>>(),
        vec![0, 5]
    );
    assert_eq!((entries[0].byte_offset, entries[0].byte_length), (10, 10));
    assert_eq!(entries[0].max_timestamp, 1_005);
    assert_eq!(entries[0].object_size, 20);

    for expected in [first, second] {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), feed.recv())
            .await
            .expect("commit announced in time");
        assert_eq!(
            event,
            Some(CommitEvent::Committed {
                object_id: expected.to_string()
            })
        );
    }
    let of_first = store
        .object_entries(&first.to_string())
        .await
        .expect("object entries");
    assert_eq!(
        of_first
            .iter()
            .map(|e| (e.partition_index, e.entry.base_offset, e.entry.last_offset))
            .collect::<Vec<_>>(),
        vec![(0, 0, 2), (1, 0, 4)]
    );

    // Time lookups: partition 1 holds max timestamps 1_005 (offsets 0..=4), 1_002 (5..=6).
    let at = |t| store.entry_at_time(orders.topic_id, 1, t);
    assert_eq!(at(1_003).await.expect("at").map(|e| e.base_offset), Some(0));
    assert_eq!(at(1_006).await.expect("at"), None);
    let latest = store
        .entry_with_max_timestamp(orders.topic_id, 1)
        .await
        .expect("max");
    assert_eq!(latest.map(|e| e.max_timestamp), Some(1_005));

    idempotence_suite(store, &audit).await;

    // Deleting a topic takes its partitions and index with it.
    assert!(store.delete_topic(orders.topic_id).await.expect("delete"));
    assert!(
        !store
            .delete_topic(orders.topic_id)
            .await
            .expect("delete again")
    );
    assert!(
        store
            .partition_states(&[(orders.topic_id, 0)])
            .await
            .expect("states")
            .is_empty()
    );
    assert_eq!(
        store
            .index_entries(&[(orders.topic_id, 1, 0)], 10)
            .await
            .expect("entries"),
        vec![Vec::new()]
    );
    assert_eq!(store.topics(None).await.expect("list"), vec![audit]);

    // Registry.
    let node = store
        .renew_lease(Role::Gateway, "g-1", "h:1", 10_000)
        .await
        .expect("lease");
    assert_eq!(
        store
            .renew_lease(Role::Gateway, "g-1", "h:2", 10_000)
            .await
            .expect("renew"),
        node
    );
    let other = store
        .renew_lease(Role::Gateway, "g-2", "h:3", 10_000)
        .await
        .expect("lease");
    assert_ne!(node, other);
    store
        .renew_lease(Role::Writer, "w-1", "http://w", 10_000)
        .await
        .expect("lease");
    store
        .renew_lease(Role::Gateway, "g-dead", "h:4", -1)
        .await
        .expect("expired lease");
    let live = store.live_members(Role::Gateway).await.expect("live");
    assert_eq!(
        live,
        vec![
            ServiceMember {
                node_id: node,
                address: "h:2".into()
            },
            ServiceMember {
                node_id: other,
                address: "h:3".into()
            },
        ]
    );
    store.deregister("g-1").await.expect("deregister");
    assert_eq!(
        store.live_members(Role::Gateway).await.expect("live").len(),
        1
    );

    deadline_suite(store).await;
    groups_suite(store).await;
    topic_changes_suite(store).await;
    swap_suite(store).await;
}

/// Compaction's compare-and-swap of index entries.
async fn swap_suite(store: &dyn Metastore) {
    let topic = store
        .create_topic("compacted", 1, &BTreeMap::new())
        .await
        .expect("create")
        .expect("new topic");
    // Three flushes of one two-record batch each: offsets 0..=1, 2..=3, 4..=5.
    for (n, key) in ["k/c1", "k/c2", "k/c3"].iter().enumerate() {
        let appends = vec![PartitionAppend {
            topic_id: topic.topic_id,
            partition_index: 0,
            batches: vec![AppendBatch {
                byte_offset: 0,
                byte_length: 10,
                offset_count: 2,
                max_timestamp: 100 + n as i64,
                producer: None,
                commit_deadline_ms: None,
            }],
        }];
        store
            .commit_object(commit(ObjectId::new(20 + n as i64), key, &appends, 20_000))
            .await
            .expect("commit");
    }
    let inputs = vec![(0, "k/c1".to_owned()), (2, "k/c2".to_owned())];
    let swap = |inputs, size_bytes, key| EntrySwap {
        topic_id: topic.topic_id,
        partition_index: 0,
        inputs,
        object: ObjectId::new(30),
        object_key: key,
        size_bytes,
    };
    assert!(matches!(
        store.swap_entries(swap(&inputs, 25, "k/bad")).await,
        Err(StoreError::Invalid(_))
    ));
    let gapped = vec![(0, "k/c1".to_owned()), (4, "k/c3".to_owned())];
    assert!(matches!(
        store.swap_entries(swap(&gapped, 20, "k/bad")).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(
        store
            .swap_entries(swap(&inputs, 20, "k/m1"))
            .await
            .expect("swap")
    );
    assert!(
        !store
            .swap_entries(swap(&inputs, 20, "k/m2"))
            .await
            .expect("swap"),
        "the inputs are gone: a second swap loses"
    );
    let entries = store
        .index_entries(&[(topic.topic_id, 0, 0)], 10)
        .await
        .expect("entries");
    let shape: Vec<(i64, i64, &str, i64, i64, i64)> = entries[0]
        .iter()
        .map(|e| {
            (
                e.base_offset,
                e.last_offset,
                e.object_key.as_str(),
                e.byte_offset,
                e.byte_length,
                e.max_timestamp,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![(0, 3, "k/m1", 0, 20, 101), (4, 5, "k/c3", 0, 10, 102)]
    );

    // The swapped-out objects are marked; the garbage collector sees them and forgets them.
    let marked = store.marked_objects(0, 100).await.expect("marked");
    let mut keys: Vec<&str> = marked.iter().map(|m| m.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["k/c1", "k/c2"]);
    assert!(marked.iter().all(|m| m.size_bytes > 0));
    let ids: Vec<String> = marked.iter().map(|m| m.object_id.clone()).collect();
    assert_eq!(store.known_objects(&ids).await.expect("known").len(), 2);
    store.forget_objects(&ids).await.expect("forget");
    assert!(store.known_objects(&ids).await.expect("known").is_empty());
    assert!(
        store
            .marked_objects(0, 100)
            .await
            .expect("marked")
            .is_empty()
    );

    // Entries below the log start go, and their objects are marked.
    store
        .advance_log_start(topic.topic_id, 0, 4)
        .await
        .expect("move");
    assert_eq!(store.drop_expired_entries().await.expect("drop"), 1);
    let entries = store
        .index_entries(&[(topic.topic_id, 0, 0)], 10)
        .await
        .expect("entries");
    assert_eq!(entries[0].len(), 1, "only 4..=5 is left");
    let marked = store.marked_objects(0, 100).await.expect("marked");
    assert_eq!(
        marked.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
        vec!["k/m1"]
    );

    // A deleted topic's objects are unreferenced: marked by the sweep.
    assert!(store.delete_topic(topic.topic_id).await.expect("delete"));
    assert!(store.mark_unreferenced(0).await.expect("sweep") >= 1);
    let marked = store.marked_objects(0, 100).await.expect("marked");
    assert!(marked.iter().any(|m| m.key == "k/c3"));
    let ids: Vec<String> = marked.into_iter().map(|m| m.object_id).collect();
    store.forget_objects(&ids).await.expect("forget");
}

/// Altering a topic's configs and adding partitions.
async fn topic_changes_suite(store: &dyn Metastore) {
    let topic = store
        .create_topic("growing", 2, &BTreeMap::new())
        .await
        .expect("create")
        .expect("new topic");
    let mut configs = BTreeMap::new();
    configs.insert("retention.ms".to_owned(), Some("5000".to_owned()));
    assert!(
        store
            .set_topic_configs(topic.topic_id, &configs)
            .await
            .expect("set")
    );
    let read = store
        .topics(Some(&["growing".to_owned()]))
        .await
        .expect("topics");
    assert_eq!(read[0].configs, configs);
    assert!(
        !store
            .set_topic_configs(Uuid::new_v4(), &configs)
            .await
            .expect("set")
    );
    assert_eq!(
        store.add_partitions(topic.topic_id, 5).await.expect("grow"),
        Some(2)
    );
    assert!(matches!(
        store.add_partitions(topic.topic_id, 5).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store.add_partitions(Uuid::new_v4(), 9).await.expect("grow"),
        None
    );
    let states = store
        .partition_states(&[(topic.topic_id, 4), (topic.topic_id, 5)])
        .await
        .expect("states");
    assert_eq!(states.len(), 1, "partition 4 exists, empty; 5 does not");
    assert_eq!((states[0].next_offset, states[0].log_start_offset), (0, 0));
    let read = store
        .topics(Some(&["growing".to_owned()]))
        .await
        .expect("topics");
    assert_eq!(read[0].partition_count, 5);

    // DeleteRecords on an empty partition: up to the high watermark (0) only.
    assert_eq!(
        store
            .advance_log_start(topic.topic_id, 4, -1)
            .await
            .expect("move"),
        LogStartMove::Moved {
            log_start_offset: 0
        }
    );
    assert_eq!(
        store
            .advance_log_start(topic.topic_id, 4, 3)
            .await
            .expect("move"),
        LogStartMove::BeyondHighWatermark { next_offset: 0 }
    );
    assert_eq!(
        store
            .advance_log_start(topic.topic_id, 9, 0)
            .await
            .expect("move"),
        LogStartMove::NoPartition
    );
}

/// Group generations and offsets, fenced by the coordinator epoch.
async fn groups_suite(store: &dyn Metastore) {
    let first = store.claim_group("g1").await.expect("claim");
    assert_eq!(first.group, None, "a new group has no recorded generation");
    let offset = |topic: &str, partition, offset| CommittedOffset {
        topic: topic.into(),
        partition_index: partition,
        offset,
        leader_epoch: -1,
        metadata: Some("m".into()),
    };
    assert_eq!(
        store
            .commit_offsets(
                "g1",
                first.epoch,
                &[offset("a", 0, 5), offset("a", 1, 7)],
                1
            )
            .await
            .expect("commit"),
        GroupWrite::Done
    );
    let listed = store.list_groups().await.expect("list");
    assert!(
        listed
            .iter()
            .any(|g| g.group_id == "g1" && !g.has_members && g.protocol_type.is_empty()),
        "a group with offsets only is listed"
    );
    let group = StoredGroup {
        group_id: "g1".into(),
        generation: 3,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        leader: Some("m-1".into()),
        members: vec![StoredMember {
            member_id: "m-1".into(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            rebalance_timeout_ms: 1000,
            session_timeout_ms: 6000,
            protocols: vec![("range".into(), bytes::Bytes::from_static(b"md"))],
            assignment: bytes::Bytes::from_static(b"as"),
        }],
    };
    assert_eq!(
        store
            .store_group(first.epoch, &group, 2)
            .await
            .expect("store"),
        GroupWrite::Done
    );

    // Another coordinator takes over: it sees the generation, the first one is fenced.
    let second = store.claim_group("g1").await.expect("claim");
    assert!(second.epoch > first.epoch);
    assert_eq!(second.group.as_ref(), Some(&group));
    assert_eq!(
        store
            .store_group(first.epoch, &group, 3)
            .await
            .expect("store"),
        GroupWrite::Fenced
    );
    assert_eq!(
        store
            .commit_offsets("g1", first.epoch, &[offset("a", 0, 99)], 3)
            .await
            .expect("commit"),
        GroupWrite::Fenced
    );
    assert_eq!(
        store
            .commit_offsets(
                "g1",
                second.epoch,
                &[offset("a", 0, 6), offset("b", 0, 1)],
                4
            )
            .await
            .expect("commit"),
        GroupWrite::Done
    );
    let all = store.fetch_offsets("g1", None).await.expect("fetch");
    assert_eq!(
        all,
        vec![offset("a", 0, 6), offset("a", 1, 7), offset("b", 0, 1)]
    );
    let some = store
        .fetch_offsets("g1", Some(&[("a".into(), 1), ("zz".into(), 0)]))
        .await
        .expect("fetch");
    assert_eq!(some, vec![offset("a", 1, 7)]);
    assert_eq!(
        store
            .delete_offsets("g1", second.epoch, &[("a".into(), 1)])
            .await
            .expect("delete offsets"),
        GroupWrite::Done
    );
    assert_eq!(
        store.fetch_offsets("g1", None).await.expect("fetch").len(),
        2
    );
    let listed = store.list_groups().await.expect("list");
    assert!(listed.iter().any(|g| g.group_id == "g1" && g.has_members));

    assert_eq!(
        store.delete_group("g1", first.epoch).await.expect("delete"),
        GroupWrite::Fenced
    );
    assert_eq!(
        store
            .delete_group("g1", second.epoch)
            .await
            .expect("delete"),
        GroupWrite::Done
    );
    assert!(
        store
            .fetch_offsets("g1", None)
            .await
            .expect("fetch")
            .is_empty()
    );
    assert_eq!(
        store
            .delete_group("g1", second.epoch)
            .await
            .expect("delete"),
        GroupWrite::NotFound
    );
    assert_eq!(store.claim_group("g1").await.expect("claim").group, None);

    // Deleting a topic deletes its committed offsets.
    let topic = store
        .create_topic("offsets-go", 1, &BTreeMap::new())
        .await
        .expect("create")
        .expect("new topic");
    let claim = store.claim_group("g2").await.expect("claim");
    store
        .commit_offsets(
            "g2",
            claim.epoch,
            &[offset("offsets-go", 0, 3), offset("a", 0, 1)],
            5,
        )
        .await
        .expect("commit");
    assert!(
        store
            .delete_topic(topic.topic_id)
            .await
            .expect("delete topic")
    );
    assert_eq!(
        store.fetch_offsets("g2", None).await.expect("fetch"),
        vec![offset("a", 0, 1)]
    );
}

/// A batch whose commit deadline has passed by the store's clock is not stored; one whose
/// deadline is ahead is.
async fn deadline_suite(store: &dyn Metastore) {
    let topic = store
        .create_topic("deadlines", 1, &BTreeMap::new())
        .await
        .expect("create")
        .expect("new topic");
    let now = store.server_time_ms().await.expect("server time");
    let system = crate::clock::system_clock().now_ms();
    assert!(
        (now - system).abs() < 60_000,
        "server time {now} is near this machine's {system}"
    );
    let batch = |byte_offset, commit_deadline_ms| AppendBatch {
        byte_offset,
        byte_length: 10,
        offset_count: 1,
        max_timestamp: 5,
        producer: None,
        commit_deadline_ms,
    };
    let appends = [PartitionAppend {
        topic_id: topic.topic_id,
        partition_index: 0,
        batches: vec![
            batch(0, Some(now - 1)),
            batch(10, Some(now + 60_000)),
            batch(20, None),
        ],
    }];
    let results = store
        .commit_object(commit(ObjectId::new(90), "k/deadlines", &appends, now))
        .await
        .expect("commit");
    assert_eq!(
        results[0].batches,
        vec![
            BatchOutcome::Expired,
            BatchOutcome::Appended { base_offset: 0 },
            BatchOutcome::Appended { base_offset: 1 },
        ]
    );
    let entries = store
        .index_entries(&[(topic.topic_id, 0, 0)], 10)
        .await
        .expect("entries");
    assert_eq!(entries[0].len(), 1);
    assert_eq!(
        entries[0][0].byte_offset, 10,
        "the late batch is not indexed"
    );
}
