//! Test infrastructure: a private PostgreSQL and a loopback S3 per test, roles started
//! in-process or as separate `yaks` processes, and client helpers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use yaks::dev::postgres::{EmbeddedPostgres, free_port};
use yaks::dev::s3::DevS3;
use yaks::roles;
use yaks_common::config::Config;
use yaks_common::failpoint::FailPoints;
use yaks_common::shutdown::{Shutdown, ShutdownTrigger};

/// A private PostgreSQL and S3 endpoint in a temporary directory.
pub struct Infra {
    pub postgres: EmbeddedPostgres,
    pub s3: DevS3,
    pub dir: TempDir,
}

impl Infra {
    pub async fn start() -> Infra {
        yaks_common::telemetry::init_for_tests();
        let dir = tempfile::Builder::new()
            .prefix("yaks-test-")
            .tempdir()
            .expect("temp dir");
        // The postgres user (when running as root) must be able to walk in.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let pg_dir = dir.path().join("postgres");
        let postgres = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&pg_dir))
            .await
            .expect("join")
            .expect("private postgresql starts");
        let s3 = DevS3::start(&dir.path().join("s3"), 0)
            .await
            .expect("s3 endpoint starts");
        Infra { postgres, s3, dir }
    }

    /// Settings for roles using this infrastructure, with a short flush interval.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        config.postgres.url = Some(self.postgres.url());
        config.s3 = self.s3.s3_config("yaks-test");
        config.writer.listen_addr = "127.0.0.1:0".into();
        config.writer.flush_interval_ms = 50;
        config.gateway.listen_addr = "127.0.0.1:0".into();
        config.gateway.http_addr = "127.0.0.1:0".into();
        config.compactor.http_addr = "127.0.0.1:0".into();
        // A gateway whose writer lost an answer (the fail point tests) answers the client
        // at the produce's commit deadline; keep that wait short.
        config.gateway.writer_timeout_ms = 8_000;
        config.s3.operation_timeout_ms = 6_000;
        config.s3.attempt_timeout_ms = 3_000;
        config.registry.heartbeat_ms = 500;
        config.registry.lease_ms = 3_000;
        // Consumer groups as `yaks dev` runs them; short sessions for the failure tests.
        config.gateway.group_initial_rebalance_delay_ms = 100;
        config.gateway.group_min_session_timeout_ms = 1_000;
        config
    }

    /// Environment for `yaks` role processes using this infrastructure (bucket `bucket`),
    /// with the same short intervals as [`Infra::config`].
    pub fn process_env(&self, bucket: &str) -> Vec<(String, String)> {
        let config = self.config();
        let s3 = &config.s3;
        vec![
            ("YAKS_POSTGRES__URL".into(), self.postgres.url()),
            (
                "YAKS_S3__ENDPOINT".into(),
                s3.endpoint.clone().expect("endpoint"),
            ),
            ("YAKS_S3__BUCKET".into(), bucket.into()),
            ("YAKS_S3__FORCE_PATH_STYLE".into(), "true".into()),
            ("YAKS_S3__CREATE_BUCKET".into(), "true".into()),
            (
                "YAKS_S3__ACCESS_KEY_ID".into(),
                s3.access_key_id.clone().expect("key"),
            ),
            (
                "YAKS_S3__SECRET_ACCESS_KEY".into(),
                s3.secret_access_key.clone().expect("secret"),
            ),
            ("YAKS_WRITER__FLUSH_INTERVAL_MS".into(), "20".into()),
            ("YAKS_GATEWAY__HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("YAKS_COMPACTOR__HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("YAKS_REGISTRY__HEARTBEAT_MS".into(), "500".into()),
            ("YAKS_REGISTRY__LEASE_MS".into(), "3000".into()),
            (
                "YAKS_GATEWAY__GROUP_INITIAL_REBALANCE_DELAY_MS".into(),
                "100".into(),
            ),
            ("RUST_LOG".into(), "info".into()),
        ]
    }

    pub async fn sql(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.postgres.url(), tokio_postgres::NoTls)
                .await
                .expect("connect to test postgres");
        tokio::spawn(connection);
        client
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A writer running in this process.
pub struct InProcessWriter {
    pub url: String,
    pub fail_points: Arc<FailPoints>,
    trigger: ShutdownTrigger,
    task: JoinHandle<()>,
}

/// A gateway, one or more writers and a reader running in this process.
pub struct Roles {
    /// The first Kafka listener.
    pub kafka: SocketAddr,
    /// Every Kafka listener, by name.
    pub listeners: Vec<(String, SocketAddr)>,
    /// The gateway's `/healthz`, `/readyz`, `/metrics`.
    pub ops: SocketAddr,
    pub writer_url: String,
    pub reader_url: String,
    pub writers: Vec<InProcessWriter>,
    gateway_trigger: ShutdownTrigger,
    reader_trigger: ShutdownTrigger,
    gateway_task: JoinHandle<()>,
    reader_task: JoinHandle<()>,
}

impl Roles {
    pub async fn start(config: Config) -> Roles {
        Roles::start_with_writers(config, 1).await
    }

    /// Roles with `writer_count` writers, all in `gateway.writer_urls`.
    pub async fn start_with_writers(mut config: Config, writer_count: usize) -> Roles {
        let backends = roles::connect(&config).await.expect("backends");
        let mut writers = Vec::new();
        for _ in 0..writer_count {
            let writer = roles::bind_writer(&config, &backends)
                .await
                .expect("writer binds");
            let url = format!("http://{}", writer.local_addr().expect("addr"));
            let fail_points = writer.fail_points();
            let (trigger, shutdown) = Shutdown::new();
            let task = tokio::spawn(writer.run(shutdown));
            writers.push(InProcessWriter {
                url,
                fail_points,
                trigger,
                task,
            });
        }
        let writer_url = writers[0].url.clone();
        config.gateway.writer_urls = writers.iter().map(|w| w.url.clone()).collect();
        config.reader.listen_addr = "127.0.0.1:0".into();
        let reader = roles::bind_reader(&config, &backends)
            .await
            .expect("reader binds");
        let reader_url = reader.url().to_owned();
        config.gateway.reader_urls = vec![reader_url.clone()];
        let gateway = roles::bind_gateway(&config, &backends)
            .await
            .expect("gateway binds");
        let kafka = gateway.local_addr().expect("addr");
        let listeners = config
            .gateway
            .effective_listeners()
            .into_iter()
            .map(|l| {
                let addr = gateway.listener_addr(&l.name).expect("listener bound");
                (l.name, addr)
            })
            .collect();
        let ops = gateway.ops_addr().expect("ops addr");
        let (gateway_trigger, gateway_shutdown) = Shutdown::new();
        let (reader_trigger, reader_shutdown) = Shutdown::new();
        let gateway_task = tokio::spawn(gateway.run(gateway_shutdown));
        let reader_task = tokio::spawn(reader.run(reader_shutdown));
        Roles {
            kafka,
            listeners,
            ops,
            writer_url,
            reader_url,
            writers,
            gateway_trigger,
            reader_trigger,
            gateway_task,
            reader_task,
        }
    }

    pub fn bootstrap(&self) -> String {
        self.kafka.to_string()
    }

    /// The bound address of the listener called `name`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("no listener {name}"))
    }

    pub async fn stop(self) {
        self.gateway_trigger.trigger();
        for writer in &self.writers {
            writer.trigger.trigger();
        }
        let _ = self.gateway_task.await;
        for writer in self.writers {
            let _ = writer.task.await;
        }
        self.reader_trigger.trigger();
        let _ = self.reader_task.await;
    }
}

