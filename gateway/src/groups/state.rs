//! One consumer group's membership, as Kafka's classic group coordinator keeps it.
//!
//! A pure state machine: no I/O, no clock of its own (every call takes `now`), no tasks.
//! States go Empty → PreparingRebalance → CompletingRebalance → Stable and back, with
//! generations, protocol selection, the member-id-required join (JoinGroup v4+), static
//! membership (`group.instance.id`), the initial rebalance delay, rebalance, session and
//! pending-sync timeouts. Calls answer their own request at once or say it waits; answers
//! to waiting requests (a rebalance completing answers every member's JoinGroup) come back
//! as [`Reply`] values for the caller to deliver. When state must be written to PostgreSQL
//! before anyone is told (the leader's assignment, a group turned empty), the effects say
//! so; the coordinator ([`super::Coordinator`]) writes it and calls [`Group::persisted`].

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use yaks_common::clock::Instant;
use yaks_common::metastore::{StoredGroup, StoredMember};

/// How long a brand-new member's JoinGroup may wait before it is dropped (Kafka's
/// `NewMemberJoinTimeoutMs`): it cannot heartbeat yet, so the session timeout cannot apply.
const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Group settings that shape the state machine.
#[derive(Debug, Clone, Copy)]
pub struct GroupSettings {
    /// Kafka's `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay: Duration,
    /// Smallest session timeout a member may ask for.
    pub min_session_timeout_ms: i32,
    /// Largest session timeout a member may ask for.
    pub max_session_timeout_ms: i32,
}

/// A group's state, named as Kafka names it in DescribeGroups and ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No members (possibly committed offsets).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assigned; members heartbeat.
    Stable,
    /// Deleted or moved away; callers should look for the coordinator again.
    Dead,
}

impl State {
    /// The name clients see.
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// One member.
#[derive(Debug, Clone)]
pub struct Member {
    /// Member id handed out by the coordinator.
    pub id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id of the member's JoinGroup.
    pub client_id: String,
    /// Address of the member's connection.
    pub client_host: String,
    /// How long a rebalance waits for this member to rejoin.
    pub rebalance_timeout_ms: i32,
    /// How long this member may go without a heartbeat.
    pub session_timeout_ms: i32,
    /// Protocol type (`consumer` for consumers).
    pub protocol_type: String,
    /// Supported protocols (assignors) in preference order, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// This member's part of the leader's assignment.
    pub assignment: Bytes,
    awaiting_join: bool,
    awaiting_sync: bool,
    is_new: bool,
    last_heartbeat: Instant,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    /// Kafka's `shouldKeepAlive`: a member waiting in a rebalance is not expired by its
    /// session timeout (a new one only after [`NEW_MEMBER_JOIN_TIMEOUT`]).
    fn expires_at(&self) -> Option<Instant> {
        if self.awaiting_join {
            self.is_new
                .then(|| self.last_heartbeat + NEW_MEMBER_JOIN_TIMEOUT)
        } else if self.awaiting_sync {
            None
        } else {
            Some(self.last_heartbeat + millis(self.session_timeout_ms))
        }
    }
}

/// A JoinGroup as the state machine needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Member id; empty for a new member.
    pub member_id: String,
    /// `group.instance.id` (v5+).
    pub instance_id: Option<String>,
    /// v4+ dynamic members get MEMBER_ID_REQUIRED and must join again with the id.
    pub require_known_member_id: bool,
    /// Client id from the request header.
    pub client_id: String,
    /// The connection's peer address.
    pub client_host: String,
    /// Rebalance timeout (v1+; the session timeout before).
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Protocol type.
    pub protocol_type: String,
    /// Protocols in preference order.
    pub protocols: Vec<(String, Bytes)>,
}

/// A member as the leader's JoinGroup answer lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinResult {
    /// Error code (0: none).
    pub error: i16,
    /// The member's id (new or given).
    pub member_id: String,
    /// The generation joined, -1 on error.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// Every member with metadata, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    fn error(member_id: &str, error: ResponseError) -> JoinResult {
        JoinResult {
            error: error.code(),
            member_id: member_id.to_owned(),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncResult {
    /// Error code (0: none).
    pub error: i16,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(error: ResponseError) -> SyncResult {
        SyncResult {
            error: error.code(),
            assignment: Bytes::new(),
        }
    }
}

/// An answer to a request that was left waiting.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// To the JoinGroup `member` is waiting on.
    Join {
        /// The waiting member.
        member: String,
        /// Its answer.
        result: JoinResult,
    },
    /// To the SyncGroup `member` is waiting on.
    Sync {
        /// The waiting member.
        member: String,
        /// Its answer.
        result: SyncResult,
    },
}

/// What a call did besides answering its own request.
#[derive(Debug, Default)]
pub struct Effects {
    /// Answers for waiting requests.
    pub replies: Vec<Reply>,
    /// The group must be written to PostgreSQL ([`Group::snapshot`]), then
    /// [`Group::persisted`] called with the outcome.
    pub persist: bool,
}

impl Effects {
    fn join(&mut self, member: &str, result: JoinResult) {
        self.replies.push(Reply::Join {
            member: member.to_owned(),
            result,
        });
    }

    fn sync(&mut self, member: &str, result: SyncResult) {
        self.replies.push(Reply::Sync {
            member: member.to_owned(),
            result,
        });
    }
}

/// A request's own answer: now, or later as a [`Reply`] to this member.
#[derive(Debug, PartialEq)]
pub enum Answer<T> {
    /// Answered.
    Now(T),
    /// Waits; the answer will come as a reply to this member id.
    Later(String),
}

#[derive(Debug, Clone, Copy)]
enum JoinTimer {
    /// Kafka's InitialDelayedJoin: a group that was empty waits `delay`, and again while
    /// new members keep arriving, up to the rebalance timeout.
    Initial {
        deadline: Instant,
        remaining: Duration,
    },
    /// Kafka's DelayedJoin: completes when every member rejoined, or at the deadline.
    Regular { deadline: Instant },
}

