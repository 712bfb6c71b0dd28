//! Runs one compaction job: read the inputs' byte ranges, write them as one object, swap
//! the index rows.
//!
//! The output holds the input batches byte for byte, in offset order, so every offset and
//! every byte a consumer reads stays the same. The swap is a compare-and-swap
//! ([`Objects::swap_entries`]): when another worker, a retention pass or a topic
//! deletion changed the inputs first, it changes nothing and the output is deleted at once
//! (or, if the worker dies before that, collected later as an object no row refers to).
//! Inputs are only marked by the swap; they are deleted after the grace period, so reads
//! already planned against them still succeed. Key compaction ([`crate::compact`]) reads
//! entries and puts and swaps its outputs with the same two steps.

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, warn};
use uuid::Uuid;
use yaks_common::error::StoreError;
use yaks_common::ids::ObjectId;
use yaks_common::metastore::{CompactionSwap, EntrySwap, IndexEntry, Objects};
use yaks_common::metrics::metrics;
use yaks_common::objstore::ObjectStore;

use crate::planner::Job;

/// What became of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// The inputs now live in this object.
    Swapped {
        /// The output's key.
        object_key: String,
        /// Its size.
        size_bytes: i64,
    },
    /// The inputs changed before the swap; the output was discarded.
    Lost,
}

/// A job's partition and where outputs go.
#[derive(Debug, Clone)]
pub struct JobTarget<'a> {
    /// Topic.
    pub topic_id: Uuid,
    /// Its name, which the job's S3 traffic is counted under.
    pub topic: &'a str,
    /// Partition.
    pub partition_index: i32,
    /// Key prefix of objects (`s3.key_prefix`).
    pub key_prefix: &'a str,
}

/// Runs `job`: reads its inputs, writes the output, swaps the index rows.
pub async fn run_job(
    metastore: &dyn Objects,
    objects: &dyn ObjectStore,
    target: &JobTarget<'_>,
    job: &Job,
    now_ms: i64,
) -> Result<JobOutcome, StoreError> {
    let mut body = BytesMut::with_capacity(usize::try_from(job.bytes()).unwrap_or(0));
    for input in &job.inputs {
        body.extend_from_slice(&read_entry(objects, target, input).await?);
    }
    let size_bytes = body.len() as i64;
    let inputs: Vec<&IndexEntry> = job.inputs.iter().collect();
    match put_and_swap(
        metastore,
        objects,
        target,
        &inputs,
        body.freeze(),
        None,
        now_ms,
    )
    .await?
    {
        Some(object_key) => {
            info!(
                topic_id = %target.topic_id,
                partition = target.partition_index,
                inputs = inputs.len(),
                base_offset = job.base_offset(),
                last_offset = job.last_offset(),
                size_bytes,
                %object_key,
                "compacted"
            );
            Ok(JobOutcome::Swapped {
                object_key,
                size_bytes,
            })
        }
        None => Ok(JobOutcome::Lost),
    }
}

