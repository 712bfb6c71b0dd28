//! ACLs, as a client sees them: each Kafka API refused with Kafka's error until the ACL
//! Kafka asks for exists, then served; DENY winning; a change made on one gateway (or with
//! `yaks acl`) deciding the requests of another within a second.

use std::time::Duration;

use yaks_common::config::{Config, ListenerConfig, SecurityProtocol};

use crate::harness::*;
use crate::security::{yaks_command, yaks_user};

/// A plaintext listener (whose clients are `User:ANONYMOUS`) and a SASL one, with ACLs
/// enforced and `admin` the super user.
fn authorizing(infra: &Infra) -> Config {
    let mut config = infra.config();
    config.gateway.listeners = vec![
        ListenerConfig {
            name: "INTERNAL".into(),
            listen_addr: "127.0.0.1:0".into(),
            advertised_addr: None,
            security_protocol: SecurityProtocol::Plaintext,
        },
        ListenerConfig {
            name: "LEGACY".into(),
            listen_addr: "127.0.0.1:0".into(),
            advertised_addr: None,
            security_protocol: SecurityProtocol::SaslPlaintext,
        },
    ];
    config.gateway.authorization.enabled = true;
    config.gateway.authorization.super_users = "User:admin".into();
    config
}

/// What the table script prints: each API denied without ACLs, then allowed with those
/// Kafka asks for. Where librdkafka asks Metadata first (ListOffsets, DeleteRecords, an
/// assigned consumer, an idempotent producer), the topic's TOPIC_AUTHORIZATION_FAILED there
/// is what it reports (`_NOENT`: no leader known; nothing consumed): the raw table below
/// checks those APIs' own answers.
const TABLE: &str = "\
denied Metadata all topics: hidden
denied Metadata orders: TOPIC_AUTHORIZATION_FAILED
denied DescribeTopics operations: TOPIC_AUTHORIZATION_FAILED
denied ListOffsets: _NOENT
denied Fetch: NOTHING
denied Produce: TOPIC_AUTHORIZATION_FAILED
denied InitProducerId idempotent: TOPIC_AUTHORIZATION_FAILED
denied JoinGroup and OffsetCommit: GROUP_AUTHORIZATION_FAILED
denied OffsetFetch: GROUP_AUTHORIZATION_FAILED
denied OffsetCommit admin: GROUP_AUTHORIZATION_FAILED
denied DescribeGroups: GROUP_AUTHORIZATION_FAILED
denied ListGroups: billing hidden
denied CreateTopics: TOPIC_AUTHORIZATION_FAILED
denied CreatePartitions: TOPIC_AUTHORIZATION_FAILED
denied DescribeConfigs topic: TOPIC_AUTHORIZATION_FAILED
denied DescribeConfigs broker: CLUSTER_AUTHORIZATION_FAILED
denied IncrementalAlterConfigs: TOPIC_AUTHORIZATION_FAILED
denied DeleteRecords: _NOENT
denied AlterUserScramCredentials: CLUSTER_AUTHORIZATION_FAILED
denied DescribeAcls: none
denied CreateAcls: CLUSTER_AUTHORIZATION_FAILED
denied DeleteAcls: CLUSTER_AUTHORIZATION_FAILED
denied DeleteGroups: GROUP_AUTHORIZATION_FAILED
denied DeleteTopics: TOPIC_AUTHORIZATION_FAILED
allowed Metadata all topics: listed
allowed Metadata orders: OK
allowed DescribeTopics operations: ALTER,ALTER_CONFIGS,DELETE,DESCRIBE,DESCRIBE_CONFIGS,READ,WRITE
allowed ListOffsets: OK
allowed Fetch: OK
allowed Produce: OK
allowed InitProducerId idempotent: OK
allowed JoinGroup and OffsetCommit: OK
allowed OffsetFetch: OK
allowed OffsetCommit admin: OK
allowed DescribeGroups: OK
allowed ListGroups: billing listed
allowed CreateTopics: OK
allowed CreatePartitions: OK
allowed DescribeConfigs topic: OK
allowed DescribeConfigs broker: OK
allowed IncrementalAlterConfigs: OK
allowed DeleteRecords: OK
allowed DescribeUserScramCredentials: OK
allowed AlterUserScramCredentials: OK
allowed DescribeAcls: bindings
allowed CreateAcls: OK
allowed DeleteAcls: OK
allowed DeleteGroups: OK
allowed DeleteTopics: OK
denied again Fetch: TOPIC_AUTHORIZATION_FAILED
denied FindCoordinator transaction: TRANSACTIONAL_ID_AUTHORIZATION_FAILED";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_api_is_refused_with_kafkas_error_until_the_acl_kafka_asks_for_exists() {
    let infra = Infra::start().await;
    let roles = Roles::start(authorizing(&infra)).await;
    for (user, password) in [("admin", "root-of-trust"), ("alice", "wonderland")] {
        let made = yaks_user(&infra, &["create", user], &format!("{password}\n")).await;
        assert!(made.status.success(), "{made:?}");
    }
    let bootstrap = roles.listener("LEGACY").to_string();
    let table = tokio::task::spawn_blocking(move || {
        run_client(
            "python3",
            "confluent_acl_table.py",
            &[&bootstrap, "root-of-trust", "wonderland"],
        )
    })
    .await
    .expect("client ran");
    assert_eq!(table, TABLE);

    let (_, metrics) = http_get(&roles.ops.to_string(), "/metrics").await;
    for expected in [
        "yaks_gateway_authorization_denials_total{operation=\"DESCRIBE\",resource_type=\"TOPIC\"}",
        "yaks_gateway_authorization_denials_total{operation=\"READ\",resource_type=\"GROUP\"}",
        "yaks_gateway_acl_reloads_total{outcome=\"ok\"}",
    ] {
        assert!(metrics.contains(expected), "{expected} in {metrics}");
    }
    roles.stop().await;
}

