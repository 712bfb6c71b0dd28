//! The seven invariants, checked from the acknowledgements and what was consumed back, and
//! in a transactional run ([`check_transactions`]) the four Jepsen checked of Kafka's
//! transactions.
//!
//! Pure: the inputs are the ledger's acknowledgements and, per partition, the records read
//! from the log start to the high watermark. Each invariant reports how many things it
//! checked, how many broke it and one example, so a failure points at a record.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::records::RecordId;

/// One acknowledged record, as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset the delivery report gave; negative when it gave none.
    pub offset: i64,
    /// Which record.
    pub id: RecordId,
    /// CRC32C of its key and value.
    pub hash: u32,
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// Its offset.
    pub offset: i64,
    /// The record its key names, if it names one.
    pub id: Option<RecordId>,
    /// CRC32C of its key and value.
    pub hash: u32,
    /// Key, value and headers equal what its id generates.
    pub intact: bool,
}

/// A partition as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionLog {
    /// Log start offset when reading began.
    pub log_start: i64,
    /// High watermark when reading began (after every producer finished).
    pub high_watermark: i64,
    /// Records in the order they were read.
    pub records: Vec<Consumed>,
    /// The consumer's position when reading stopped: past the high watermark once it read
    /// everything (a read_committed consumer stops at the last stable offset).
    pub read_to: i64,
}

/// The verdict on one invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Its name.
    pub invariant: &'static str,
    /// Things examined.
    pub checked: u64,
    /// Things that broke it.
    pub violations: u64,
    /// The first violation, described.
    pub example: Option<String>,
    /// Where the first few violations are in the log, for invariants about records in
    /// it: what `yaks chaos` explains with the batches around them.
    pub places: Vec<Place>,
}

/// Where in a partition a violation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The offending record's offset.
    pub offset: i64,
    /// The record.
    pub id: RecordId,
    /// Where the same record, or the record it should have come after, was stored
    /// earlier, if that is known.
    pub earlier: Option<i64>,
}

/// Places kept per invariant: a few are enough to see a pattern.
const PLACES: usize = 3;

impl Finding {
    fn new(invariant: &'static str) -> Finding {
        Finding {
            invariant,
            checked: 0,
            violations: 0,
            example: None,
            places: Vec::new(),
        }
    }

    /// Counts one check; returns whether it broke the invariant.
    fn check(&mut self, holds: bool, describe: impl FnOnce() -> String) -> bool {
        self.checked += 1;
        if !holds {
            self.violations += 1;
            if self.example.is_none() {
                self.example = Some(describe());
            }
        }
        !holds
    }

    fn place(&mut self, place: impl FnOnce() -> Place) {
        if self.places.len() < PLACES {
            self.places.push(place());
        }
    }
}

/// What was sent: producers `0..producers`, each sequences `0..records_per_producer`.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Producers in the run.
    pub producers: u32,
    /// Records each producer sent.
    pub records_per_producer: u64,
    /// Sent in transactions and read read_committed: offsets of markers and aborted records
    /// are never read, so invariant 4 asks instead that the reader got to the high
    /// watermark, past every transaction.
    pub transactional: bool,
}

