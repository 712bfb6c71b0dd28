//! Produce requests of one connection waiting for their turn, so that the one whose turn
//! comes takes those ready right behind it to the writer in the same internal request.
//!
//! Why: a connection's produces reach writers in order, each sent once the previous one
//! was accepted (see [`super::ProduceTurn`]), which costs one writer round trip per
//! request. librdkafka sends a request per ready partition batch, so a client spreading
//! records over many partitions keeps hundreds of small requests in flight: at a few
//! milliseconds per round trip on a loaded machine, 16 partitions at half load queued for
//! most of a second, and 50 producers over 1,000 partitions moved a few MiB/s. Carried
//! along, one round trip takes whatever is ready. The order is kept: only the unbroken run
//! of requests right behind the sender is taken, in connection order, and a request that
//! names a partition already taken ends the run (the writer answers by partition, so a
//! partition appears once per internal request).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::TopicProduceData;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::deadlines::Deadline;

/// Most record bytes one internal request carries: a writer's flush (`writer.flush_bytes`
/// defaults to 8 MiB) gains nothing from larger ones.
pub const MAX_CARRIED_BYTES: usize = 8 << 20;

/// Where a partition's batch was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The offset of the batch's first record.
    pub base_offset: i64,
    /// The partition's log start offset at the time.
    pub log_start_offset: i64,
}

/// Why a partition's batch was not stored (or may not have been): a Kafka error code, with
/// the message Produce v8 and later carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The Kafka error code.
    pub code: i16,
    /// What the client is told beside it, where the code alone would mislead or say little.
    pub message: Option<String>,
}

impl Refusal {
    /// An error code with no message.
    pub fn new(error: ResponseError) -> Refusal {
        Refusal {
            code: error.code(),
            message: None,
        }
    }

    /// An error code with a message.
    pub fn with_message(error: ResponseError, message: impl Into<String>) -> Refusal {
        Refusal {
            code: error.code(),
            message: Some(message.into()),
        }
    }
}

/// One partition's answer.
pub type PartitionAnswer = Result<Stored, Refusal>;

/// The answers to an internal request, by partition.
pub type Answers = HashMap<(Uuid, i32), PartitionAnswer>;

/// What became of an internal request: the writer's answers, or the refusal every partition
/// in it gets.
pub type Answer = Result<Arc<Answers>, Refusal>;

/// A validated produce request ready to go to a writer, waiting for its turn.
pub struct Waiting {
    /// The request's acks; only requests with the same acks travel together.
    pub acks: i16,
    /// Its valid batches, by topic id.
    pub topics: Vec<TopicProduceData>,
    /// The partitions in `topics`.
    pub partitions: Vec<(Uuid, i32)>,
    /// Record bytes in `topics`.
    pub bytes: usize,
    /// When the gateway gives up on it, fixed when it arrived (see [`Deadline`]).
    pub deadline: Deadline,
    /// Fired (or dropped) once a writer accepted it, or refused it: the connection's next
    /// produce may go.
    pub done: oneshot::Sender<()>,
    /// Where the request that carried it puts the answer.
    pub answer: oneshot::Sender<Answer>,
}

/// One connection's waiting produces, by place in the connection's produce order.
#[derive(Default)]
pub struct ProduceRoom {
    waiting: Mutex<BTreeMap<u64, Waiting>>,
}

impl ProduceRoom {
    fn waiting(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts the produce at place `seq` in the room.
    pub fn put(&self, seq: u64, waiting: Waiting) {
        self.waiting().insert(seq, waiting);
    }

    /// Takes the produce at `seq` back out; `None` once an earlier one carried it.
    pub fn take(&self, seq: u64) -> Option<Waiting> {
        self.waiting().remove(&seq)
    }

    /// Takes the produces right behind `seq` that can travel with it: consecutive places,
    /// the same `acks`, no partition in `partitions` (which grows with each one taken),
    /// at most `room` record bytes in all.
    pub fn carry_after(
        &self,
        seq: u64,
        acks: i16,
        partitions: &mut HashSet<(Uuid, i32)>,
        mut room: usize,
    ) -> Vec<Waiting> {
        let mut waiting = self.waiting();
        let mut carried = Vec::new();
        let mut next = seq + 1;
        while let Some(candidate) = waiting.get(&next) {
            if candidate.acks != acks
                || candidate.bytes > room
                || candidate.partitions.iter().any(|p| partitions.contains(p))
            {
                break;
            }
            let Some(taken) = waiting.remove(&next) else {
                break;
            };
            room -= taken.bytes;
            partitions.extend(taken.partitions.iter().copied());
            carried.push(taken);
            next += 1;
        }
        carried
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn waiting(
        acks: i16,
        partitions: &[i32],
        bytes: usize,
    ) -> (Waiting, oneshot::Receiver<Answer>) {
        let (done, _) = oneshot::channel();
        let (answer, answered) = oneshot::channel();
        let waiting = Waiting {
            acks,
            topics: Vec::new(),
            partitions: partitions.iter().map(|&p| (Uuid::nil(), p)).collect(),
            bytes,
            deadline: Deadline {
                at: Instant::now(),
                commit_ms: 0,
            },
            done,
            answer,
        };
        (waiting, answered)
    }

    fn carried(room: &ProduceRoom, seq: u64, own: &[i32], budget: usize) -> Vec<i32> {
        let mut partitions = own.iter().map(|&p| (Uuid::nil(), p)).collect();
        room.carry_after(seq, -1, &mut partitions, budget)
            .iter()
            .flat_map(|w| w.partitions.iter().map(|p| p.1))
            .collect()
    }

    #[test]
    fn carries_the_unbroken_run_behind_the_sender() {
        let room = ProduceRoom::default();
        room.put(2, waiting(-1, &[1], 10).0);
        room.put(3, waiting(-1, &[2], 10).0);
        // 4 is still being validated: 5 must not overtake it.
        room.put(5, waiting(-1, &[3], 10).0);
        assert_eq!(carried(&room, 1, &[0], 100), vec![1, 2]);
        assert!(room.take(2).is_none(), "taken along");
        assert!(room.take(5).is_some(), "left for its own turn");
    }

    #[test]
    fn a_repeated_partition_other_acks_or_no_room_end_the_run() {
        let room = ProduceRoom::default();
        room.put(2, waiting(-1, &[1], 10).0);
        room.put(3, waiting(-1, &[0], 10).0);
        assert_eq!(
            carried(&room, 1, &[0], 100),
            vec![1],
            "partition 0 is taken"
        );

        let room = ProduceRoom::default();
        room.put(2, waiting(1, &[1], 10).0);
        assert!(carried(&room, 1, &[0], 100).is_empty(), "other acks");

        let room = ProduceRoom::default();
        room.put(2, waiting(-1, &[1], 60).0);
        room.put(3, waiting(-1, &[2], 60).0);
        assert_eq!(carried(&room, 1, &[0], 100), vec![1], "room for one");
    }
}
