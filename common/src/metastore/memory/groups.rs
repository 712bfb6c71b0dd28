//! [`Groups`] in memory.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::metastore::groups::*;

use super::super::groups::Groups;
use super::MemoryMetastore;

#[async_trait]
impl Groups for MemoryMetastore {
    async fn claim_group(&self, group_id: &str) -> Result<GroupClaim, StoreError> {
        let mut state = self.state();
        let epoch = state.group_epochs.entry(group_id.to_owned()).or_insert(0);
        *epoch += 1;
        let epoch = *epoch;
        Ok(GroupClaim {
            epoch,
            group: state.groups.get(group_id).cloned(),
        })
    }

    async fn store_group(
        &self,
        epoch: i64,
        group: &StoredGroup,
        _now_ms: i64,
    ) -> Result<GroupWrite, StoreError> {
        let mut state = self.state();
        if !state.holds(&group.group_id, epoch) {
            return Ok(GroupWrite::Fenced);
        }
        state.groups.insert(group.group_id.clone(), group.clone());
        Ok(GroupWrite::Done)
    }

    async fn commit_offsets(
        &self,
        group_id: &str,
        epoch: i64,
        offsets: &[CommittedOffset],
        _now_ms: i64,
    ) -> Result<GroupWrite, StoreError> {
        let mut state = self.state();
        if !state.holds(group_id, epoch) {
            return Ok(GroupWrite::Fenced);
        }
        for offset in offsets {
            state.offsets.insert(
                (
                    group_id.to_owned(),
                    offset.topic.clone(),
                    offset.partition_index,
                ),
                offset.clone(),
            );
        }
        state
            .groups
            .entry(group_id.to_owned())
            .or_insert_with(|| StoredGroup {
                group_id: group_id.to_owned(),
                generation: 0,
                protocol_type: None,
                protocol_name: None,
                leader: None,
                members: Vec::new(),
            });
        Ok(GroupWrite::Done)
    }

    async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<CommittedOffset>, StoreError> {
        let state = self.state();
        Ok(state
            .offsets
            .iter()
            .filter(|((g, topic, partition), _)| {
                g == group_id
                    && partitions.is_none_or(|wanted| {
                        wanted.iter().any(|(t, p)| t == topic && p == partition)
                    })
            })
            .map(|(_, offset)| offset.clone())
            .collect())
    }

    async fn delete_offsets(
        &self,
        group_id: &str,
        epoch: i64,
        partitions: &[(String, i32)],
    ) -> Result<GroupWrite, StoreError> {
        let mut state = self.state();
        if !state.holds(group_id, epoch) {
            return Ok(GroupWrite::Fenced);
        }
        for (topic, partition) in partitions {
            state
                .offsets
                .remove(&(group_id.to_owned(), topic.clone(), *partition));
        }
        Ok(GroupWrite::Done)
    }

    async fn delete_group(&self, group_id: &str, epoch: i64) -> Result<GroupWrite, StoreError> {
        let mut state = self.state();
        if !state.holds(group_id, epoch) {
            return Ok(GroupWrite::Fenced);
        }
        let had_offsets = state.offsets.keys().any(|(g, _, _)| g == group_id);
        state.offsets.retain(|(g, _, _), _| g != group_id);
        let had_group = state.groups.remove(group_id).is_some();
        Ok(if had_group || had_offsets {
            GroupWrite::Done
        } else {
            GroupWrite::NotFound
        })
    }

    async fn list_groups(&self) -> Result<Vec<GroupListing>, StoreError> {
        let state = self.state();
        Ok(state
            .groups
            .values()
            .map(|g| GroupListing {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                has_members: !g.members.is_empty(),
            })
            .collect())
    }
}
