//! [`Cluster`] in memory.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::metastore::model::*;

use super::super::cluster::Cluster;
use super::{MemoryMetastore, Service};

#[async_trait]
impl Cluster for MemoryMetastore {
    async fn cluster_id(&self) -> Result<String, StoreError> {
        Ok(self.cluster_id.clone())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn server_time_ms(&self) -> Result<i64, StoreError> {
        Ok(crate::clock::system_clock().now_ms())
    }

    async fn register(
        &self,
        role: Role,
        instance_id: &str,
        address: &str,
        lease_ms: i64,
    ) -> Result<i32, StoreError> {
        {
            let mut state = self.state();
            let at_address: Vec<(String, i32)> = state
                .services
                .iter()
                .filter(|(id, s)| s.role == role && s.address == address && *id != instance_id)
                .map(|(id, s)| (id.clone(), s.node_id))
                .collect();
            let shared = state
                .services
                .values()
                .filter(|s| s.role == role && s.address == address)
                .count();
            if let ([(predecessor, node_id)], 1) = (at_address.as_slice(), shared) {
                let node_id = *node_id;
                let mut service = state.services.remove(predecessor).expect("listed");
                service.node_id = node_id;
                state.services.insert(instance_id.to_owned(), service);
            }
        }
        self.renew_lease(role, instance_id, address, lease_ms).await
    }

    async fn renew_lease(
        &self,
        role: Role,
        instance_id: &str,
        address: &str,
        lease_ms: i64,
    ) -> Result<i32, StoreError> {
        let mut state = self.state();
        let now = crate::clock::now();
        let expires = if lease_ms > 0 {
            now + Duration::from_millis(lease_ms as u64)
        } else {
            now.checked_sub(Duration::from_millis(1)).unwrap_or(now)
        };
        if let Some(service) = state.services.get_mut(instance_id) {
            service.address = address.to_owned();
            service.expires = expires;
            return Ok(service.node_id);
        }
        state.next_node_id += 1;
        let node_id = state.next_node_id;
        state.services.insert(
            instance_id.to_owned(),
            Service {
                node_id,
                role,
                address: address.to_owned(),
                expires,
            },
        );
        Ok(node_id)
    }

    async fn deregister(&self, instance_id: &str) -> Result<(), StoreError> {
        self.state().services.remove(instance_id);
        Ok(())
    }

    async fn live_members(&self, role: Role) -> Result<Vec<ServiceMember>, StoreError> {
        let state = self.state();
        let now = crate::clock::now();
        let mut members: Vec<ServiceMember> = state
            .services
            .values()
            .filter(|s| s.role == role && s.expires > now)
            .map(|s| ServiceMember {
                node_id: s.node_id,
                address: s.address.clone(),
            })
            .collect();
        members.sort_by_key(|m| m.node_id);
        Ok(members)
    }
}
