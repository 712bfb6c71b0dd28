//! The order of one connection's produce requests on their way to writers.
//!
//! Kafka keeps a connection's produces in order because one broker appends them as they
//! arrive. yaks hands them over HTTP to writers, so the order is a rule, kept here for each
//! connection by a [`ProduceOrder`]. Each produce takes a [`Turn`] when its frame arrives:
//!
//! 1. **In turn.** A produce goes to a writer only once the connection's previous produce
//!    was *accepted* by one (taken into its buffer, which commits in order), or gave its
//!    place up ([`Turn::pass`]).
//! 2. **Carried.** When its turn comes, a produce takes along the unbroken run of produces
//!    ready right behind it — consecutive places, the same acks, no partition twice, at most
//!    [`MAX_CARRIED_BYTES`] — as one internal request ([`Place::Lead`]); they get its answer
//!    ([`Place::Carried`]). librdkafka sends a request per ready partition batch, so a client
//!    spreading records over many partitions keeps hundreds of small requests in flight: at
//!    a few milliseconds per writer round trip on a loaded machine, 16 partitions at half
//!    load queued for most of a second before requests were carried.
//! 3. **A failover waits for settlement.** A produce that must go to another writer than
//!    the one the previous produce went to first waits until the previous one is *settled*
//!    ([`Lead::previous_settled`]): answered, or past the point where it could still be
//!    stored. Otherwise it could be committed ahead of it: the order of producers without
//!    idempotence would break, and an idempotent one would be answered "retry" for arriving
//!    ahead of a batch still missing (see `yaks_common::metastore::producers`).
//! 4. **Settled in order.** A produce counts as settled only once every earlier one is, so
//!    "the previous one is settled" covers them all.
//! 5. **Deadlines fixed at arrival.** A turn's [`Deadline`] is set when its frame arrives,
//!    not when its turn comes, so a produce waiting behind a stopped writer is neither held
//!    nor stored past what its client was promised; a carried group takes the earliest.
//!
//! A turn dropped unused (its handler failed, or panicked) gives its place up in order, so
//! the connection's later produces never wait for it.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::TopicProduceData;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::deadlines::Deadline;
use crate::handlers::produce::{Answer, Refusal};

/// Most record bytes one internal request carries: a writer's flush (`writer.flush_bytes`
/// defaults to 8 MiB) gains nothing from larger ones.
pub const MAX_CARRIED_BYTES: usize = 8 << 20;

/// A produce's valid batches, ready to go to a writer.
#[derive(Debug, Default)]
pub struct Outbound {
    /// The request's acks; only produces with the same acks travel together.
    pub acks: i16,
    /// The client's timeout, passed on.
    pub timeout_ms: i32,
    /// The batches, by topic id.
    pub topics: Vec<TopicProduceData>,
    /// Record bytes in `topics`.
    pub bytes: usize,
}

impl Outbound {
    fn partitions(&self) -> Vec<(Uuid, i32)> {
        self.topics
            .iter()
            .flat_map(|t| t.partition_data.iter().map(|p| (t.topic_id, p.index)))
            .collect()
    }
}

/// A produce ready to go, waiting for its turn, which an earlier one may carry.
struct Waiting {
    outbound: Outbound,
    partitions: Vec<(Uuid, i32)>,
    deadline: Deadline,
    /// Where the produce that carries it puts the answer.
    answer: oneshot::Sender<Answer>,
}

/// One connection's produce order: which places were accepted and settled so far, and the
/// produces waiting for their turn.
pub struct ProduceOrder {
    /// The last place handed out; places start at 1.
    last: AtomicU64,
    /// Places accepted by a writer or given up, in order.
    accepted: Progress,
    /// Places settled, in order.
    settled: Progress,
    waiting: Mutex<BTreeMap<u64, Waiting>>,
}

impl ProduceOrder {
    /// An order with no produce yet.
    pub fn new() -> Arc<ProduceOrder> {
        Arc::new(ProduceOrder {
            last: AtomicU64::new(0),
            accepted: Progress::default(),
            settled: Progress::default(),
            waiting: Mutex::new(BTreeMap::new()),
        })
    }

