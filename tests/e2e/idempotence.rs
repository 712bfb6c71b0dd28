//! The idempotent producer: retries never duplicate, whichever writer they reach, even when
//! a commit's answer was lost; passed sequences and stale epochs are refused as Kafka does,
//! and a gap waits for the batch it misses.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, Offset};
use tokio::net::TcpStream;
use yaks_common::batch::testing;
use yaks_common::failpoint::{COMMITTED_NOT_ACKED, FailAction, UPLOADED_NOT_COMMITTED};
use yaks_common::kafka::topic_name;

use crate::consume::{assign, blocking, consumer, poll_n};
use crate::harness::*;
use crate::protocol::exchange;

/// The Java client's defaults since 3.0, which librdkafka follows when asked.
const IDEMPOTENT: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("max.in.flight.requests.per.connection", "5"),
];

/// Every record of `topic`, per partition in offset order, as (offset, value).
async fn read_back(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: usize,
) -> BTreeMap<i32, Vec<(i64, String)>> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    let messages = blocking(move || {
        let consumer = consumer(&bootstrap, &[]);
        assign(&consumer, &topic, partitions, Offset::Beginning);
        poll_n(&consumer, count, Duration::from_secs(60))
    })
    .await;
    let mut by_partition: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for message in messages {
        let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        by_partition
            .entry(message.partition())
            .or_default()
            .push((message.offset(), value));
    }
    by_partition
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_producer_writes_twenty_thousand_records_once_and_in_order() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    create_topic(&roles.bootstrap(), "idem", 3).await;
    let producer = producer(&roles.bootstrap(), IDEMPOTENT);
    let total = 20_000;
    let mut futures = Vec::with_capacity(total);
    for i in 0..total {
        let value = format!("v{i:05}");
        futures.push(enqueue(
            &producer,
            FutureRecord::to("idem")
                .partition((i % 3) as i32)
                .key("k")
                .payload(&value),
        ));
    }
    let delivered = deliveries(futures).await;

    // Offsets per partition are 0..n in send order.
    let mut expected: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for (i, (partition, offset)) in delivered.iter().enumerate() {
        expected
            .entry(*partition)
            .or_default()
            .push((*offset, format!("v{i:05}")));
    }
    for (partition, records) in &expected {
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert_eq!(
            offsets,
            (0..records.len() as i64).collect::<Vec<_>>(),
            "partition {partition}: contiguous offsets in send order"
        );
    }
    let sql = infra.sql().await;
    for partition in 0..3 {
        assert_eq!(
            next_offset(&sql, "idem", partition).await,
            expected[&partition].len() as i64,
            "each record stored once"
        );
        assert_index_contiguous(&sql, "idem", partition).await;
    }
    assert_eq!(
        read_back(&roles.bootstrap(), "idem", 3, total).await,
        expected
    );
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_was_lost_is_retried_and_answered_with_the_original_offsets() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    create_topic(&roles.bootstrap(), "lost", 2).await;
    // The first flush commits, then its answers vanish as if the writer died right after.
    let points = roles.writers[0].fail_points.clone();
    points.arm(COMMITTED_NOT_ACKED, FailAction::LoseAnswer, Some(1));
    let producer = producer(&roles.bootstrap(), IDEMPOTENT);
    let total = 400;
    let mut futures = Vec::with_capacity(total);
    for i in 0..total {
        let value = format!("lost {i:03}");
        futures.push(enqueue(
            &producer,
            FutureRecord::to("lost")
                .partition((i % 2) as i32)
                .key("k")
                .payload(&value),
        ));
    }
    let delivered = deliveries(futures).await;
    assert_eq!(points.fired(COMMITTED_NOT_ACKED), 1);

    // Every record is stored once, at the offset its (retried) delivery reported.
    let mut expected: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for (i, (partition, offset)) in delivered.iter().enumerate() {
        expected
            .entry(*partition)
            .or_default()
            .push((*offset, format!("lost {i:03}")));
    }
    let sql = infra.sql().await;
    for partition in 0..2 {
        assert_eq!(next_offset(&sql, "lost", partition).await, 200);
        assert_index_contiguous(&sql, "lost", partition).await;
    }
    assert_eq!(
        read_back(&roles.bootstrap(), "lost", 2, total).await,
        expected
    );
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_other_writers_are_not_stored_twice() {
    let infra = Infra::start().await;
    let roles = Roles::start_with_writers(infra.config(), 2).await;
    create_topic(&roles.bootstrap(), "hop", 3).await;
    // Each writer loses the answer of its first flush: a client's retry moves to the other
    // writer (the gateway skips one that lost an answer), which may lose that one too.
    for writer in &roles.writers {
        writer
            .fail_points
            .arm(COMMITTED_NOT_ACKED, FailAction::LoseAnswer, Some(1));
    }
    let producer = producer(&roles.bootstrap(), IDEMPOTENT);
    let total = 3_000;
    let mut futures = Vec::with_capacity(total);
    for i in 0..total {
        let value = format!("hop {i:04}");
        futures.push(enqueue(
            &producer,
            FutureRecord::to("hop")
                .partition((i % 3) as i32)
                .key("k")
                .payload(&value),
        ));
    }
    let delivered = deliveries(futures).await;
    let fired: u64 = roles
        .writers
        .iter()
        .map(|w| w.fail_points.fired(COMMITTED_NOT_ACKED))
        .sum();
    assert!(fired >= 1, "at least one answer was lost");
    let mut expected: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for (i, (partition, offset)) in delivered.iter().enumerate() {
        expected
            .entry(*partition)
            .or_default()
            .push((*offset, format!("hop {i:04}")));
    }
    let sql = infra.sql().await;
    for partition in 0..3 {
        assert_eq!(next_offset(&sql, "hop", partition).await, 1_000);
        assert_index_contiguous(&sql, "hop", partition).await;
    }
    assert_eq!(
        read_back(&roles.bootstrap(), "hop", 3, total).await,
        expected
    );
    roles.stop().await;
}

