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
