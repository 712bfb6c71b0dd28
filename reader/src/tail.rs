//! The tail index: recent index entries of the partitions this reader serves, kept fresh by
//! the commit feed, so tailing consumers cost no PostgreSQL query per fetch.
//!
//! Vocabulary:
//! - a partition's *tail* is a contiguous run of its index entries ending at its high
//!   watermark, with the partition's offsets. It is *installed* from PostgreSQL by the first
//!   fetch that reaches the end of the partition, then extended by commit notifications.
//! - the *recent* ring holds the last [`RECENT_CAP`] committed entries of every partition, in
//!   commit order, numbered by `seq`. A fetch takes a [`LoadTicket`] before it queries
//!   PostgreSQL; at install, the ring entries committed since the ticket are replayed onto
//!   the loaded tail, so a commit that landed while the query ran is not lost.
//! - a *gap* (the feed reconnected, an entry arrived that does not follow the tail) drops
//!   the affected tails; the next fetch re-installs them from PostgreSQL.
//!
//! Every tail has a `watch` channel carrying its high watermark; long-polling fetches wait on
//! them. Dropping a tail drops its sender, which wakes its waiters too, so they re-read.
//! A key compaction swap drops the partition's tail (its entries hold records the swap
//! removed). Tails are also re-read after [`TAIL_TTL`], which bounds how stale a log start
//! offset moved by retention can be.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use yaks_common::clock::Instant;

use tokio::sync::watch;
use tracing::{debug, warn};
use uuid::Uuid;
use yaks_common::metastore::{CommitEvent, IndexEntry, Log, PartitionEntry, PartitionState};
use yaks_common::shutdown::Shutdown;

/// A partition.
pub type PartitionKey = (Uuid, i32);

/// Entries kept per partition; older ones are read from PostgreSQL again.
const MAX_TAIL_ENTRIES: usize = 512;

/// Committed entries remembered for replay onto tails being installed.
pub const RECENT_CAP: usize = 16_384;

/// A tail older than this is re-read from PostgreSQL at its next fetch.
pub const TAIL_TTL: Duration = Duration::from_secs(30);

/// Tails not fetched for this long are dropped when the map is large.
const IDLE: Duration = Duration::from_secs(120);

/// Partitions tracked before idle ones are swept.
const SWEEP_ABOVE: usize = 50_000;

struct Tail {
    state: PartitionState,
    /// Contiguous entries ending at `state.next_offset - 1`.
    entries: VecDeque<IndexEntry>,
    /// First offset the entries cover (the high watermark when there are none).
    covered_from: i64,
    high_watermark: watch::Sender<i64>,
    loaded_at: Instant,
    used_at: Instant,
}

impl Tail {
    /// Extends the tail with the next committed entry and the partition's open
    /// transaction start read with it; false if it does not follow.
    ///
    /// The start is taken only from an entry that extends the tail. It was read after that
    /// entry committed, so it accounts for every transaction with data in the tail. An
    /// entry the tail already holds may come with a start read before the install's state:
    /// before a later transaction's first data the tail holds, which would put the last
    /// stable offset past that open transaction (its records served to read_committed
    /// fetches, and the range remembered as clean).
    fn append(&mut self, entry: IndexEntry, open_start: Option<i64>) -> bool {
        if entry.last_offset < self.state.next_offset {
            return true; // Already known: the install query saw it.
        }
        if entry.base_offset != self.state.next_offset {
            return false;
        }
        self.state.open_start = open_start;
        self.state.next_offset = entry.last_offset + 1;
        if self.entries.is_empty() {
            self.covered_from = entry.base_offset;
        }
        self.entries.push_back(entry);
        self.trim();
        self.high_watermark.send_replace(self.state.next_offset);
        true
    }

    /// Keeps at most [`MAX_TAIL_ENTRIES`], moving `covered_from` past the dropped ones.
    fn trim(&mut self) {
        while self.entries.len() > MAX_TAIL_ENTRIES {
            self.entries.pop_front();
            if let Some(first) = self.entries.front() {
                self.covered_from = first.base_offset;
            }
        }
    }
}

/// What a fetch needs about one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Offsets.
    pub state: PartitionState,
    /// Entries holding offsets from the fetch offset on, in order (possibly fewer than all).
    pub entries: Vec<IndexEntry>,
}

/// Taken before reading a partition from PostgreSQL, presented at install.
#[derive(Debug, Clone, Copy)]
pub struct LoadTicket {
    seq: u64,
    epoch: u64,
}

