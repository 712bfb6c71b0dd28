//! The ACL domain: Kafka's ACL bindings, which gateways cache and decide requests with
//! ([`crate::acl`]), and which CreateAcls, DescribeAcls and DeleteAcls manage.
//!
//! The store keeps bindings as given and selects with the filter's own rule
//! ([`crate::acl::AclFilter::selects`]), so what a filter means is written once.

use async_trait::async_trait;

use crate::acl::{AclBinding, AclFilter};
use crate::error::StoreError;

/// Channel on which changes to the bindings are announced.
pub const ACL_CHANNEL: &str = "yaks_acls";

/// Kafka's ACL bindings.
#[async_trait]
pub trait AclBindings: Send + Sync + 'static {
    /// Every binding, in [`AclBinding`]'s order.
    async fn list_acls(&self) -> Result<Vec<AclBinding>, StoreError>;

    /// Adds `bindings`; one that exists already stays as it is.
    async fn create_acls(&self, bindings: &[AclBinding]) -> Result<(), StoreError>;

    /// Removes the bindings `filter` selects, and returns them.
    async fn delete_acls(&self, filter: &AclFilter) -> Result<Vec<AclBinding>, StoreError>;

    /// A signal each time the bindings may have changed (a create, a delete, or a lost
    /// and re-opened connection to the store), so a cache reads them again. A burst of
    /// changes may come as one signal; the receiver ends only if the store is gone.
    async fn acl_changes(&self) -> Result<tokio::sync::mpsc::Receiver<()>, StoreError>;
}