/// Checks all seven invariants.
pub fn check(
    acks: &[Ack],
    logs: &BTreeMap<(String, i32), PartitionLog>,
    sent: Sent,
) -> Vec<Finding> {
    let mut completeness = Finding::new("1 completeness: acknowledged records at their offsets");
    let mut phantoms = Finding::new("2 no phantoms: only sent records in the log");
    let mut duplicate_offsets = Finding::new("3 no duplicate offsets");
    let mut contiguity = if sent.transactional {
        Finding::new("4 read_committed reaches the high watermark (no transaction left open)")
    } else {
        Finding::new("4 contiguous offsets from log start to high watermark")
    };
    let mut order = Finding::new("5 per-producer order within a partition");
    let mut integrity = Finding::new("6 byte integrity of key, value, headers");
    let mut idempotence = Finding::new("7 no (producer, sequence) stored twice");

    let mut by_offset: HashMap<(&str, i32, i64), &Consumed> = HashMap::new();
    let mut stored_at: HashMap<RecordId, (String, i32, i64)> = HashMap::new();
    for ((topic, partition), log) in logs {
        let mut seen = HashSet::new();
        // Per producer: the sequence and offset of its last record so far.
        let mut last_sequence: HashMap<u32, (u64, i64)> = HashMap::new();
        for record in &log.records {
            duplicate_offsets.check(seen.insert(record.offset), || {
                format!("{topic}/{partition} offset {} read twice", record.offset)
            });
            by_offset.insert((topic.as_str(), *partition, record.offset), record);
            let was_sent = record.id.is_some_and(|id| {
                id.producer < sent.producers && id.sequence < sent.records_per_producer
            });
            phantoms.check(was_sent, || {
                format!(
                    "{topic}/{partition} offset {} holds {:?}",
                    record.offset, record.id
                )
            });
            let Some(id) = record.id else {
                continue;
            };
            integrity.check(record.intact, || {
                format!(
                    "{topic}/{partition} offset {}: bytes of {id:?} differ",
                    record.offset
                )
            });
            let place = |earlier: Option<i64>| Place {
                topic: topic.clone(),
                partition: *partition,
                offset: record.offset,
                id,
                earlier,
            };
            let previous = stored_at.insert(id, (topic.clone(), *partition, record.offset));
            let twice = idempotence.check(previous.is_none(), || {
                format!(
                    "{id:?} at {topic}/{partition} offset {} and at {previous:?}",
                    record.offset
                )
            });
            if twice {
                let earlier = previous
                    .as_ref()
                    .filter(|(t, p, _)| t == topic && p == partition)
                    .map(|(_, _, offset)| *offset);
                idempotence.place(|| place(earlier));
            }
            let before = last_sequence.insert(id.producer, (id.sequence, record.offset));
            let reordered = order.check(before.is_none_or(|(b, _)| b < id.sequence), || {
                format!(
                    "{topic}/{partition} offset {}: producer {} sequence {} after {:?}",
                    record.offset,
                    id.producer,
                    id.sequence,
                    before.map(|(sequence, _)| sequence)
                )
            });
            if reordered {
                order.place(|| place(before.map(|(_, offset)| offset)));
            }
        }
        if sent.transactional {
            contiguity.check(log.read_to >= log.high_watermark, || {
                format!(
                    "{topic}/{partition}: read_committed stopped at {}, high watermark {}",
                    log.read_to, log.high_watermark
                )
            });
            continue;
        }
        let mut offsets: Vec<i64> = seen.into_iter().collect();
        offsets.sort_unstable();
        let expected: Vec<i64> = (log.log_start..log.high_watermark).collect();
        contiguity.check(offsets == expected, || {
            let missing = expected
                .iter()
                .filter(|o| offsets.binary_search(o).is_err())
                .count();
            format!(
                "{topic}/{partition}: read {} offsets, expected {}..{} ({missing} missing)",
                offsets.len(),
                log.log_start,
                log.high_watermark
            )
        });
    }
    for ack in acks {
        // librdkafka reports some deliveries without an offset (-1001): a batch it counts
        // as delivered because a later one of the same partition was (an implicit ack).
        // Such a record must be in its partition, wherever.
        let offset = if ack.offset >= 0 {
            ack.offset
        } else {
            stored_at
                .get(&ack.id)
                .filter(|(topic, partition, _)| *topic == ack.topic && *partition == ack.partition)
                .map_or(ack.offset, |(_, _, offset)| *offset)
        };
        let found = by_offset.get(&(ack.topic.as_str(), ack.partition, offset));
        let holds = found.is_some_and(|r| r.id == Some(ack.id) && r.hash == ack.hash);
        completeness.check(holds, || {
            format!(
                "{:?} acknowledged at {}/{} offset {}, found {:?}",
                ack.id,
                ack.topic,
                ack.partition,
                ack.offset,
                found.map(|r| r.id)
            )
        });
    }
    vec![
        completeness,
        phantoms,
        duplicate_offsets,
        contiguity,
        order,
        integrity,
        idempotence,
    ]
}

/// How a transaction of a transactional run ended, as its producer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    /// `commit_transaction` succeeded.
    Committed,
    /// `abort_transaction` succeeded.
    Aborted,
    /// Neither is known (the producer failed fatally, or gave up retrying): the records
    /// may be all visible or none.
    Unknown,
}

