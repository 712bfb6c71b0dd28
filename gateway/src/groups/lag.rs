//! Consumer lag as metrics: `yaks_gateway_groups` and `yaks_gateway_group_lag_records` for
//! the groups this gateway coordinates.
//!
//! Why apart from the coordinator: lag is read, never decided on. It needs the log's last
//! stable offsets and the topics' ids, which coordination does not, and it must not hold a
//! group's lock while it reads PostgreSQL. Each group's lag is reported by its coordinator
//! only: label sets of groups this gateway no longer coordinates are removed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;
use uuid::Uuid;
use yaks_common::metastore::{CommittedOffset, Groups, Log, Topics};
use yaks_common::metrics::{GroupTopicLabels, metrics};
use yaks_common::shutdown::Shutdown;

use super::Coordinator;

/// How often lag is computed.
const LAG_EVERY: Duration = Duration::from_secs(10);

/// The metastore domains lag is read from: committed offsets, topic ids, log ends.
pub trait LagStore: Groups + Topics + Log {}

impl<T: Groups + Topics + Log + ?Sized> LagStore for T {}

/// What this gateway last put into the group metrics, so the next report replaces it.
#[derive(Default)]
struct Reported {
    groups: i64,
    lags: HashSet<GroupTopicLabels>,
}

/// Reports the lag of the groups `coordinator` holds every `LAG_EVERY` (10 s) until `shutdown`,
/// then withdraws what it reported.
pub async fn report<S: LagStore + ?Sized>(
    coordinator: Arc<Coordinator>,
    store: Arc<S>,
    mut shutdown: Shutdown,
) {
    let mut reported = Reported::default();
    loop {
        tokio::select! {
            _ = yaks_common::clock::sleep(LAG_EVERY) => {}
            _ = shutdown.wait() => break,
        }
        let groups = coordinator.known_groups().await;
        let lags = lags(store.as_ref(), &groups).await;
        publish(&mut reported, groups.len() as i64, lags);
    }
    publish(&mut reported, 0, HashMap::new());
}

/// Per group and topic, the records between the committed offsets and the last stable
/// offsets (the high watermarks, unless a transaction is open): what a read_committed
/// consumer can still read, as its own `records-lag` counts. A group whose offsets or
/// topics cannot be read now is left out of this round.
async fn lags<S: LagStore + ?Sized>(
    store: &S,
    groups: &[String],
) -> HashMap<GroupTopicLabels, i64> {
    let mut lags: HashMap<GroupTopicLabels, i64> = HashMap::new();
    for group_id in groups {
        let offsets = match store.fetch_offsets(group_id, None).await {
            Ok(offsets) => offsets,
            Err(e) => {
                debug!(group = %group_id, error = %e, "reading offsets for the lag failed");
                continue;
            }
        };
        let names: Vec<String> = offsets.iter().map(|o| o.topic.clone()).collect();
        let Ok(topics) = store.topics(Some(&names)).await else {
            continue;
        };
        let ids: HashMap<&str, Uuid> = topics
            .iter()
            .map(|t| (t.name.as_str(), t.topic_id))
            .collect();
        let wanted: Vec<(Uuid, i32, &CommittedOffset)> = offsets
            .iter()
            .filter_map(|o| Some((*ids.get(o.topic.as_str())?, o.partition_index, o)))
            .collect();
        let keys: Vec<(Uuid, i32)> = wanted.iter().map(|(t, p, _)| (*t, *p)).collect();
        let Ok(states) = store.partition_states(&keys).await else {
            continue;
        };
        let ends: HashMap<(Uuid, i32), i64> = states
            .iter()
            .map(|s| ((s.topic_id, s.partition_index), s.last_stable_offset()))
            .collect();
        for (topic_id, partition, committed) in wanted {
            let Some(end) = ends.get(&(topic_id, partition)) else {
                continue;
            };
            let labels = GroupTopicLabels {
                group: group_id.clone(),
                topic: committed.topic.clone(),
            };
            *lags.entry(labels).or_default() += (end - committed.offset).max(0);
        }
    }
    lags
}

/// Replaces what was reported with `groups` and `lags`.
fn publish(reported: &mut Reported, groups: i64, lags: HashMap<GroupTopicLabels, i64>) {
    let gateway = &metrics().gateway;
    // By difference: several gateways in one process (tests, `yaks dev`) add up.
    gateway.groups.inc_by(groups - reported.groups);
    reported.groups = groups;
    for stale in reported.lags.iter().filter(|l| !lags.contains_key(*l)) {
        gateway.group_lag.remove(stale);
    }
    reported.lags.clear();
    for (labels, lag) in lags {
        gateway.group_lag.get_or_create(&labels).set(lag);
        reported.lags.insert(labels);
    }
}