/// The summary DescribeGroups returns.
#[derive(Debug, Clone)]
pub struct Description {
    /// State name.
    pub state: &'static str,
    /// Protocol type.
    pub protocol_type: String,
    /// Chosen protocol (only when Stable).
    pub protocol: String,
    /// Members; metadata and assignments only when Stable.
    pub members: Vec<DescribedMember>,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct DescribedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
    /// Assignment.
    pub assignment: Bytes,
}

/// One consumer group.
#[derive(Debug)]
pub struct Group {
    id: String,
    settings: GroupSettings,
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    /// In join order; the first is leader when one must be chosen.
    members: Vec<Member>,
    /// `group.instance.id` → member id.
    static_members: HashMap<String, String>,
    /// Ids handed out with MEMBER_ID_REQUIRED, until they join or expire.
    pending_members: HashMap<String, Instant>,
    /// Members that have not sent SyncGroup since the rebalance completed.
    pending_sync: HashSet<String>,
    sync_deadline: Option<Instant>,
    join_timer: Option<JoinTimer>,
    /// The leader's assignment while it is being written.
    pending_assignment: Option<(i32, HashMap<String, Bytes>)>,
    new_member_added: bool,
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl Group {
    /// A group nobody has used yet.
    pub fn new(id: &str, settings: GroupSettings) -> Group {
        Group {
            id: id.to_owned(),
            settings,
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: Vec::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: HashSet::new(),
            sync_deadline: None,
            join_timer: None,
            pending_assignment: None,
            new_member_added: false,
        }
    }

    /// A group as PostgreSQL last recorded it (Empty or Stable); members get a full
    /// session from `now`, as Kafka's coordinator does when it loads a group.
    pub fn restore(stored: &StoredGroup, settings: GroupSettings, now: Instant) -> Group {
        let mut group = Group::new(&stored.group_id, settings);
        group.generation = stored.generation;
        group.protocol_type = stored.protocol_type.clone();
        group.protocol_name = stored.protocol_name.clone();
        group.leader = stored.leader.clone();
        for m in &stored.members {
            if let Some(instance) = &m.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            group.members.push(Member {
                id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                protocol_type: stored.protocol_type.clone().unwrap_or_default(),
                protocols: m.protocols.clone(),
                assignment: m.assignment.clone(),
                awaiting_join: false,
                awaiting_sync: false,
                is_new: false,
                last_heartbeat: now,
            });
        }
        group.state = if group.members.is_empty() {
            State::Empty
        } else {
            State::Stable
        };
        if group.leader.as_ref().is_none_or(|l| !group.has(l)) {
            group.leader = group.members.first().map(|m| m.id.clone());
        }
        group
    }

    /// What PostgreSQL keeps: generation, protocol, leader and members with assignments.
    /// While the leader's assignment is being written, the snapshot carries it.
    pub fn snapshot(&self) -> StoredGroup {
        let pending = self
            .pending_assignment
            .as_ref()
            .filter(|(generation, _)| *generation == self.generation)
            .map(|(_, assignment)| assignment);
        StoredGroup {
            group_id: self.id.clone(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .iter()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocols: m.protocols.clone(),
                    assignment: pending
                        .and_then(|a| a.get(&m.id).cloned())
                        .unwrap_or_else(|| m.assignment.clone()),
                })
                .collect(),
        }
    }

    /// The group id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The current generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The protocol type, once a member joined.
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// Nothing in flight: Empty, no members, no member ids handed out and not yet used.
    pub fn is_idle(&self) -> bool {
        self.state == State::Empty && self.members.is_empty() && self.pending_members.is_empty()
    }

    /// Members, in join order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Marks the group deleted or moved away: every waiting request gets `error` (one that
    /// makes clients look for the coordinator again).
    pub fn kill(&mut self, error: ResponseError) -> Effects {
        let mut effects = Effects::default();
        for member in &self.members {
            if member.awaiting_join {
                effects.join(&member.id, JoinResult::error(&member.id, error));
            }
            if member.awaiting_sync {
                effects.sync(&member.id, SyncResult::error(error));
            }
        }
        self.state = State::Dead;
        self.members.clear();
        self.static_members.clear();
        self.pending_members.clear();
        self.pending_sync.clear();
        self.join_timer = None;
        self.sync_deadline = None;
        self.pending_assignment = None;
        effects
    }

    fn has(&self, member_id: &str) -> bool {
        self.members.iter().any(|m| m.id == member_id)
    }

