//! The groups domain's cases.

use super::*;

/// Group generations and offsets, fenced by the coordinator epoch.
#[doc(hidden)]
pub async fn group_writes_are_fenced_by_the_coordinator_epoch(store: &dyn Metastore) {
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
}

/// Deleting a topic deletes its committed offsets.
#[doc(hidden)]
pub async fn deleting_a_topic_deletes_its_committed_offsets(store: &dyn Metastore) {
    let offset = |topic: &str, partition, offset| CommittedOffset {
        topic: topic.into(),
        partition_index: partition,
        offset,
        leader_epoch: -1,
        metadata: Some("m".into()),
    };
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
