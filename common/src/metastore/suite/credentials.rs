//! The credentials domain's cases.

use super::*;
use crate::scram::{Credential, Mechanism};

/// Credentials are kept per user and mechanism, replaced, listed and deleted.
#[doc(hidden)]
pub async fn scram_credentials_are_kept_per_user_and_mechanism(store: &dyn Metastore) {
    let alice_256 = Credential::from_password(Mechanism::Sha256, "a", b"salt-1".to_vec(), 4096);
    let alice_512 = Credential::from_password(Mechanism::Sha512, "a", b"salt-2".to_vec(), 8192);
    let bob = Credential::from_password(Mechanism::Sha256, "b", b"salt-3".to_vec(), 4096);
    assert!(
        store
            .scram_credentials("alice")
            .await
            .expect("read")
            .is_empty()
    );
    store
        .upsert_scram_credential("alice", &alice_256)
        .await
        .expect("set");
    store
        .upsert_scram_credential("alice", &alice_512)
        .await
        .expect("set");
    store
        .upsert_scram_credential("bob", &bob)
        .await
        .expect("set");
    assert_eq!(
        store.scram_credentials("alice").await.expect("read"),
        vec![alice_256.clone(), alice_512.clone()]
    );

    let replaced = Credential::from_password(Mechanism::Sha256, "new", b"salt-4".to_vec(), 4096);
    store
        .upsert_scram_credential("alice", &replaced)
        .await
        .expect("replace");
    let all = store.list_scram_credentials(None).await.expect("list");
    assert_eq!(
        all,
        vec![
            ("alice".to_owned(), replaced.clone()),
            ("alice".to_owned(), alice_512.clone()),
            ("bob".to_owned(), bob.clone()),
        ]
    );
    let some = store
        .list_scram_credentials(Some(&["bob".to_owned(), "carol".to_owned()]))
        .await
        .expect("list");
    assert_eq!(some, vec![("bob".to_owned(), bob)]);

    assert!(
        store
            .delete_scram_credential("alice", Mechanism::Sha256)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_scram_credential("alice", Mechanism::Sha256)
            .await
            .expect("delete")
    );
    assert_eq!(
        store.scram_credentials("alice").await.expect("read"),
        vec![alice_512]
    );
}