/// Whether `User:ANONYMOUS` on `bootstrap` (a plaintext listener) may describe `topic`:
/// librdkafka's metadata for it carries no error.
fn anonymous_describes(bootstrap: &str, topic: &str) -> bool {
    let metadata = admin(bootstrap)
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata.topics().iter().all(|t| t.error().is_none())
}

/// How long until `anonymous_describes` on `bootstrap` says `allowed`, polling.
async fn until_described(bootstrap: &str, topic: &str, allowed: bool) -> Duration {
    let start = yaks_common::clock::now();
    loop {
        let (b, t) = (bootstrap.to_owned(), topic.to_owned());
        let now = tokio::task::spawn_blocking(move || anonymous_describes(&b, &t))
            .await
            .expect("join");
        if now == allowed {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not {allowed} after 10 s"
        );
        yaks_common::clock::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the admin script: creates or deletes ALLOW `operation` on `topic` for `principal`.
async fn through_gateway(bootstrap: &str, action: &str, principal: &str, topic: &str) {
    let args: Vec<String> = [
        bootstrap,
        "root-of-trust",
        action,
        principal,
        topic,
        "DESCRIBE",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    let changed = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_client("python3", "confluent_acl_admin.py", &args)
    })
    .await
    .expect("client ran");
    assert_eq!(changed, "1", "{action}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_change_on_one_gateway_or_with_yaks_acl_decides_on_another_within_a_second() {
    let infra = Infra::start().await;
    let first = Roles::start(authorizing(&infra)).await;
    let second = Roles::start(authorizing(&infra)).await;
    let made = yaks_user(&infra, &["create", "admin"], "root-of-trust\n").await;
    assert!(made.status.success(), "{made:?}");
    let on_first = first.listener("LEGACY").to_string();
    let on_second = second.listener("INTERNAL").to_string();
    // Topics exist only through a principal allowed to make them.
    let sasl = [
        "security.protocol=SASL_PLAINTEXT",
        "sasl.mechanism=SCRAM-SHA-256",
        "sasl.username=admin",
        "sasl.password=root-of-trust",
    ];
    let created = tokio::task::spawn_blocking({
        let on_first = on_first.clone();
        move || {
            let mut args = vec![on_first.as_str(), "spread", "1"];
            args.extend(sasl);
            run_client("python3", "confluent_tls.py", &args)
        }
    })
    .await
    .expect("client ran");
    assert_eq!(created, "0", "admin produced (auto-creating the topic)");
    assert!(!anonymous_describes(&on_second, "spread"));

    // CreateAcls and DeleteAcls answered by the first gateway decide on the second.
    through_gateway(&on_first, "create", "User:ANONYMOUS", "spread").await;
    let granted = until_described(&on_second, "spread", true).await;
    through_gateway(&on_first, "delete", "User:ANONYMOUS", "spread").await;
    let revoked = until_described(&on_second, "spread", false).await;
    assert!(
        granted < Duration::from_secs(1),
        "granted after {granted:?}"
    );
    assert!(
        revoked < Duration::from_secs(1),
        "revoked after {revoked:?}"
    );

    // `yaks acl` writes the store directly; both gateways follow.
    let args = [
        "add",
        "--principal",
        "User:ANONYMOUS",
        "--operation",
        "describe",
        "--operation",
        "write",
        "--topic",
        "spr",
        "--prefixed",
    ];
    let added = yaks_command(&infra, "acl", &args, "").await;
    assert!(added.status.success(), "{added:?}");
    let granted = until_described(&on_second, "spread", true).await;
    assert!(
        granted < Duration::from_secs(1),
        "granted after {granted:?}"
    );
    assert!(anonymous_describes(
        &first.listener("INTERNAL").to_string(),
        "spread"
    ));
    let listed = yaks_command(&infra, "acl", &["list", "--topic", "spread"], "").await;
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "TOPIC \"spr\" PREFIXED principal=User:ANONYMOUS host=* operation=WRITE permission=ALLOW\n\
         TOPIC \"spr\" PREFIXED principal=User:ANONYMOUS host=* operation=DESCRIBE permission=ALLOW\n",
    );
    let removed = yaks_command(
        &infra,
        "acl",
        &[
            "remove",
            "--topic",
            "spr",
            "--prefixed",
            "--principal",
            "User:ANONYMOUS",
        ],
        "",
    )
    .await;
    assert!(removed.status.success(), "{removed:?}");
    assert_eq!(String::from_utf8_lossy(&removed.stdout).lines().count(), 2);
    let revoked = until_described(&on_second, "spread", false).await;
    assert!(
        revoked < Duration::from_secs(1),
        "revoked after {revoked:?}"
    );
    let nothing = yaks_command(&infra, "acl", &["remove", "--topic", "spr"], "").await;
    assert!(!nothing.status.success(), "removing nothing is an error");

    first.stop().await;
    second.stop().await;
}

/// The error codes one API answers with, gathered from the response's error fields.
type Codes = Vec<i16>;

/// Sends every API a plaintext (`User:ANONYMOUS`) client can send, and returns each
/// answer's error codes by API name.
async fn every_api(kafka: std::net::SocketAddr) -> Vec<(&'static str, Codes)> {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use yaks_common::kafka::{str_bytes, topic_name};

    use crate::protocol::exchange;

    let mut s = tokio::net::TcpStream::connect(kafka)
        .await
        .expect("connect");
    let group = || GroupId(str_bytes("ledger"));
    let mut table: Vec<(&'static str, Codes)> = Vec::new();

    let batch = yaks_common::batch::testing::batch(&[b"record"], 1_700_000_000_000);
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(topic_name("ledger"))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(bytes::Bytes::from(batch))),
                ]),
        ]);
    let r: ProduceResponse = exchange(&mut s, ApiKey::Produce, 9, &produce).await;
    let codes = r.responses[0]
        .partition_responses
        .iter()
        .map(|p| p.error_code);
    table.push(("Produce", codes.collect()));

    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(topic_name("ledger"))
                .with_partitions(vec![
                    fetch_request::FetchPartition::default().with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let r: FetchResponse = exchange(&mut s, ApiKey::Fetch, 12, &fetch).await;
    table.push(("Fetch", vec![r.responses[0].partitions[0].error_code]));

    let list = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic_name("ledger"))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1),
                ]),
        ]);
    let r: ListOffsetsResponse = exchange(&mut s, ApiKey::ListOffsets, 7, &list).await;
    table.push(("ListOffsets", vec![r.topics[0].partitions[0].error_code]));

    let epochs = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(topic_name("ledger"))
                .with_partitions(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                        .with_leader_epoch(0),
                ]),
        ]);
    let r: OffsetForLeaderEpochResponse =
        exchange(&mut s, ApiKey::OffsetForLeaderEpoch, 4, &epochs).await;
    table.push((
        "OffsetForLeaderEpoch",
        vec![r.topics[0].partitions[0].error_code],
    ));

    let delete = DeleteRecordsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic_name("ledger"))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default().with_offset(0),
                ]),
        ]);
    let r: DeleteRecordsResponse = exchange(&mut s, ApiKey::DeleteRecords, 2, &delete).await;
    table.push(("DeleteRecords", vec![r.topics[0].partitions[0].error_code]));

    let idempotent = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r: InitProducerIdResponse = exchange(&mut s, ApiKey::InitProducerId, 4, &idempotent).await;
    table.push(("InitProducerId idempotent", vec![r.error_code]));
    let transactional = idempotent.with_transactional_id(Some(TransactionalId(str_bytes("tx"))));
    let r: InitProducerIdResponse =
        exchange(&mut s, ApiKey::InitProducerId, 4, &transactional).await;
    table.push(("InitProducerId transactional", vec![r.error_code]));

    let find = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![str_bytes("ledger")]);
    let r: FindCoordinatorResponse = exchange(&mut s, ApiKey::FindCoordinator, 4, &find).await;
    table.push(("FindCoordinator group", vec![r.coordinators[0].error_code]));

    // The transaction APIs, for transactional id "tx" (no producer holds it with id 7).
    let tx = || TransactionalId(str_bytes("tx"));
    let find = find
        .with_key_type(1)
        .with_coordinator_keys(vec![str_bytes("tx")]);
    let r: FindCoordinatorResponse = exchange(&mut s, ApiKey::FindCoordinator, 4, &find).await;
    table.push((
        "FindCoordinator transaction",
        vec![r.coordinators[0].error_code],
    ));
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(tx())
        .with_v3_and_below_producer_id(ProducerId(7))
        .with_v3_and_below_producer_epoch(0)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(topic_name("ledger"))
                .with_partitions(vec![0]),
        ]);
    let r: AddPartitionsToTxnResponse = exchange(&mut s, ApiKey::AddPartitionsToTxn, 3, &add).await;
    table.push((
        "AddPartitionsToTxn",
        r.results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })
            .collect(),
    ));
    let add_offsets = AddOffsetsToTxnRequest::default()
        .with_transactional_id(tx())
        .with_producer_id(ProducerId(7))
        .with_producer_epoch(0)
        .with_group_id(group());
    let r: AddOffsetsToTxnResponse =
        exchange(&mut s, ApiKey::AddOffsetsToTxn, 3, &add_offsets).await;
    table.push(("AddOffsetsToTxn", vec![r.error_code]));
    let txn_commit = TxnOffsetCommitRequest::default()
        .with_transactional_id(tx())
        .with_group_id(group())
        .with_producer_id(ProducerId(7))
        .with_producer_epoch(0)
        .with_generation_id(-1)
        .with_topics(vec![
            txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                .with_name(topic_name("ledger"))
                .with_partitions(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                        .with_committed_offset(1),
                ]),
        ]);
    let r: TxnOffsetCommitResponse =
        exchange(&mut s, ApiKey::TxnOffsetCommit, 3, &txn_commit).await;
    table.push((
        "TxnOffsetCommit",
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
    ));
    let end = EndTxnRequest::default()
        .with_transactional_id(tx())
        .with_producer_id(ProducerId(7))
        .with_producer_epoch(0)
        .with_committed(true);
    let r: EndTxnResponse = exchange(&mut s, ApiKey::EndTxn, 3, &end).await;
    table.push(("EndTxn", vec![r.error_code]));
    let describe = DescribeTransactionsRequest::default().with_transactional_ids(vec![tx()]);
    let r: DescribeTransactionsResponse =
        exchange(&mut s, ApiKey::DescribeTransactions, 0, &describe).await;
    table.push((
        "DescribeTransactions",
        vec![r.transaction_states[0].error_code],
    ));

    let member = || StrBytes::from_static_str("member-1");
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(group())
        .with_generation_id(1)
        .with_member_id(member());
    let r: HeartbeatResponse = exchange(&mut s, ApiKey::Heartbeat, 4, &heartbeat).await;
    table.push(("Heartbeat", vec![r.error_code]));
    let sync = SyncGroupRequest::default()
        .with_group_id(group())
        .with_generation_id(1)
        .with_member_id(member());
    let r: SyncGroupResponse = exchange(&mut s, ApiKey::SyncGroup, 5, &sync).await;
    table.push(("SyncGroup", vec![r.error_code]));
    let leave = LeaveGroupRequest::default()
        .with_group_id(group())
        .with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(member()),
        ]);
    let r: LeaveGroupResponse = exchange(&mut s, ApiKey::LeaveGroup, 5, &leave).await;
    let mut codes = vec![r.error_code];
    codes.extend(r.members.iter().map(|m| m.error_code));
    table.push(("LeaveGroup", codes));

    let offset_delete = OffsetDeleteRequest::default()
        .with_group_id(group())
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(topic_name("ledger"))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default(),
                ]),
        ]);
    let r: OffsetDeleteResponse = exchange(&mut s, ApiKey::OffsetDelete, 0, &offset_delete).await;
    let mut codes = vec![r.error_code];
    codes.extend(
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
    );
    table.push(("OffsetDelete", codes));

    let users = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
        describe_user_scram_credentials_request::UserName::default().with_name(str_bytes("admin")),
    ]));
    let r: DescribeUserScramCredentialsResponse =
        exchange(&mut s, ApiKey::DescribeUserScramCredentials, 0, &users).await;
    table.push(("DescribeUserScramCredentials", vec![r.error_code]));

    let acls = DescribeAclsRequest::default()
        .with_resource_type_filter(1)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1);
    let r: DescribeAclsResponse = exchange(&mut s, ApiKey::DescribeAcls, 3, &acls).await;
    table.push(("DescribeAcls", vec![r.error_code]));
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_answers_its_own_authorization_error_and_serves_once_allowed() {
    use kafka_protocol::ResponseError::*;

    let infra = Infra::start().await;
    let roles = Roles::start(authorizing(&infra)).await;
    let kafka = roles.listener("INTERNAL");
    let grant = |args: &'static [&'static str]| {
        let infra = &infra;
        async move {
            let mut all = vec!["add", "--principal", "User:ANONYMOUS"];
            all.extend_from_slice(args);
            let added = yaks_command(infra, "acl", &all, "").await;
            assert!(added.status.success(), "{added:?}");
        }
    };
    // Only the topic is made with a right granted for it, then taken back.
    grant(&["--operation", "create", "--cluster"]).await;
    yaks_common::clock::sleep(Duration::from_secs(1)).await;
    create_topic(&kafka.to_string(), "ledger", 1).await;
    let removed = yaks_command(&infra, "acl", &["remove", "--cluster"], "").await;
    assert!(removed.status.success(), "{removed:?}");
    yaks_common::clock::sleep(Duration::from_secs(1)).await;

    let code = |e: kafka_protocol::ResponseError| vec![e.code()];
    let denied = every_api(kafka).await;
    let expected: Vec<(&str, Codes)> = vec![
        ("Produce", code(TopicAuthorizationFailed)),
        ("Fetch", code(TopicAuthorizationFailed)),
        ("ListOffsets", code(TopicAuthorizationFailed)),
        ("OffsetForLeaderEpoch", code(TopicAuthorizationFailed)),
        ("DeleteRecords", code(TopicAuthorizationFailed)),
        (
            "InitProducerId idempotent",
            code(ClusterAuthorizationFailed),
        ),
        (
            "InitProducerId transactional",
            code(TransactionalIdAuthorizationFailed),
        ),
        ("FindCoordinator group", code(GroupAuthorizationFailed)),
        (
            "FindCoordinator transaction",
            code(TransactionalIdAuthorizationFailed),
        ),
        (
            "AddPartitionsToTxn",
            code(TransactionalIdAuthorizationFailed),
        ),
        ("AddOffsetsToTxn", code(TransactionalIdAuthorizationFailed)),
        ("TxnOffsetCommit", code(TransactionalIdAuthorizationFailed)),
        ("EndTxn", code(TransactionalIdAuthorizationFailed)),
        (
            "DescribeTransactions",
            code(TransactionalIdAuthorizationFailed),
        ),
        ("Heartbeat", code(GroupAuthorizationFailed)),
        ("SyncGroup", code(GroupAuthorizationFailed)),
        ("LeaveGroup", code(GroupAuthorizationFailed)),
        ("OffsetDelete", code(GroupAuthorizationFailed)),
        (
            "DescribeUserScramCredentials",
            code(ClusterAuthorizationFailed),
        ),
        ("DescribeAcls", code(ClusterAuthorizationFailed)),
    ];
    assert_eq!(denied, expected);

    // With the group but not the topic: the topic's error inside the group's answer.
    grant(&["--operation", "all", "--group", "ledger"]).await;
    grant(&["--operation", "write", "--topic", "ledger"]).await;
    grant(&["--operation", "write", "--transactional-id", "tx"]).await;
    yaks_common::clock::sleep(Duration::from_secs(1)).await;
    let allowed = every_api(kafka).await;
    let expected: Vec<(&str, Codes)> = vec![
        ("Produce", vec![0]),
        // WRITE implies DESCRIBE, not READ or DELETE.
        ("Fetch", code(TopicAuthorizationFailed)),
        ("ListOffsets", vec![0]),
        ("OffsetForLeaderEpoch", vec![0]),
        ("DeleteRecords", code(TopicAuthorizationFailed)),
        ("InitProducerId idempotent", vec![0]),
        ("InitProducerId transactional", vec![0]),
        ("FindCoordinator group", vec![0]),
        // Past authorization to the coordinator: "tx" is held by another producer id. The
        // offsets need READ on the topic.
        ("FindCoordinator transaction", vec![0]),
        ("AddPartitionsToTxn", code(InvalidProducerIdMapping)),
        ("AddOffsetsToTxn", code(InvalidProducerIdMapping)),
        ("TxnOffsetCommit", code(TopicAuthorizationFailed)),
        ("EndTxn", code(InvalidProducerIdMapping)),
        ("DescribeTransactions", vec![0]),
        ("Heartbeat", code(UnknownMemberId)),
        ("SyncGroup", code(UnknownMemberId)),
        ("LeaveGroup", vec![0, UnknownMemberId.code()]),
        // Past the group's DELETE check, to the group's own state: it has no offsets.
        ("OffsetDelete", code(GroupIdNotFound)),
        (
            "DescribeUserScramCredentials",
            code(ClusterAuthorizationFailed),
        ),
        ("DescribeAcls", code(ClusterAuthorizationFailed)),
    ];
    assert_eq!(allowed, expected);
    roles.stop().await;
}