    fn member_mut(&mut self, member_id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == member_id)
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// A static member whose instance id is registered to another member id is fenced.
    fn is_fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|registered| registered != member_id)
    }

    /// Protocols every member supports.
    fn supported_by_all<'a>(&'a self) -> impl Iterator<Item = &'a str> + 'a {
        self.members.first().into_iter().flat_map(move |first| {
            first
                .protocols
                .iter()
                .map(|(name, _)| name.as_str())
                .filter(move |name| {
                    self.members
                        .iter()
                        .all(|m| m.protocols.iter().any(|(n, _)| n == name))
                })
        })
    }

    /// Kafka's `supportsProtocols`: the first member sets the type; later ones must share
    /// it and a protocol every member supports.
    fn accepts(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let common: HashSet<&str> = self.supported_by_all().collect();
        protocols
            .iter()
            .any(|(name, _)| common.contains(name.as_str()))
    }

    /// Kafka's `selectProtocol`: among protocols every member supports, each member votes
    /// for its most preferred; most votes wins, ties go to the earliest member's preference.
    fn select_protocol(&self) -> Option<String> {
        let candidates: Vec<&str> = self.supported_by_all().collect();
        let mut votes: Vec<(&str, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for member in &self.members {
            let choice = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(&name.as_str()));
            if let Some(v) = choice.and_then(|c| votes.iter_mut().find(|(n, _)| *n == c.0)) {
                v.1 += 1;
            }
        }
        let best = votes.iter().map(|(_, n)| *n).max()?;
        votes
            .into_iter()
            .find(|(_, n)| *n == best)
            .map(|(c, _)| c.to_owned())
    }

    fn rebalance_timeout(&self) -> Duration {
        millis(
            self.members
                .iter()
                .map(|m| m.rebalance_timeout_ms)
                .max()
                .unwrap_or(0),
        )
    }

    /// JoinGroup.
    pub fn join(&mut self, request: JoinRequest, now: Instant) -> (Answer<JoinResult>, Effects) {
        let mut effects = Effects::default();
        let refuse = |member_id: &str, error| Answer::Now(JoinResult::error(member_id, error));
        if request.session_timeout_ms < self.settings.min_session_timeout_ms
            || request.session_timeout_ms > self.settings.max_session_timeout_ms
        {
            return (
                refuse(&request.member_id, ResponseError::InvalidSessionTimeout),
                effects,
            );
        }
        if self.state == State::Dead {
            return (
                refuse(&request.member_id, ResponseError::CoordinatorNotAvailable),
                effects,
            );
        }
        if !self.accepts(&request.protocol_type, &request.protocols) {
            return (
                refuse(&request.member_id, ResponseError::InconsistentGroupProtocol),
                effects,
            );
        }
        let answer = if request.member_id.is_empty() {
            self.join_unknown(request, now, &mut effects)
        } else {
            self.join_known(request, now, &mut effects)
        };
        self.maybe_complete_join(now, &mut effects);
        // The join that completed the rebalance is answered among the replies.
        let answer = match answer {
            Answer::Later(member) => match take_join_reply(&mut effects, &member) {
                Some(result) => Answer::Now(result),
                None => Answer::Later(member),
            },
            now => now,
        };
        (answer, effects)
    }

    fn new_member_id(request: &JoinRequest) -> String {
        let prefix = request
            .instance_id
            .as_deref()
            .unwrap_or(request.client_id.as_str());
        format!("{prefix}-{}", yaks_common::random::uuid())
    }

    fn join_unknown(
        &mut self,
        request: JoinRequest,
        now: Instant,
        effects: &mut Effects,
    ) -> Answer<JoinResult> {
        let new_id = Group::new_member_id(&request);
        if let Some(old_id) = request
            .instance_id
            .as_ref()
            .and_then(|i| self.static_members.get(i))
            .cloned()
        {
            return self.replace_static_member(&old_id, new_id, request, now, effects);
        }
        if request.require_known_member_id {
            self.pending_members
                .insert(new_id.clone(), now + millis(request.session_timeout_ms));
            return Answer::Now(JoinResult::error(&new_id, ResponseError::MemberIdRequired));
        }
        self.add_member_and_rebalance(new_id, request, now, effects)
    }

    fn join_known(
        &mut self,
        request: JoinRequest,
        now: Instant,
        effects: &mut Effects,
    ) -> Answer<JoinResult> {
        let member_id = request.member_id.clone();
        if self.pending_members.contains_key(&member_id) {
            self.pending_members.remove(&member_id);
            return self.add_member_and_rebalance(member_id, request, now, effects);
        }
        if self.is_fenced(&member_id, request.instance_id.as_deref()) {
            return Answer::Now(JoinResult::error(
                &member_id,
                ResponseError::FencedInstanceId,
            ));
        }
        let unknown_instance = request
            .instance_id
            .as_ref()
            .is_some_and(|i| !self.static_members.contains_key(i));
        if !self.has(&member_id) || unknown_instance {
            return Answer::Now(JoinResult::error(
                &member_id,
                ResponseError::UnknownMemberId,
            ));
        }
        match self.state {
            State::PreparingRebalance => {
                self.update_member_and_rebalance(&member_id, request, now, effects)
            }
            State::CompletingRebalance => {
                let same = self
                    .members
                    .iter()
                    .any(|m| m.id == member_id && m.protocols == request.protocols);
                if same {
                    // It missed its JoinGroup answer: give the current generation again.
                    Answer::Now(self.join_result(&member_id))
                } else {
                    self.update_member_and_rebalance(&member_id, request, now, effects)
                }
            }
            State::Stable => {
                let same = self
                    .members
                    .iter()
                    .any(|m| m.id == member_id && m.protocols == request.protocols);
                if self.is_leader(&member_id) || !same {
                    // A changed subscription, or the leader asking (it saw topic metadata
                    // change), rebalances.
                    self.update_member_and_rebalance(&member_id, request, now, effects)
                } else {
                    Answer::Now(JoinResult {
                        members: Vec::new(),
                        ..self.join_result(&member_id)
                    })
                }
            }
            State::Empty | State::Dead => Answer::Now(JoinResult::error(
                &member_id,
                ResponseError::UnknownMemberId,
            )),
        }
    }

    /// A static member came back with a new process: the new member id takes the old
    /// one's place; the old process, if still waiting, is fenced.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        request: JoinRequest,
        now: Instant,
        effects: &mut Effects,
    ) -> Answer<JoinResult> {
        let previous_leader = self.leader.clone().unwrap_or_default();
        let Some(member) = self.member_mut(old_id) else {
            return Answer::Now(JoinResult::error(
                &request.member_id,
                ResponseError::UnknownMemberId,
            ));
        };
        let (was_joining, was_syncing) = (member.awaiting_join, member.awaiting_sync);
        member.id = new_id.clone();
        member.awaiting_join = false;
        member.awaiting_sync = false;
        member.last_heartbeat = now;
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.session_timeout_ms = request.session_timeout_ms;
        let same_protocols = member.protocols == request.protocols;
        if was_joining {
            effects.join(
                old_id,
                JoinResult::error(old_id, ResponseError::FencedInstanceId),
            );
        }
        if was_syncing {
            effects.sync(old_id, SyncResult::error(ResponseError::FencedInstanceId));
        }
        if let Some(instance) = &request.instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.is_leader(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        match self.state {
            State::Stable if same_protocols => {
                // Nothing changed but the process: no rebalance. The old leader id is
                // returned so a restarted leader does not compute a new assignment the
                // stable group would never spread.
                effects.persist = true;
                Answer::Now(JoinResult {
                    members: Vec::new(),
                    leader: previous_leader,
                    ..self.join_result(&new_id)
                })
            }
            _ => {
                let mut request = request;
                request.member_id = new_id.clone();
                self.update_member_and_rebalance(&new_id, request, now, effects)
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        request: JoinRequest,
        now: Instant,
        effects: &mut Effects,
    ) -> Answer<JoinResult> {
        if self.state == State::PreparingRebalance && self.generation == 0 {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        if let Some(instance) = &request.instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        self.members.push(Member {
            id: member_id.clone(),
            instance_id: request.instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            session_timeout_ms: request.session_timeout_ms,
            protocol_type: request.protocol_type,
            protocols: request.protocols,
            assignment: Bytes::new(),
            awaiting_join: true,
            awaiting_sync: false,
            is_new: true,
            last_heartbeat: now,
        });
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        self.maybe_prepare_rebalance(now, effects);
        Answer::Later(member_id)
    }

    fn update_member_and_rebalance(
        &mut self,
        member_id: &str,
        request: JoinRequest,
        now: Instant,
        effects: &mut Effects,
    ) -> Answer<JoinResult> {
        if let Some(member) = self.member_mut(member_id) {
            member.protocols = request.protocols;
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
            member.session_timeout_ms = request.session_timeout_ms;
            member.awaiting_join = true;
        }
        self.maybe_prepare_rebalance(now, effects);
        Answer::Later(member_id.to_owned())
    }

    fn maybe_prepare_rebalance(&mut self, now: Instant, effects: &mut Effects) {
        if matches!(
            self.state,
            State::Stable | State::CompletingRebalance | State::Empty
        ) {
            self.prepare_rebalance(now, effects);
        }
    }

    fn prepare_rebalance(&mut self, now: Instant, effects: &mut Effects) {
        if self.state == State::CompletingRebalance {
            self.reset_assignment(ResponseError::RebalanceInProgress, effects);
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let delay = self.settings.initial_rebalance_delay;
        self.join_timer = Some(if self.state == State::Empty {
            JoinTimer::Initial {
                deadline: now + delay,
                remaining: self.rebalance_timeout().saturating_sub(delay),
            }
        } else {
            JoinTimer::Regular {
                deadline: now + self.rebalance_timeout(),
            }
        });
        self.state = State::PreparingRebalance;
    }

    /// Clears assignments and tells members waiting in SyncGroup.
    fn reset_assignment(&mut self, error: ResponseError, effects: &mut Effects) {
        self.pending_assignment = None;
        for member in &mut self.members {
            member.assignment = Bytes::new();
            if member.awaiting_sync {
                member.awaiting_sync = false;
                effects.sync(&member.id, SyncResult::error(error));
            }
        }
    }

    fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.iter().all(|m| m.awaiting_join)
    }

    fn maybe_complete_join(&mut self, now: Instant, effects: &mut Effects) {
        if self.state == State::PreparingRebalance
            && matches!(self.join_timer, Some(JoinTimer::Regular { .. }))
            && self.all_joined()
        {
            self.complete_join(now, effects);
        }
    }

    fn join_result(&self, member_id: &str) -> JoinResult {
        JoinResult {
            error: 0,
            member_id: member_id.to_owned(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            members: if self.is_leader(member_id) {
                let protocol = self.protocol_name.as_deref().unwrap_or_default();
                self.members
                    .iter()
                    .map(|m| JoinedMember {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        metadata: m.metadata(protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Kafka's `onCompleteJoin`: drops dynamic members that did not rejoin, then starts the
    /// next generation and answers every waiting JoinGroup.
    fn complete_join(&mut self, now: Instant, effects: &mut Effects) {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|m| !m.awaiting_join && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id, effects);
        }
        if !self.elect_joined_leader() && !self.members.is_empty() {
            // Nobody rejoined (only static members remain): wait another round.
            self.join_timer = Some(JoinTimer::Regular {
                deadline: now + self.rebalance_timeout(),
            });
            return;
        }
        self.join_timer = None;
        self.new_member_added = false;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol_type = None;
            self.protocol_name = None;
            self.leader = None;
            effects.persist = true;
            return;
        }
        self.protocol_name = self.select_protocol();
        self.state = State::CompletingRebalance;
        self.pending_sync = self.members.iter().map(|m| m.id.clone()).collect();
        self.sync_deadline = Some(now + self.rebalance_timeout());
        let answers: Vec<(String, JoinResult)> = self
            .members
            .iter()
            .filter(|m| m.awaiting_join)
            .map(|m| (m.id.clone(), self.join_result(&m.id)))
            .collect();
        for member in &mut self.members {
            member.awaiting_join = false;
            member.is_new = false;
            member.last_heartbeat = now;
        }
        for (member, result) in answers {
            effects.join(&member, result);
        }
    }

    /// Keeps the leader if it rejoined, else takes any member that did.
    fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else {
            return false;
        };
        if self
            .members
            .iter()
            .any(|m| m.id == leader && m.awaiting_join)
        {
            return true;
        }
        match self.members.iter().find(|m| m.awaiting_join) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    /// Removes a member; its waiting JoinGroup learns it is unknown.
    fn remove_member(&mut self, member_id: &str, effects: &mut Effects) {
        let Some(index) = self.members.iter().position(|m| m.id == member_id) else {
            return;
        };
        let member = self.members.remove(index);
        if member.awaiting_join {
            effects.join(
                &member.id,
                JoinResult::error("", ResponseError::UnknownMemberId),
            );
        }
        if member.awaiting_sync {
            effects.sync(
                &member.id,
                SyncResult::error(ResponseError::UnknownMemberId),
            );
        }
        if let Some(instance) = &member.instance_id {
            self.static_members.remove(instance);
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
    }

    fn remove_member_and_update(&mut self, member_id: &str, now: Instant, effects: &mut Effects) {
        self.remove_member(member_id, effects);
        match self.state {
            State::Stable | State::CompletingRebalance => {
                self.maybe_prepare_rebalance(now, effects);
                self.maybe_complete_join(now, effects);
            }
            State::PreparingRebalance => self.maybe_complete_join(now, effects),
            State::Empty | State::Dead => {}
        }
    }

    /// SyncGroup. `assignment` is the leader's (empty for followers).
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignment: Vec<(String, Bytes)>,
        now: Instant,
    ) -> (Answer<SyncResult>, Effects) {
        let mut effects = Effects::default();
        let refuse = |error| (Answer::Now(SyncResult::error(error)), Effects::default());
        if self.state == State::Dead {
            return refuse(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_fenced(member_id, instance_id) {
            return refuse(ResponseError::FencedInstanceId);
        }
        if !self.has(member_id) {
            return refuse(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return refuse(ResponseError::IllegalGeneration);
        }
        match self.state {
            State::Empty | State::Dead => refuse(ResponseError::UnknownMemberId),
            State::PreparingRebalance => refuse(ResponseError::RebalanceInProgress),
            State::CompletingRebalance => {
                self.pending_sync.remove(member_id);
                if let Some(member) = self.member_mut(member_id) {
                    member.awaiting_sync = true;
                }
                if self.is_leader(member_id) {
                    let mut map: HashMap<String, Bytes> = assignment.into_iter().collect();
                    for member in &self.members {
                        map.entry(member.id.clone()).or_default();
                    }
                    self.pending_assignment = Some((self.generation, map));
                    effects.persist = true;
                }
                (Answer::Later(member_id.to_owned()), effects)
            }
            State::Stable => {
                self.pending_sync.remove(member_id);
                let member = self.member_mut(member_id).expect("checked above");
                member.last_heartbeat = now;
                (
                    Answer::Now(SyncResult {
                        error: 0,
                        assignment: member.assignment.clone(),
                    }),
                    effects,
                )
            }
        }
    }

    /// The outcome of writing [`Group::snapshot`]. Spreads a stored assignment to the
    /// members waiting in SyncGroup and makes the group Stable; a failed write of one sends
    /// them `error` and rebalances.
    pub fn persisted(&mut self, error: Option<ResponseError>, now: Instant) -> Effects {
        let mut effects = Effects::default();
        let Some((generation, assignment)) = self.pending_assignment.take() else {
            return effects;
        };
        if self.state != State::CompletingRebalance || generation != self.generation {
            return effects;
        }
        if let Some(error) = error {
            self.reset_assignment(error, &mut effects);
            self.prepare_rebalance(now, &mut effects);
            return effects;
        }
        let mut assignment = assignment;
        for member in &mut self.members {
            member.assignment = assignment.remove(&member.id).unwrap_or_default();
            if member.awaiting_sync {
                member.awaiting_sync = false;
                member.last_heartbeat = now;
                effects.replies.push(Reply::Sync {
                    member: member.id.clone(),
                    result: SyncResult {
                        error: 0,
                        assignment: member.assignment.clone(),
                    },
                });
            }
        }
        self.state = State::Stable;
        effects
    }

    /// Heartbeat: error code.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        if self.state == State::Dead {
            return ResponseError::CoordinatorNotAvailable.code();
        }
        if self.is_fenced(member_id, instance_id) {
            return ResponseError::FencedInstanceId.code();
        }
        if !self.has(member_id) {
            return ResponseError::UnknownMemberId.code();
        }
        if generation != self.generation {
            return ResponseError::IllegalGeneration.code();
        }
        let state = self.state;
        let Some(member) = self.member_mut(member_id) else {
            return ResponseError::UnknownMemberId.code();
        };
        match state {
            State::Empty | State::Dead => ResponseError::UnknownMemberId.code(),
            State::PreparingRebalance => {
                member.last_heartbeat = now;
                ResponseError::RebalanceInProgress.code()
            }
            // A member may heartbeat between its JoinGroup answer and SyncGroup.
            State::CompletingRebalance | State::Stable => {
                member.last_heartbeat = now;
                0
            }
        }
    }

    /// LeaveGroup for each `(member id, instance id)`: an error code per member.
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        now: Instant,
    ) -> (Vec<i16>, Effects) {
        let mut effects = Effects::default();
        if self.state == State::Dead {
            let code = ResponseError::CoordinatorNotAvailable.code();
            return (vec![code; leaving.len()], effects);
        }
        let mut codes = Vec::with_capacity(leaving.len());
        for (member_id, instance_id) in leaving {
            let instance_id = instance_id.as_deref();
            if !member_id.is_empty() && self.is_fenced(member_id, instance_id) {
                codes.push(ResponseError::FencedInstanceId.code());
            } else if self.pending_members.remove(member_id).is_some() {
                self.maybe_complete_join(now, &mut effects);
                codes.push(0);
            } else {
                let target = instance_id
                    .and_then(|i| self.static_members.get(i).cloned())
                    .or_else(|| self.has(member_id).then(|| member_id.clone()));
                match target {
                    Some(id) => {
                        self.remove_member_and_update(&id, now, &mut effects);
                        codes.push(0);
                    }
                    None => codes.push(ResponseError::UnknownMemberId.code()),
                }
            }
        }
        (codes, effects)
    }

    /// Checks an OffsetCommit, or with `transactional` a TxnOffsetCommit, against
    /// membership (Kafka's `validateOffsetCommit`); `Ok` means store it. Standalone commits
    /// (generation < 0, no member) need an empty group, except transactional ones: a
    /// TxnOffsetCommit below v3 carries no member (kafkajs and aiokafka send only those,
    /// as does the Java client's `sendOffsetsToTransaction` given a group id alone), and
    /// Kafka takes it in any state; nor is a transactional commit refused mid-rebalance.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        transactional: bool,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if self.state == State::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if self.is_fenced(member_id, instance_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if generation < 0 && self.state == State::Empty {
            return Ok(());
        }
        let anonymous = generation < 0 && member_id.is_empty() && instance_id.is_none();
        if anonymous && transactional {
            return Ok(());
        }
        if !self.has(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        match self.state {
            State::Stable | State::PreparingRebalance => {
                if let Some(member) = self.member_mut(member_id) {
                    member.last_heartbeat = now;
                }
                Ok(())
            }
            State::CompletingRebalance if transactional => Ok(()),
            State::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
            State::Empty | State::Dead => Err(ResponseError::UnknownMemberId),
        }
    }

    /// Topics the members' `consumer` subscriptions name, for OffsetDelete.
    pub fn subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = HashSet::new();
        for member in &self.members {
            let metadata = member.metadata(protocol);
            topics.extend(super::consumer_protocol::subscribed_topics(metadata)?);
        }
        Some(topics)
    }

    /// DescribeGroups' view.
    pub fn describe(&self) -> Description {
        let stable = self.state == State::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        Description {
            state: self.state.name(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: self
                .members
                .iter()
                .map(|m| DescribedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    /// When [`Group::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let join = self.join_timer.map(|t| match t {
            JoinTimer::Initial { deadline, .. } | JoinTimer::Regular { deadline } => deadline,
        });
        let sync = self.sync_deadline.filter(|_| !self.pending_sync.is_empty());
        join.into_iter()
            .chain(sync)
            .chain(self.pending_members.values().copied())
            .chain(self.members.iter().filter_map(Member::expires_at))
            .min()
    }

    /// Runs the timers due at `now`: expired pending members, members whose session ran
    /// out, rebalance and pending-sync deadlines.
    pub fn tick(&mut self, now: Instant) -> Effects {
        let mut effects = Effects::default();
        if self.state == State::Dead {
            return effects;
        }
        let expired: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.pending_members.remove(&id);
            self.maybe_complete_join(now, &mut effects);
        }
        let failed: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.expires_at().is_some_and(|at| at <= now))
            .map(|m| m.id.clone())
            .collect();
        for id in failed {
            tracing::info!(group = %self.id, member = %id, "session timed out; removing member");
            self.remove_member_and_update(&id, now, &mut effects);
        }
        if self.sync_deadline.is_some_and(|d| d <= now) {
            self.sync_deadline = None;
            let missing: Vec<String> = self.pending_sync.drain().collect();
            if !missing.is_empty()
                && matches!(self.state, State::CompletingRebalance | State::Stable)
            {
                for id in &missing {
                    tracing::info!(group = %self.id, member = %id, "no SyncGroup in time; removing member");
                    self.remove_member(id, &mut effects);
                }
                self.maybe_prepare_rebalance(now, &mut effects);
                self.maybe_complete_join(now, &mut effects);
            }
        }
        match self.join_timer {
            Some(JoinTimer::Initial {
                deadline,
                remaining,
            }) if deadline <= now => {
                if self.new_member_added && !remaining.is_zero() {
                    self.new_member_added = false;
                    let delay = self.settings.initial_rebalance_delay.min(remaining);
                    self.join_timer = Some(JoinTimer::Initial {
                        deadline: now + delay,
                        remaining: remaining.saturating_sub(delay),
                    });
                } else {
                    self.complete_join(now, &mut effects);
                }
            }
            Some(JoinTimer::Regular { deadline }) if deadline <= now => {
                self.complete_join(now, &mut effects);
            }
            _ => {}
        }
        effects
    }
}

fn take_join_reply(effects: &mut Effects, member: &str) -> Option<JoinResult> {
    let index = effects
        .replies
        .iter()
        .position(|r| matches!(r, Reply::Join { member: m, .. } if m == member))?;
    match effects.replies.remove(index) {
        Reply::Join { result, .. } => Some(result),
        Reply::Sync { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: GroupSettings = GroupSettings {
        initial_rebalance_delay: Duration::from_millis(100),
        min_session_timeout_ms: 1_000,
        max_session_timeout_ms: 60_000,
    };

    fn request(member_id: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            instance_id: None,
            require_known_member_id: true,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 10_000,
            session_timeout_ms: 3_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| ((*p).to_owned(), Bytes::from(format!("{p}-metadata"))))
                .collect(),
        }
    }

    /// Joins a new dynamic member: MEMBER_ID_REQUIRED, then the join with its id, which
    /// waits. Returns the id.
    fn join_new(group: &mut Group, protocols: &[&str], now: Instant) -> String {
        let (answer, _) = group.join(request("", protocols), now);
        let Answer::Now(first) = answer else {
            panic!("a new member is answered at once")
        };
        assert_eq!(first.error, ResponseError::MemberIdRequired.code());
        let (answer, _) = group.join(request(&first.member_id, protocols), now);
        assert_eq!(answer, Answer::Later(first.member_id.clone()));
        first.member_id
    }

    fn joins(effects: &Effects) -> Vec<(String, JoinResult)> {
        effects
            .replies
            .iter()
            .filter_map(|r| match r {
                Reply::Join { member, result } => Some((member.clone(), result.clone())),
                Reply::Sync { .. } => None,
            })
            .collect()
    }

    fn syncs(effects: &Effects) -> Vec<(String, SyncResult)> {
        effects
            .replies
            .iter()
            .filter_map(|r| match r {
                Reply::Sync { member, result } => Some((member.clone(), result.clone())),
                Reply::Join { .. } => None,
            })
            .collect()
    }

    /// Brings a group of `count` members to Stable; returns ids (leader first) and the time.
    fn stable_group(count: usize) -> (Group, Vec<String>, Instant) {
        let mut group = Group::new("g", SETTINGS);
        let now = yaks_common::clock::now();
        let ids: Vec<String> = (0..count)
            .map(|_| join_new(&mut group, &["range", "roundrobin"], now))
            .collect();
        assert_eq!(group.state(), State::PreparingRebalance);
        // The initial delay runs (again while members kept arriving), then completes.
        let (now, effects) = loop {
            let at = group.next_deadline().expect("a rebalance deadline");
            let effects = group.tick(at);
            if group.state() == State::CompletingRebalance {
                break (at, effects);
            }
        };
        let answers = joins(&effects);
        assert_eq!(answers.len(), count, "every waiting join is answered");
        assert_eq!(group.state(), State::CompletingRebalance);
        assert_eq!(group.generation(), 1);
        let leader = answers[0].1.leader.clone();
        for (member, result) in &answers {
            assert_eq!(result.protocol_name.as_deref(), Some("range"));
            assert_eq!(
                result.members.len(),
                if *member == leader { count } else { 0 }
            );
        }
        let mut ordered = vec![leader.clone()];
        ordered.extend(ids.into_iter().filter(|id| *id != leader));
        for follower in &ordered[1..] {
            let (answer, _) = group.sync(follower, None, 1, Vec::new(), now);
            assert_eq!(answer, Answer::Later(follower.clone()));
        }
        let assignment: Vec<(String, Bytes)> = ordered
            .iter()
            .map(|id| (id.clone(), Bytes::from(format!("for {id}"))))
            .collect();
        let (answer, effects) = group.sync(&leader, None, 1, assignment, now);
        assert_eq!(answer, Answer::Later(leader.clone()));
        assert!(
            effects.persist,
            "the assignment is written before anyone hears it"
        );
        assert_eq!(group.snapshot().members.len(), count);
        let effects = group.persisted(None, now);
        let delivered = syncs(&effects);
        assert_eq!(delivered.len(), count);
        for (member, result) in delivered {
            assert_eq!(result.assignment, Bytes::from(format!("for {member}")));
        }
        assert_eq!(group.state(), State::Stable);
        (group, ordered, now)
    }

    #[test]
    fn members_join_sync_and_become_stable_with_their_assignments() {
        let (group, ids, _) = stable_group(3);
        let snapshot = group.snapshot();
        assert_eq!(snapshot.generation, 1);
        assert_eq!(snapshot.leader.as_deref(), Some(ids[0].as_str()));
        assert_eq!(snapshot.protocol_name.as_deref(), Some("range"));
    }

    #[test]
    fn protocol_is_chosen_among_those_every_member_supports_by_vote() {
        let mut group = Group::new("g", SETTINGS);
        let now = yaks_common::clock::now();
        join_new(&mut group, &["sticky", "range"], now);
        join_new(&mut group, &["range", "sticky"], now);
        join_new(&mut group, &["range"], now);
        let (answer, _) = group.join(request("", &["roundrobin"]), now);
        assert_eq!(
            answer,
            Answer::Now(JoinResult::error(
                "",
                ResponseError::InconsistentGroupProtocol
            ))
        );
        group.tick(now + Duration::from_millis(100));
        let effects = group.tick(now + Duration::from_millis(200));
        let answers = joins(&effects);
        assert_eq!(answers.len(), 3);
        assert!(
            answers
                .iter()
                .all(|(_, r)| r.protocol_name.as_deref() == Some("range"))
        );
    }

    #[test]
    fn the_initial_delay_waits_while_members_keep_arriving() {
        let mut group = Group::new("g", SETTINGS);
        let start = yaks_common::clock::now();
        join_new(&mut group, &["range"], start);
        // A second member arrives during the first delay: another delay follows.
        join_new(&mut group, &["range"], start + Duration::from_millis(50));
        // generation 0: new_member_added makes the first expiry extend.
        let effects = group.tick(start + Duration::from_millis(100));
        assert!(joins(&effects).is_empty());
        let effects = group.tick(start + Duration::from_millis(200));
        assert_eq!(joins(&effects).len(), 2);
    }

    #[test]
    fn a_leaving_member_rebalances_the_rest_and_the_last_one_empties_the_group() {
        let (mut group, ids, now) = stable_group(2);
        let (codes, _) = group.leave(&[(ids[1].clone(), None)], now);
        assert_eq!(codes, vec![0]);
        assert_eq!(group.state(), State::PreparingRebalance);
        assert_eq!(
            group.heartbeat(&ids[0], None, 1, now),
            ResponseError::RebalanceInProgress.code()
        );
        let (answer, _) = group.join(request(&ids[0], &["range", "roundrobin"]), now);
        let Answer::Now(result) = answer else {
            panic!("the last member's rejoin completes the rebalance")
        };
        assert_eq!(result.generation, 2);
        assert_eq!(result.leader, ids[0]);
        let (codes, effects) = group.leave(&[(ids[0].clone(), None)], now);
        assert_eq!(codes, vec![0]);
        assert!(effects.persist, "an empty generation is recorded");
        assert_eq!(group.state(), State::Empty);
        assert_eq!(group.generation(), 3);
        let (codes, _) = group.leave(&[("nobody".into(), None)], now);
        assert_eq!(codes, vec![ResponseError::UnknownMemberId.code()]);
    }

    #[test]
    fn a_silent_member_is_removed_when_its_session_runs_out() {
        let (mut group, ids, now) = stable_group(2);
        let later = now + Duration::from_millis(2_000);
        assert_eq!(group.heartbeat(&ids[0], None, 1, later), 0);
        let expiry = now + Duration::from_millis(3_000);
        assert_eq!(group.next_deadline(), Some(expiry));
        group.tick(expiry);
        assert_eq!(group.state(), State::PreparingRebalance);
        assert_eq!(group.members().len(), 1);
        assert_eq!(
            group.heartbeat(&ids[1], None, 1, expiry),
            ResponseError::UnknownMemberId.code()
        );
    }

    #[test]
    fn a_member_that_does_not_rejoin_in_time_is_dropped_at_the_rebalance_timeout() {
        let (mut group, ids, now) = stable_group(2);
        // The leader rejoins (forcing a rebalance); the follower keeps heartbeating but
        // never rejoins.
        let (answer, _) = group.join(request(&ids[0], &["range", "roundrobin"]), now);
        assert_eq!(answer, Answer::Later(ids[0].clone()));
        let deadline = now + Duration::from_millis(10_000);
        for t in (500..10_000).step_by(500) {
            group.heartbeat(&ids[1], None, 1, now + Duration::from_millis(t));
        }
        let effects = group.tick(deadline);
        let answers = joins(&effects);
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].1.members.len(), 1, "only the leader remains");
        assert_eq!(group.generation(), 2);
    }

    #[test]
    fn generations_and_members_are_checked() {
        let (mut group, ids, now) = stable_group(2);
        assert_eq!(
            group.heartbeat(&ids[0], None, 7, now),
            ResponseError::IllegalGeneration.code()
        );
        assert_eq!(
            group.check_commit(&ids[0], None, 7, false, now),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            group.check_commit("stranger", None, 1, false, now),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(group.check_commit(&ids[1], None, 1, false, now), Ok(()));
        assert_eq!(
            group.check_commit("", None, -1, false, now),
            Err(ResponseError::UnknownMemberId),
            "standalone commits only while the group is empty"
        );
        // A TxnOffsetCommit below v3 names no member: Kafka takes it in any state.
        assert_eq!(group.check_commit("", None, -1, true, now), Ok(()));
        // One naming a member is checked as any commit.
        assert_eq!(
            group.check_commit("stranger", None, 1, true, now),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            group.check_commit(&ids[0], None, 7, true, now),
            Err(ResponseError::IllegalGeneration)
        );
        let (answer, _) = group.sync(&ids[1], None, 0, Vec::new(), now);
        assert_eq!(
            answer,
            Answer::Now(SyncResult::error(ResponseError::IllegalGeneration))
        );
        let empty = Group::new("e", SETTINGS);
        let mut empty = empty;
        assert_eq!(empty.check_commit("", None, -1, false, now), Ok(()));
        let (answer, _) = empty.join(request("", &["range"]).clone(), now);
        assert!(
            matches!(answer, Answer::Now(r) if r.error == ResponseError::MemberIdRequired.code())
        );
        let mut bad = request("", &["range"]);
        bad.session_timeout_ms = 100;
        let (answer, _) = empty.join(bad, now);
        assert!(
            matches!(answer, Answer::Now(r) if r.error == ResponseError::InvalidSessionTimeout.code())
        );
    }

    #[test]
    fn a_restarted_static_member_takes_its_place_without_a_rebalance_and_fences_the_old_id() {
        let mut group = Group::new("g", SETTINGS);
        let now = yaks_common::clock::now();
        let mut first = request("", &["range"]);
        first.instance_id = Some("instance-a".into());
        first.require_known_member_id = false;
        let (answer, _) = group.join(first.clone(), now);
        let Answer::Later(old_id) = answer else {
            panic!("a static member joins at once")
        };
        let now = now + Duration::from_millis(100);
        group.tick(now);
        group.sync(
            &old_id,
            Some("instance-a"),
            1,
            vec![(old_id.clone(), Bytes::from_static(b"a"))],
            now,
        );
        group.persisted(None, now);
        assert_eq!(group.state(), State::Stable);

        // The process restarts: same instance id, no member id.
        let (answer, effects) = group.join(first, now);
        let Answer::Now(result) = answer else {
            panic!("answered at once")
        };
        assert_eq!(result.error, 0);
        assert_ne!(result.member_id, old_id);
        assert_eq!(result.generation, 1, "no rebalance");
        assert_eq!(
            result.leader, old_id,
            "the old leader id, so no new assignment"
        );
        assert!(effects.persist, "the new member id is recorded");
        assert_eq!(group.state(), State::Stable);
        let (answer, _) = group.sync(&result.member_id, Some("instance-a"), 1, Vec::new(), now);
        assert_eq!(
            answer,
            Answer::Now(SyncResult {
                error: 0,
                assignment: Bytes::from_static(b"a")
            })
        );
        assert_eq!(
            group.heartbeat(&old_id, Some("instance-a"), 1, now),
            ResponseError::FencedInstanceId.code()
        );
    }

    #[test]
    fn a_restored_group_continues_with_its_members_and_assignments() {
        let (group, ids, _) = stable_group(2);
        let stored = group.snapshot();
        let now = yaks_common::clock::now();
        let mut restored = Group::restore(&stored, SETTINGS, now);
        assert_eq!(restored.state(), State::Stable);
        assert_eq!(restored.generation(), 1);
        assert_eq!(restored.heartbeat(&ids[1], None, 1, now), 0);
        let (answer, _) = restored.sync(&ids[1], None, 1, Vec::new(), now);
        assert_eq!(
            answer,
            Answer::Now(SyncResult {
                error: 0,
                assignment: Bytes::from(format!("for {}", ids[1]))
            })
        );
        let empty = Group::restore(
            &StoredGroup {
                members: Vec::new(),
                leader: None,
                ..stored
            },
            SETTINGS,
            now,
        );
        assert_eq!(empty.state(), State::Empty);
    }

    #[test]
    fn a_failed_assignment_write_sends_members_back_to_join() {
        let mut group = Group::new("g", SETTINGS);
        let now = yaks_common::clock::now();
        let a = join_new(&mut group, &["range"], now);
        let b = join_new(&mut group, &["range"], now);
        group.tick(now + Duration::from_millis(100));
        let now = now + Duration::from_millis(200);
        let effects = group.tick(now);
        let leader = joins(&effects)[0].1.leader.clone();
        let follower = if leader == a { b } else { a };
        group.sync(&follower, None, 1, Vec::new(), now);
        group.sync(&leader, None, 1, Vec::new(), now);
        let effects = group.persisted(Some(ResponseError::CoordinatorNotAvailable), now);
        let failed = syncs(&effects);
        assert_eq!(failed.len(), 2);
        assert!(
            failed
                .iter()
                .all(|(_, r)| r.error == ResponseError::CoordinatorNotAvailable.code())
        );
        assert_eq!(group.state(), State::PreparingRebalance);
    }
}