    /// The next place, for a produce whose frame arrived now with these deadlines. The
    /// connection takes places in the order frames arrive.
    pub fn turn(self: &Arc<Self>, deadline: Deadline) -> Turn {
        Turn {
            order: self.clone(),
            place: self.last.fetch_add(1, Ordering::SeqCst) + 1,
            deadline,
        }
    }

    fn waiting(&self) -> MutexGuard<'_, BTreeMap<u64, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the produces right behind `place` that can travel with it: consecutive
    /// places, the same acks, no partition in `partitions` (which grows with each one
    /// taken), at most `room` record bytes in all.
    fn carry_after(
        &self,
        place: u64,
        acks: i16,
        partitions: &mut HashSet<(Uuid, i32)>,
        mut room: usize,
    ) -> Vec<Waiting> {
        let mut waiting = self.waiting();
        let mut carried = Vec::new();
        let mut next = place + 1;
        while let Some(candidate) = waiting.get(&next) {
            if candidate.outbound.acks != acks
                || candidate.outbound.bytes > room
                || candidate.partitions.iter().any(|p| partitions.contains(p))
            {
                break;
            }
            let Some(taken) = waiting.remove(&next) else {
                break;
            };
            room -= taken.outbound.bytes;
            partitions.extend(taken.partitions.iter().copied());
            carried.push(taken);
            next += 1;
        }
        carried
    }
}

/// How far places got, in order, waking only the waiters a move satisfies: a connection
/// may have a thousand produces waiting, and each would otherwise wake at every move.
#[derive(Default)]
struct Progress {
    state: Mutex<ProgressState>,
}

#[derive(Default)]
struct ProgressState {
    /// Every place up to this one is done.
    through: u64,
    /// Who waits for which place.
    waiters: BTreeMap<u64, Vec<oneshot::Sender<()>>>,
}

impl Progress {
    fn state(&self) -> MutexGuard<'_, ProgressState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn through(&self) -> u64 {
        self.state().through
    }

    /// Moves up to `place` (never down) and wakes whoever waited for it or an earlier one.
    fn mark(&self, place: u64) {
        let woken = {
            let mut state = self.state();
            if place <= state.through {
                return;
            }
            state.through = place;
            let later = state.waiters.split_off(&(place + 1));
            std::mem::replace(&mut state.waiters, later)
        };
        for waiter in woken.into_values().flatten() {
            let _ = waiter.send(());
        }
    }

    /// Returns once `place` is done.
    async fn reached(&self, place: u64) {
        let done = {
            let mut state = self.state();
            if state.through >= place {
                return;
            }
            let (waiter, done) = oneshot::channel();
            state.waiters.entry(place).or_default().push(waiter);
            done
        };
        // The sender is only dropped unsent with the order, which the caller holds.
        let _ = done.await;
    }
}

/// A produce's place in its connection's order. Dropped, it counts as accepted once the
/// previous place was, and as settled once the previous place was.
pub struct Turn {
    order: Arc<ProduceOrder>,
    place: u64,
    deadline: Deadline,
}

/// Where a produce stands once its turn came.
pub enum Place {
    /// It leads an internal request carrying the produces ready behind it: send it.
    Lead(Outbound, Lead),
    /// An earlier produce carried it along; this is that produce's answer.
    Carried(Answer),
}

impl Turn {
    /// The deadlines fixed when the produce arrived.
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// Nothing of this produce goes to a writer (every partition was refused): returns
    /// once the previous produce was accepted, so this answer never overtakes it, and gives
    /// the place up.
    pub async fn pass(self) {
        self.order.accepted.reached(self.place - 1).await;
    }

