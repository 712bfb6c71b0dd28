//! The topics domain's cases.

use super::*;

/// Topics are created once and listed by name or id, in name order.
#[doc(hidden)]
pub async fn topics_are_created_once_and_listed(store: &dyn Metastore) {
    let orders = create_orders(store).await;
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
}

/// Altering a topic's configs and adding partitions.
#[doc(hidden)]
pub async fn topic_configs_change_and_topics_grow(store: &dyn Metastore) {
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
            .set_topic_configs(crate::random::uuid(), &configs)
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
        store
            .add_partitions(crate::random::uuid(), 9)
            .await
            .expect("grow"),
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
