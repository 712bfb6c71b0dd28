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
    let tls_dir = infra.path().join("tls");
    let first = LocalCa::new("first authority").expect("ca");
    let files = first.write_gateway_files(&tls_dir).expect("files");
    let mut config = infra.config();
    config.gateway.listeners = listeners();
    config.gateway.tls.cert_file = Some(files.cert_file.clone());
    config.gateway.tls.key_file = Some(files.key_file.clone());
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
    let refused = produce(&ssl, "secure", 1, &[]).await;
    assert!(refused.starts_with("refused"), "{refused}");
    let second = LocalCa::new("second authority").expect("ca");
    let second_ca = tls_dir.join("second-ca.pem");
    write(&second_ca, second.ca_pem(), 0o644).expect("written");
    let refused = produce(&ssl, "secure", 1, &trusting(&second_ca)).await;
    assert!(refused.starts_with("refused"), "{refused}");

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
    let refused = produce(&ssl, "secure", 1, &trusting(&files.ca_file)).await;
    assert!(refused.starts_with("refused"), "{refused}");

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
    let tls_dir = infra.path().join("tls");
    let ca = LocalCa::new("mtls authority").expect("ca");
    let files = ca.write_gateway_files(&tls_dir).expect("files");
    let mut config = infra.config();
    config.gateway.listeners = listeners();
    config.gateway.tls.cert_file = Some(files.cert_file.clone());
    config.gateway.tls.key_file = Some(files.key_file.clone());
    config.gateway.tls.client_ca_file = Some(files.ca_file.clone());
    config.gateway.tls.client_auth = ClientAuth::Required;
    let roles = Roles::start(config).await;
    let ssl = format!("localhost:{}", roles.listener("EXTERNAL").port());
    create_topic(&roles.listener("INTERNAL").to_string(), "mtls", 1).await;

    let refused = produce(&ssl, "mtls", 1, &trusting(&files.ca_file)).await;
    assert!(refused.starts_with("refused"), "{refused}");

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
    let refused = produce(&ssl, "mtls", 1, &settings).await;
    assert!(refused.starts_with("refused"), "{refused}");
    roles.stop().await;
}
