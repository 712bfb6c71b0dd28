//! Garbage collection: objects nobody reads any more leave the bucket after a grace period.
//!
//! Three kinds, oldest rule first: index entries below their partition's log start
//! (retention, DeleteRecords) are dropped and their objects marked; objects no entry refers
//! to (a deleted topic's) are marked; objects marked longer than the grace period — longer
//! than any read planned against them can take — are deleted from S3, then forgotten. And
//! objects in the bucket that the metastore never recorded (a writer or worker that died
//! between upload and commit), older than the grace period by the time in their key, are
//! deleted too. A dry run changes nothing and lists what would be deleted.

use std::time::Duration;

use tracing::{info, warn};
use yaks_common::error::StoreError;
use yaks_common::ids::ObjectId;
use yaks_common::metastore::Objects;
use yaks_common::metrics::metrics;
use yaks_common::objstore::ObjectStore;

/// Marked objects deleted per pass at most.
const BATCH: i64 = 1_000;

/// How garbage collection runs.
#[derive(Debug, Clone)]
pub struct GcSettings {
    /// Objects are deleted only this long after they stopped being referenced (or, for
    /// unrecorded ones, after they were written).
    pub grace: Duration,
    /// Key prefix of objects (`s3.key_prefix`).
    pub key_prefix: String,
    /// List what would be deleted; change nothing.
    pub dry_run: bool,
}

/// What a pass did (or, in a dry run, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Index entries dropped below log start offsets.
    pub expired_entries: u64,
    /// Objects newly marked as unreferenced.
    pub marked: u64,
    /// Keys of marked objects deleted (or to delete).
    pub deleted: Vec<String>,
    /// Keys of unrecorded objects deleted (or to delete).
    pub orphans: Vec<String>,
}

/// One garbage-collection pass.
pub async fn collect(
    metastore: &dyn Objects,
    objects: &dyn ObjectStore,
    settings: &GcSettings,
    now_ms: i64,
) -> Result<GcReport, StoreError> {
    let grace_ms = i64::try_from(settings.grace.as_millis()).unwrap_or(i64::MAX);
    let mut report = GcReport::default();
    if !settings.dry_run {
        report.expired_entries = metastore.drop_expired_entries().await?;
        report.marked = metastore.mark_unreferenced(grace_ms).await?;
    }
    let marked = metastore.marked_objects(grace_ms, BATCH).await?;
    let mut forgotten = Vec::with_capacity(marked.len());
    let compactor = &metrics().compactor;
    for object in marked {
        let key = object.key;
        if !settings.dry_run {
            // An object kept in the metastore (markers) has nothing in the bucket: its row
            // is all there is to forget.
            if !object.inline {
                let deleted = compactor
                    .s3
                    .measure::<_, _, &str>("delete", &[], objects.delete(key.clone()))
                    .await;
                if let Err(e) = deleted {
                    warn!(%key, error = %e, "deleting a marked object failed; the next pass retries");
                    continue;
                }
                compactor.objects_deleted.inc();
                compactor
                    .reclaimed_bytes
                    .inc_by(u64::try_from(object.size_bytes).unwrap_or(0));
            }
            forgotten.push(object.object_id);
        }
        report.deleted.push(key);
    }
    if !forgotten.is_empty() {
        metastore.forget_objects(&forgotten).await?;
    }
    report.orphans = orphans(metastore, objects, settings, now_ms - grace_ms).await?;
    if !settings.dry_run {
        for key in &report.orphans {
            compactor
                .s3
                .measure::<_, _, &str>("delete", &[], objects.delete(key.clone()))
                .await?;
            // An orphan's size is not recorded anywhere; it counts as an object only.
            compactor.objects_deleted.inc();
        }
    }
    info!(
        dry_run = settings.dry_run,
        expired_entries = report.expired_entries,
        marked = report.marked,
        deleted = report.deleted.len(),
        orphans = report.orphans.len(),
        "garbage collected"
    );
    Ok(report)
}

