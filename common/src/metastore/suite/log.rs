//! The log domain's cases.

use super::*;

/// Creates `orders` (two partitions) and commits two objects to it, checking what a
/// commit assigns and announces; returns the topic.
async fn committed_orders(store: &dyn Metastore) -> TopicMeta {
    let orders = create_orders(store).await;

    // Commits assign contiguous offsets per partition, in commit order, and are announced
    // on the commit feed in that order.
    let mut feed = store.commit_feed().await.expect("commit feed");
    let append = |topic_id, partition_index, offset_count, byte_offset| {
        plain_append(
            topic_id,
            partition_index,
            byte_offset,
            offset_count,
            1_000 + offset_count,
        )
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
    orders
}

/// Commits assign contiguous offsets per partition, in commit order, and are announced on
/// the commit feed in that order.
#[doc(hidden)]
pub async fn commits_take_the_next_offsets_and_are_announced(store: &dyn Metastore) {
    committed_orders(store).await;
}

/// Index entries are found by timestamp.
#[doc(hidden)]
pub async fn entries_are_found_by_time(store: &dyn Metastore) {
    let orders = committed_orders(store).await;
    // Time lookups: partition 1 holds max timestamps 1_005 (offsets 0..=4), 1_002 (5..=6).
    let at = |t| store.entry_at_time(orders.topic_id, 1, t);
    assert_eq!(at(1_003).await.expect("at").map(|e| e.base_offset), Some(0));
    assert_eq!(at(1_006).await.expect("at"), None);
    let latest = store
        .entry_with_max_timestamp(orders.topic_id, 1)
        .await
        .expect("max");
    assert_eq!(latest.map(|e| e.max_timestamp), Some(1_005));
}

/// Deleting a topic takes its partitions and index with it.
#[doc(hidden)]
pub async fn deleting_a_topic_takes_its_partitions_and_index(store: &dyn Metastore) {
    let orders = committed_orders(store).await;
    let audit = store
        .create_topic("audit", 1, &BTreeMap::new())
        .await
        .expect("create")
        .expect("new topic");
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
}

/// A batch whose commit deadline has passed by the store's clock is not stored; one whose
/// deadline is ahead is.
#[doc(hidden)]
pub async fn a_batch_past_its_commit_deadline_is_not_stored(store: &dyn Metastore) {
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
