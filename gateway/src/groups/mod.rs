//! Consumer group coordination (the classic protocol), by whichever gateway owns the group.
//!
//! A group's coordinator is the gateway presenting the broker chosen by rendezvous hashing
//! of the group id over the live brokers ([`crate::cluster::ClusterView::coordinator_of`]);
//! every gateway computes the same answer, and the others say NOT_COORDINATOR. The
//! coordinator keeps the group's membership in memory ([`state::Group`], a pure state
//! machine) and PostgreSQL keeps what must survive it: each generation that becomes
//! Stable or Empty, and committed offsets. A gateway takes a group over by claiming it
//! (bumping its coordinator epoch) and loading the last recorded generation, so when a
//! gateway dies its groups carry on at the next owner with their members, assignments and
//! offsets; every write names the epoch and is refused once another gateway claimed the
//! group, so a gateway with a stale view of who is alive cannot overwrite the new owner's
//! state ([`GroupWrite::Fenced`]).
//!
//! - [`state`]: the group state machine, unit-tested without I/O.
//! - [`consumer_protocol`]: reading subscriptions, for OffsetDelete.
//! - [`lag`]: the groups' lag as metrics, read beside coordination, never part of it.
//!
//! A group leaves this gateway's memory one way, `Coordinator::close`: when another
//! gateway owns it now (seen in the registry, or fenced by a write), when it was deleted,
//! when it was only looked at, and when the gateway shuts down. Its waiting requests are
//! answered and its timer task ends; [`Coordinator::shutdown`] waits for those tasks.

