//! [`Transactions`] in memory.

use async_trait::async_trait;
use uuid::Uuid;

use crate::metastore::groups::{CommittedOffset, StoredGroup};
use crate::metastore::model::CommitEvent;
use crate::metastore::transactions::*;

use super::log::notify;
use super::{IndexRow, MemoryMetastore, State};

/// Ends `record`'s open transaction with `object`'s markers, as the PostgreSQL store does.
fn write_end(state: &mut State, record: &TxnRecord, object: &MarkerObject, now_ms: i64) {
    let id = &record.transactional_id;
    let markers = &object.markers;
    let object_id = object.object.to_string();
    let mut indexed = false;
    for &(topic_id, partition_index) in &record.partitions {
        let key = (topic_id, partition_index);
        let Some(partition) = state.partitions.get_mut(&key) else {
            continue;
        };
        let Some(&(_, _, byte_offset, byte_length)) = object
            .ranges
            .iter()
            .find(|(topic, partition, _, _)| (*topic, *partition) == key)
        else {
            continue;
        };
        // Expects: the ranges lie in the body (the coordinator built them together).
        let range = byte_offset as usize..(byte_offset + byte_length) as usize;
        let offset = partition.0;
        partition.0 += 1;
        state.index.insert(
            (topic_id, partition_index, offset),
            IndexRow {
                last_offset: offset,
                max_timestamp: object.timestamp_ms,
                object_id: object_id.clone(),
                object_key: object.object_key.clone(),
                object_size: object.size_bytes,
                byte_offset,
                byte_length,
                batch_count: 1,
                inline: Some(object.body.slice(range)),
            },
        );
        if let Some(first_offset) =
            state
                .txn_first_offsets
                .remove(&(id.clone(), topic_id, partition_index))
            && !markers.commit
        {
            state.aborted.insert(
                (topic_id, partition_index, offset),
                (record.producer_id, first_offset),
            );
        }
        indexed = true;
    }
    if indexed {
        state.objects.insert(
            object_id.clone(),
            (object.object_key.clone(), object.size_bytes),
        );
        state.created.insert(object_id.clone(), crate::clock::now());
        state.inline_objects.insert(object_id.clone());
        notify(&mut state.feeds, &CommitEvent::Committed { object_id });
    }
    let staged: Vec<_> = state
        .txn_offsets
        .keys()
        .filter(|(txn, ..)| txn == id)
        .cloned()
        .collect();
    for key in staged {
        let offset = state.txn_offsets.remove(&key).expect("listed");
        if markers.commit {
            let (_, group_id, topic, partition_index) = key;
            state
                .groups
                .entry(group_id.clone())
                .or_insert_with(|| StoredGroup {
                    group_id: group_id.clone(),
                    generation: 0,
                    protocol_type: None,
                    protocol_name: None,
                    leader: None,
                    members: Vec::new(),
                });
            state
                .offsets
                .insert((group_id, topic, partition_index), offset);
        }
    }
    state.txn_first_offsets.retain(|(txn, _, _), _| txn != id);
    state
        .transactions
        .insert(id.clone(), ended(record, markers, now_ms));
}

#[async_trait]
impl Transactions for MemoryMetastore {
    async fn transaction(&self, transactional_id: &str) -> Result<Option<TxnRecord>, TxnError> {
        Ok(self.state().transactions.get(transactional_id).cloned())
    }

    async fn list_transactions(&self) -> Result<Vec<TxnRecord>, TxnError> {
        Ok(self.state().transactions.values().cloned().collect())
    }

    async fn expired_transactions(&self, now_ms: i64) -> Result<Vec<TxnRecord>, TxnError> {
        Ok(self
            .state()
            .transactions
            .values()
            .filter(|record| expired(record, now_ms))
            .cloned()
            .collect())
    }

    async fn forget_idle_transactional_ids(
        &self,
        idle_before_ms: i64,
    ) -> Result<Vec<String>, TxnError> {
        let mut state = self.state();
        let idle: Vec<String> = state
            .transactions
            .values()
            .filter(|r| r.state != TxnState::Ongoing && r.updated_ms < idle_before_ms)
            .map(|r| r.transactional_id.clone())
            .collect();
        for id in &idle {
            state.transactions.remove(id);
        }
        Ok(idle)
    }

