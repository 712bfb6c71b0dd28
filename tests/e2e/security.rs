//! Listeners and TLS, as a client sees them: a gateway with a plaintext and an `SSL`
//! listener serves the same data on both, tells each client the addresses of the listener
//! it came in on, refuses clients that do not trust its certificate or speak plaintext to
//! its TLS port, takes a replaced certificate without a restart, and with client
//! authentication required refuses a client without a certificate its authority signed.

use std::path::Path;
use std::time::Duration;

use yaks::dev::tls::{LocalCa, write};
use yaks_common::config::{ClientAuth, ListenerConfig, SecurityProtocol};

use crate::harness::*;

fn listeners() -> Vec<ListenerConfig> {
    vec![
        ListenerConfig {
            name: "INTERNAL".into(),
            listen_addr: "127.0.0.1:0".into(),
            advertised_addr: None,
            security_protocol: SecurityProtocol::Plaintext,
        },
        ListenerConfig {
            name: "EXTERNAL".into(),
            listen_addr: "127.0.0.1:0".into(),
            // The name the certificate is issued for; port 0: the bound one.
            advertised_addr: Some("localhost:0".into()),
            security_protocol: SecurityProtocol::Ssl,
        },
    ]
}

/// Produces `count` records with librdkafka and `settings`; the offsets, or `refused: …`.
async fn produce(bootstrap: &str, topic: &str, count: usize, settings: &[String]) -> String {
    let mut args = vec![bootstrap.to_owned(), topic.to_owned(), count.to_string()];
    args.extend(settings.iter().cloned());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_client("python3", "confluent_tls.py", &args)
    })
    .await
    .expect("client ran")
}

/// Asserts that a librdkafka producer with `settings` cannot get one record through
/// (within 3 s: a refused client only ever times out).
async fn assert_refused(bootstrap: &str, topic: &str, settings: &[String]) {
    let mut settings = settings.to_vec();
    settings.push("message.timeout.ms=3000".into());
    let answer = produce(bootstrap, topic, 1, &settings).await;
    assert!(answer.starts_with("refused"), "got through: {answer}");
}

/// Settings for a gateway with `listeners` whose certificate a new authority signed.
struct Secured {
    config: yaks_common::config::Config,
    ca: LocalCa,
    files: yaks::dev::tls::GatewayFiles,
    tls_dir: std::path::PathBuf,
}

fn secured(infra: &Infra, authority: &str, listeners: Vec<ListenerConfig>) -> Secured {
    let tls_dir = infra.path().join("tls");
    let ca = LocalCa::new(authority).expect("ca");
    let files = ca.write_gateway_files(&tls_dir).expect("files");
    let mut config = infra.config();
    config.gateway.listeners = listeners;
    config.gateway.tls.cert_file = Some(files.cert_file.clone());
    config.gateway.tls.key_file = Some(files.key_file.clone());
    Secured {
        config,
        ca,
        files,
        tls_dir,
    }
}

