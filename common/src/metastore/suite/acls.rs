//! The ACL domain's cases.

use super::*;
use crate::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};

fn binding(name: &str, pattern_type: PatternType, principal: &str) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: name.into(),
        pattern_type,
        principal: principal.into(),
        host: "*".into(),
        operation: Operation::Read,
        permission: Permission::Allow,
    }
}

/// Bindings are kept once each, listed in order, and deleted by filter; every change is
/// signalled to those watching.
#[doc(hidden)]
pub async fn acl_bindings_are_kept_once_and_deleted_by_filter(store: &dyn Metastore) {
    let mut changes = store.acl_changes().await.expect("watch");
    let orders = binding("orders", PatternType::Literal, "User:alice");
    let payments = binding("pay", PatternType::Prefixed, "User:bob");
    let everything = binding("*", PatternType::Literal, "User:carol");
    store
        .create_acls(&[orders.clone(), payments.clone()])
        .await
        .expect("create");
    store
        .create_acls(&[orders.clone(), everything.clone()])
        .await
        .expect("create again");
    let mut all = vec![orders.clone(), payments.clone(), everything.clone()];
    all.sort();
    assert_eq!(store.list_acls().await.expect("list"), all);
    signalled(&mut changes).await;

    // MATCH on `orders`: the literal binding and the wildcard, not the other prefix.
    let filter = AclFilter {
        resource_type: ResourceType::Topic,
        resource_name: Some("orders".into()),
        pattern_type: PatternType::Match,
        principal: None,
        host: None,
        operation: Operation::Any,
        permission: Permission::Any,
    };
    let mut deleted = store.delete_acls(&filter).await.expect("delete");
    deleted.sort();
    let mut expected = vec![orders, everything];
    expected.sort();
    assert_eq!(deleted, expected);
    assert_eq!(store.list_acls().await.expect("list"), vec![payments]);
    signalled(&mut changes).await;
    assert!(store.delete_acls(&filter).await.expect("delete").is_empty());
}

/// Waits for a change signal, then drains those already queued.
async fn signalled(changes: &mut tokio::sync::mpsc::Receiver<()>) {
    tokio::time::timeout(std::time::Duration::from_secs(5), changes.recv())
        .await
        .expect("a change is signalled within 5 s")
        .expect("the watch is open");
    crate::clock::sleep(std::time::Duration::from_millis(100)).await;
    while changes.try_recv().is_ok() {}
}
