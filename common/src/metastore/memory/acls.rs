//! [`AclBindings`] in memory.

use async_trait::async_trait;

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
        self.state().acls.extend(bindings.iter().cloned());
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
        Ok(selected)
    }
}