#[derive(Default)]
struct Inner {
    tails: HashMap<PartitionKey, Tail>,
    recent: VecDeque<(u64, PartitionEntry)>,
    /// Sequence number of the last entry put in `recent`.
    seq: u64,
    /// Bumped by every gap; tickets from an older epoch install nothing.
    epoch: u64,
}

/// Tails of the partitions this reader serves.
#[derive(Default)]
pub struct TailIndex {
    inner: Mutex<Inner>,
}

impl TailIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition's offsets and up to `limit` entries from `fetch_offset`, if the tail
    /// is fresh and covers that offset (or the offset is outside the log, where no entries
    /// are needed).
    pub fn snapshot(&self, key: PartitionKey, fetch_offset: i64, limit: usize) -> Option<Snapshot> {
        let mut inner = self.lock();
        let tail = inner.tails.get_mut(&key)?;
        let now = yaks_common::clock::now();
        if now.duration_since(tail.loaded_at) > TAIL_TTL {
            return None;
        }
        // Past the tail's end is not necessarily past the log's: the tail follows the commit
        // feed a moment behind PostgreSQL, where ListOffsets reads the end a consumer then
        // fetches from. Only PostgreSQL may answer such a fetch OFFSET_OUT_OF_RANGE.
        if fetch_offset > tail.state.next_offset {
            return None;
        }
        let outside =
            fetch_offset < tail.state.log_start_offset || fetch_offset >= tail.state.next_offset;
        if !outside && fetch_offset < tail.covered_from {
            return None;
        }
        tail.used_at = now;
        let entries = if outside {
            Vec::new()
        } else {
            tail.entries
                .iter()
                .filter(|e| e.last_offset >= fetch_offset)
                .take(limit)
                .cloned()
                .collect()
        };
        Some(Snapshot {
            state: tail.state,
            entries,
        })
    }

    /// A receiver of the partition's high watermark, if it has a tail. It reports a change
    /// when the high watermark moves, and an error when the tail is dropped.
    pub fn subscribe(&self, key: PartitionKey) -> Option<watch::Receiver<i64>> {
        self.lock()
            .tails
            .get(&key)
            .map(|tail| tail.high_watermark.subscribe())
    }

    /// Call before reading partitions from PostgreSQL.
    pub fn ticket(&self) -> LoadTicket {
        let inner = self.lock();
        LoadTicket {
            seq: inner.seq,
            epoch: inner.epoch,
        }
    }

    /// Installs what a fetch read from PostgreSQL (state first, then entries from some
    /// offset on) as the partition's tail, if the entries reach the high watermark. Commits
    /// seen since `ticket` are replayed onto it.
    pub fn install(&self, ticket: LoadTicket, state: PartitionState, loaded: &[IndexEntry]) {
        let key = (state.topic_id, state.partition_index);
        // Entries committed after the state was read belong to the replay, not the load.
        let entries: VecDeque<IndexEntry> = loaded
            .iter()
            .filter(|e| e.base_offset < state.next_offset)
            .cloned()
            .collect();
        let reaches_end = match entries.back() {
            Some(last) => last.last_offset + 1 == state.next_offset,
            None => true,
        };
        let contiguous = entries
            .iter()
            .zip(entries.iter().skip(1))
            .all(|(a, b)| a.last_offset + 1 == b.base_offset);
        if !reaches_end || !contiguous {
            return;
        }
        let mut inner = self.lock();
        if ticket.epoch != inner.epoch {
            return;
        }
        let replay_complete = inner
            .recent
            .front()
            .is_none_or(|(first_seq, _)| *first_seq <= ticket.seq + 1);
        if !replay_complete {
            return;
        }
        let now = yaks_common::clock::now();
        let covered_from = entries.front().map_or(state.next_offset, |e| e.base_offset);
        if let Some(existing) = inner.tails.get(&key) {
            let fresh = now.duration_since(existing.loaded_at) <= TAIL_TTL;
            if fresh && existing.covered_from <= covered_from {
                return;
            }
        }
        let mut tail = Tail {
            state,
            entries,
            covered_from,
            high_watermark: watch::Sender::new(state.next_offset),
            loaded_at: now,
            used_at: now,
        };
        let mut consistent = true;
        for (_, committed) in inner
            .recent
            .iter()
            .filter(|(seq, e)| *seq > ticket.seq && (e.topic_id, e.partition_index) == key)
        {
            consistent &= tail.append(committed.entry.clone(), committed.open_start);
        }
        if !consistent {
            return;
        }
        tail.trim();
        // Replacing an existing tail drops its sender, which wakes its waiters.
        inner.tails.insert(key, tail);
        if inner.tails.len() > SWEEP_ABOVE {
            inner
                .tails
                .retain(|_, t| now.duration_since(t.used_at) < IDLE);
        }
    }

    /// Applies one object's committed entries, in commit order.
    pub fn apply(&self, committed: Vec<PartitionEntry>) {
        let mut inner = self.lock();
        for entry in committed {
            inner.seq += 1;
            let seq = inner.seq;
            let key = (entry.topic_id, entry.partition_index);
            if let Some(tail) = inner.tails.get_mut(&key)
                && !tail.append(entry.entry.clone(), entry.open_start)
            {
                debug!(topic_id = %key.0, partition = key.1, "tail gap; re-reading at next fetch");
                inner.tails.remove(&key);
            }
            inner.recent.push_back((seq, entry));
            if inner.recent.len() > RECENT_CAP {
                inner.recent.pop_front();
            }
        }
    }

    /// Forgets a partition's tail: key compaction replaced some of its entries. Installs
    /// already reading from PostgreSQL may have read the entries replaced, so none of them
    /// installs (the next fetch reads again).
    pub fn forget(&self, key: PartitionKey) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.tails.remove(&key);
    }

    /// Forgets everything: notifications may have been missed.
    pub fn gap(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.tails.clear();
        inner.recent.clear();
    }
}