    /// Waits for this produce's turn with `outbound`, unless an earlier produce carries it
    /// first; when the turn comes, takes along the produces ready behind it.
    pub async fn wait(self, outbound: Outbound) -> Place {
        let (answer, mut answered) = oneshot::channel();
        let partitions = outbound.partitions();
        self.order.waiting().insert(
            self.place,
            Waiting {
                outbound,
                partitions,
                deadline: self.deadline,
                answer,
            },
        );
        tokio::select! {
            _ = self.order.accepted.reached(self.place - 1) => {}
            carried = &mut answered => return Place::Carried(carried_answer(carried)),
        }
        let Some(mine) = self.order.waiting().remove(&self.place) else {
            // Carried by an earlier produce between its turn and ours.
            return Place::Carried(carried_answer(answered.await));
        };
        let mut partitions: HashSet<(Uuid, i32)> = mine.partitions.into_iter().collect();
        let mut outbound = mine.outbound;
        let mut deadline = mine.deadline;
        let room = MAX_CARRIED_BYTES.saturating_sub(outbound.bytes);
        let carried = self
            .order
            .carry_after(self.place, outbound.acks, &mut partitions, room);
        let last = self.place + carried.len() as u64;
        yaks_common::metrics::metrics()
            .gateway
            .produces_per_writer_request
            .observe(1.0 + carried.len() as f64);
        let mut followers = Vec::with_capacity(carried.len());
        for other in carried {
            outbound.topics.extend(other.outbound.topics);
            outbound.bytes += other.outbound.bytes;
            deadline = deadline.min(other.deadline);
            followers.push(other.answer);
        }
        Place::Lead(
            outbound,
            Lead {
                turn: self,
                deadline,
                last,
                followers,
            },
        )
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let order = &self.order;
        let (place, previous) = (self.place, self.place - 1);
        if order.accepted.through() >= previous && order.settled.through() >= previous {
            order.accepted.mark(place);
            order.settled.mark(place);
            return;
        }
        let order = order.clone();
        tokio::spawn(async move {
            order.accepted.reached(previous).await;
            order.accepted.mark(place);
            order.settled.reached(previous).await;
            order.settled.mark(place);
        });
    }
}

/// The answer an earlier produce passed on; if it is gone (that produce failed before it
/// could say), the outcome is unknown.
fn carried_answer(carried: Result<Answer, oneshot::error::RecvError>) -> Answer {
    carried.unwrap_or_else(|_| {
        Err(Refusal::with_message(
            ResponseError::RequestTimedOut,
            "the produce carrying this one ended without an answer",
        ))
    })
}

/// A produce whose turn came, leading one internal request for itself and the produces it
/// carries.
pub struct Lead {
    turn: Turn,
    deadline: Deadline,
    /// The place of the last produce carried (this one's own if none).
    last: u64,
    followers: Vec<oneshot::Sender<Answer>>,
}

impl Lead {
    /// The earliest deadlines of the produces in the request.
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// The settlement a failover must wait for: that of every produce before this one.
    pub fn previous_settled(&self) -> PreviousSettled {
        PreviousSettled {
            order: self.turn.order.clone(),
            place: self.turn.place - 1,
        }
    }

    /// A writer accepted the request, or none would: the produces behind the carried ones
    /// may go.
    pub fn accepted(&self) {
        self.turn.order.accepted.mark(self.last);
    }

    /// Passes the answer to the carried produces and returns it for this one, which is
    /// then settled (once the previous one is).
    pub fn answer(self, answer: Answer) -> Answer {
        for follower in self.followers {
            let _ = follower.send(answer.clone());
        }
        answer
    }
}

/// The settlement of the produces before a lead, which a failover to another writer waits
/// for.
pub struct PreviousSettled {
    order: Arc<ProduceOrder>,
    place: u64,
}

impl PreviousSettled {
    /// Returns once every earlier produce of the connection is settled.
    pub async fn wait(&self) {
        self.order.settled.reached(self.place).await;
    }

