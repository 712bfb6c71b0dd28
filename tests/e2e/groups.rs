//! Consumer groups through real clients: librdkafka members (confluent-kafka processes that
//! can be killed) sharing partitions and rebalancing, rdkafka consumers committing and
//! resuming, coordinator failover between two gateway processes, and the admin APIs.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::harness::*;

/// A group member running `tests/clients/confluent_group_member.py`.
struct Member {
    child: Child,
    /// Its latest printed assignment; `None` until the first.
    assignment: Arc<Mutex<Option<BTreeSet<i32>>>>,
    closed: Arc<Mutex<bool>>,
}

impl Member {
    fn spawn(bootstrap: &str, topic: &str, group: &str, assignor: &str) -> Member {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/confluent_group_member.py"
        );
        let mut child = Command::new("python3")
            .args([script, bootstrap, topic, group, assignor])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with confluent-kafka (scripts/setup installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let assignment = Arc::new(Mutex::new(None));
        let closed = Arc::new(Mutex::new(false));
        let (seen, done) = (assignment.clone(), closed.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(list) = line.strip_prefix("assignment ") {
                    let partitions = list
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| p.parse().expect("partition number"))
                        .collect();
                    *seen.lock().expect("lock") = Some(partitions);
                } else if line == "closed" {
                    *done.lock().expect("lock") = true;
                }
            }
        });
        Member {
            child,
            assignment,
            closed,
        }
    }

    fn assignment(&self) -> Option<BTreeSet<i32>> {
        self.assignment.lock().expect("lock").clone()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `members` together hold partitions `0..count`, each exactly once, each
/// member at least one.
async fn wait_for_cover(members: &[&Member], count: i32, what: &str) {
    let deadline = yaks_common::clock::now() + Duration::from_secs(45);
    loop {
        let assignments: Vec<Option<BTreeSet<i32>>> =
            members.iter().map(|m| m.assignment()).collect();
        let mut seen: Vec<i32> = assignments.iter().flatten().flatten().copied().collect();
        seen.sort_unstable();
        let covered = seen == (0..count).collect::<Vec<_>>();
        let everyone = assignments
            .iter()
            .all(|a| a.as_ref().is_some_and(|a| !a.is_empty()));
        if covered && everyone {
            return;
        }
        assert!(
            yaks_common::clock::now() < deadline,
            "{what}: assignments never covered 0..{count} once each: {assignments:?}"
        );
        yaks_common::clock::sleep(Duration::from_millis(100)).await;
    }
}

async fn members_share_rebalance_on_leave_and_on_death(assignor: &str) {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "shared", 6).await;
    let group = format!("members-{assignor}");

    let members: Vec<Member> = (0..3)
        .map(|_| Member::spawn(&bootstrap, "shared", &group, assignor))
        .collect();
    wait_for_cover(&members.iter().collect::<Vec<_>>(), 6, "three members").await;

    // A member closing leaves the group: the two others take its partitions.
    members[0].signal("-TERM");
    let deadline = yaks_common::clock::now() + Duration::from_secs(30);
    while !*members[0].closed.lock().expect("lock") {
        assert!(
            yaks_common::clock::now() < deadline,
            "member 0 never closed"
        );
        yaks_common::clock::sleep(Duration::from_millis(50)).await;
    }
    wait_for_cover(&[&members[1], &members[2]], 6, "after a leave").await;

    // A member killed without leaving is dropped when its 3 s session runs out.
    members[1].signal("-KILL");
    wait_for_cover(&[&members[2]], 6, "after a death").await;
    drop(members);
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_six_partitions_and_rebalance_on_leave_and_death_range() {
    members_share_rebalance_on_leave_and_on_death("range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_six_partitions_and_rebalance_on_leave_and_death_cooperative() {
    members_share_rebalance_on_leave_and_on_death("cooperative-sticky").await;
}

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer")
}

/// Polls until `count` records arrived or 45 s passed; returns (partition, offset, value).
fn poll_records(consumer: &BaseConsumer, count: usize) -> Vec<(i32, i64, String)> {
    let deadline = yaks_common::clock::now() + Duration::from_secs(45);
    let mut records = Vec::new();
    while records.len() < count && yaks_common::clock::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => records.push((
                message.partition(),
                message.offset(),
                String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            )),
            Some(Err(e)) => eprintln!("poll: {e}"),
            None => {}
        }
    }
    records
}

