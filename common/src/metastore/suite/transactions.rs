//! The transactions domain's cases.

use std::collections::BTreeSet;

use super::*;
use crate::metastore::transactions::*;

const ID: &str = "orders-app";

fn init_request(fresh_producer_id: i64, now_ms: i64) -> InitRequest {
    InitRequest {
        transactional_id: ID.into(),
        timeout_ms: 60_000,
        expected: None,
        fresh_producer_id,
        now_ms,
    }
}

/// An object holding `markers`, one 70-byte marker per partition (byte n of each is n's
/// partition index, so a test can tell them apart).
fn marker_object(markers: &Markers, now_ms: i64) -> MarkerObject {
    let object = ObjectId::new(now_ms);
    let ranges: Vec<_> = markers
        .partitions
        .iter()
        .enumerate()
        .map(|(n, &(topic, partition))| (topic, partition, 70 * n as i64, 70))
        .collect();
    MarkerObject {
        markers: markers.clone(),
        object_key: object.key("t"),
        object,
        size_bytes: 70 * ranges.len() as i64,
        body: ranges
            .iter()
            .flat_map(|&(_, partition, _, _)| [partition as u8; 70])
            .collect::<Vec<u8>>()
            .into(),
        ranges,
        timestamp_ms: now_ms,
    }
}

fn ready(outcome: TxnInitOutcome) -> (i64, i16) {
    match outcome {
        TxnInitOutcome::Ready {
            producer_id,
            producer_epoch,
        } => (producer_id, producer_epoch),
        other => panic!("expected a producer, got {other:?}"),
    }
}

/// The producer InitProducerId gives transactional id [`ID`] on an empty store, its
/// transaction opened with `partitions` at `now_ms`.
async fn open_transaction(
    store: &dyn Metastore,
    fresh_producer_id: i64,
    partitions: &[(Uuid, i32)],
    now_ms: i64,
) -> TxnProducer<'static> {
    let (producer_id, producer_epoch) = ready(
        store
            .init_producer(&init_request(fresh_producer_id, 0), None)
            .await
            .expect("init"),
    );
    let producer = TxnProducer {
        transactional_id: ID,
        producer_id,
        producer_epoch,
    };
    store
        .add_to_transaction(&producer, partitions, &[], now_ms)
        .await
        .expect("add");
    producer
}

/// Ends `producer`'s transaction at `now_ms` as its coordinator does on EndTxn: asks which
/// markers the end needs, then ends it with them. Returns the markers written.
async fn end_with_markers(
    store: &dyn Metastore,
    producer: TxnProducer<'static>,
    commit: bool,
    now_ms: i64,
) -> Markers {
    let end = EndRequest {
        producer,
        commit,
        reason: EndReason::Client,
        now_ms,
    };
    let EndOutcome::NeedsMarkers(wanted) = store.end_transaction(&end, None).await.expect("end")
    else {
        panic!("an end needs its markers")
    };
    assert_eq!(
        store
            .end_transaction(&end, Some(&marker_object(&wanted, now_ms)))
            .await
            .expect("end"),
        EndOutcome::Ended
    );
    wanted
}

