//! `GET /v1/topics/{topic}/compaction` on the gateway's operations listener: where key
//! compaction stands in each partition of a compacted topic (JSON, one
//! [`PartitionCompaction`] per partition), which `yaks topic describe` shows. Kafka keeps
//! this in its cleaner's metrics, and the Kafka protocol has no field for it; any gateway
//! can answer, from the metastore, with the compactor's own rule
//! ([`yaks_common::dirty`]), so the figure is the one the compactor acts on.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use yaks_common::clock::SharedClock;
use yaks_common::dirty::{PartitionCompaction, dirty, topic_of_compaction_path};
use yaks_common::error::StoreError;
use yaks_common::ops::ExtraRoutes;
use yaks_common::rpc::text_response;
use yaks_common::topic_config::TopicConfigs;

use crate::GatewayStore;

/// Index entries read per partition: the status of a partition with more (merging keeps
/// their number far lower) covers its first this many.
const ENTRIES: i64 = 100_000;

/// The endpoint, for [`yaks_common::ops::OpsServer::run_with`].
pub fn routes(metastore: Arc<dyn GatewayStore>, clock: SharedClock) -> ExtraRoutes {
    Arc::new(move |path: String| {
        let (metastore, clock) = (metastore.clone(), clock.clone());
        Box::pin(async move {
            let topic = topic_of_compaction_path(&path)?.to_owned();
            Some(
                match status(metastore.as_ref(), &topic, clock.now_ms()).await {
                    Ok(Some(partitions)) => json(&partitions),
                    Ok(None) => text_response(StatusCode::NOT_FOUND, "no such topic\n"),
                    Err(e) => text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
                },
            )
        })
    })
}

/// Each partition's compaction status, `None` for an unknown topic; no partitions for a
/// topic that is not compacted.
async fn status(
    metastore: &dyn GatewayStore,
    topic: &str,
    now_ms: i64,
) -> Result<Option<Vec<PartitionCompaction>>, StoreError> {
    let Some(meta) = metastore
        .topics(Some(&[topic.to_owned()]))
        .await?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let configs = TopicConfigs::new(&meta.configs);
    if !configs.compacts() {
        return Ok(Some(Vec::new()));
    }
    let keys: Vec<_> = (0..meta.partition_count)
        .map(|p| (meta.topic_id, p))
        .collect();
    let states = metastore.partition_states(&keys).await?;
    // Every partition's entries from its log start in one query.
    let from: Vec<_> = states
        .iter()
        .map(|s| (meta.topic_id, s.partition_index, s.log_start_offset))
        .collect();
    let all_entries = metastore.index_entries(&from, ENTRIES).await?;
    let mut out = Vec::new();
    for (state, entries) in states.iter().zip(all_entries) {
        let partition = state.partition_index;
        let cleaning = metastore.cleaning(meta.topic_id, partition).await?;
        let part = dirty(&entries, cleaning.cleaned_through, &configs.lags(), now_ms);
        out.push(PartitionCompaction {
            partition,
            cleaned_through: cleaning.cleaned_through,
            clean_bytes: part.clean_bytes,
            dirty_bytes: part.dirty_bytes,
            dirty_ratio: part.ratio(),
            oldest_dirty_ms: part.oldest_ms,
        });
    }
    Ok(Some(out))
}

fn json(partitions: &[PartitionCompaction]) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(partitions).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