async fn produce_numbered(bootstrap: &str, topic: &str, partitions: i32, count: i32) {
    let producer = producer(bootstrap, &[]);
    let sends = (0..count)
        .map(|i| {
            let value = format!("record {i}");
            enqueue(
                &producer,
                FutureRecord::to(topic)
                    .partition(i % partitions)
                    .payload(value.as_str()),
            )
        })
        .collect();
    deliveries(sends).await;
}

/// Commits the consumer's position, retrying while the coordinator moves.
fn commit_with_retries(consumer: &BaseConsumer) {
    let deadline = yaks_common::clock::now() + Duration::from_secs(45);
    loop {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => return,
            Err(e) => {
                assert!(yaks_common::clock::now() < deadline, "commit failed: {e}");
                yaks_common::clock::sleep_blocking(Duration::from_millis(200));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_consumer_resumes_exactly_after_the_committed_offsets() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "resume", 3).await;
    produce_numbered(&bootstrap, "resume", 3, 300).await;

    let first_bootstrap = bootstrap.clone();
    let first = tokio::task::spawn_blocking(move || {
        let consumer = group_consumer(&first_bootstrap, "resumers");
        consumer.subscribe(&["resume"]).expect("subscribe");
        let records = poll_records(&consumer, 120);
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
        let committed = consumer
            .committed(Duration::from_secs(10))
            .expect("committed offsets");
        (records, committed.to_topic_map())
    })
    .await
    .expect("join");
    let (first_records, committed) = first;
    assert_eq!(first_records.len(), 120);
    // What was committed is exactly where the first consumer stopped in each partition.
    for partition in 0..3 {
        let next = first_records
            .iter()
            .filter(|(p, _, _)| *p == partition)
            .map(|(_, o, _)| o + 1)
            .max()
            .unwrap_or(0);
        if next > 0 {
            assert_eq!(
                committed.get(&("resume".to_owned(), partition)),
                Some(&Offset::Offset(next)),
                "partition {partition}"
            );
        }
    }

    let second_bootstrap = bootstrap.clone();
    let second_records = tokio::task::spawn_blocking(move || {
        let consumer = group_consumer(&second_bootstrap, "resumers");
        consumer.subscribe(&["resume"]).expect("subscribe");
        let records = poll_records(&consumer, 180);
        // Nothing more arrives: no re-delivery after the last record.
        let extra = poll_records(&consumer, 1);
        assert!(extra.is_empty(), "re-delivered: {extra:?}");
        records
    })
    .await
    .expect("join");
    let mut all: Vec<(i32, i64)> = first_records
        .iter()
        .chain(&second_records)
        .map(|(p, o, _)| (*p, *o))
        .collect();
    all.sort_unstable();
    let expected: Vec<(i32, i64)> = (0..3).flat_map(|p| (0..100).map(move |o| (p, o))).collect();
    assert_eq!(
        all, expected,
        "every record once: nothing skipped, nothing twice"
    );
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_moves_to_the_other_gateway_when_its_coordinator_dies() {
    let infra = Infra::start().await;
    let env = infra.process_env("groups");
    // Kept alive to the end of the test (dropping a `Process` kills it).
    let (_reader, _) = spawn_listening(&infra, "reader", "reader", &env).await;
    let (_writer, writer_port) = spawn_listening(&infra, "writer", "writer", &env).await;
    let mut gateways = Vec::new();
    let mut addresses = Vec::new();
    for i in 0..2 {
        let gateway_port = port();
        let mut gateway_env = env.clone();
        gateway_env.push((
            "YAKS_GATEWAY__LISTEN_ADDR".into(),
            format!("127.0.0.1:{gateway_port}"),
        ));
        gateway_env.push((
            "YAKS_GATEWAY__WRITER_URLS".into(),
            format!("[\"http://127.0.0.1:{writer_port}\"]"),
        ));
        let address = format!("127.0.0.1:{gateway_port}");
        let process = Process::spawn(
            &format!("gateway-{i}"),
            &["gateway"],
            &gateway_env,
            infra.path(),
        );
        wait_for_port(&address, Some(&process)).await;
        gateways.push(Some(process));
        addresses.push(address);
    }
    // Both gateways registered before clients ask who coordinates what.
    yaks_common::clock::sleep(Duration::from_secs(1)).await;
    let bootstrap = addresses.join(",");
    create_topic(&addresses[0], "moving", 4).await;
    produce_numbered(&bootstrap, "moving", 4, 200).await;

    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<TopicPartitionList>();
    let consumer_bootstrap = bootstrap.clone();
    let consuming = tokio::task::spawn_blocking(move || {
        let consumer = group_consumer(&consumer_bootstrap, "movers");
        consumer.subscribe(&["moving"]).expect("subscribe");
        let mut records = poll_records(&consumer, 100);
        assert_eq!(records.len(), 100);
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
        let committed = consumer
            .committed(Duration::from_secs(10))
            .expect("committed");
        ready_tx.send(committed).expect("send");
        // The test kills the coordinator now.
        rx.recv().expect("killed");
        // The committed offsets are intact at the new coordinator.
        let deadline = yaks_common::clock::now() + Duration::from_secs(45);
        let after = loop {
            match consumer.committed(Duration::from_secs(5)) {
                Ok(list) => break list,
                Err(e) => {
                    assert!(yaks_common::clock::now() < deadline, "committed: {e}");
                    yaks_common::clock::sleep_blocking(Duration::from_millis(200));
                }
            }
        };
        records.extend(poll_records(&consumer, 100));
        commit_with_retries(&consumer);
        // librdkafka's destroy, after a leader moved away from a broker that died, can wait
        // on a broker thread long after the consumer closed; it is left to finish on its own.
        std::thread::spawn(move || drop(consumer));
        (records, after)
    });
    let before = tokio::task::spawn_blocking(move || ready_rx.recv().expect("consumer ready"))
        .await
        .expect("join");

    // The coordinator is the gateway that loaded the group.
    let coordinates = |log: String| {
        log.lines()
            .any(|l| l.contains("coordinating group") && l.contains("movers"))
    };
    let owner = gateways
        .iter()
        .position(|g| g.as_ref().is_some_and(|g| coordinates(g.log_text())))
        .expect("one gateway coordinates the group");
    let mut killed = gateways[owner].take().expect("owner");
    killed.child.kill().expect("kill -9");
    let _ = killed.child.wait();
    tx.send(()).expect("send");

    let (records, after) = consuming.await.expect("join");
    assert_eq!(
        after.to_topic_map(),
        before.to_topic_map(),
        "committed offsets survive the coordinator"
    );
    let mut seen: Vec<(i32, i64)> = records.iter().map(|(p, o, _)| (*p, *o)).collect();
    seen.sort_unstable();
    let expected: Vec<(i32, i64)> = (0..4).flat_map(|p| (0..50).map(move |o| (p, o))).collect();
    assert_eq!(
        seen, expected,
        "consumption continued without loss or repeat"
    );
    let survivor = gateways[1 - owner].as_ref().expect("survivor");
    assert!(
        coordinates(survivor.log_text()),
        "the other gateway took the group over"
    );
    drop(killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_describe_and_delete_groups() {
    let infra = Infra::start().await;
    let roles = Roles::start(infra.config()).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "watched", 2).await;
    produce_numbered(&bootstrap, "watched", 2, 10).await;

    let members_bootstrap = bootstrap.clone();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (up_tx, up_rx) = std::sync::mpsc::channel::<()>();
    let members = tokio::task::spawn_blocking(move || {
        let consumers: Vec<BaseConsumer> = (0..2)
            .map(|_| group_consumer(&members_bootstrap, "watchers"))
            .collect();
        for consumer in &consumers {
            consumer.subscribe(&["watched"]).expect("subscribe");
        }
        // Poll both until each has an assignment, then keep them alive until told.
        let deadline = yaks_common::clock::now() + Duration::from_secs(45);
        let mut told = false;
        loop {
            for consumer in &consumers {
                let _ = consumer.poll(Duration::from_millis(50));
            }
            let assigned = consumers
                .iter()
                .all(|c| c.assignment().map(|a| a.count() > 0).unwrap_or(false));
            if assigned && !told {
                up_tx.send(()).expect("send");
                told = true;
            }
            if stop_rx.try_recv().is_ok() {
                break;
            }
            assert!(
                told || yaks_common::clock::now() < deadline,
                "never assigned"
            );
        }
        for consumer in consumers {
            consumer.unsubscribe();
            drop(consumer);
        }
    });
    tokio::task::spawn_blocking(move || up_rx.recv().expect("members up"))
        .await
        .expect("join");

    let describe_bootstrap = bootstrap.clone();
    let described = tokio::task::spawn_blocking(move || {
        let consumer = group_consumer(&describe_bootstrap, "observer");
        let deadline = yaks_common::clock::now() + Duration::from_secs(30);
        loop {
            let list = consumer
                .fetch_group_list(Some("watchers"), Duration::from_secs(10))
                .expect("group list");
            let group = &list.groups()[0];
            let stable = group.state() == "Stable";
            if stable || yaks_common::clock::now() > deadline {
                let assignments: Vec<usize> = group
                    .members()
                    .iter()
                    .map(|m| m.assignment().map_or(0, <[u8]>::len))
                    .collect();
                return (
                    group.state().to_owned(),
                    group.protocol_type().to_owned(),
                    group.protocol().to_owned(),
                    assignments,
                );
            }
            yaks_common::clock::sleep_blocking(Duration::from_millis(200));
        }
    })
    .await
    .expect("join");
    let (state, protocol_type, protocol, assignments) = described;
    assert_eq!(state, "Stable");
    assert_eq!(protocol_type, "consumer");
    assert!(!protocol.is_empty(), "the chosen assignor is shown");
    assert_eq!(assignments.len(), 2, "both members are listed");
    assert!(assignments.iter().all(|len| *len > 0), "with assignments");

    // ListGroups (every group on every gateway) shows it; a group with members cannot go.
    let listed_bootstrap = bootstrap.clone();
    let listed: HashMap<String, String> = tokio::task::spawn_blocking(move || {
        let consumer = group_consumer(&listed_bootstrap, "observer");
        let list = consumer
            .fetch_group_list(None, Duration::from_secs(10))
            .expect("group list");
        list.groups()
            .iter()
            .map(|g| (g.name().to_owned(), g.state().to_owned()))
            .collect()
    })
    .await
    .expect("join");
    assert_eq!(listed.get("watchers").map(String::as_str), Some("Stable"));
    let admin = admin(&bootstrap);
    let options = rdkafka::admin::AdminOptions::new();
    let refused = admin
        .delete_groups(&["watchers"], &options)
        .await
        .expect("delete groups");
    assert!(
        matches!(
            &refused[0],
            Err((_, rdkafka::types::RDKafkaErrorCode::NonEmptyGroup))
        ),
        "{refused:?}"
    );

    // Once the members left, the empty group is deleted, offsets and all.
    stop_tx.send(()).expect("stop");
    members.await.expect("join");
    let deadline = yaks_common::clock::now() + Duration::from_secs(30);
    loop {
        let deleted = admin
            .delete_groups(&["watchers"], &options)
            .await
            .expect("delete groups");
        match &deleted[0] {
            Ok(_) => break,
            Err((_, code)) => {
                assert!(
                    yaks_common::clock::now() < deadline,
                    "deleting the empty group: {code:?}"
                );
                yaks_common::clock::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let gone = admin
        .delete_groups(&["watchers"], &options)
        .await
        .expect("delete groups");
    assert!(
        matches!(
            &gone[0],
            Err((_, rdkafka::types::RDKafkaErrorCode::GroupIdNotFound))
        ),
        "{gone:?}"
    );
    roles.stop().await;
}