/// A transaction ends with every partition's marker and its offsets at once, retries of
/// the end are answered alike, and a new incarnation aborts what the old one left open.
#[doc(hidden)]
pub async fn a_transaction_ends_with_all_its_markers_and_offsets_at_once(store: &dyn Metastore) {
    let orders = create_orders(store).await;
    let t = orders.topic_id;
    let (producer_id, epoch) = ready(
        store
            .init_producer(&init_request(4000, 1000), None)
            .await
            .expect("init"),
    );
    assert_eq!((producer_id, epoch), (4000, 0));
    let producer = TxnProducer {
        transactional_id: ID,
        producer_id,
        producer_epoch: epoch,
    };
    store
        .add_to_transaction(&producer, &[(t, 0), (t, 1)], &["g".into()], 1100)
        .await
        .expect("add");
    let offset = CommittedOffset {
        topic: "orders".into(),
        partition_index: 1,
        offset: 42,
        leader_epoch: -1,
        metadata: None,
    };
    store
        .stage_offsets(&producer, "g", std::slice::from_ref(&offset), 1150)
        .await
        .expect("stage");
    assert_eq!(
        store.offsets_pending("g").await.expect("pending"),
        vec![("orders".to_owned(), 1)]
    );
    assert!(
        store
            .fetch_offsets("g", None)
            .await
            .expect("fetch")
            .is_empty(),
        "staged offsets are not committed ones"
    );
    let open = store.transaction(ID).await.expect("read").expect("known");
    assert_eq!((open.state, open.start_ms), (TxnState::Ongoing, 1100));
    assert_eq!(open.partitions, BTreeSet::from([(t, 0), (t, 1)]));

    let commit = EndRequest {
        producer,
        commit: true,
        reason: EndReason::Client,
        now_ms: 1200,
    };
    let EndOutcome::NeedsMarkers(wanted) = store
        .end_transaction(&commit, None)
        .await
        .expect("end without markers")
    else {
        panic!("an end needs its markers")
    };
    assert_eq!((wanted.producer_epoch, wanted.commit), (0, true));
    assert_eq!(wanted.partitions, open.partitions);
    // Markers for another outcome do not end it either.
    let wrong = marker_object(
        &Markers {
            commit: false,
            ..wanted.clone()
        },
        1200,
    );
    assert!(matches!(
        store.end_transaction(&commit, Some(&wrong)).await,
        Ok(EndOutcome::NeedsMarkers(_))
    ));
    let markers = marker_object(&wanted, 1200);
    assert_eq!(
        store
            .end_transaction(&commit, Some(&markers))
            .await
            .expect("end"),
        EndOutcome::Ended
    );

    // Each partition holds its marker at its own offset, and the offsets are committed.
    let states = store
        .partition_states(&[(t, 0), (t, 1)])
        .await
        .expect("states");
    assert!(states.iter().all(|s| s.next_offset == 1));
    let entries = store
        .index_entries(&[(t, 0, 0), (t, 1, 0)], 10)
        .await
        .expect("entries");
    for (n, list) in entries.iter().enumerate() {
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].base_offset, list[0].last_offset), (0, 0));
        assert_eq!(list[0].object_key, markers.object_key);
        assert_eq!(list[0].byte_offset, 70 * n as i64);
        // Each marker comes back from the metastore, not the object store: its own bytes.
        assert_eq!(list[0].inline.as_deref(), Some(&[n as u8; 70][..]));
    }
    let by_object = store
        .object_entries(&markers.object.to_string())
        .await
        .expect("by object");
    assert_eq!(by_object.len(), 2);
    assert!(by_object.iter().all(|e| e.entry.inline.is_some()));
    assert_eq!(
        store.fetch_offsets("g", None).await.expect("fetch"),
        vec![offset]
    );
    assert!(
        store
            .offsets_pending("g")
            .await
            .expect("pending")
            .is_empty()
    );
    let done = store.transaction(ID).await.expect("read").expect("known");
    assert_eq!(done.state, TxnState::CompleteCommit);
    assert!(done.partitions.is_empty() && done.groups.is_empty());

    // Once retention drops the markers' entries, their object is marked for the garbage
    // collector as kept in the metastore: there is nothing to delete in S3.
    for partition in [0, 1] {
        store
            .advance_log_start(t, partition, 1)
            .await
            .expect("move");
    }
    assert_eq!(store.drop_expired_entries().await.expect("drop"), 2);
    let marked = store.marked_objects(0, 100).await.expect("marked");
    let object_id = markers.object.to_string();
    assert!(
        marked.iter().any(|m| m.object_id == object_id && m.inline),
        "{marked:?}"
    );
    store
        .forget_objects(std::slice::from_ref(&object_id))
        .await
        .expect("forget");

    // A retried EndTxn is answered alike; the other outcome is refused.
    assert_eq!(
        store.end_transaction(&commit, None).await.expect("retry"),
        EndOutcome::AlreadyEnded
    );
    let abort = EndRequest {
        commit: false,
        ..commit
    };
    assert!(matches!(
        store.end_transaction(&abort, None).await,
        Err(TxnError::InvalidState)
    ));

    // A new incarnation while a transaction is open: it is aborted under the next epoch,
    // then the new producer gets the one after, and the old one is fenced.
    store
        .add_to_transaction(&producer, &[(t, 0)], &[], 1300)
        .await
        .expect("add again");
    let TxnInitOutcome::NeedsMarkers(fence) = store
        .init_producer(&init_request(5000, 1400), None)
        .await
        .expect("init over an open transaction")
    else {
        panic!("the open transaction must be aborted first")
    };
    assert_eq!((fence.producer_epoch, fence.commit), (1, false));
    let fence_object = marker_object(&fence, 1400);
    assert_eq!(
        ready(
            store
                .init_producer(&init_request(5000, 1400), Some(&fence_object))
                .await
                .expect("init")
        ),
        (4000, 2)
    );
    let states = store.partition_states(&[(t, 0)]).await.expect("states");
    assert_eq!(states[0].next_offset, 2, "the abort marker took offset 1");
    assert!(matches!(
        store
            .add_to_transaction(&producer, &[(t, 0)], &[], 1500)
            .await,
        Err(TxnError::Fenced)
    ));
    let listed = store.list_transactions().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].state, listed[0].producer_epoch),
        (TxnState::Empty, 2)
    );
}

