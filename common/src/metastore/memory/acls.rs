//! [`AclBindings`] in memory.

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::acl::{AclBinding, AclFilter};
use crate::error::StoreError;

use super::super::acls::AclBindings;
use super::MemoryMetastore;

#[async_trait]
impl AclBindings for MemoryMetastore {
    async fn list_acls(&self) -> Result<Vec<AclBinding>, StoreError> {
        Ok(self.state().acls.iter().cloned().collect())
    }

    async fn create_acls(&self, bindings: &[AclBinding]) -> Result<(), StoreError> {
        let mut state = self.state();
        state.acls.extend(bindings.iter().cloned());
        signal(&mut state.acl_watchers);
        Ok(())
    }

    async fn delete_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, StoreError> {
        let mut state = self.state();
        let selected: Vec<AclBinding> = state
            .acls
            .iter()
            .filter(|b| filter.selects(b))
            .cloned()
            .collect();
        for binding in &selected {
            state.acls.remove(binding);
        }
        signal(&mut state.acl_watchers);
        Ok(selected)
    }

    async fn acl_changes(&self) -> Result<mpsc::Receiver<()>, StoreError> {
        let (sender, receiver) = mpsc::channel(1);
        self.state().acl_watchers.push(sender);
        Ok(receiver)
    }
}

/// Tells every watcher the bindings changed; a full slot already says so, a closed one is
/// dropped.
fn signal(watchers: &mut Vec<mpsc::Sender<()>>) {
    watchers.retain(|w| !matches!(w.try_send(()), Err(mpsc::error::TrySendError::Closed(_))));
}
