//! Byte-level protocol tests: what a client library would never send.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use yaks_common::batch::testing;
use yaks_common::kafka::topic_name;

use crate::harness::*;

fn frame<T: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("raw-test")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api_key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

/// Reads one response frame; `None` when the server closed the connection.
async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let length = tokio::time::timeout(Duration::from_secs(30), stream.read_i32())
        .await
        .expect("server answered or closed in time")
        .ok()?;
    let mut body = vec![0u8; length as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_crc_is_corrupt_message_for_that_partition_only() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    create_topic(&roles.bootstrap(), "crc", 2).await;

    let good = testing::batch(&[b"good record"], 1_700_000_000_000);
    let mut bad = testing::batch(&[b"bad record"], 1_700_000_000_000);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name("crc"))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(bad))),
                    PartitionProduceData::default()
                        .with_index(1)
                        .with_records(Some(Bytes::from(good))),
                ]),
        ]);
    let version = 9;
    let mut stream = TcpStream::connect(roles.kafka).await.expect("connect");
    stream
        .write_all(&frame(ApiKey::Produce, version, 7, &request))
        .await
        .expect("send");
    let mut response = read_frame(&mut stream).await.expect("a response");
    let header = ResponseHeader::decode(
        &mut response,
        ApiKey::Produce.response_header_version(version),
    )
    .expect("header");
    assert_eq!(header.correlation_id, 7);
    let response = ProduceResponse::decode(&mut response, version).expect("body");
    let partitions = &response.responses[0].partition_responses;
    assert_eq!(partitions[0].index, 0);
    assert_eq!(
        partitions[0].error_code,
        ResponseError::CorruptMessage.code()
    );
    assert_eq!(partitions[1].index, 1);
    assert_eq!(partitions[1].error_code, 0);
    assert_eq!(partitions[1].base_offset, 0);

    let sql = infra.sql().await;
    assert_eq!(
        next_offset(&sql, "crc", 0).await,
        0,
        "nothing stored for the corrupt batch"
    );
    assert!(index_rows(&sql, "crc", 0).await.is_empty());
    assert_eq!(next_offset(&sql, "crc", 1).await, 1);
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_get_an_error_or_a_clean_close() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;

    // ApiVersions newer than we speak: UNSUPPORTED_VERSION in a v0-shaped answer.
    let mut stream = TcpStream::connect(roles.kafka).await.expect("connect");
    let request = kafka_protocol::messages::ApiVersionsRequest::default();
    let mut raw = frame(ApiKey::ApiVersions, 3, 1, &request);
    raw[6..8].copy_from_slice(&99i16.to_be_bytes());
    stream.write_all(&raw).await.expect("send");
    let mut response = read_frame(&mut stream).await.expect("a response");
    let header = ResponseHeader::decode(&mut response, 0).expect("header");
    assert_eq!(header.correlation_id, 1);
    let versions = ApiVersionsResponse::decode(&mut response, 0).expect("v0 body");
    assert_eq!(
        versions.error_code,
        ResponseError::UnsupportedVersion.code()
    );
    assert!(
        versions
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Produce as i16)
    );

    // A frame larger than the cap: closed before anything is allocated.
    let mut stream = TcpStream::connect(roles.kafka).await.expect("connect");
    stream
        .write_all(&i32::MAX.to_be_bytes())
        .await
        .expect("send");
    assert!(
        read_frame(&mut stream).await.is_none(),
        "oversized frame closes the connection"
    );

    // An unknown API key: closed.
    let mut stream = TcpStream::connect(roles.kafka).await.expect("connect");
    let mut raw = frame(ApiKey::ApiVersions, 0, 2, &request);
    raw[4..6].copy_from_slice(&31_000i16.to_be_bytes());
    stream.write_all(&raw).await.expect("send");
    assert!(
        read_frame(&mut stream).await.is_none(),
        "unknown api key closes the connection"
    );

    // A valid header with a truncated body: closed.
    let mut stream = TcpStream::connect(roles.kafka).await.expect("connect");
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_topic_data(vec![TopicProduceData::default().with_name(topic_name("x"))]);
    let mut raw = frame(ApiKey::Produce, 9, 3, &produce);
    raw.truncate(raw.len() - 3);
    let new_len = (raw.len() - 4) as i32;
    raw[..4].copy_from_slice(&new_len.to_be_bytes());
    stream.write_all(&raw).await.expect("send");
    assert!(
        read_frame(&mut stream).await.is_none(),
        "truncated body closes the connection"
    );

    // A small Produce frame whose topic array claims two billion entries: refused without
    // reserving memory for them.
    let mut stream = TcpStream::connect(roles.kafka).await.expect("connect");
    let produce = ProduceRequest::default().with_acks(1).with_timeout_ms(1000);
    let mut raw = frame(ApiKey::Produce, 8, 5, &produce);
    // v8 body: transactional_id (i16 -1), acks (i16), timeout (i32), then the array count.
    let count_at = raw.len() - 4;
    raw[count_at..].copy_from_slice(&2_000_000_000i32.to_be_bytes());
    stream.write_all(&raw).await.expect("send");
    assert!(
        read_frame(&mut stream).await.is_none(),
        "forged count closes the connection"
    );

    // The gateway still serves others.
    let mut stream = TcpStream::connect(roles.kafka).await.expect("connect");
    stream
        .write_all(&frame(ApiKey::ApiVersions, 3, 4, &request))
        .await
        .expect("send");
    let mut response = read_frame(&mut stream).await.expect("still serving");
    let header = ResponseHeader::decode(&mut response, 0).expect("header");
    assert_eq!(header.correlation_id, 4);
    let versions = ApiVersionsResponse::decode(&mut response, 3).expect("v3 body");
    assert_eq!(versions.error_code, 0);
    assert!(response.is_empty(), "nothing after the v3 body");
    roles.stop().await;
}