/// Keys under the prefix, written before `before_ms` (by their id), that no object row
/// records.
async fn orphans(
    metastore: &dyn Objects,
    objects: &dyn ObjectStore,
    settings: &GcSettings,
    before_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let keys = metrics()
        .compactor
        .s3
        .measure::<_, _, &str>("list", &[], objects.list(settings.key_prefix.clone()))
        .await?;
    let old: Vec<(String, String)> = keys
        .into_iter()
        .filter_map(|key| {
            let id = ObjectId::from_key(&settings.key_prefix, &key)?;
            (id.timestamp_ms() < before_ms).then(|| (id.to_string(), key))
        })
        .collect();
    let mut orphans = Vec::new();
    for chunk in old.chunks(BATCH as usize) {
        let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
        let known = metastore.known_objects(&ids).await?;
        orphans.extend(
            chunk
                .iter()
                .filter(|(id, _)| !known.contains(id))
                .map(|(_, key)| key.clone()),
        );
    }
    Ok(orphans)
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

    #[tokio::test]
    async fn expired_unreferenced_and_unrecorded_objects_go_and_a_dry_run_only_lists() {
        let metastore = MemoryMetastore::default();
        let objects = MemoryObjectStore::default();
        let topic = metastore
            .create_topic("t", 1, &BTreeMap::new())
            .await
            .expect("create")
            .expect("new");
        let mut keys = Vec::new();
        for n in 0..3 {
            let id = ObjectId::new(1_000 + n);
            let key = id.key("p/");
            objects
                .put(key.clone(), Bytes::from_static(b"0123456789"))
                .await
                .expect("put");
            let appends = vec![PartitionAppend {
                topic_id: topic.topic_id,
                partition_index: 0,
                batches: vec![AppendBatch {
                    byte_offset: 0,
                    byte_length: 10,
                    offset_count: 1,
                    max_timestamp: n,
                    producer: None,
                    commit_deadline_ms: None,
                }],
            }];
            metastore
                .commit_object(ObjectCommit {
                    object: id,
                    object_key: &key,
                    size_bytes: 10,
                    appends: &appends,
                    now_ms: 1_000,
                    producers_expire_before_ms: 0,
                })
                .await
                .expect("commit");
            keys.push(key);
        }
        // Uploaded, never committed (its writer died), and old.
        let orphan = ObjectId::new(500).key("p/");
        objects
            .put(orphan.clone(), Bytes::from_static(b"x"))
            .await
            .expect("put");
        // Uploaded a moment ago: maybe a commit in progress, left alone.
        let fresh = ObjectId::new(1_000_000).key("p/");
        objects
            .put(fresh.clone(), Bytes::from_static(b"y"))
            .await
            .expect("put");
        metastore
            .advance_log_start(topic.topic_id, 0, 2)
            .await
            .expect("move");

        let mut settings = GcSettings {
            grace: Duration::ZERO,
            key_prefix: "p/".into(),
            dry_run: true,
        };
        let now = 1_000_000;
        let dry = collect(&metastore, &objects, &settings, now)
            .await
            .expect("dry run");
        assert_eq!(dry.orphans, vec![orphan.clone()]);
        assert!(dry.deleted.is_empty(), "nothing marked yet in a dry run");
        assert_eq!(objects.list("p/".into()).await.expect("list").len(), 5);

        settings.dry_run = false;
        let report = collect(&metastore, &objects, &settings, now)
            .await
            .expect("gc");
        assert_eq!(report.expired_entries, 2);
        let mut deleted = report.deleted.clone();
        deleted.sort();
        let mut expected = vec![keys[0].clone(), keys[1].clone()];
        expected.sort();
        assert_eq!(deleted, expected);
        assert_eq!(report.orphans, vec![orphan]);
        let mut left = objects.list("p/".into()).await.expect("list");
        left.sort();
        let mut want = vec![keys[2].clone(), fresh];
        want.sort();
        assert_eq!(left, want);
    }
}