/// A transaction past its timeout is aborted and its producer fenced; one still within
/// it, or already ended, is left alone.
#[doc(hidden)]
pub async fn an_expired_transaction_is_aborted_and_its_producer_fenced(store: &dyn Metastore) {
    let orders = create_orders(store).await;
    let t = orders.topic_id;
    let producer = open_transaction(store, 7000, &[(t, 1)], 10_000).await;
    let timeout = |now_ms| EndRequest {
        producer,
        commit: false,
        reason: EndReason::Timeout,
        now_ms,
    };
    assert_eq!(
        store
            .end_transaction(&timeout(69_000), None)
            .await
            .expect("early"),
        EndOutcome::AlreadyEnded,
        "not expired yet"
    );
    assert!(
        store
            .forget_idle_transactional_ids(1_000_000)
            .await
            .expect("forget")
            .is_empty(),
        "an id with an open transaction is never forgotten"
    );
    let EndOutcome::NeedsMarkers(wanted) = store
        .end_transaction(&timeout(70_001), None)
        .await
        .expect("expired")
    else {
        panic!("an expired transaction is aborted")
    };
    assert_eq!((wanted.producer_epoch, wanted.commit), (1, false));
    assert_eq!(
        store
            .end_transaction(&timeout(70_001), Some(&marker_object(&wanted, 70_001)))
            .await
            .expect("abort"),
        EndOutcome::Ended
    );
    let record = store.transaction(ID).await.expect("read").expect("known");
    assert_eq!(
        (record.state, record.producer_epoch),
        (TxnState::CompleteAbort, 1)
    );
    // The fenced producer's EndTxn finds a newer epoch.
    assert!(matches!(
        store
            .end_transaction(
                &EndRequest {
                    reason: EndReason::Client,
                    ..timeout(70_100)
                },
                None
            )
            .await,
        Err(TxnError::Fenced)
    ));
    // Ended, the id is forgotten once idle past the expiration, and comes back afresh.
    assert!(
        store
            .forget_idle_transactional_ids(70_001)
            .await
            .expect("forget")
            .is_empty(),
        "it changed at 70 001"
    );
    assert_eq!(
        store
            .forget_idle_transactional_ids(70_002)
            .await
            .expect("forget"),
        vec![ID.to_owned()]
    );
    assert!(store.transaction(ID).await.expect("read").is_none());
    assert_eq!(
        ready(
            store
                .init_producer(&init_request(7100, 80_000), None)
                .await
                .expect("init")
        ),
        (7100, 0)
    );
}

