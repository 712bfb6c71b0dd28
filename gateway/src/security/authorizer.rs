//! Authorization: each gateway decides requests with the ACL bindings it caches, so a
//! decision costs no PostgreSQL round trip (issue 22's performance rule).
//!
//! The cache is read at start, again on every change the store signals (CreateAcls,
//! DeleteAcls or `yaks acl` on any gateway or machine: PostgreSQL's `NOTIFY yaks_acls`),
//! and every 30 seconds in case a signal was lost with its connection. A read that fails
//! keeps the bindings in use: a store outage does not open or close the cluster.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tracing::{debug, info, warn};
use yaks_common::acl::{Acls, Operation, Request, ResourceType};
use yaks_common::config::AuthorizationConfig;
use yaks_common::error::StoreError;
use yaks_common::metastore::AclBindings;
use yaks_common::metrics::{DenialLabels, OutcomeLabels, metrics};
use yaks_common::shutdown::Shutdown;

use super::Principal;

/// How often the bindings are read again without a change signalled.
const REFRESH: Duration = Duration::from_secs(30);

/// The name of the one CLUSTER resource, as Kafka's `kafka-cluster`.
pub const CLUSTER: &str = "kafka-cluster";

/// Decides whether a principal may do an operation on a resource.
pub struct Authorizer {
    enabled: bool,
    super_users: Vec<String>,
    acls: RwLock<Arc<Acls>>,
}

impl Authorizer {
    /// An authorizer with `config`'s switch and super users, and no bindings yet (nothing
    /// is allowed but to super users until [`Authorizer::reload`] reads them).
    pub fn new(config: &AuthorizationConfig) -> Authorizer {
        let super_users = config.super_user_list();
        Authorizer {
            enabled: config.enabled,
            acls: RwLock::new(Arc::new(Acls::new(Vec::new(), super_users.clone()))),
            super_users,
        }
    }

    /// Whether requests are checked at all (`gateway.authorization.enabled`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The bindings in force.
    pub fn acls(&self) -> Arc<Acls> {
        self.acls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether `principal`, connected from `host`, may do `operation` to the resource
    /// `name` of `resource_type`. Always true with authorization off. A denial is counted
    /// and logged at debug level (a client retrying a denied request would flood info).
    pub fn authorize(
        &self,
        principal: &Principal,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if !self.enabled {
            return true;
        }
        let principal = principal.to_string();
        let allowed = self.acls().authorize(&Request {
            principal: &principal,
            host,
            operation,
            resource_type,
            resource_name: name,
        });
        if !allowed {
            denied(&principal, host, operation, resource_type, name);
        }
        allowed
    }

    /// Whether `principal` may do `operation` to some resource of `resource_type` (an
    /// idempotent producer's WRITE on any topic). Always true with authorization off.
    pub fn authorize_any(
        &self,
        principal: &Principal,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if !self.enabled {
            return true;
        }
        let principal = principal.to_string();
        let allowed = self
            .acls()
            .authorize_any(&principal, host, operation, resource_type);
        if !allowed {
            denied(&principal, host, operation, resource_type, "(any)");
        }
        allowed
    }

    /// Reads the bindings from `store` and puts them in force.
    pub async fn reload(&self, store: &dyn AclBindings) -> Result<(), StoreError> {
        let outcome = store.list_acls().await;
        let reloads = &metrics().gateway.acl_reloads;
        match outcome {
            Ok(bindings) => {
                reloads
                    .get_or_create(&OutcomeLabels { outcome: "ok" })
                    .inc();
                metrics().gateway.acl_bindings.set(bindings.len() as i64);
                let acls = Arc::new(Acls::new(bindings, self.super_users.clone()));
                *self.acls.write().unwrap_or_else(|e| e.into_inner()) = acls;
                Ok(())
            }
            Err(e) => {
                reloads
                    .get_or_create(&OutcomeLabels { outcome: "failed" })
                    .inc();
                Err(e)
            }
        }
    }

    /// Keeps the bindings fresh until `shutdown`: reads them whenever the store signals a
    /// change and every 30 seconds. Watching starts before the first read here, so a
    /// change made between start-up's read and the watch is not missed.
    pub async fn keep_fresh(self: Arc<Self>, store: Arc<dyn AclBindings>, mut shutdown: Shutdown) {
        if !self.enabled {
            return;
        }
        let mut changes = match store.acl_changes().await {
            Ok(changes) => Some(changes),
            Err(e) => {
                warn!(error = %e, "watching ACL changes failed; reading them every 30 s");
                None
            }
        };
        loop {
            if let Err(e) = self.reload(store.as_ref()).await {
                warn!(error = %e, "reading the ACL bindings failed; keeping those in force");
            }
            let changed = async {
                match changes.as_mut() {
                    Some(changes) => changes.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                signal = changed => {
                    if signal.is_none() {
                        info!("ACL change feed ended; reading the bindings every 30 s");
                        changes = None;
                    }
                }
                _ = yaks_common::clock::sleep(REFRESH) => {}
                _ = shutdown.wait() => return,
            }
        }
    }
}

fn denied(
    principal: &str,
    host: &str,
    operation: Operation,
    resource_type: ResourceType,
    name: &str,
) {
    metrics()
        .gateway
        .authorization_denials
        .get_or_create(&DenialLabels {
            operation: operation.name(),
            resource_type: resource_type.name(),
        })
        .inc();
    debug!(
        principal,
        host,
        operation = operation.name(),
        resource_type = resource_type.name(),
        resource = name,
        "denied by the ACLs"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use yaks_common::acl::{AclBinding, PatternType, Permission};
    use yaks_common::metastore::MemoryMetastore;

    fn config(enabled: bool) -> AuthorizationConfig {
        AuthorizationConfig {
            enabled,
            super_users: "User:admin".into(),
        }
    }

    #[tokio::test]
    async fn off_allows_everything_and_on_follows_the_stored_bindings() {
        let alice = Principal::user("alice");
        let read = |a: &Authorizer| {
            a.authorize(
                &alice,
                "10.0.0.1",
                Operation::Read,
                ResourceType::Topic,
                "orders",
            )
        };
        assert!(read(&Authorizer::new(&config(false))));

        let store = MemoryMetastore::default();
        let authorizer = Authorizer::new(&config(true));
        assert!(!read(&authorizer));
        assert!(authorizer.authorize(
            &Principal::user("admin"),
            "10.0.0.1",
            Operation::Alter,
            ResourceType::Cluster,
            CLUSTER
        ));
        store
            .create_acls(&[AclBinding {
                resource_type: ResourceType::Topic,
                resource_name: "ord".into(),
                pattern_type: PatternType::Prefixed,
                principal: "User:alice".into(),
                host: "*".into(),
                operation: Operation::Read,
                permission: Permission::Allow,
            }])
            .await
            .expect("create");
        authorizer.reload(&store).await.expect("reload");
        assert!(read(&authorizer));
    }
}