    /// Whether every earlier produce is settled now.
    pub fn is_settled(&self) -> bool {
        self.order.settled.through() >= self.place
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use kafka_protocol::messages::produce_request::PartitionProduceData;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::handlers::produce::Stored;

    fn deadline(commit_ms: i64) -> Deadline {
        Deadline {
            at: yaks_common::clock::now() + Duration::from_secs(30),
            commit_ms,
        }
    }

    fn batches(acks: i16, partitions: &[i32], bytes: usize) -> Outbound {
        let topic = TopicProduceData::default()
            .with_topic_id(Uuid::nil())
            .with_partition_data(
                partitions
                    .iter()
                    .map(|&p| PartitionProduceData::default().with_index(p))
                    .collect(),
            );
        Outbound {
            acks,
            timeout_ms: 30_000,
            topics: vec![topic],
            bytes,
        }
    }

    fn partitions(outbound: &Outbound) -> Vec<i32> {
        outbound.partitions().iter().map(|p| p.1).collect()
    }

    fn lead(place: Place) -> (Outbound, Lead) {
        match place {
            Place::Lead(outbound, lead) => (outbound, lead),
            Place::Carried(_) => panic!("carried, expected to lead"),
        }
    }

    fn answer(base_offset: i64) -> Answer {
        let mut answers = HashMap::new();
        let stored = Stored {
            base_offset,
            log_start_offset: 0,
        };
        answers.insert((Uuid::nil(), 0), Ok(stored));
        Ok(Arc::new(answers))
    }

    /// Lets spawned tasks run until `done` holds, for at most a few seconds.
    async fn until(done: impl Fn() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            yaks_common::clock::sleep(Duration::from_millis(5)).await;
        }
        panic!("never happened");
    }

