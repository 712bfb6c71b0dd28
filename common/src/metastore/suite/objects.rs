//! The objects domain's cases.

use super::*;

/// Creates `compacted` (one partition) holding three flushes of one two-record batch each:
/// offsets 0..=1, 2..=3, 4..=5.
async fn three_flushes(store: &dyn Metastore) -> TopicMeta {
    let topic = store
        .create_topic("compacted", 1, &BTreeMap::new())
        .await
        .expect("create")
        .expect("new topic");
    for (n, key) in ["k/c1", "k/c2", "k/c3"].iter().enumerate() {
        let appends = vec![plain_append(topic.topic_id, 0, 0, 2, 100 + n as i64)];
        store
            .commit_object(commit(ObjectId::new(20 + n as i64), key, &appends, 20_000))
            .await
            .expect("commit");
    }
    topic
}

/// A swap of partition 0's `inputs` of `topic` for one new object, `key`.
fn swap_into<'a>(
    topic: &TopicMeta,
    inputs: &'a [(i64, String)],
    size_bytes: i64,
    key: &'a str,
) -> EntrySwap<'a> {
    EntrySwap {
        topic_id: topic.topic_id,
        partition_index: 0,
        inputs,
        object: ObjectId::new(30),
        object_key: key,
        size_bytes,
        compaction: None,
    }
}

/// Compaction's compare-and-swap of index entries.
#[doc(hidden)]
pub async fn a_swap_replaces_entries_once(store: &dyn Metastore) {
    let topic = three_flushes(store).await;
    let inputs = vec![(0, "k/c1".to_owned()), (2, "k/c2".to_owned())];
    let swap = |inputs, size_bytes, key| swap_into(&topic, inputs, size_bytes, key);
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
}

/// A key compaction's swap leaves fewer bytes and moves the partition's `cleaned_through`
/// by compare-and-swap: a pass that started from a stale value changes nothing.
#[doc(hidden)]
pub async fn a_compaction_swap_moves_cleaned_through_once(store: &dyn Metastore) {
    let topic = three_flushes(store).await;
    let mut feed = store.commit_feed().await.expect("feed");
    let cleaned = || async {
        store
            .cleaning(topic.topic_id, 0)
            .await
            .expect("read")
            .cleaned_through
    };
    assert_eq!(cleaned().await, 0, "never compacted");
    let inputs = vec![(0, "k/c1".to_owned()), (2, "k/c2".to_owned())];
    let compacted = |from: i64, through: i64, size_bytes: i64, key: &'static str| EntrySwap {
        compaction: Some(CompactionSwap {
            batch_count: 1,
            max_timestamp: 3,
            cleaned_from: from,
            cleaned_through: through,
            abort_markers_dropped: Vec::new(),
        }),
        ..swap_into(&topic, &inputs, size_bytes, key)
    };
    assert!(
        !store
            .swap_entries(compacted(2, 4, 7, "k/x0"))
            .await
            .expect("swap"),
        "another pass moved cleaned_through first"
    );
    assert_eq!(cleaned().await, 0);
    assert!(
        matches!(
            store.swap_entries(compacted(0, 4, 21, "k/x0")).await,
            Err(StoreError::Invalid(_))
        ),
        "more bytes than the inputs"
    );
    assert!(
        store
            .swap_entries(compacted(0, 4, 7, "k/x1"))
            .await
            .expect("swap")
    );
    assert_eq!(cleaned().await, 4);
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), feed.recv())
        .await
        .expect("the rewrite announced in time");
    assert_eq!(
        event,
        Some(CommitEvent::Rewritten {
            topic_id: topic.topic_id,
            partition_index: 0
        }),
        "readers are told to re-read the partition; lost swaps announce nothing"
    );
    let entries = store
        .index_entries(&[(topic.topic_id, 0, 0)], 10)
        .await
        .expect("entries");
    let shape: Vec<(i64, i64, &str, i64, i64)> = entries[0]
        .iter()
        .map(|e| {
            (
                e.base_offset,
                e.last_offset,
                e.object_key.as_str(),
                e.byte_length,
                e.max_timestamp,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![(0, 3, "k/x1", 7, 3), (4, 5, "k/c3", 10, 102)],
        "the compacted entry has the largest timestamp the pass kept"
    );
    assert!(matches!(
        store.cleaning(topic.topic_id, 1).await,
        Err(StoreError::NotFound(_))
    ));

    // A pass that rewrote nothing moves it on its own, by the same compare-and-swap, and
    // says when the tombstones it kept are due.
    let advance = |from, to| store.advance_cleaned_through(topic.topic_id, 0, from, to, Some(99));
    assert!(!advance(0, 6).await.expect("advance"), "no longer 0");
    assert!(advance(4, 6).await.expect("advance"));
    assert_eq!(
        store.cleaning(topic.topic_id, 0).await.expect("read"),
        Cleaning {
            cleaned_through: 6,
            tombstones_due_ms: Some(99)
        }
    );
    assert!(
        !store
            .advance_cleaned_through(Uuid::nil(), 0, 0, 1, None)
            .await
            .expect("advance"),
        "no such partition"
    );
}

/// Objects a swap replaced, and those below a log start or of a deleted topic, are marked
/// for the garbage collector, which forgets them once deleted.
#[doc(hidden)]
pub async fn replaced_and_expired_objects_are_marked_then_forgotten(store: &dyn Metastore) {
    let topic = three_flushes(store).await;
    let inputs = vec![(0, "k/c1".to_owned()), (2, "k/c2".to_owned())];
    let swap = |inputs, size_bytes, key| swap_into(&topic, inputs, size_bytes, key);
    assert!(
        store
            .swap_entries(swap(&inputs, 20, "k/m1"))
            .await
            .expect("swap")
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