/// Transactional batches are stored only for partitions in their producer's open
/// transaction at its epoch; the first one holds the partition's last stable offset until
/// the end, and an abort leaves its range for read_committed readers to skip.
#[doc(hidden)]
pub async fn transactional_batches_are_judged_against_their_transaction(store: &dyn Metastore) {
    let orders = create_orders(store).await;
    let t = orders.topic_id;
    let producer = open_transaction(store, 8000, &[(t, 0)], 100).await;
    let (producer_id, producer_epoch) = (producer.producer_id, producer.producer_epoch);
    let batch = |byte_offset, first_sequence, epoch| AppendBatch {
        byte_offset,
        byte_length: 10,
        offset_count: 2,
        max_timestamp: 5,
        producer: Some(ProducerBatch {
            producer_id,
            producer_epoch: epoch,
            first_sequence,
            last_sequence: first_sequence + 1,
            transactional: true,
        }),
        commit_deadline_ms: None,
    };
    let appends = [
        PartitionAppend {
            topic_id: t,
            partition_index: 0,
            batches: vec![batch(0, 0, producer_epoch), batch(10, 2, producer_epoch)],
        },
        PartitionAppend {
            topic_id: t,
            partition_index: 1,
            batches: vec![batch(20, 0, producer_epoch)],
        },
    ];
    let results = store
        .commit_object(commit(ObjectId::new(200), "tx-1", &appends, 200))
        .await
        .expect("commit");
    let outcome = |partition: i32| {
        results
            .iter()
            .find(|r| r.partition_index == partition)
            .expect("answered")
            .batches
            .clone()
    };
    assert_eq!(
        outcome(0),
        vec![
            BatchOutcome::Appended { base_offset: 0 },
            BatchOutcome::Appended { base_offset: 2 }
        ]
    );
    assert_eq!(
        outcome(1),
        vec![BatchOutcome::Rejected(SequenceError::NotInTransaction)],
        "partition 1 was never added"
    );
    let states = store
        .partition_states(&[(t, 0), (t, 1)])
        .await
        .expect("states");
    let stable: Vec<(i32, Option<i64>, i64)> = states
        .iter()
        .map(|s| (s.partition_index, s.open_start, s.last_stable_offset()))
        .collect();
    assert_eq!(stable, vec![(0, Some(0), 0), (1, None, 0)]);

    // The abort: its range is listed, the last stable offset is free, and the fenced
    // producer's late batch is refused.
    end_with_markers(store, producer, false, 300).await;
    assert_eq!(
        store
            .aborted_transactions(t, 0, 0, 10)
            .await
            .expect("aborted"),
        vec![AbortedTxn {
            producer_id,
            first_offset: 0,
            last_offset: 4,
        }]
    );
    assert!(
        store
            .aborted_transactions(t, 0, 5, 10)
            .await
            .expect("aborted")
            .is_empty(),
        "a range after the marker lists nothing"
    );
    // Several ranges in one call are answered as each alone, in their order.
    assert_eq!(
        store
            .aborted_transactions_of(&[(t, 0, 5, 10), (t, 1, 0, 10), (t, 0, 0, 10)])
            .await
            .expect("aborted"),
        vec![
            Vec::new(),
            Vec::new(),
            vec![AbortedTxn {
                producer_id,
                first_offset: 0,
                last_offset: 4,
            }],
        ]
    );
    let states = store.partition_states(&[(t, 0)]).await.expect("states");
    assert_eq!(
        (states[0].open_start, states[0].last_stable_offset()),
        (None, 5),
        "the marker took offset 4; nothing holds the last stable offset back"
    );
    let late = [PartitionAppend {
        topic_id: t,
        partition_index: 0,
        batches: vec![batch(0, 4, producer_epoch)],
    }];
    let results = store
        .commit_object(commit(ObjectId::new(400), "tx-2", &late, 400))
        .await
        .expect("commit");
    assert_eq!(
        results[0].batches,
        vec![BatchOutcome::Rejected(SequenceError::NotInTransaction)],
        "nothing lands after the marker"
    );
}