    /// Lets spawned tasks run a while, for asserting that something did not happen.
    async fn settle_down() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        yaks_common::clock::sleep(Duration::from_millis(20)).await;
    }

    fn spawn_wait(turn: Turn, outbound: Outbound) -> JoinHandle<Place> {
        tokio::spawn(turn.wait(outbound))
    }

    #[tokio::test]
    async fn progress_wakes_the_places_it_reaches_and_no_others() {
        let progress = Arc::new(Progress::default());
        let waiting: Vec<JoinHandle<()>> = (1..=3)
            .map(|place| {
                let progress = progress.clone();
                tokio::spawn(async move { progress.reached(place).await })
            })
            .collect();
        until(|| progress.state().waiters.len() == 3).await;
        progress.mark(2);
        progress.mark(1);
        settle_down().await;
        let done: Vec<bool> = waiting.iter().map(JoinHandle::is_finished).collect();
        assert_eq!(done, vec![true, true, false]);
        assert_eq!(progress.through(), 2, "never moves down");
        assert_eq!(progress.state().waiters.len(), 1);
    }

    #[tokio::test]
    async fn a_produce_waits_until_the_previous_one_was_accepted() {
        let order = ProduceOrder::new();
        let first = order.turn(deadline(1));
        let second = order.turn(deadline(2));
        let (_, first) = lead(first.wait(batches(-1, &[0], 10)).await);
        // The second arrives after the first took its turn: it waits for its own.
        let second = spawn_wait(second, batches(-1, &[1], 10));
        settle_down().await;
        assert!(!second.is_finished(), "went before the first was accepted");

        first.accepted();
        let (outbound, _) = lead(second.await.expect("task"));
        assert_eq!(partitions(&outbound), vec![1]);
    }

    #[tokio::test]
    async fn the_ready_run_behind_is_carried_and_shares_the_answer() {
        let order = ProduceOrder::new();
        let turns: Vec<Turn> = (0..4).map(|n| order.turn(deadline(n))).collect();
        let mut turns = turns.into_iter();
        let first = turns.next().expect("first");
        let second = spawn_wait(turns.next().expect("second"), batches(-1, &[1], 10));
        let third = spawn_wait(turns.next().expect("third"), batches(-1, &[2], 10));
        // The fourth names a partition the run already holds: it ends the run.
        let fourth = spawn_wait(turns.next().expect("fourth"), batches(-1, &[1], 10));
        until(|| order.waiting().len() == 3).await;

        let (outbound, first) = lead(first.wait(batches(-1, &[0], 10)).await);
        assert_eq!(partitions(&outbound), vec![0, 1, 2]);
        assert_eq!(outbound.bytes, 30);
        first.accepted();
        let answered = first.answer(answer(7));
        for carried in [second, third] {
            match carried.await.expect("task") {
                Place::Carried(carried) => assert_eq!(carried, answered),
                Place::Lead(..) => panic!("not carried"),
            }
        }
        let (outbound, _) = lead(fourth.await.expect("task"));
        assert_eq!(partitions(&outbound), vec![1]);
    }

    #[tokio::test]
    async fn other_acks_or_no_room_end_the_run() {
        let order = ProduceOrder::new();
        let first = order.turn(deadline(1));
        let second = spawn_wait(order.turn(deadline(2)), batches(0, &[1], 10));
        until(|| order.waiting().len() == 1).await;
        let (outbound, first) = lead(first.wait(batches(-1, &[0], 10)).await);
        assert_eq!(partitions(&outbound), vec![0], "other acks travel apart");
        first.accepted();
        drop(first);
        lead(second.await.expect("task"));

        let order = ProduceOrder::new();
        let first = order.turn(deadline(1));
        let second = spawn_wait(order.turn(deadline(2)), batches(-1, &[1], 10));
        until(|| order.waiting().len() == 1).await;
        let full = MAX_CARRIED_BYTES - 5;
        let (outbound, first) = lead(first.wait(batches(-1, &[0], full)).await);
        assert_eq!(partitions(&outbound), vec![0], "no room left");
        first.accepted();
        lead(second.await.expect("task"));
    }

    #[tokio::test]
    async fn a_failover_waits_until_every_earlier_produce_is_settled() {
        let order = ProduceOrder::new();
        let first = order.turn(deadline(1));
        let second = order.turn(deadline(2));
        let third = order.turn(deadline(3));
        let (_, first) = lead(first.wait(batches(-1, &[0], 10)).await);
        first.accepted();
        // The second has nothing to send; it passes, but cannot be settled before the first.
        second.pass().await;
        let (_, third) = lead(third.wait(batches(-1, &[0], 10)).await);
        let previous = third.previous_settled();
        let failover = tokio::spawn(async move { previous.wait().await });
        settle_down().await;
        assert!(!failover.is_finished(), "the first is still unsettled");

        // Answered: the first is settled, and with it the second.
        first.answer(answer(0)).expect("answer");
        tokio::time::timeout(Duration::from_secs(5), failover)
            .await
            .expect("settled")
            .expect("task");
        assert!(third.previous_settled().is_settled());
    }

    #[tokio::test]
    async fn a_turn_dropped_unused_gives_its_place_up() {
        let order = ProduceOrder::new();
        let first = order.turn(deadline(1));
        let second = order.turn(deadline(2));
        drop(first);
        let (_, second) = lead(
            tokio::time::timeout(Duration::from_secs(5), second.wait(batches(-1, &[0], 10)))
                .await
                .expect("not held by the abandoned place"),
        );
        assert!(second.previous_settled().is_settled());

        // A lead dropped without an answer: its followers are told the outcome is unknown.
        let third = order.turn(deadline(3));
        let fourth = spawn_wait(order.turn(deadline(4)), batches(-1, &[1], 10));
        second.accepted();
        drop(second);
        until(|| order.waiting().len() == 1).await;
        let (_, third) = lead(third.wait(batches(-1, &[0], 10)).await);
        drop(third);
        match fourth.await.expect("task") {
            Place::Carried(Err(refusal)) => {
                assert_eq!(refusal.code, ResponseError::RequestTimedOut.code())
            }
            _ => panic!("expected an unknown outcome"),
        }
    }

    #[tokio::test]
    async fn deadlines_are_those_of_arrival_and_a_carried_group_takes_the_earliest() {
        let order = ProduceOrder::new();
        let late = deadline(2_000);
        let early = Deadline {
            at: late.at - Duration::from_secs(1),
            commit_ms: 1_000,
        };
        let first = order.turn(late);
        assert_eq!(first.deadline(), late);
        let second = spawn_wait(order.turn(early), batches(-1, &[1], 10));
        until(|| order.waiting().len() == 1).await;
        let (_, first) = lead(first.wait(batches(-1, &[0], 10)).await);
        assert_eq!(first.deadline(), early);
        first.accepted();
        first.answer(answer(0)).expect("answer");
        assert!(matches!(second.await.expect("task"), Place::Carried(Ok(_))));
    }
}
