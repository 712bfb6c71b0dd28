//! The producers domain's cases.

use super::*;

/// Producer ids, epochs and sequence checks across commits, on an empty one-partition topic.
#[doc(hidden)]
pub async fn idempotent_batches_are_judged_at_commit(store: &dyn Metastore) {
    let topic = &store
        .create_topic("audit", 1, &BTreeMap::new())
        .await
        .expect("create")
        .expect("new topic");
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
            transactional: false,
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
    assert_eq!(
        store
            .last_batches(topic.topic_id, 0)
            .await
            .expect("last batches"),
        HashMap::from([(producer_id, 5)]),
        "the newest batch (offsets 4..=5) is what compaction keeps for the producer"
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