/// The bytes of `entry`: one GET, counted as the compactor's for its topic, or none when
/// its object is kept in the metastore (markers) and the bytes came with the entry.
pub(crate) async fn read_entry(
    objects: &dyn ObjectStore,
    target: &JobTarget<'_>,
    entry: &IndexEntry,
) -> Result<Bytes, StoreError> {
    // Markers kept in the metastore came with their entry.
    if let Some(bytes) = &entry.inline {
        return Ok(bytes.clone());
    }
    let start = u64::try_from(entry.byte_offset).unwrap_or(0);
    let end = start + u64::try_from(entry.byte_length).unwrap_or(0);
    let bytes = metrics()
        .compactor
        .s3
        .measure(
            "get",
            &[(target.topic, end - start)],
            objects.get_range(entry.object_key.clone(), start..end),
        )
        .await?;
    if bytes.len() as u64 != end - start {
        return Err(StoreError::Internal(format!(
            "{} bytes {start}..{end}: read {}",
            entry.object_key,
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Puts `body` as a new object and swaps it for the `inputs` entries (a merge, or with
/// `compaction` a key compaction's chunk): the new object's key, or `None` when the inputs
/// changed first (the output is then deleted at once). On an error the output stays for
/// the garbage collector, which deletes it only if no entry refers to it (a lost COMMIT
/// answer may hide a swap that happened).
pub(crate) async fn put_and_swap(
    metastore: &dyn Objects,
    objects: &dyn ObjectStore,
    target: &JobTarget<'_>,
    inputs: &[&IndexEntry],
    body: Bytes,
    compaction: Option<CompactionSwap>,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    let size_bytes = body.len() as i64;
    let object = ObjectId::new(now_ms);
    let object_key = object.key(target.key_prefix);
    metrics()
        .compactor
        .s3
        .measure(
            "put",
            &[(target.topic, size_bytes as u64)],
            objects.put(object_key.clone(), body),
        )
        .await?;
    let inputs: Vec<(i64, String)> = inputs
        .iter()
        .map(|e| (e.base_offset, e.object_key.clone()))
        .collect();
    let swapped = metastore
        .swap_entries(EntrySwap {
            topic_id: target.topic_id,
            partition_index: target.partition_index,
            inputs: &inputs,
            object,
            object_key: &object_key,
            size_bytes,
            compaction,
        })
        .await;
    match swapped {
        Ok(true) => Ok(Some(object_key)),
        Ok(false) => {
            debug!(%object_key, "inputs changed before the swap; discarding the output");
            discard(objects, object_key).await;
            Ok(None)
        }
        Err(e) => {
            warn!(%object_key, error = %e, "swapping index rows failed");
            Err(e)
        }
    }
}

async fn discard(objects: &dyn ObjectStore, key: String) {
    if let Err(e) = objects.delete(key.clone()).await {
        warn!(%key, error = %e, "deleting a discarded output failed; garbage collection will");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use yaks_common::metastore::{
        AppendBatch, Log, MemoryMetastore, ObjectCommit, PartitionAppend, Topics,
    };
    use yaks_common::objstore::MemoryObjectStore;

    use super::*;
    use crate::planner::{PlannerSettings, plan_partition};

    #[tokio::test]
    async fn a_job_merges_bytes_in_order_and_a_second_run_loses() {
        let metastore = MemoryMetastore::default();
        let objects = MemoryObjectStore::default();
        let topic = metastore
            .create_topic("t", 1, &BTreeMap::new())
            .await
            .expect("create")
            .expect("new");
        for n in 0..4u8 {
            let key = format!("flush-{n}");
            // Each object: 5 bytes of another partition, then this partition's 10 bytes.
            let mut body = vec![0xee; 5];
            body.extend(std::iter::repeat_n(n, 10));
            objects
                .put(key.clone(), Bytes::from(body))
                .await
                .expect("put");
            let appends = vec![PartitionAppend {
                topic_id: topic.topic_id,
                partition_index: 0,
                batches: vec![AppendBatch {
                    byte_offset: 5,
                    byte_length: 10,
                    offset_count: 3,
                    max_timestamp: i64::from(n),
                    producer: None,
                    commit_deadline_ms: None,
                }],
            }];
            metastore
                .commit_object(ObjectCommit {
                    object: ObjectId::new(i64::from(n) + 1),
                    object_key: &key,
                    size_bytes: 15,
                    appends: &appends,
                    now_ms: 1,
                    producers_expire_before_ms: 0,
                })
                .await
                .expect("commit");
        }
        let entries = metastore
            .index_entries(&[(topic.topic_id, 0, 0)], 100)
            .await
            .expect("entries")
            .remove(0);
        let settings = PlannerSettings {
            target_bytes: 1_000,
            small_bytes: 100,
            window_ms: i64::MAX,
        };
        let jobs = plan_partition(&entries, &settings);
        assert_eq!(jobs.len(), 1);
        let target = JobTarget {
            topic_id: topic.topic_id,
            topic: &topic.name,
            partition_index: 0,
            key_prefix: "c/",
        };
        let outcome = run_job(&metastore, &objects, &target, &jobs[0], 10)
            .await
            .expect("runs");
        let JobOutcome::Swapped { object_key, .. } = outcome else {
            panic!("swapped")
        };
        let merged = objects.get_range(object_key, 0..40).await.expect("output");
        let expected: Vec<u8> = (0..4u8).flat_map(|n| std::iter::repeat_n(n, 10)).collect();
        assert_eq!(&merged[..], &expected[..]);
        let after = metastore
            .index_entries(&[(topic.topic_id, 0, 0)], 100)
            .await
            .expect("entries")
            .remove(0);
        assert_eq!(after.len(), 1);
        assert_eq!((after[0].base_offset, after[0].last_offset), (0, 11));
        assert_eq!(
            run_job(&metastore, &objects, &target, &jobs[0], 11)
                .await
                .expect("runs"),
            JobOutcome::Lost
        );
        assert_eq!(
            objects.list("c/".into()).await.expect("list").len(),
            1,
            "the losing output is deleted"
        );
    }
}