/// A `yaks` child process, killed when dropped.
pub struct Process {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, args: &[&str], env: &[(String, String)], log_dir: &Path) -> Process {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_yaks"));
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("spawn yaks");
        Process {
            child,
            name: name.to_owned(),
            log,
        }
    }

    /// SIGINT, as Ctrl-C would, then waits for a clean exit.
    pub fn interrupt(self) -> std::process::ExitStatus {
        self.signal_and_wait("-INT")
    }

    /// SIGTERM, as Kubernetes and ECS stop a task, then waits for a clean exit.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.signal_and_wait("-TERM")
    }

    fn signal_and_wait(mut self, signal: &str) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = yaks_common::clock::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                yaks_common::clock::now() < deadline,
                "{} did not stop",
                self.name
            );
            yaks_common::clock::sleep_blocking(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory the `postgres` user can walk into (PostgreSQL runs as that user
/// when the tests run as root).
pub fn reachable_temp_dir(prefix: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Starts `yaks dev` keeping its data in `dir/data`, logging to `dir/{name}.log`, and waits
/// until it listens on `kafka`.
pub async fn start_dev(dir: &Path, name: &str, kafka: &str, env: &[(String, String)]) -> Process {
    let data_dir = dir.join("data");
    let data_dir = data_dir.to_str().expect("utf-8 path");
    let mut env = env.to_vec();
    if !env.iter().any(|(key, _)| key == "YAKS_GATEWAY__HTTP_ADDR") {
        // Tests run several `yaks dev` at once; the default metrics port would collide.
        env.push((
            "YAKS_GATEWAY__HTTP_ADDR".into(),
            format!("127.0.0.1:{}", port()),
        ));
    }
    let process = Process::spawn(
        name,
        &["dev", "--data-dir", data_dir, "--kafka-addr", kafka],
        &env,
        dir,
    );
    wait_for_port(kafka, Some(&process)).await;
    process
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_for_port(addr: &str, process: Option<&Process>) {
    let deadline = yaks_common::clock::now() + Duration::from_secs(60);
    loop {
        // A connection to a port nobody listens on can, rarely, be the socket connected to
        // itself (TCP simultaneous open when the kernel picks that port as the local one);
        // that is not a listener.
        if let Ok(stream) = tokio::net::TcpStream::connect(addr).await
            && stream.local_addr().ok() != stream.peer_addr().ok()
        {
            return;
        }
        if yaks_common::clock::now() > deadline {
            let log = process.map(Process::log_text).unwrap_or_default();
            panic!("nothing listens on {addr}\n{log}");
        }
        yaks_common::clock::sleep(Duration::from_millis(100)).await;
    }
}

pub fn port() -> u16 {
    free_port().expect("free port")
}

pub fn producer(bootstrap: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "60000")
        .set("linger.ms", "5")
        .set("enable.idempotence", "false");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config.create().expect("producer")
}

/// Waits for every delivery; panics with the client's error on any failure.
pub async fn deliveries(futures: Vec<DeliveryFuture>) -> Vec<(i32, i64)> {
    let mut out = Vec::with_capacity(futures.len());
    for result in join_all(futures).await {
        match result.expect("delivery report") {
            Ok(delivery) => out.push((delivery.partition, delivery.offset)),
            Err((e, _)) => panic!("delivery failed: {e}"),
        }
    }
    out
}

/// Queues a record, returning its delivery future.
pub fn enqueue(producer: &FutureProducer, record: FutureRecord<'_, str, str>) -> DeliveryFuture {
    match producer.send_result(record) {
        Ok(future) => future,
        Err((e, _)) => panic!("queueing failed: {e}"),
    }
}

/// Runs a client script from `tests/clients/` with `args` and returns what it printed.
pub fn run_client(program: &str, script: &str, args: &[&str]) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
    let output = Command::new(program)
        .arg(format!("{dir}/{script}"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (scripts/setup installs it): {e}"));
    assert!(
        output.status.success(),
        "{script} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let results = admin(bootstrap)
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics request");
    for result in results {
        result.expect("topic created");
    }
}

/// `(base_offset, last_offset)` of every index row of a partition, in offset order.
pub async fn index_rows(
    sql: &tokio_postgres::Client,
    topic: &str,
    partition: i32,
) -> Vec<(i64, i64)> {
    sql.query(
        "SELECT i.base_offset, i.last_offset FROM object_index i JOIN topics t USING (topic_id)
         WHERE t.name = $1 AND i.partition_index = $2 ORDER BY i.base_offset",
        &[&topic, &partition],
    )
    .await
    .expect("index rows")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// The high watermark of a partition.
pub async fn next_offset(sql: &tokio_postgres::Client, topic: &str, partition: i32) -> i64 {
    sql.query_one(
        "SELECT p.next_offset FROM partitions p JOIN topics t USING (topic_id)
         WHERE t.name = $1 AND p.partition_index = $2",
        &[&topic, &partition],
    )
    .await
    .expect("partition row")
    .get(0)
}

/// Asserts index rows of a partition tile 0..next_offset with no gap or overlap.
pub async fn assert_index_contiguous(sql: &tokio_postgres::Client, topic: &str, partition: i32) {
    let rows = index_rows(sql, topic, partition).await;
    let mut expected = 0;
    for (base, last) in &rows {
        assert_eq!(
            *base, expected,
            "index of {topic}/{partition} has a gap or overlap: {rows:?}"
        );
        expected = last + 1;
    }
    assert_eq!(expected, next_offset(sql, topic, partition).await);
}

/// GETs `http://{addr}{path}`: the status and the body as text.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let client = yaks_common::rpc::RpcClient::new();
    let base = if addr.starts_with("http://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let response = client
        .get(&base, path)
        .await
        .unwrap_or_else(|failure| panic!("GET {base}{path} failed: {failure}"));
    let status = response.status().as_u16();
    let body = yaks_common::rpc::read_body(response).await.expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Starts `yaks ROLE` (`writer` or `reader`) as process `name` listening on a free loopback
/// port, with `env`; returns it once it listens, with its port.
pub async fn spawn_listening(
    infra: &Infra,
    name: &str,
    role: &str,
    env: &[(String, String)],
) -> (Process, u16) {
    let port = port();
    let mut env = env.to_vec();
    env.push((
        format!("YAKS_{}__LISTEN_ADDR", role.to_uppercase()),
        format!("127.0.0.1:{port}"),
    ));
    let process = Process::spawn(name, &[role], &env, infra.path());
    wait_for_port(&format!("127.0.0.1:{port}"), Some(&process)).await;
    (process, port)
}
