//! The cluster domain's cases.

use super::*;

/// The store has a cluster id and answers pings.
#[doc(hidden)]
pub async fn the_cluster_has_an_id_and_answers(store: &dyn Metastore) {
    assert!(!store.cluster_id().await.expect("cluster id").is_empty());
    store.ping().await.expect("ping");
}

/// Leases give a node id per instance, stable across renewals, and run out.
#[doc(hidden)]
pub async fn leases_give_stable_node_ids_and_run_out(store: &dyn Metastore) {
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
}

/// A new instance at the address of one registration (a process restarted where one died)
/// takes its node id; at an address several registrations share, it gets a new one.
#[doc(hidden)]
pub async fn a_restarted_instance_keeps_its_predecessors_node_id(store: &dyn Metastore) {
    let first = store
        .register(Role::Gateway, "g-1", "h:1", 10_000)
        .await
        .expect("lease");
    let restarted = store
        .register(Role::Gateway, "g-1-again", "h:1", 10_000)
        .await
        .expect("lease");
    assert_eq!(restarted, first);
    assert_eq!(
        store.live_members(Role::Gateway).await.expect("live"),
        vec![ServiceMember {
            node_id: first,
            address: "h:1".into()
        }],
        "the predecessor's registration is gone"
    );
    assert_eq!(
        store
            .renew_lease(Role::Gateway, "g-1-again", "h:1", 10_000)
            .await
            .expect("renew"),
        first
    );
    // Another role at the same address has its own.
    let writer = store
        .register(Role::Writer, "w-1", "h:1", 10_000)
        .await
        .expect("lease");
    assert_ne!(writer, first);
    // Where two registrations share an address, a third takes over neither.
    for (instance, lease) in [("r-a", 10_000), ("r-b", 10_000)] {
        store
            .renew_lease(Role::Reader, instance, "shared", lease)
            .await
            .expect("lease");
    }
    let c = store
        .register(Role::Reader, "r-c", "shared", 10_000)
        .await
        .expect("lease");
    let readers = store.live_members(Role::Reader).await.expect("live");
    assert_eq!(readers.len(), 3);
    assert_eq!(readers.iter().filter(|m| m.node_id == c).count(), 1);
}