fn trusting(ca_file: &Path) -> Vec<String> {
    vec![
        "security.protocol=SSL".into(),
        format!("ssl.ca.location={}", ca_file.display()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssl_listener_serves_clients_that_trust_it_and_takes_a_new_certificate_without_restart()
{
    let infra = Infra::start().await;
    let Secured {
        mut config,
        files,
        tls_dir,
        ..
    } = secured(&infra, "first authority", listeners());
    config.gateway.tls.reload_interval_ms = 200;
    let roles = Roles::start(config).await;
    let ssl = format!("localhost:{}", roles.listener("EXTERNAL").port());
    let plain = roles.listener("INTERNAL").to_string();
    create_topic(&plain, "secure", 1).await;

    // Over TLS: this only works if Metadata on the TLS listener names TLS addresses.
    let sent = produce(&ssl, "secure", 5, &trusting(&files.ca_file)).await;
    assert_eq!(sent, "0 1 2 3 4");
    // The same partition through the plaintext listener.
    assert_eq!(produce(&plain, "secure", 1, &[]).await, "5");

    // A plaintext client on the TLS port, and a TLS client trusting another authority.
    assert_refused(&ssl, "secure", &[]).await;
    let second = LocalCa::new("second authority").expect("ca");
    let second_ca = tls_dir.join("second-ca.pem");
    write(&second_ca, second.ca_pem(), 0o644).expect("written");
    assert_refused(&ssl, "secure", &trusting(&second_ca)).await;

    // Rotation: the files are replaced (certificate first, then key, as a copy would do
    // it); clients trusting the second authority get through within a few checks.
    let rotated = second.server(&["localhost", "127.0.0.1"]).expect("cert");
    write(&files.cert_file, &rotated.cert, 0o644).expect("cert written");
    yaks_common::clock::sleep(Duration::from_millis(500)).await;
    write(&files.key_file, &rotated.key, 0o600).expect("key written");
    let mut through = String::new();
    for _ in 0..10 {
        through = produce(&ssl, "secure", 1, &trusting(&second_ca)).await;
        if !through.starts_with("refused") {
            break;
        }
        yaks_common::clock::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(through, "6", "the rotated certificate was not taken");
    assert_refused(&ssl, "secure", &trusting(&files.ca_file)).await;

    let (_, metrics) = http_get(&roles.ops.to_string(), "/metrics").await;
    assert!(
        metrics.contains("yaks_gateway_tls_reloads_total{outcome=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("yaks_gateway_tls_handshakes_total{outcome=\"failed\"}"),
        "{metrics}"
    );
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_certificates_required_only_clients_the_authority_signed_get_in() {
    let infra = Infra::start().await;
    let Secured {
        mut config,
        ca,
        files,
        tls_dir,
    } = secured(&infra, "mtls authority", listeners());
    config.gateway.tls.client_ca_file = Some(files.ca_file.clone());
    config.gateway.tls.client_auth = ClientAuth::Required;
    let roles = Roles::start(config).await;
    let ssl = format!("localhost:{}", roles.listener("EXTERNAL").port());
    create_topic(&roles.listener("INTERNAL").to_string(), "mtls", 1).await;

    assert_refused(&ssl, "mtls", &trusting(&files.ca_file)).await;

    let client = ca.client("orders-service").expect("client cert");
    let (cert, key) = (tls_dir.join("client.pem"), tls_dir.join("client.key"));
    write(&cert, &client.cert, 0o644).expect("written");
    write(&key, &client.key, 0o600).expect("written");
    let mut settings = trusting(&files.ca_file);
    settings.push(format!("ssl.certificate.location={}", cert.display()));
    settings.push(format!("ssl.key.location={}", key.display()));
    assert_eq!(produce(&ssl, "mtls", 3, &settings).await, "0 1 2");

    // A certificate from another authority is refused as well.
    let stranger = LocalCa::new("stranger").expect("ca");
    let other = stranger.client("intruder").expect("client cert");
    write(&cert, &other.cert, 0o644).expect("written");
    write(&key, &other.key, 0o600).expect("written");
    assert_refused(&ssl, "mtls", &settings).await;
    roles.stop().await;
}

/// Runs `yaks user ARGS` against `infra`'s PostgreSQL with `input` on standard input.
pub async fn yaks_user(infra: &Infra, args: &[&str], input: &str) -> std::process::Output {
    yaks_command(infra, "user", args, input).await
}

/// Runs `yaks COMMAND ARGS` against `infra`'s PostgreSQL with `input` on standard input.
pub async fn yaks_command(
    infra: &Infra,
    command: &str,
    args: &[&str],
    input: &str,
) -> std::process::Output {
    use std::io::Write;
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    args.insert(0, command.to_owned());
    let (url, input) = (infra.postgres.url(), input.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_yaks"))
            .args(&args)
            .env("YAKS_POSTGRES__URL", url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("yaks runs");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write");
        drop(stdin);
        child.wait_with_output().expect("yaks ends")
    })
    .await
    .expect("join")
}

/// Makes user `bob` (password `builder`, SCRAM-SHA-512) through the gateway at `bootstrap`
/// (`SASL_SSL`, trusting `ca_file`) with confluent-kafka's admin API, logged in as `user`.
async fn make_bob(bootstrap: &str, ca_file: &str, user: &str, password: &str) {
    let args: Vec<String> = [bootstrap, ca_file, user, password, "bob", "builder"]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
    let described = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_client("python3", "confluent_scram_admin.py", &args)
    })
    .await
    .expect("client ran");
    assert_eq!(described, "SCRAM_SHA_512:8192 RESOURCE_NOT_FOUND");
}

fn sasl_listeners() -> Vec<ListenerConfig> {
    let mut listeners = listeners();
    listeners[1].name = "SECURE".into();
    listeners[1].security_protocol = SecurityProtocol::SaslSsl;
    listeners.push(ListenerConfig {
        name: "LEGACY".into(),
        listen_addr: "127.0.0.1:0".into(),
        advertised_addr: None,
        security_protocol: SecurityProtocol::SaslPlaintext,
    });
    listeners
}

fn login(protocol: &str, mechanism: &str, user: &str, password: &str) -> Vec<String> {
    vec![
        format!("security.protocol={protocol}"),
        format!("sasl.mechanism={mechanism}"),
        format!("sasl.username={user}"),
        format!("sasl.password={password}"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_users_log_in_with_scram_or_plain_and_nobody_else_gets_in() {
    let infra = Infra::start().await;
    let Secured { config, files, .. } = secured(&infra, "sasl authority", sasl_listeners());
    let roles = Roles::start(config).await;
    let secure = format!("localhost:{}", roles.listener("SECURE").port());
    let legacy = roles.listener("LEGACY").to_string();
    create_topic(&roles.listener("INTERNAL").to_string(), "sasl", 1).await;

    // The first user, made with the CLI (no user exists to ask a gateway with).
    let made = yaks_user(&infra, &["create", "alice"], "wonderland\n").await;
    assert!(made.status.success(), "{made:?}");
    let listed = yaks_user(&infra, &["list"], "").await;
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains("alice  SCRAM-SHA-256 (8192 iterations)  SCRAM-SHA-512 (8192 iterations)"),
        "{listed}"
    );

    // librdkafka with each mechanism, over TLS and in plaintext.
    let ca_setting = format!("ssl.ca.location={}", files.ca_file.display());
    let mut offset = 0;
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] {
        let mut settings = login("SASL_SSL", mechanism, "alice", "wonderland");
        settings.push(ca_setting.clone());
        let sent = produce(&secure, "sasl", 2, &settings).await;
        assert_eq!(sent, format!("{} {}", offset, offset + 1), "{mechanism}");
        offset += 2;
        let settings = login("SASL_PLAINTEXT", mechanism, "alice", "wonderland");
        assert_eq!(
            produce(&legacy, "sasl", 1, &settings).await,
            offset.to_string()
        );
        offset += 1;
    }

    // kafka-python and kafkajs with SCRAM.
    let ca_file = files.ca_file.display().to_string();
    for (program, script) in [
        ("python3", "kafka_python_sasl.py"),
        ("node", "kafkajs_sasl.js"),
    ] {
        let args: [String; 6] = [
            secure.clone(),
            "sasl".into(),
            "SCRAM-SHA-512".into(),
            "alice".into(),
            "wonderland".into(),
            ca_file.clone(),
        ];
        let sent = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_client(program, script, &args)
        })
        .await
        .expect("client ran");
        assert_eq!(
            sent,
            format!("{} {} {}", offset, offset + 1, offset + 2),
            "{script}"
        );
        offset += 3;
    }

    // Refused: a wrong password, an unknown user, no SASL at all, a mechanism not offered.
    let mut wrong = login("SASL_SSL", "SCRAM-SHA-256", "alice", "looking-glass");
    wrong.push(ca_setting.clone());
    assert_refused(&secure, "sasl", &wrong).await;
    let plain_wrong = login("SASL_PLAINTEXT", "PLAIN", "alice", "looking-glass");
    assert_refused(&legacy, "sasl", &plain_wrong).await;
    let stranger = login("SASL_PLAINTEXT", "SCRAM-SHA-256", "mallory", "wonderland");
    assert_refused(&legacy, "sasl", &stranger).await;
    assert_refused(&legacy, "sasl", &[]).await;
    // OAUTHBEARER is not offered (yet): librdkafka's unsecured token is refused at the
    // handshake.
    let oauth = [
        "security.protocol=SASL_PLAINTEXT".to_owned(),
        "sasl.mechanism=OAUTHBEARER".to_owned(),
        "sasl.oauthbearer.config=principal=alice".to_owned(),
    ];
    assert_refused(&legacy, "sasl", &oauth).await;

    // A user made through the gateway with Kafka's admin API logs in.
    make_bob(&secure, &ca_file, "alice", "wonderland").await;
    let bob = login("SASL_PLAINTEXT", "SCRAM-SHA-512", "bob", "builder");
    assert_eq!(produce(&legacy, "sasl", 1, &bob).await, offset.to_string());
    let bob_256 = login("SASL_PLAINTEXT", "SCRAM-SHA-256", "bob", "builder");
    assert_refused(&legacy, "sasl", &bob_256).await;

    let deleted = yaks_user(&infra, &["delete", "bob"], "").await;
    assert!(deleted.status.success(), "{deleted:?}");
    assert_refused(&legacy, "sasl", &bob).await;

    let (_, metrics) = http_get(&roles.ops.to_string(), "/metrics").await;
    for expected in [
        "yaks_gateway_sasl_authentications_total{mechanism=\"SCRAM-SHA-256\",outcome=\"ok\"}",
        "yaks_gateway_sasl_authentications_total{mechanism=\"PLAIN\",outcome=\"failed\"}",
        "yaks_gateway_sasl_authentications_total{mechanism=\"none\",outcome=\"refused\"}",
    ] {
        assert!(metrics.contains(expected), "{expected} in {metrics}");
    }
    roles.stop().await;
}

/// Sends `frame` (size prefix included) to `addr` and says whether the gateway closed the
/// connection without answering within 10 s.
async fn closed_without_answer(addr: std::net::SocketAddr, frame: &[u8]) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(frame).await.expect("write");
    let mut buffer = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_authentication_only_sasl_is_served_and_frames_are_small() {
    let infra = Infra::start().await;
    let mut config = infra.config();
    config.gateway.listeners = vec![ListenerConfig {
        name: "SASL".into(),
        listen_addr: "127.0.0.1:0".into(),
        advertised_addr: None,
        security_protocol: SecurityProtocol::SaslPlaintext,
    }];
    let roles = Roles::start(config).await;
    let addr = roles.listener("SASL");

    // Metadata v1 asking for every topic, before any handshake.
    let mut metadata = Vec::new();
    metadata.extend_from_slice(&3i16.to_be_bytes()); // api key
    metadata.extend_from_slice(&1i16.to_be_bytes()); // version
    metadata.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    metadata.extend_from_slice(&(-1i16).to_be_bytes()); // no client id
    metadata.extend_from_slice(&(-1i32).to_be_bytes()); // null topics: all
    let mut frame = (metadata.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&metadata);
    assert!(
        closed_without_answer(addr, &frame).await,
        "metadata served before authentication"
    );

    // A frame announcing 100 MiB, which a gateway must not allocate for.
    let huge = (100i32 << 20).to_be_bytes();
    assert!(closed_without_answer(addr, &huge).await);
    // Garbage.
    assert!(closed_without_answer(addr, b"\x00\x00\x00\x10GET / HTTP/1.1\r\n").await);

    // ApiVersions is answered before authentication.
    let mut versions = Vec::new();
    versions.extend_from_slice(&18i16.to_be_bytes());
    versions.extend_from_slice(&0i16.to_be_bytes());
    versions.extend_from_slice(&1i32.to_be_bytes());
    versions.extend_from_slice(&(-1i16).to_be_bytes());
    let mut frame = (versions.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&versions);
    assert!(
        !closed_without_answer(addr, &frame).await,
        "ApiVersions not answered"
    );
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaks_dev_secure_serves_sasl_ssl_with_its_own_ca_and_admin_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = reachable_temp_dir("yaks-secure-");
    let kafka = format!("127.0.0.1:{}", port());
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8").to_owned();
    let http = format!("127.0.0.1:{}", port());
    let process = Process::spawn(
        "dev-secure",
        &[
            "dev",
            "--secure",
            "--data-dir",
            &data_arg,
            "--kafka-addr",
            &kafka,
        ],
        &[("YAKS_GATEWAY__HTTP_ADDR".into(), http)],
        dir.path(),
    );
    wait_for_port(&kafka, Some(&process)).await;

    let password_file = data.join("admin.password");
    let mode = std::fs::metadata(&password_file)
        .expect("password file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let password = std::fs::read_to_string(&password_file)
        .expect("password")
        .trim()
        .to_owned();
    let ca_file = data.join("tls").join("ca.pem");
    assert!(ca_file.exists());
    // The line comes once every role started, a moment after the port opens.
    let says_how =
        |log: &str| log.contains("security.protocol=SASL_SSL") && log.contains("admin.password");
    let mut log = process.log_text();
    for _ in 0..100 {
        if says_how(&log) {
            break;
        }
        yaks_common::clock::sleep(Duration::from_millis(200)).await;
        log = process.log_text();
    }
    assert!(
        says_how(&log),
        "start-up does not say how to connect:\n{log}"
    );

    let bootstrap = kafka.replace("127.0.0.1", "localhost");
    let mut settings = login("SASL_SSL", "SCRAM-SHA-512", "admin", &password);
    settings.push(format!("ssl.ca.location={}", ca_file.display()));
    settings.push("topic.metadata.refresh.interval.ms=1000".into());
    assert_eq!(produce(&bootstrap, "secure-dev", 2, &settings).await, "0 1");
    assert_refused(&bootstrap, "secure-dev", &[]).await;
    let mut wrong = login("SASL_SSL", "SCRAM-SHA-512", "admin", "guess");
    wrong.push(format!("ssl.ca.location={}", ca_file.display()));
    assert_refused(&bootstrap, "secure-dev", &wrong).await;

    // Authorization is on: a user admin creates gets in, but may not write without an ACL.
    make_bob(
        &bootstrap,
        &ca_file.display().to_string(),
        "admin",
        &password,
    )
    .await;
    let mut bob = login("SASL_SSL", "SCRAM-SHA-512", "bob", "builder");
    bob.push(format!("ssl.ca.location={}", ca_file.display()));
    let refused = produce(&bootstrap, "secure-dev", 1, &bob).await;
    assert!(
        refused.starts_with("refused") && refused.contains("authorization"),
        "{refused}"
    );

    // The admin CLI takes client settings from a file, as Kafka tools' --command-config.
    let command_config = dir.path().join("admin.properties");
    let properties = format!(
        "security.protocol=SASL_SSL\nssl.ca.location={}\nsasl.mechanism=SCRAM-SHA-256\n\
         sasl.username=admin\nsasl.password={password}\n",
        ca_file.display()
    );
    std::fs::write(&command_config, properties).expect("written");
    let config_arg = command_config.to_str().expect("utf-8").to_owned();
    let listed = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_yaks"))
            .args([
                "topic",
                "list",
                "-b",
                &bootstrap,
                "--command-config",
                &config_arg,
            ])
            .output()
            .expect("yaks runs")
    })
    .await
    .expect("join");
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("secure-dev"),
        "{listed:?}"
    );
    process.interrupt();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_internal_token_writers_and_readers_serve_only_the_deployment() {
    use yaks_common::rpc::{FETCH_PATH, PRODUCE_PATH, PeerToken, RpcClient, RpcError};
    let infra = Infra::start().await;
    let mut config = infra.config();
    config.internal.token = Some("a-deployment-secret-of-some-length".into());
    let roles = Roles::start(config).await;
    let bootstrap = roles.bootstrap();
    create_topic(&bootstrap, "inside", 1).await;
    // Through the gateway, which carries the token, everything works.
    assert_eq!(produce(&bootstrap, "inside", 2, &[]).await, "0 1");

    // Anyone else reaching the writer's or the reader's port is turned away.
    let body = bytes::Bytes::from_static(b"\x00\x00\x00\x00");
    for (url, path) in [
        (roles.writer_url.clone(), PRODUCE_PATH),
        (roles.reader_url.clone(), FETCH_PATH),
    ] {
        for client in [
            RpcClient::new(),
            RpcClient::with_token(Some(PeerToken::new("a-guess-of-the-same-length-xxxxx"))),
        ] {
            match client.post(&url, path, body.clone()).await {
                Err(RpcError::Rejected { status, .. }) => assert_eq!(status.as_u16(), 401),
                other => panic!("{url}{path} answered {other:?}"),
            }
        }
        // Health probes need no token.
        let (status, _) = http_get(&url, "/healthz").await;
        assert_eq!(status, 200);
    }
    roles.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_is_verified_against_its_authority() {
    use yaks_common::metastore::{Cluster, PgMetastore};
    let mut infra = Infra::start().await;
    let tls_dir = infra.path().join("pg-tls");
    std::fs::create_dir_all(&tls_dir).expect("dir");
    let ca = LocalCa::new("database authority").expect("ca");
    let server = ca.server(&["localhost", "127.0.0.1"]).expect("cert");
    let ca_file = tls_dir.join("ca.pem");
    write(&ca_file, ca.ca_pem(), 0o644).expect("written");
    tokio::task::block_in_place(|| infra.postgres.enable_tls(&server.cert, &server.key))
        .expect("postgres serves tls");

    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        infra.postgres.url(),
        ca_file.display()
    );
    let mut config = infra.config();
    config.postgres.url = Some(verified.clone());
    let store = PgMetastore::connect(&config.postgres).expect("settings");
    store.migrate().await.expect("migrations over tls");
    store.cluster_id().await.expect("answers");

    // Every yaks session, the commit feed's LISTEN connection included, is encrypted.
    let roles = Roles::start(config).await;
    create_topic(&roles.bootstrap(), "over-tls", 1).await;
    assert_eq!(produce(&roles.bootstrap(), "over-tls", 2, &[]).await, "0 1");
    let sql = infra.sql().await;
    let row = sql
        .query_one(
            "SELECT count(*) FILTER (WHERE NOT s.ssl), count(*) FILTER (WHERE s.ssl) \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'yaks'",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    let (plain, encrypted): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(plain, 0);
    assert!(encrypted >= 2, "{encrypted} encrypted yaks sessions");
    roles.stop().await;

    // A server whose certificate another authority signed is not talked to.
    let stranger = LocalCa::new("stranger").expect("ca");
    let stranger_file = tls_dir.join("stranger.pem");
    write(&stranger_file, stranger.ca_pem(), 0o644).expect("written");
    let mut settings = infra.config().postgres;
    settings.url = Some(format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        infra.postgres.url(),
        stranger_file.display()
    ));
    settings.connect_timeout_ms = 2_000;
    let store = PgMetastore::connect(&settings).expect("settings");
    assert!(store.cluster_id().await.is_err());
    // And a mode that would not check it is refused outright.
    settings.url = Some(format!("{}?sslmode=require", infra.postgres.url()));
    assert!(PgMetastore::connect(&settings).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_tokens_are_checked_against_the_providers_keys() {
    use base64::Engine;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);

    // The identity provider: an ES256 key published as a JWKS.
    let key = rcgen::KeyPair::generate().expect("P-256 key");
    let point = key.public_key_raw();
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "key-1", "alg": "ES256", "use": "sig",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    }]});
    let provider = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(jwks))
        .mount(&provider)
        .await;

    let infra = Infra::start().await;
    let keys = infra.path().join("oauth");
    std::fs::create_dir_all(&keys).expect("dir");
    let key_file = keys.join("signer.pem");
    write(&key_file, &key.serialize_pem(), 0o600).expect("written");
    let stranger = rcgen::KeyPair::generate().expect("key");
    let stranger_file = keys.join("stranger.pem");
    write(&stranger_file, &stranger.serialize_pem(), 0o600).expect("written");

    let mut config = infra.config();
    config.gateway.listeners = sasl_listeners();
    config.gateway.tls.cert_file = None;
    config.gateway.listeners.retain(|l| l.name != "SECURE");
    config.gateway.sasl.mechanisms = vec!["OAUTHBEARER".into(), "SCRAM-SHA-256".into()];
    let oauth = &mut config.gateway.sasl.oauthbearer;
    oauth.jwks_url = Some(format!("{}/jwks.json", provider.uri()));
    oauth.issuer = Some("https://idp.example".into());
    oauth.audience = Some("yaks".into());
    let roles = Roles::start(config).await;
    let legacy = roles.listener("LEGACY").to_string();
    create_topic(&roles.listener("INTERNAL").to_string(), "oauth", 1).await;

    let login = |key_file: &Path, issuer: &str, audience: &str, lifetime: i64| {
        let args = [
            legacy.clone(),
            "oauth".to_owned(),
            key_file.display().to_string(),
            "key-1".to_owned(),
            issuer.to_owned(),
            audience.to_owned(),
            "svc-orders".to_owned(),
            lifetime.to_string(),
        ];
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_client("python3", "confluent_oauth.py", &args)
        })
    };
    let issuer = "https://idp.example";
    assert_eq!(
        login(&key_file, issuer, "yaks", 600).await.expect("ran"),
        "0 1"
    );
    for (what, answer) in [
        ("expired", login(&key_file, issuer, "yaks", -3600).await),
        (
            "other audience",
            login(&key_file, issuer, "billing", 600).await,
        ),
        (
            "other issuer",
            login(&key_file, "https://evil.example", "yaks", 600).await,
        ),
        (
            "other key",
            login(&stranger_file, issuer, "yaks", 600).await,
        ),
    ] {
        let answer = answer.expect("ran");
        assert!(answer.starts_with("refused"), "{what}: {answer}");
    }
    let (_, metrics) = http_get(&roles.ops.to_string(), "/metrics").await;
    for expected in [
        "yaks_gateway_sasl_authentications_total{mechanism=\"OAUTHBEARER\",outcome=\"ok\"}",
        "yaks_gateway_sasl_authentications_total{mechanism=\"OAUTHBEARER\",outcome=\"failed\"}",
    ] {
        assert!(metrics.contains(expected), "{expected} in {metrics}");
    }
    roles.stop().await;
}