/// Sends one request and decodes its response.
pub(crate) async fn exchange<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    api_key: ApiKey,
    version: i16,
    request: &Req,
) -> Resp {
    stream
        .write_all(&frame(api_key, version, 1, request))
        .await
        .expect("send");
    let mut response = read_frame(stream).await.expect("a response");
    ResponseHeader::decode(&mut response, api_key.response_header_version(version))
        .expect("header");
    Resp::decode(&mut response, version).expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_by_topic_id_patches_offsets_and_epochs_agree_with_metadata() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    create_topic(&roles.bootstrap(), "raw", 1).await;
    let mut stream = TcpStream::connect(roles.kafka).await.expect("connect");
    // Two produce requests: offsets 0..=1, then 2..=4.
    for values in [&[&b"a"[..], b"b"][..], &[b"c", b"d", b"e"]] {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(topic_name("raw"))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from(testing::batch(values, 5)))),
                    ]),
            ]);
        let response: ProduceResponse = exchange(&mut stream, ApiKey::Produce, 9, &request).await;
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    let sql = infra.sql().await;
    let topic_id: uuid::Uuid = sql
        .query_one("SELECT topic_id FROM topics WHERE name = 'raw'", &[])
        .await
        .expect("topic")
        .get(0);

    let fetch = |topic_id: uuid::Uuid, offset: i64| {
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic_id(topic_id)
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(offset)
                            .with_current_leader_epoch(0)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ])
    };
    let response: FetchResponse =
        exchange(&mut stream, ApiKey::Fetch, 16, &fetch(topic_id, 3)).await;
    let topic = &response.responses[0];
    assert_eq!(topic.topic_id, topic_id);
    let data = &topic.partitions[0];
    assert_eq!((data.error_code, data.high_watermark), (0, 5));
    let records = data.records.clone().expect("records");
    // The batch holding offset 3 comes back whole, re-based at 2, with leader epoch 0.
    assert_eq!(i64::from_be_bytes(records[..8].try_into().expect("8")), 2);
    assert_eq!(
        i32::from_be_bytes(records[12..16].try_into().expect("4")),
        0
    );
    assert!(
        yaks_common::batch::validate_produce_batch(&records).is_ok(),
        "CRC intact"
    );
    // As Kafka: no list of aborted transactions for read_uncommitted (null), an empty one
    // for read_committed when none meets what is returned.
    assert_eq!(data.aborted_transactions, None, "read_uncommitted");
    let response: FetchResponse = exchange(
        &mut stream,
        ApiKey::Fetch,
        16,
        &fetch(topic_id, 3).with_isolation_level(1),
    )
    .await;
    let data = &response.responses[0].partitions[0];
    assert_eq!((data.error_code, data.last_stable_offset), (0, 5));
    assert_eq!(
        data.aborted_transactions,
        Some(Vec::new()),
        "read_committed"
    );

    let response: FetchResponse = exchange(
        &mut stream,
        ApiKey::Fetch,
        16,
        &fetch(uuid::Uuid::from_u128(42), 0),
    )
    .await;
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ResponseError::UnknownTopicId.code()
    );
    let response: FetchResponse =
        exchange(&mut stream, ApiKey::Fetch, 16, &fetch(topic_id, 6)).await;
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );

    let request = OffsetForLeaderEpochRequest::default().with_topics(vec![
        OffsetForLeaderTopic::default()
            .with_topic(topic_name("raw"))
            .with_partitions(vec![
                OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(0)
                    .with_leader_epoch(0),
                OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(-1)
                    .with_leader_epoch(3),
            ]),
    ]);
    let response: OffsetForLeaderEpochResponse =
        exchange(&mut stream, ApiKey::OffsetForLeaderEpoch, 4, &request).await;
    let partitions = &response.topics[0].partitions;
    assert_eq!(
        (
            partitions[0].error_code,
            partitions[0].leader_epoch,
            partitions[0].end_offset
        ),
        (0, 0, 5)
    );
    assert_eq!(
        (partitions[1].leader_epoch, partitions[1].end_offset),
        (-1, -1)
    );
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_never_takes_the_gateway_down() {
    use rand::{Rng, SeedableRng};

    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    // Seeded, so a failure replays.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x79616b73);
    for round in 0..200 {
        let mut stream = TcpStream::connect(roles.kafka).await.expect("connect");
        let mut garbage = vec![0u8; rng.random_range(1..512)];
        rng.fill(&mut garbage[..]);
        if round % 2 == 0 && garbage.len() > 8 {
            // Half the time, a plausible length prefix and header, so decoding gets further.
            let length = (garbage.len() - 4) as i32;
            garbage[..4].copy_from_slice(&length.to_be_bytes());
            let api_key = rng.random_range(0..70i16);
            garbage[4..6].copy_from_slice(&api_key.to_be_bytes());
            let version = rng.random_range(0..18i16);
            garbage[6..8].copy_from_slice(&version.to_be_bytes());
        }
        stream.write_all(&garbage).await.expect("send");
        // Half-close: the gateway sees the end of input, answers what it can, then closes.
        stream.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        // An answer, a close or a reset are all fine; a hang is not.
        let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest))
            .await
            .expect("the gateway answers or closes in time");
    }
    let mut stream = TcpStream::connect(roles.kafka).await.expect("connect");
    let request = kafka_protocol::messages::ApiVersionsRequest::default();
    let versions: ApiVersionsResponse =
        exchange(&mut stream, ApiKey::ApiVersions, 3, &request).await;
    assert_eq!(versions.error_code, 0, "still serving after the garbage");
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_are_all_served() {
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};

    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    create_topic(&roles.bootstrap(), "many", 1).await;
    // Open all connections first, so they are concurrent, then ask on every one at once.
    let mut streams = Vec::with_capacity(1000);
    for _ in 0..1000 {
        streams.push(TcpStream::connect(roles.kafka).await.expect("connect"));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for mut stream in streams {
        tasks.spawn(async move {
            let versions: ApiVersionsResponse = exchange(
                &mut stream,
                ApiKey::ApiVersions,
                3,
                &kafka_protocol::messages::ApiVersionsRequest::default(),
            )
            .await;
            let metadata: MetadataResponse = exchange(
                &mut stream,
                ApiKey::Metadata,
                12,
                &MetadataRequest::default().with_topics(None),
            )
            .await;
            (versions.error_code, metadata.topics.len())
        });
    }
    let mut served = 0;
    while let Some(result) = tasks.join_next().await {
        let (code, topics) = result.expect("task");
        assert_eq!((code, topics), (0, 1));
        served += 1;
    }
    assert_eq!(served, 1000);
    roles.stop().await;
}