/// Follows the commit feed into `tail` until `shutdown`: each committed object's entries are
/// read (one query per commit, whatever the number of consumers) and applied in commit order.
pub async fn follow(
    metastore: Arc<dyn Log>,
    mut feed: tokio::sync::mpsc::Receiver<CommitEvent>,
    tail: Arc<TailIndex>,
    mut shutdown: Shutdown,
) {
    loop {
        let event = tokio::select! {
            event = feed.recv() => event,
            _ = shutdown.wait() => return,
        };
        match event {
            Some(CommitEvent::Committed { object_id }) => {
                match metastore.object_entries(&object_id).await {
                    Ok(entries) => tail.apply(entries),
                    Err(e) => {
                        warn!(object_id, error = %e, "reading a committed object's entries failed");
                        tail.gap();
                    }
                }
            }
            Some(CommitEvent::Rewritten {
                topic_id,
                partition_index,
            }) => tail.forget((topic_id, partition_index)),
            Some(CommitEvent::Gap) => tail.gap(),
            None => {
                warn!("commit feed ended; re-subscribing");
                tail.gap();
                feed = loop {
                    match metastore.commit_feed().await {
                        Ok(feed) => break feed,
                        Err(e) => {
                            warn!(error = %e, "re-subscribing to commits failed");
                            tokio::select! {
                                _ = yaks_common::clock::sleep(Duration::from_secs(1)) => {}
                                _ = shutdown.wait() => return,
                            }
                        }
                    }
                };
                tail.gap();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: Uuid = Uuid::from_u128(7);

    fn entry(base: i64, last: i64) -> IndexEntry {
        IndexEntry {
            base_offset: base,
            last_offset: last,
            max_timestamp: 0,
            object_key: format!("o{base}"),
            byte_offset: 0,
            byte_length: 100,
            object_size: 100,
            inline: None,
        }
    }

    fn committed(partition: i32, base: i64, last: i64) -> PartitionEntry {
        PartitionEntry {
            topic_id: TOPIC,
            partition_index: partition,
            entry: entry(base, last),
            open_start: None,
        }
    }

    fn state(next_offset: i64) -> PartitionState {
        PartitionState {
            topic_id: TOPIC,
            partition_index: 0,
            next_offset,
            log_start_offset: 0,
            open_start: None,
        }
    }

    #[test]
    fn commits_during_the_load_are_replayed_at_install() {
        let tails = TailIndex::default();
        let ticket = tails.ticket();
        // The query saw offsets 0..10; a commit of 10..15 landed before the install.
        tails.apply(vec![committed(0, 10, 14), committed(1, 0, 3)]);
        tails.install(ticket, state(10), &[entry(0, 4), entry(5, 9)]);
        let snapshot = tails.snapshot((TOPIC, 0), 7, 10).expect("installed");
        assert_eq!(snapshot.state.next_offset, 15);
        assert_eq!(
            snapshot
                .entries
                .iter()
                .map(|e| e.base_offset)
                .collect::<Vec<_>>(),
            vec![5, 10]
        );
        // Later commits extend it and wake subscribers.
        let mut watcher = tails.subscribe((TOPIC, 0)).expect("tail");
        tails.apply(vec![committed(0, 15, 15)]);
        assert!(watcher.has_changed().expect("alive"));
        assert_eq!(*watcher.borrow_and_update(), 16);
    }

    #[test]
    fn an_entry_the_tail_already_holds_does_not_move_its_last_stable_offset() {
        // Object E (offsets 0..4) committed with no transaction open; the feed read its
        // entries then. A transaction's first batch committed at 5..9, and a fetch installed
        // the tail from a state read after it (open at 5) before E's notice was applied.
        let tails = TailIndex::default();
        let ticket = tails.ticket();
        let open = PartitionState {
            open_start: Some(5),
            ..state(10)
        };
        tails.install(ticket, open, &[entry(0, 4), entry(5, 9)]);
        tails.apply(vec![committed(0, 0, 4)]);
        let snapshot = tails.snapshot((TOPIC, 0), 0, 10).expect("installed");
        assert_eq!(
            snapshot.state.last_stable_offset(),
            5,
            "the open transaction holds it"
        );
        // The transaction's marker extends the tail with the start read after it.
        tails.apply(vec![committed(0, 10, 10)]);
        let snapshot = tails.snapshot((TOPIC, 0), 0, 10).expect("installed");
        assert_eq!(snapshot.state.last_stable_offset(), 11);
        // Replayed at install alike: an entry the load saw brings no start.
        let tails = TailIndex::default();
        let ticket = tails.ticket();
        tails.apply(vec![committed(0, 0, 4)]);
        tails.install(ticket, open, &[entry(0, 4), entry(5, 9)]);
        let snapshot = tails.snapshot((TOPIC, 0), 0, 10).expect("installed");
        assert_eq!(snapshot.state.last_stable_offset(), 5);
    }

    #[test]
    fn a_load_that_stops_short_of_the_high_watermark_installs_nothing() {
        let tails = TailIndex::default();
        let ticket = tails.ticket();
        tails.install(ticket, state(10), &[entry(0, 4)]);
        assert!(tails.snapshot((TOPIC, 0), 0, 10).is_none());
    }

    #[test]
    fn a_gap_drops_the_tail_and_wakes_waiters() {
        let tails = TailIndex::default();
        tails.install(tails.ticket(), state(5), &[entry(0, 4)]);
        let watcher = tails.subscribe((TOPIC, 0)).expect("tail");
        tails.apply(vec![committed(0, 9, 9)]); // 5..9 missing
        assert!(watcher.has_changed().is_err(), "sender dropped");
        assert!(tails.snapshot((TOPIC, 0), 5, 10).is_none());

        tails.install(tails.ticket(), state(10), &[]);
        let ticket = tails.ticket();
        tails.gap();
        assert!(tails.snapshot((TOPIC, 0), 10, 10).is_none());
        tails.install(ticket, state(10), &[]);
        assert!(
            tails.snapshot((TOPIC, 0), 10, 10).is_none(),
            "tickets from before a gap install nothing"
        );
    }

    #[test]
    fn a_rewrite_drops_that_partition_and_loads_begun_before_it() {
        let tails = TailIndex::default();
        let state_of = |partition| PartitionState {
            partition_index: partition,
            ..state(10)
        };
        tails.install(tails.ticket(), state_of(0), &[entry(0, 9)]);
        tails.install(tails.ticket(), state_of(1), &[entry(0, 9)]);
        let before = tails.ticket();
        tails.forget((TOPIC, 0));
        assert!(tails.snapshot((TOPIC, 0), 5, 10).is_none(), "re-read");
        assert!(tails.snapshot((TOPIC, 1), 5, 10).is_some(), "others stay");
        tails.install(before, state_of(0), &[entry(0, 9)]);
        assert!(
            tails.snapshot((TOPIC, 0), 5, 10).is_none(),
            "a load that may have read the replaced entries installs nothing"
        );
        tails.install(tails.ticket(), state_of(0), &[entry(0, 9)]);
        assert!(tails.snapshot((TOPIC, 0), 5, 10).is_some());
    }

    #[test]
    fn offsets_outside_the_log_need_no_entries() {
        let tails = TailIndex::default();
        tails.install(tails.ticket(), state(10), &[entry(5, 9)]);
        let at_end = tails.snapshot((TOPIC, 0), 10, 10).expect("answerable");
        assert!(at_end.entries.is_empty());
        let trimmed = PartitionState {
            partition_index: 1,
            log_start_offset: 5,
            ..state(10)
        };
        tails.install(tails.ticket(), trimmed, &[entry(5, 9)]);
        let below = tails.snapshot((TOPIC, 1), 2, 10).expect("answerable");
        assert!(below.entries.is_empty(), "below the log start");
        assert!(
            tails.snapshot((TOPIC, 0), 12, 10).is_none(),
            "past the tail's end is asked of PostgreSQL, which the tail may lag"
        );
        assert!(tails.snapshot((TOPIC, 0), 2, 10).is_none(), "not covered");
    }
}