/// A topic deleted while a transaction holds data in it leaves the transaction free to end:
/// the end writes markers to the partitions still there, and nothing of the deleted topic
/// holds their last stable offsets back.
#[doc(hidden)]
pub async fn a_transaction_ends_after_one_of_its_topics_is_deleted(store: &dyn Metastore) {
    let orders = create_orders(store).await;
    let audit = store
        .create_topic("audit", 1, &BTreeMap::new())
        .await
        .expect("create")
        .expect("new topic");
    let (o, a) = (orders.topic_id, audit.topic_id);
    let producer = open_transaction(store, 9000, &[(o, 0), (a, 0)], 100).await;
    let append = |topic_id| PartitionAppend {
        topic_id,
        partition_index: 0,
        batches: vec![AppendBatch {
            byte_offset: 0,
            byte_length: 10,
            offset_count: 3,
            max_timestamp: 5,
            producer: Some(ProducerBatch {
                producer_id: producer.producer_id,
                producer_epoch: producer.producer_epoch,
                first_sequence: 0,
                last_sequence: 2,
                transactional: true,
            }),
            commit_deadline_ms: None,
        }],
    };
    store
        .commit_object(commit(ObjectId::new(200), "tx-1", &[append(o)], 200))
        .await
        .expect("commit");
    store
        .commit_object(commit(ObjectId::new(210), "tx-2", &[append(a)], 210))
        .await
        .expect("commit");
    let states = store.partition_states(&[(a, 0)]).await.expect("states");
    assert_eq!(states[0].open_start, Some(0));

    assert!(store.delete_topic(o).await.expect("delete"));
    let written = end_with_markers(store, producer, true, 300).await;
    assert_eq!(
        written.partitions,
        BTreeSet::from([(o, 0), (a, 0)]),
        "the transaction still lists the deleted topic's partition"
    );
    let states = store
        .partition_states(&[(o, 0), (a, 0)])
        .await
        .expect("states");
    assert_eq!(states.len(), 1, "the deleted topic's partition is gone");
    assert_eq!(
        (
            states[0].next_offset,
            states[0].open_start,
            states[0].last_stable_offset()
        ),
        (4, None, 4),
        "the marker took offset 3 and nothing holds the last stable offset back"
    );
}

/// Stores a transactional batch in both partitions of the new topic `t` through a flush
/// commit, commits the transaction with its markers and moves a log start: each statement
/// that locks partition rows, for a backend's own tests of what may hold them up.
pub async fn every_partition_lock_taken_once(store: &dyn Metastore, t: Uuid) {
    let producer = open_transaction(store, 9000, &[(t, 0), (t, 1)], 100).await;
    let appends: Vec<PartitionAppend> = (0..2)
        .map(|partition_index| PartitionAppend {
            topic_id: t,
            partition_index,
            batches: vec![AppendBatch {
                byte_offset: 10 * i64::from(partition_index),
                byte_length: 10,
                offset_count: 1,
                max_timestamp: 5,
                producer: Some(ProducerBatch {
                    producer_id: producer.producer_id,
                    producer_epoch: producer.producer_epoch,
                    first_sequence: 0,
                    last_sequence: 0,
                    transactional: true,
                }),
                commit_deadline_ms: None,
            }],
        })
        .collect();
    let results = store
        .commit_object(commit(ObjectId::new(200), "tx-locks", &appends, 200))
        .await
        .expect("commit");
    assert!(
        results
            .iter()
            .all(|r| r.batches == vec![BatchOutcome::Appended { base_offset: 0 }]),
        "{results:?}"
    );
    end_with_markers(store, producer, true, 300).await;
    assert!(matches!(
        store.advance_log_start(t, 0, 1).await.expect("advance"),
        LogStartMove::Moved {
            log_start_offset: 1
        }
    ));
}