pub mod consumer_protocol;
pub mod lag;
pub mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::{Mutex, Notify, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use yaks_common::clock::SharedClock;
use yaks_common::error::StoreError;
use yaks_common::metastore::{CommittedOffset, GroupListing, GroupWrite, Groups};
use yaks_common::shutdown::Shutdown;

use crate::cluster::ClusterView;
use state::{
    Answer, Description, Effects, Group, GroupSettings, JoinRequest, JoinResult, Reply, State,
    SyncResult,
};

/// How often loaded groups are checked against the live gateways, to let go of those that
/// moved to another gateway.
const OWNERSHIP_CHECK: Duration = Duration::from_secs(1);
/// How long a gateway shutting down waits for its groups' timer tasks to end.
const TIMERS_STOP: Duration = Duration::from_secs(5);

/// A loaded group with the requests waiting on it.
struct Loaded {
    group: Group,
    /// The coordinator epoch this gateway claimed the group with.
    epoch: i64,
    /// Whether the group exists for clients: recorded before, joined, or committed to.
    known: bool,
    joins: HashMap<String, oneshot::Sender<JoinResult>>,
    syncs: HashMap<String, oneshot::Sender<SyncResult>>,
}

impl Loaded {
    fn deliver(&mut self, replies: Vec<Reply>) {
        for reply in replies {
            match reply {
                Reply::Join { member, result } => {
                    if let Some(waiter) = self.joins.remove(&member) {
                        let _ = waiter.send(result);
                    }
                }
                Reply::Sync { member, result } => {
                    if let Some(waiter) = self.syncs.remove(&member) {
                        let _ = waiter.send(result);
                    }
                }
            }
        }
    }
}

/// One group in this gateway's memory: its state behind an async lock (held across the
/// PostgreSQL writes that must precede answers), and a wake-up for its timer task.
struct GroupCell {
    loaded: Mutex<Loaded>,
    wake: Notify,
    closed: AtomicBool,
}

/// The groups this gateway coordinates.
pub struct Coordinator {
    metastore: Arc<dyn Groups>,
    cluster: ClusterView,
    clock: SharedClock,
    settings: GroupSettings,
    groups: StdMutex<HashMap<String, Arc<GroupCell>>>,
    /// Serialises loading, so two requests never claim the same group twice.
    loading: Mutex<()>,
    /// The loaded groups' timer tasks, so shutting down can wait for them.
    timers: StdMutex<JoinSet<()>>,
}

/// An OffsetCommit's member fields.
#[derive(Debug, Clone)]
pub struct CommitMember {
    /// Member id ("" for standalone commits).
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Generation (-1 for standalone commits).
    pub generation: i32,
}

/// A failed metastore write of a group, logged; clients retry after finding the coordinator.
fn store_failed(group_id: &str, error: &StoreError, what: &str) -> ResponseError {
    warn!(group = group_id, %error, "{what} failed");
    ResponseError::CoordinatorNotAvailable
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Group id.
    pub group_id: String,
    /// Protocol type.
    pub protocol_type: String,
    /// State name.
    pub state: &'static str,
}

impl Coordinator {
    /// A coordinator with nothing loaded.
    pub fn new(
        metastore: Arc<dyn Groups>,
        cluster: ClusterView,
        clock: SharedClock,
        settings: GroupSettings,
    ) -> Coordinator {
        Coordinator {
            metastore,
            cluster,
            clock,
            settings,
            groups: StdMutex::new(HashMap::new()),
            loading: Mutex::new(()),
            timers: StdMutex::new(JoinSet::new()),
        }
    }

    fn owns(&self, group_id: &str) -> bool {
        self.cluster
            .coordinator_of(group_id)
            .is_some_and(|b| self.cluster.is_local(b.node_id))
    }

    fn loaded_cell(&self, group_id: &str) -> Option<Arc<GroupCell>> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(group_id)
            .cloned()
    }

    /// The group's cell, loading (claiming) it if this gateway owns it and has not yet.
    async fn cell(self: &Arc<Self>, group_id: &str) -> Result<Arc<GroupCell>, ResponseError> {
        if !self.owns(group_id) {
            if let Some(cell) = self.loaded_cell(group_id) {
                info!(
                    group = group_id,
                    "group moved to another gateway; unloading it"
                );
                self.unload(group_id, &cell).await;
            }
            return Err(ResponseError::NotCoordinator);
        }
        if let Some(cell) = self.loaded_cell(group_id) {
            return Ok(cell);
        }
        let _loading = self.loading.lock().await;
        if let Some(cell) = self.loaded_cell(group_id) {
            return Ok(cell);
        }
        // As Kafka's coordinator while it loads a group: the client retries here.
        let claim = self.metastore.claim_group(group_id).await.map_err(|e| {
            warn!(group = group_id, error = %e, "loading a group failed");
            ResponseError::CoordinatorLoadInProgress
        })?;
        let now = yaks_common::clock::now();
        let group = match &claim.group {
            Some(stored) => Group::restore(stored, self.settings, now),
            None => Group::new(group_id, self.settings),
        };
        info!(
            group = group_id,
            epoch = claim.epoch,
            generation = group.generation(),
            members = group.members().len(),
            "coordinating group"
        );
        let cell = Arc::new(GroupCell {
            loaded: Mutex::new(Loaded {
                group,
                epoch: claim.epoch,
                known: claim.group.is_some(),
                joins: HashMap::new(),
                syncs: HashMap::new(),
            }),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        });
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group_id.to_owned(), cell.clone());
        let mut timers = self.timers.lock().unwrap_or_else(|p| p.into_inner());
        // Ended tasks are only dropped when reaped.
        while timers.try_join_next().is_some() {}
        timers.spawn(self.clone().run_timers(cell.clone()));
        Ok(cell)
    }

    /// Lets go of a loaded group, the one way out of this gateway's memory: it is removed
    /// from the loaded groups (unless a newer load replaced it there), its requests waiting
    /// for a rebalance are answered `error` and its timer task ends. Takes the group's
    /// state, so its lock is held: nothing else happens to the group meanwhile.
    fn close(&self, group_id: &str, cell: &GroupCell, loaded: &mut Loaded, error: ResponseError) {
        {
            let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            if groups
                .get(group_id)
                .is_some_and(|held| std::ptr::eq(Arc::as_ptr(held), cell))
            {
                groups.remove(group_id);
            }
        }
        cell.closed.store(true, Ordering::SeqCst);
        cell.wake.notify_one();
        let effects = loaded.group.kill(error);
        loaded.deliver(effects.replies);
    }

    /// Lets go of a group another gateway owns now: waiting requests are told to find the
    /// coordinator again.
    async fn unload(&self, group_id: &str, cell: &GroupCell) {
        let mut loaded = cell.loaded.lock().await;
        self.close(group_id, cell, &mut loaded, ResponseError::NotCoordinator);
    }

    /// Another gateway claimed the group since this one loaded it: let go of it, telling
    /// waiting requests to find the coordinator again.
    fn fenced(&self, cell: &GroupCell, loaded: &mut Loaded, group_id: &str) -> ResponseError {
        info!(group = group_id, "another gateway took over the group");
        self.close(group_id, cell, loaded, ResponseError::NotCoordinator);
        ResponseError::NotCoordinator
    }

    /// Lets go of every group (the gateway is shutting down: their next coordinator takes
    /// them over) and waits for their timer tasks to end.
    pub async fn shutdown(&self) {
        for (group_id, cell) in self.cells() {
            self.unload(&group_id, &cell).await;
        }
        let mut timers =
            std::mem::take(&mut *self.timers.lock().unwrap_or_else(|p| p.into_inner()));
        let ended = async { while timers.join_next().await.is_some() {} };
        if tokio::time::timeout(TIMERS_STOP, ended).await.is_err() {
            warn!("group timer tasks still running after {TIMERS_STOP:?}; aborting them");
            timers.abort_all();
        }
    }

    /// Delivers replies and performs the writes the state machine asks for. A fenced write
    /// means another gateway owns the group now: it is unloaded and NOT_COORDINATOR returned.
    async fn settle(
        &self,
        cell: &GroupCell,
        loaded: &mut Loaded,
        mut effects: Effects,
    ) -> Result<(), ResponseError> {
        loop {
            loaded.deliver(std::mem::take(&mut effects.replies));
            if !effects.persist {
                return Ok(());
            }
            let snapshot = loaded.group.snapshot();
            let written = self
                .metastore
                .store_group(loaded.epoch, &snapshot, self.clock.now_ms())
                .await;
            let error = match written {
                Ok(GroupWrite::Done | GroupWrite::NotFound) => {
                    loaded.known = true;
                    None
                }
                Ok(GroupWrite::Fenced) => {
                    return Err(self.fenced(cell, loaded, &snapshot.group_id));
                }
                Err(e) => {
                    warn!(group = %snapshot.group_id, error = %e, "recording a group generation failed");
                    Some(ResponseError::CoordinatorNotAvailable)
                }
            };
            effects = loaded.group.persisted(error, yaks_common::clock::now());
        }
    }

    /// Runs a group's timers (session, rebalance, pending-sync) until it is unloaded.
    async fn run_timers(self: Arc<Self>, cell: Arc<GroupCell>) {
        loop {
            let deadline = cell.loaded.lock().await.group.next_deadline();
            match deadline {
                Some(deadline) => tokio::select! {
                    _ = yaks_common::clock::sleep_until(deadline) => {}
                    _ = cell.wake.notified() => {}
                },
                None => cell.wake.notified().await,
            }
            if cell.closed.load(Ordering::SeqCst) {
                return;
            }
            let mut loaded = cell.loaded.lock().await;
            let effects = loaded.group.tick(yaks_common::clock::now());
            let _ = self.settle(&cell, &mut loaded, effects).await;
        }
    }

    /// The groups loaded here, as they are now.
    fn cells(&self) -> Vec<(String, Arc<GroupCell>)> {
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, cell)| (id.clone(), cell.clone()))
            .collect()
    }

    /// The groups this gateway coordinates that exist for clients (recorded, joined or
    /// committed to), for [`lag`].
    pub async fn known_groups(&self) -> Vec<String> {
        let mut known = Vec::new();
        for (group_id, cell) in self.cells() {
            if cell.loaded.lock().await.known {
                known.push(group_id);
            }
        }
        known
    }

    /// Checks loaded groups against the live gateways every second and unloads those that
    /// now belong to another gateway, and those that were only looked at (a DescribeGroups
    /// or a stray Heartbeat for a group that does not exist), until `shutdown`.
    pub async fn keep_ownership(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = yaks_common::clock::sleep(OWNERSHIP_CHECK) => {}
                _ = shutdown.wait() => return,
            }
            for (group_id, cell) in self.cells() {
                if !self.owns(&group_id) {
                    info!(group = %group_id, "group moved to another gateway; unloading it");
                    self.unload(&group_id, &cell).await;
                    continue;
                }
                // A group in use is busy now and then; it is not unused.
                let Ok(mut loaded) = cell.loaded.try_lock() else {
                    continue;
                };
                if !loaded.known && loaded.group.is_idle() {
                    debug!(group = %group_id, "unloading a group that does not exist");
                    let error = ResponseError::NotCoordinator;
                    self.close(&group_id, &cell, &mut loaded, error);
                }
            }
        }
    }

    /// Runs `call` on the group; an answer it defers is awaited on a channel registered in
    /// `waiters` before the call's effects are delivered (they may hold that answer).
    async fn answer<T>(
        &self,
        cell: &GroupCell,
        call: impl FnOnce(&mut Loaded) -> (Answer<T>, Effects),
        waiters: fn(&mut Loaded) -> &mut HashMap<String, oneshot::Sender<T>>,
        failed: impl Fn(ResponseError) -> T,
    ) -> T {
        let waiting = {
            let mut loaded = cell.loaded.lock().await;
            let (answer, effects) = call(&mut loaded);
            let waiting = match answer {
                Answer::Now(result) => Err(result),
                Answer::Later(member) => {
                    let (tx, rx) = oneshot::channel();
                    waiters(&mut loaded).insert(member, tx);
                    Ok(rx)
                }
            };
            if let Err(e) = self.settle(cell, &mut loaded, effects).await {
                return failed(e);
            }
            cell.wake.notify_one();
            waiting
        };
        match waiting {
            Err(result) => result,
            // The group was unloaded or deleted with this request waiting.
            Ok(rx) => rx
                .await
                .unwrap_or_else(|_| failed(ResponseError::NotCoordinator)),
        }
    }

    /// JoinGroup; waits while the group rebalances.
    pub async fn join(self: &Arc<Self>, group_id: &str, request: JoinRequest) -> JoinResult {
        let member_id = request.member_id.clone();
        let failed = |error: ResponseError| JoinResult {
            error: error.code(),
            member_id: member_id.clone(),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            members: Vec::new(),
        };
        let cell = match self.cell(group_id).await {
            Ok(cell) => cell,
            Err(e) => return failed(e),
        };
        self.answer(
            &cell,
            |loaded| {
                let outcome = loaded.group.join(request, yaks_common::clock::now());
                if !loaded.group.members().is_empty() {
                    loaded.known = true;
                }
                outcome
            },
            |loaded| &mut loaded.joins,
            failed,
        )
        .await
    }

    /// SyncGroup; followers wait for the leader's assignment.
    pub async fn sync(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignment: Vec<(String, bytes::Bytes)>,
    ) -> SyncResult {
        let failed = |error: ResponseError| SyncResult {
            error: error.code(),
            assignment: bytes::Bytes::new(),
        };
        let cell = match self.cell(group_id).await {
            Ok(cell) => cell,
            // Kafka's answer while loading: the rebalance state is lost, rejoin (older
            // clients do not know COORDINATOR_LOAD_IN_PROGRESS here).
            Err(ResponseError::CoordinatorLoadInProgress) => {
                return failed(ResponseError::RebalanceInProgress);
            }
            Err(e) => return failed(e),
        };
        self.answer(
            &cell,
            |loaded| {
                loaded.group.sync(
                    member_id,
                    instance_id,
                    generation,
                    assignment,
                    yaks_common::clock::now(),
                )
            },
            |loaded| &mut loaded.syncs,
            failed,
        )
        .await
    }

    /// Heartbeat: an error code.
    pub async fn heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        let cell = match self.cell(group_id).await {
            Ok(cell) => cell,
            // Kafka answers heartbeats blindly while loading.
            Err(ResponseError::CoordinatorLoadInProgress) => return 0,
            Err(e) => return e.code(),
        };
        let mut loaded = cell.loaded.lock().await;
        let code = loaded.group.heartbeat(
            member_id,
            instance_id,
            generation,
            yaks_common::clock::now(),
        );
        cell.wake.notify_one();
        code
    }

    /// LeaveGroup: a top-level error, or a code per member.
    pub async fn leave(
        self: &Arc<Self>,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> Result<Vec<i16>, ResponseError> {
        let cell = self.cell(group_id).await?;
        let mut loaded = cell.loaded.lock().await;
        let (codes, effects) = loaded.group.leave(leaving, yaks_common::clock::now());
        self.settle(&cell, &mut loaded, effects).await?;
        cell.wake.notify_one();
        Ok(codes)
    }

    /// OffsetCommit: checks membership, then stores the offsets under the group's lock, so
    /// no rebalance slips between the check and the write.
    pub async fn commit_offsets(
        self: &Arc<Self>,
        group_id: &str,
        member: &CommitMember,
        offsets: &[CommittedOffset],
    ) -> Result<(), ResponseError> {
        self.commit(group_id, member, false, offsets).await
    }

    /// TxnOffsetCommit's membership check, with nothing stored (the offsets go to the
    /// producer's transaction, not to the group yet).
    pub async fn check_transactional_commit(
        self: &Arc<Self>,
        group_id: &str,
        member: &CommitMember,
    ) -> Result<(), ResponseError> {
        self.commit(group_id, member, true, &[]).await
    }

    async fn commit(
        self: &Arc<Self>,
        group_id: &str,
        member: &CommitMember,
        transactional: bool,
        offsets: &[CommittedOffset],
    ) -> Result<(), ResponseError> {
        let cell = self.cell(group_id).await?;
        let mut loaded = cell.loaded.lock().await;
        loaded.group.check_commit(
            &member.member_id,
            member.instance_id.as_deref(),
            member.generation,
            transactional,
            yaks_common::clock::now(),
        )?;
        cell.wake.notify_one();
        if offsets.is_empty() {
            return Ok(());
        }
        match self
            .metastore
            .commit_offsets(group_id, loaded.epoch, offsets, self.clock.now_ms())
            .await
        {
            Ok(GroupWrite::Done | GroupWrite::NotFound) => {
                loaded.known = true;
                Ok(())
            }
            Ok(GroupWrite::Fenced) => Err(self.fenced(&cell, &mut loaded, group_id)),
            Err(e) => Err(store_failed(group_id, &e, "storing offsets")),
        }
    }

    /// OffsetFetch: committed offsets, read from PostgreSQL by the group's coordinator.
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<CommittedOffset>, ResponseError> {
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        self.metastore
            .fetch_offsets(group_id, partitions)
            .await
            .map_err(|e| {
                warn!(group = group_id, error = %e, "reading offsets failed");
                ResponseError::CoordinatorNotAvailable
            })
    }

    /// DescribeGroups for one group; a group nobody used is Dead, as in Kafka.
    pub async fn describe(self: &Arc<Self>, group_id: &str) -> Result<Description, ResponseError> {
        let cell = self.cell(group_id).await?;
        let loaded = cell.loaded.lock().await;
        let mut description = loaded.group.describe();
        if !loaded.known && loaded.group.state() == State::Empty {
            description.state = State::Dead.name();
        }
        Ok(description)
    }

    /// DeleteGroups for one group: only an empty group goes, with its offsets.
    pub async fn delete(self: &Arc<Self>, group_id: &str) -> Result<(), ResponseError> {
        let cell = self.cell(group_id).await?;
        let mut loaded = cell.loaded.lock().await;
        match loaded.group.state() {
            State::Empty => {}
            State::Dead => return Err(ResponseError::GroupIdNotFound),
            _ => return Err(ResponseError::NonEmptyGroup),
        }
        let outcome = self.metastore.delete_group(group_id, loaded.epoch).await;
        match outcome {
            Ok(GroupWrite::Done) => {
                info!(group = group_id, "group deleted");
                let error = ResponseError::CoordinatorNotAvailable;
                self.close(group_id, &cell, &mut loaded, error);
                Ok(())
            }
            Ok(GroupWrite::NotFound) => Err(ResponseError::GroupIdNotFound),
            Ok(GroupWrite::Fenced) => Err(self.fenced(&cell, &mut loaded, group_id)),
            Err(e) => Err(store_failed(group_id, &e, "deleting a group")),
        }
    }

    /// OffsetDelete: per partition, NONE or GROUP_SUBSCRIBED_TO_TOPIC; the group must exist.
    pub async fn delete_offsets(
        self: &Arc<Self>,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, ResponseError> {
        let cell = self.cell(group_id).await?;
        let mut loaded = cell.loaded.lock().await;
        if loaded.group.state() == State::Dead {
            return Err(ResponseError::GroupIdNotFound);
        }
        if !loaded.known {
            let stored = self
                .metastore
                .fetch_offsets(group_id, None)
                .await
                .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
            if stored.is_empty() {
                return Err(ResponseError::GroupIdNotFound);
            }
        }
        let subscribed = if loaded.group.state() == State::Empty {
            Default::default()
        } else {
            match loaded.group.subscribed_topics() {
                Some(topics) => topics,
                // Not a consumer group, or metadata we cannot read: only an empty group.
                None => return Err(ResponseError::NonEmptyGroup),
            }
        };
        let codes: Vec<i16> = partitions
            .iter()
            .map(|(topic, _)| {
                if subscribed.contains(topic) {
                    ResponseError::GroupSubscribedToTopic.code()
                } else {
                    0
                }
            })
            .collect();
        let deletable: Vec<(String, i32)> = partitions
            .iter()
            .zip(&codes)
            .filter(|(_, code)| **code == 0)
            .map(|(p, _)| p.clone())
            .collect();
        if deletable.is_empty() {
            return Ok(codes);
        }
        match self
            .metastore
            .delete_offsets(group_id, loaded.epoch, &deletable)
            .await
        {
            Ok(GroupWrite::Done | GroupWrite::NotFound) => {
                loaded.known = true;
                Ok(codes)
            }
            Ok(GroupWrite::Fenced) => Err(self.fenced(&cell, &mut loaded, group_id)),
            Err(e) => Err(store_failed(group_id, &e, "deleting offsets")),
        }
    }

    /// ListGroups: the groups this gateway coordinates, recorded or only in memory.
    pub async fn list(&self) -> Result<Vec<Listed>, ResponseError> {
        let recorded: Vec<GroupListing> = self.metastore.list_groups().await.map_err(|e| {
            warn!(error = %e, "listing groups failed");
            ResponseError::CoordinatorNotAvailable
        })?;
        let loaded = self.cells();
        let mut listed: HashMap<String, Listed> = recorded
            .into_iter()
            .filter(|g| self.owns(&g.group_id))
            .map(|g| {
                let state = if g.has_members { "Stable" } else { "Empty" };
                (
                    g.group_id.clone(),
                    Listed {
                        group_id: g.group_id,
                        protocol_type: g.protocol_type,
                        state,
                    },
                )
            })
            .collect();
        for (group_id, cell) in loaded {
            let loaded = cell.loaded.lock().await;
            if !loaded.known || loaded.group.state() == State::Dead || !self.owns(&group_id) {
                continue;
            }
            listed.insert(
                group_id.clone(),
                Listed {
                    group_id,
                    protocol_type: loaded.group.protocol_type().unwrap_or_default().to_owned(),
                    state: loaded.group.state().name(),
                },
            );
        }
        let mut listed: Vec<Listed> = listed.into_values().collect();
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        debug!(count = listed.len(), "groups listed");
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use yaks_common::clock::system_clock;
    use yaks_common::config::RegistryConfig;
    use yaks_common::metastore::MemoryMetastore;

    use super::*;

    async fn coordinator() -> Arc<Coordinator> {
        // The first member's join waits this long for others: for the whole test.
        coordinator_waiting(Duration::from_secs(3600)).await
    }

    async fn coordinator_waiting(initial_rebalance_delay: Duration) -> Arc<Coordinator> {
        let metastore = Arc::new(MemoryMetastore::default());
        let advertised = "PLAINTEXT://127.0.0.1:9092".to_owned();
        let cluster = ClusterView::register(
            metastore.clone(),
            RegistryConfig::default(),
            vec![advertised],
        )
        .await
        .expect("registers");
        let settings = GroupSettings {
            initial_rebalance_delay,
            min_session_timeout_ms: 1,
            max_session_timeout_ms: 600_000,
        };
        Arc::new(Coordinator::new(
            metastore,
            cluster,
            system_clock(),
            settings,
        ))
    }

    fn new_member() -> JoinRequest {
        JoinRequest {
            member_id: String::new(),
            instance_id: None,
            require_known_member_id: false,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 60_000,
            session_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), bytes::Bytes::new())],
        }
    }

    /// On paused time: the timeouts pass without the test waiting for them.
    #[tokio::test(start_paused = true)]
    async fn a_member_that_stops_heartbeating_leaves_after_its_session_timeout() {
        let coordinator = coordinator_waiting(Duration::from_secs(3)).await;
        let joined = coordinator.join("g", new_member()).await;
        assert_eq!(joined.error, 0);
        assert_eq!(joined.leader, joined.member_id);
        let synced = coordinator
            .sync("g", &joined.member_id, None, joined.generation, Vec::new())
            .await;
        assert_eq!(synced.error, 0);
        let members = |coordinator: Arc<Coordinator>| async move {
            let description = coordinator.describe("g").await.expect("described");
            (description.state, description.members.len())
        };
        assert_eq!(members(coordinator.clone()).await, ("Stable", 1));

        // The session timeout is 30 s; heartbeats keep the member for longer.
        for _ in 0..3 {
            yaks_common::clock::sleep(Duration::from_secs(20)).await;
            let code = coordinator
                .heartbeat("g", &joined.member_id, None, joined.generation)
                .await;
            assert_eq!(code, 0);
        }
        yaks_common::clock::sleep(Duration::from_secs(29)).await;
        assert_eq!(members(coordinator.clone()).await, ("Stable", 1));
        yaks_common::clock::sleep(Duration::from_secs(2)).await;
        assert_eq!(members(coordinator.clone()).await, ("Empty", 0));
        coordinator.shutdown().await;
    }

    #[tokio::test]
    async fn shutting_down_answers_waiting_members_and_ends_every_timer_task() {
        let coordinator = coordinator().await;
        let joining = tokio::spawn({
            let coordinator = coordinator.clone();
            async move { coordinator.join("g", new_member()).await }
        });
        let waiting = async {
            loop {
                if let Some(cell) = coordinator.loaded_cell("g")
                    && cell.loaded.lock().await.joins.len() == 1
                {
                    return;
                }
                yaks_common::clock::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the join waits for the rebalance");
        let timers = || {
            coordinator
                .timers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len()
        };
        assert_eq!(timers(), 1);

        // Well within TIMERS_STOP: the timer task ended by itself, it was not aborted.
        tokio::time::timeout(TIMERS_STOP / 2, coordinator.shutdown())
            .await
            .expect("timer tasks end at once");
        let answer = tokio::time::timeout(Duration::from_secs(5), joining)
            .await
            .expect("the waiting join is answered")
            .expect("join task");
        assert_eq!(answer.error, ResponseError::NotCoordinator.code());
        assert_eq!(timers(), 0);
        assert!(coordinator.cells().is_empty());
    }
}