    async fn init_producer(
        &self,
        request: &InitRequest,
        markers: Option<&MarkerObject>,
    ) -> Result<TxnInitOutcome, TxnError> {
        let mut state = self.state();
        let mut request = request.clone();
        loop {
            let existing = state.transactions.get(&request.transactional_id).cloned();
            match init(existing.as_ref(), &request)? {
                InitDecision::Record(record) => {
                    let ready = TxnInitOutcome::Ready {
                        producer_id: record.producer_id,
                        producer_epoch: record.producer_epoch,
                    };
                    state
                        .transactions
                        .insert(record.transactional_id.clone(), record);
                    return Ok(ready);
                }
                InitDecision::Unchanged => {
                    let record = existing.expect("unchanged means recorded");
                    return Ok(TxnInitOutcome::Ready {
                        producer_id: record.producer_id,
                        producer_epoch: record.producer_epoch,
                    });
                }
                InitDecision::AbortFirst(wanted) => match markers {
                    Some(object) if object.fits(&wanted) => {
                        let record = existing.expect("an abort needs a record");
                        write_end(&mut state, &record, object, request.now_ms);
                        request.expected = None;
                    }
                    _ => return Ok(TxnInitOutcome::NeedsMarkers(wanted)),
                },
            }
        }
    }

    async fn add_to_transaction(
        &self,
        producer: &TxnProducer<'_>,
        partitions: &[(Uuid, i32)],
        groups: &[String],
        now_ms: i64,
    ) -> Result<(), TxnError> {
        let mut state = self.state();
        let existing = state.transactions.get(producer.transactional_id);
        if let Some(next) = add(existing, producer, partitions, groups, now_ms)? {
            state
                .transactions
                .insert(producer.transactional_id.to_owned(), next);
        }
        Ok(())
    }

    async fn stage_offsets(
        &self,
        producer: &TxnProducer<'_>,
        group_id: &str,
        offsets: &[CommittedOffset],
        _now_ms: i64,
    ) -> Result<(), TxnError> {
        let mut state = self.state();
        stage(
            state.transactions.get(producer.transactional_id),
            producer,
            group_id,
        )?;
        for offset in offsets {
            state.txn_offsets.insert(
                (
                    producer.transactional_id.to_owned(),
                    group_id.to_owned(),
                    offset.topic.clone(),
                    offset.partition_index,
                ),
                offset.clone(),
            );
        }
        Ok(())
    }

    async fn end_transaction(
        &self,
        request: &EndRequest<'_>,
        markers: Option<&MarkerObject>,
    ) -> Result<EndOutcome, TxnError> {
        let mut state = self.state();
        let existing = state
            .transactions
            .get(request.producer.transactional_id)
            .cloned();
        let wanted = match end(existing.as_ref(), request)? {
            EndDecision::AlreadyEnded => return Ok(EndOutcome::AlreadyEnded),
            EndDecision::Write(wanted) => wanted,
        };
        let Some(object) = markers.filter(|object| object.fits(&wanted)) else {
            return Ok(EndOutcome::NeedsMarkers(wanted));
        };
        let record = existing.expect("an end needs a record");
        write_end(&mut state, &record, object, request.now_ms);
        Ok(EndOutcome::Ended)
    }

    async fn offsets_pending(&self, group_id: &str) -> Result<Vec<(String, i32)>, TxnError> {
        let state = self.state();
        let mut pending: Vec<(String, i32)> = state
            .txn_offsets
            .keys()
            .filter(|(_, group, _, _)| group == group_id)
            .map(|(_, _, topic, partition)| (topic.clone(), *partition))
            .collect();
        pending.sort();
        pending.dedup();
        Ok(pending)
    }

    async fn aborted_transactions(
        &self,
        topic_id: Uuid,
        partition_index: i32,
        from: i64,
        until: i64,
    ) -> Result<Vec<AbortedTxn>, TxnError> {
        let state = self.state();
        let mut found: Vec<AbortedTxn> = state
            .aborted
            .range((topic_id, partition_index, from)..=(topic_id, partition_index, i64::MAX))
            .filter(|(_, (_, first_offset))| *first_offset < until)
            .map(
                |(&(_, _, last_offset), &(producer_id, first_offset))| AbortedTxn {
                    producer_id,
                    first_offset,
                    last_offset,
                },
            )
            .collect();
        found.sort_by_key(|a| (a.first_offset, a.last_offset));
        Ok(found)
    }
}