/// Issue 18's interleaving, made deterministic with fail points: one partition holds a
/// batch that is stored but whose answer is lost (its client hears REQUEST_TIMED_OUT only
/// at the writer timeout), while on another partition a flush fails after its upload and
/// the next batch of that partition is judged without the failed one. Answered
/// OUT_OF_ORDER_SEQUENCE_NUMBER, as Kafka answers a gap, librdkafka concluded the earlier
/// batches were lost, bumped the producer's epoch once the lost answer came in, and sent
/// every unconfirmed batch again under the new epoch — the stored one too, which the
/// sequence check cannot relate to its first copy: "a" was stored twice, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_judged_without_an_earlier_one_leaves_no_record_stored_twice() {
    let infra = Infra::start().await;
    let mut config = infra.config();
    // Each produce is a flush of its own, so a failed flush leaves the partition's next
    // batch to a flush of its own.
    config.writer.flush_bytes = 1;
    // A lost answer becomes REQUEST_TIMED_OUT after this.
    config.gateway.writer_timeout_ms = 3_000;
    let roles = Roles::start(config).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "gap", 2).await;
    let points = roles.writers[0].fail_points.clone();
    // One record per batch and per request: "b1" and "b2" travel separately.
    let mut settings = IDEMPOTENT.to_vec();
    settings.extend([("batch.num.messages", "1"), ("linger.ms", "0")]);
    let producer = producer(&bootstrap, &settings);
    let send = |partition: i32, value: &str| {
        enqueue(
            &producer,
            FutureRecord::to("gap")
                .partition(partition)
                .key("k")
                .payload(value),
        )
    };
    // Partition 1 knows the producer, so a gap there is a gap.
    deliveries(vec![send(1, "b0")]).await;

    points.arm(COMMITTED_NOT_ACKED, FailAction::LoseAnswer, Some(1));
    let a = send(0, "a");
    let deadline = yaks_common::clock::now() + Duration::from_secs(10);
    while points.fired(COMMITTED_NOT_ACKED) == 0 {
        assert!(
            yaks_common::clock::now() < deadline,
            "\"a\" never committed"
        );
        yaks_common::clock::sleep(Duration::from_millis(10)).await;
    }
    points.arm(UPLOADED_NOT_COMMITTED, FailAction::Error, Some(1));
    let b1 = send(1, "b1");
    let b2 = send(1, "b2");
    let delivered = deliveries(vec![a, b1, b2]).await;
    assert_eq!(points.fired(UPLOADED_NOT_COMMITTED), 1, "b1's flush failed");

    // What the user sees: every record delivered, stored once, in the order sent.
    assert_eq!(delivered, vec![(0, 0), (1, 1), (1, 2)]);
    let sql = infra.sql().await;
    assert_eq!(next_offset(&sql, "gap", 0).await, 1, "\"a\" stored once");
    assert_eq!(next_offset(&sql, "gap", 1).await, 3);
    let expected = BTreeMap::from([
        (0, vec![(0, "a".to_owned())]),
        (
            1,
            vec![
                (0, "b0".to_owned()),
                (1, "b1".to_owned()),
                (2, "b2".to_owned()),
            ],
        ),
    ]);
    assert_eq!(read_back(&bootstrap, "gap", 2, 4).await, expected);
    roles.stop().await;
}