/// One transaction of a transactional run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Its producer.
    pub producer: u32,
    /// Its number among the producer's transactions: the consumer group offset it
    /// committed is this plus one.
    pub index: u64,
    /// The records it sent.
    pub records: Vec<RecordId>,
    /// How it ended.
    pub outcome: TxnOutcome,
}

/// The invariants of transactions Jepsen checked (Bufstream, 2024), on what a read_committed
/// consumer read (`logs`) and each producer's group offset as last committed
/// (`group_offsets`: producer → offset; absent when none was committed).
pub fn check_transactions(
    transactions: &[Transaction],
    logs: &BTreeMap<(String, i32), PartitionLog>,
    group_offsets: &BTreeMap<u32, i64>,
) -> Vec<Finding> {
    let mut aborted_read = Finding::new("8 no aborted read");
    let mut torn = Finding::new("9 no torn transaction: all or none of its records");
    let mut lost = Finding::new("10 no lost committed transaction");
    let mut offsets = Finding::new("11 a group's offsets visible with their transaction's records");
    let visible: HashSet<RecordId> = logs
        .values()
        .flat_map(|log| log.records.iter().filter_map(|r| r.id))
        .collect();
    // Per producer: the last transaction whose records are visible.
    let mut last_visible: BTreeMap<u32, u64> = BTreeMap::new();
    for txn in transactions {
        let seen = txn.records.iter().filter(|id| visible.contains(id)).count();
        let name = || format!("producer {} transaction {}", txn.producer, txn.index);
        match txn.outcome {
            TxnOutcome::Aborted => {
                aborted_read.check(seen == 0, || {
                    format!("{}, aborted: {seen} of its records read", name())
                });
            }
            TxnOutcome::Committed => {
                lost.check(seen == txn.records.len(), || {
                    format!(
                        "{}, committed: {seen} of its {} records read",
                        name(),
                        txn.records.len()
                    )
                });
            }
            TxnOutcome::Unknown => {}
        }
        torn.check(seen == 0 || seen == txn.records.len(), || {
            format!(
                "{}: {seen} of its {} records read",
                name(),
                txn.records.len()
            )
        });
        if seen > 0 {
            let last = last_visible.entry(txn.producer).or_default();
            *last = (*last).max(txn.index + 1);
        }
    }
    let producers: BTreeSet<u32> = transactions.iter().map(|t| t.producer).collect();
    for producer in producers {
        let expected = last_visible.get(&producer).copied().map(|i| i as i64);
        let found = group_offsets.get(&producer).copied();
        offsets.check(found == expected, || {
            format!(
                "producer {producer}: group offset {found:?}, its last visible transaction \
                 committed {expected:?}"
            )
        });
    }
    vec![aborted_read, torn, lost, offsets]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(producer: u32, sequence: u64) -> RecordId {
        RecordId { producer, sequence }
    }

    fn consumed(offset: i64, record: RecordId) -> Consumed {
        Consumed {
            offset,
            id: Some(record),
            hash: 7,
            intact: true,
        }
    }

    fn ack(offset: i64, record: RecordId) -> Ack {
        Ack {
            topic: "t".into(),
            partition: 0,
            offset,
            id: record,
            hash: 7,
        }
    }

    const SENT: Sent = Sent {
        producers: 2,
        records_per_producer: 10,
        transactional: false,
    };

    fn violations(acks: &[Ack], records: Vec<Consumed>, high_watermark: i64) -> Vec<u64> {
        let logs = BTreeMap::from([(
            ("t".to_owned(), 0),
            PartitionLog {
                log_start: 0,
                high_watermark,
                records,
                read_to: high_watermark,
            },
        )]);
        check(acks, &logs, SENT)
            .iter()
            .map(|f| f.violations)
            .collect()
    }

    #[test]
    fn a_clean_log_breaks_nothing() {
        let records = vec![
            consumed(0, id(0, 0)),
            consumed(1, id(1, 0)),
            consumed(2, id(0, 1)),
        ];
        let acks = vec![ack(0, id(0, 0)), ack(2, id(0, 1))];
        assert_eq!(violations(&acks, records, 3), vec![0; 7]);
    }

    #[test]
    fn a_delivery_reported_without_an_offset_is_looked_for_in_its_partition() {
        let records = vec![consumed(0, id(0, 0)), consumed(1, id(0, 1))];
        let unknown = |record| ack(-1001, record);
        assert_eq!(
            violations(&[unknown(id(0, 1))], records.clone(), 2),
            vec![0; 7]
        );
        assert_eq!(
            violations(&[unknown(id(1, 1))], records, 2),
            vec![1, 0, 0, 0, 0, 0, 0],
            "not in the log"
        );
    }

    #[test]
    fn each_kind_of_damage_is_caught_by_its_invariant() {
        // Lost: acknowledged at 1, but offset 1 is missing (and the log has a hole).
        assert_eq!(
            violations(&[ack(1, id(0, 1))], vec![consumed(0, id(0, 0))], 2),
            vec![1, 0, 0, 1, 0, 0, 0]
        );
        // Phantom, reordered, duplicated, damaged.
        let mut damaged = consumed(3, id(1, 5));
        damaged.intact = false;
        let records = vec![
            consumed(0, id(0, 1)),
            consumed(1, id(0, 0)),
            consumed(2, id(9, 0)),
            damaged,
            consumed(4, id(0, 1)),
            consumed(4, id(1, 6)),
        ];
        assert_eq!(violations(&[], records, 5), vec![0, 1, 1, 0, 1, 1, 1]);
    }

    #[test]
    fn order_and_idempotence_violations_say_where_they_are() {
        let records = vec![
            consumed(0, id(0, 0)),
            consumed(1, id(0, 1)),
            consumed(2, id(0, 0)),
        ];
        let logs = BTreeMap::from([(
            ("t".to_owned(), 0),
            PartitionLog {
                log_start: 0,
                high_watermark: 3,
                records,
                read_to: 3,
            },
        )]);
        let findings = check(&[], &logs, SENT);
        let place = |earlier| Place {
            topic: "t".into(),
            partition: 0,
            offset: 2,
            id: id(0, 0),
            earlier: Some(earlier),
        };
        // Out of order after the record at 1; stored before at 0.
        assert_eq!(findings[4].places, vec![place(1)]);
        assert_eq!(findings[6].places, vec![place(0)]);
        assert!(findings[..4].iter().all(|f| f.places.is_empty()));
    }

    #[test]
    fn transactions_are_read_whole_or_not_at_all_with_their_offsets() {
        let txn = |producer, index, sequences: std::ops::Range<u64>, outcome| Transaction {
            producer,
            index,
            records: sequences.map(|s| id(producer, s)).collect(),
            outcome,
        };
        let transactions = vec![
            txn(0, 0, 0..2, TxnOutcome::Committed),
            txn(0, 1, 2..4, TxnOutcome::Aborted),
            txn(0, 2, 4..6, TxnOutcome::Unknown),
            txn(1, 0, 0..2, TxnOutcome::Committed),
        ];
        let log = |records: Vec<Consumed>| {
            BTreeMap::from([(
                ("t".to_owned(), 0),
                PartitionLog {
                    log_start: 0,
                    high_watermark: 20,
                    records,
                    read_to: 20,
                },
            )])
        };
        let read = |ids: &[(u32, u64)]| {
            log(ids
                .iter()
                .enumerate()
                .map(|(at, (p, s))| consumed(at as i64, id(*p, *s)))
                .collect())
        };
        let violations = |logs, offsets: &[(u32, i64)]| -> Vec<u64> {
            check_transactions(&transactions, &logs, &offsets.iter().copied().collect())
                .iter()
                .map(|f| f.violations)
                .collect()
        };
        // The unknown one committed, whole, with its offset.
        let good = read(&[(0, 0), (0, 1), (0, 4), (0, 5), (1, 0), (1, 1)]);
        assert_eq!(violations(good, &[(0, 3), (1, 1)]), vec![0, 0, 0, 0]);
        // Or it aborted: the group's offset is the first transaction's.
        let good = read(&[(0, 0), (0, 1), (1, 0), (1, 1)]);
        assert_eq!(violations(good, &[(0, 1), (1, 1)]), vec![0, 0, 0, 0]);
        // An aborted record read, the unknown one torn, producer 1's commit lost and its
        // offset there without it.
        let bad = read(&[(0, 0), (0, 1), (0, 2), (0, 4)]);
        assert_eq!(violations(bad, &[(0, 3), (1, 1)]), vec![1, 2, 1, 1]);
    }
}