fn produce_one(topic: &str, records: Vec<u8>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(records))),
                ]),
        ])
}

/// (error code, base offset) of the only partition of a produce answer.
async fn produce_raw(stream: &mut TcpStream, topic: &str, records: Vec<u8>) -> (i16, i64) {
    let response: ProduceResponse =
        exchange(stream, ApiKey::Produce, 9, &produce_one(topic, records)).await;
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

async fn init_producer_id(stream: &mut TcpStream, id: i64, epoch: i16) -> (i16, i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch);
    let response: InitProducerIdResponse =
        exchange(stream, ApiKey::InitProducerId, 4, &request).await;
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_lost_answer_is_answered_by_another_writer_with_the_original_offset() {
    let infra = Infra::start().await;
    let roles = Roles::start_with_writers(infra.config(), 2).await;
    create_topic(&roles.bootstrap(), "switch", 1).await;
    for writer in &roles.writers {
        writer
            .fail_points
            .arm(COMMITTED_NOT_ACKED, FailAction::LoseAnswer, Some(1));
    }
    let mut stream = TcpStream::connect(roles.kafka).await.expect("connect");
    let (code, pid, epoch) = init_producer_id(&mut stream, -1, -1).await;
    assert_eq!((code, epoch), (0, 0));
    let batch = testing::idempotent_batch(&[b"a", b"b", b"c"], 5, pid, 0, 0);

    // First attempt: committed by one writer, answer lost.
    let (code, _) = produce_raw(&mut stream, "switch", batch.clone()).await;
    assert_eq!(code, ResponseError::RequestTimedOut.code());
    let first = roles
        .writers
        .iter()
        .position(|w| w.fail_points.fired(COMMITTED_NOT_ACKED) == 1)
        .expect("one writer committed and lost the answer");
    for writer in &roles.writers {
        writer.fail_points.disarm(COMMITTED_NOT_ACKED);
    }
    // Were the retry to reach the first writer again, it would fail there.
    roles.writers[first]
        .fail_points
        .arm(UPLOADED_NOT_COMMITTED, FailAction::Error, None);

    // The retry goes to the other writer, which finds the batch committed.
    let (code, base_offset) = produce_raw(&mut stream, "switch", batch).await;
    assert_eq!(
        (code, base_offset),
        (0, 0),
        "answered with the original offset"
    );
    let next = testing::idempotent_batch(&[b"d"], 5, pid, 0, 3);
    assert_eq!(produce_raw(&mut stream, "switch", next).await, (0, 3));
    assert_eq!(
        roles.writers[first]
            .fail_points
            .fired(UPLOADED_NOT_COMMITTED),
        0
    );

    let sql = infra.sql().await;
    assert_eq!(next_offset(&sql, "switch", 0).await, 4);
    assert_eq!(index_rows(&sql, "switch", 0).await, vec![(0, 2), (3, 3)]);
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_gaps_and_stale_epochs_are_refused_and_epochs_bump() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    create_topic(&roles.bootstrap(), "seq", 1).await;
    let mut stream = TcpStream::connect(roles.kafka).await.expect("connect");
    let (code, pid, epoch) = init_producer_id(&mut stream, -1, -1).await;
    assert_eq!((code, epoch), (0, 0));
    let (_, other_pid, _) = init_producer_id(&mut stream, -1, -1).await;
    assert_ne!(pid, other_pid, "each producer gets its own id");

    let batch = |epoch, sequence, values: &[&[u8]]| {
        testing::idempotent_batch(values, 5, pid, epoch, sequence)
    };
    assert_eq!(
        produce_raw(&mut stream, "seq", batch(0, 0, &[b"a", b"b"])).await,
        (0, 0)
    );
    // Sequence 2 is next; 5 leaves a gap, which is not stored but left to a retry (what
    // fills it may still be on its way); 1 was passed already and can never be stored.
    let (code, _) = produce_raw(&mut stream, "seq", batch(0, 5, &[b"x"])).await;
    assert_eq!(code, ResponseError::NotEnoughReplicas.code());
    let (code, _) = produce_raw(&mut stream, "seq", batch(0, 1, &[b"y"])).await;
    assert_eq!(code, ResponseError::OutOfOrderSequenceNumber.code());

    // KIP-360: re-initialising with the current id and epoch bumps the epoch.
    assert_eq!(init_producer_id(&mut stream, pid, 0).await, (0, pid, 1));
    assert_eq!(
        produce_raw(&mut stream, "seq", batch(1, 0, &[b"c"])).await,
        (0, 2)
    );
    // A retry of it is answered, not stored.
    assert_eq!(
        produce_raw(&mut stream, "seq", batch(1, 0, &[b"c"])).await,
        (0, 2)
    );
    let (code, _) = produce_raw(&mut stream, "seq", batch(0, 2, &[b"old"])).await;
    assert_eq!(code, ResponseError::InvalidProducerEpoch.code());
    // A stale epoch cannot be bumped; the producer gets a fresh id instead.
    let (code, fresh, epoch) = init_producer_id(&mut stream, pid, 0).await;
    assert_eq!((code, epoch), (0, 0));
    assert!(fresh != pid && fresh != other_pid);

    // With a transactional id: a producer of its own, the next epoch on each init, and a
    // timeout above `transaction.max.timeout.ms` refused as Kafka refuses it.
    let transactional = |timeout_ms| {
        InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
            .with_transaction_timeout_ms(timeout_ms)
    };
    let first: InitProducerIdResponse = exchange(
        &mut stream,
        ApiKey::InitProducerId,
        4,
        &transactional(60_000),
    )
    .await;
    assert_eq!((first.error_code, first.producer_epoch), (0, 0));
    assert!(first.producer_id.0 != pid && first.producer_id.0 != fresh);
    let again: InitProducerIdResponse = exchange(
        &mut stream,
        ApiKey::InitProducerId,
        4,
        &transactional(60_000),
    )
    .await;
    assert_eq!(
        (again.error_code, again.producer_id, again.producer_epoch),
        (0, first.producer_id, 1)
    );
    let too_long: InitProducerIdResponse = exchange(
        &mut stream,
        ApiKey::InitProducerId,
        4,
        &transactional(900_001),
    )
    .await;
    assert_eq!(
        too_long.error_code,
        ResponseError::InvalidTransactionTimeout.code()
    );

    let sql = infra.sql().await;
    assert_eq!(next_offset(&sql, "seq", 0).await, 3);
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_state_expires_after_the_configured_time() {
    let infra = Infra::start().await;
    let mut config = infra.config();
    config.writer.producer_id_expiration_ms = 1_000;
    let roles = Roles::start(config).await;
    create_topic(&roles.bootstrap(), "expiry", 1).await;
    let mut stream = TcpStream::connect(roles.kafka).await.expect("connect");
    let (_, pid, _) = init_producer_id(&mut stream, -1, -1).await;
    let batch = |sequence| testing::idempotent_batch(&[b"e"], 5, pid, 0, sequence);
    assert_eq!(produce_raw(&mut stream, "expiry", batch(0)).await, (0, 0));
    let (code, _) = produce_raw(&mut stream, "expiry", batch(9)).await;
    assert_eq!(code, ResponseError::NotEnoughReplicas.code(), "a gap");

    // The writer's expiry loop forgets the state off the produce path...
    let sql = infra.sql().await;
    let deadline = yaks_common::clock::now() + Duration::from_secs(20);
    loop {
        let rows: i64 = sql
            .query_one("SELECT count(*) FROM producer_states", &[])
            .await
            .expect("count")
            .get(0);
        if rows == 0 {
            break;
        }
        assert!(yaks_common::clock::now() < deadline, "state never expired");
        yaks_common::clock::sleep(Duration::from_millis(200)).await;
    }
    // ...after which any sequence is taken, as Kafka does for an unknown producer.
    assert_eq!(produce_raw(&mut stream, "expiry", batch(9)).await, (0, 1));
    roles.stop().await;
}
