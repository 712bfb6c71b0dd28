//! TLS for the gateway's `SSL` listeners: the certificate chain, key and client
//! authorities from PEM files, read again when they change.
//!
//! Certificates are rotated by replacing files (cert-manager renews a Secret, an operator
//! copies new PEMs), not by restarting: [`Tls::keep_fresh`] checks the files' modification
//! times and sizes every `gateway.tls.reload_interval_ms` and builds a new configuration
//! when one changed. Connections accepted after that use it; open connections keep the
//! one they were accepted with, as with Kafka's dynamic keystore update. A file that does
//! not read (half written, a key not matching its certificate) keeps the configuration in
//! use and logs why; the next change is tried again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};
use yaks_common::config::{ClientAuth, TlsConfig};
use yaks_common::metrics::{OutcomeLabels, metrics};
use yaks_common::shutdown::Shutdown;

use super::Principal;

/// Why the TLS files cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A setting is missing.
    #[error("`gateway.tls.{0}` must be set for a TLS listener")]
    Missing(&'static str),
    /// A file does not read or holds no PEM of the expected kind.
    #[error("{path}: {problem}")]
    File {
        /// Which file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refused the combination (a key not matching the certificate, say).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// When each TLS file was last changed, to tell a rotation from no change.
type Stamp = Vec<Option<(SystemTime, u64)>>;

/// The TLS configuration listeners accept connections with, replaced when its files change.
pub struct Tls {
    files: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
    stamp: Mutex<Stamp>,
}

impl Tls {
    /// Reads the files named in `files`.
    pub fn load(files: TlsConfig) -> Result<Arc<Tls>, TlsError> {
        let stamp = stamp_of(&files);
        let config = server_config(&files)?;
        Ok(Arc::new(Tls {
            files,
            current: RwLock::new(Arc::new(config)),
            stamp: Mutex::new(stamp),
        }))
    }

    /// An acceptor with the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        TlsAcceptor::from(config)
    }

    /// Builds a new configuration if a file changed since the last look. `Ok(true)`: a new
    /// one is in force.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamp = stamp_of(&self.files);
        {
            let mut seen = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == stamp {
                return Ok(false);
            }
            // Recorded before reading, so a broken file is reported once per change, not
            // once per check.
            *seen = stamp;
        }
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(true)
    }

    /// Checks the files every `reload_interval_ms` until `shutdown`.
    pub async fn keep_fresh(self: Arc<Self>, mut shutdown: Shutdown) {
        let interval = Duration::from_millis(self.files.reload_interval_ms.max(100));
        loop {
            tokio::select! {
                _ = yaks_common::clock::sleep(interval) => {}
                _ = shutdown.wait() => return,
            }
            let tls = self.clone();
            let reloaded = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
            let reloads = &metrics().gateway.tls_reloads;
            match reloaded {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => {
                    reloads
                        .get_or_create(&OutcomeLabels { outcome: "ok" })
                        .inc();
                    info!(cert = ?self.files.cert_file, "tls files changed; new connections use them");
                }
                Ok(Err(e)) => {
                    reloads
                        .get_or_create(&OutcomeLabels { outcome: "failed" })
                        .inc();
                    warn!(error = %e, "tls files changed but do not load; keeping the ones in use");
                }
                Err(e) => warn!(error = %e, "tls reload task failed"),
            }
        }
    }
}

fn stamp_of(files: &TlsConfig) -> Stamp {
    [&files.cert_file, &files.key_file, &files.client_ca_file]
        .into_iter()
        .map(|path| {
            let metadata = std::fs::metadata(path.as_ref()?).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        })
        .collect()
}

fn server_config(files: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let cert_file = files
        .cert_file
        .as_deref()
        .ok_or(TlsError::Missing("cert_file"))?;
    let key_file = files
        .key_file
        .as_deref()
        .ok_or(TlsError::Missing("key_file"))?;
    let chain = certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::File {
        path: key_file.to_owned(),
        problem: format!("no private key: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match files.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Requested | ClientAuth::Required => {
            let ca_file = files
                .client_ca_file
                .as_deref()
                .ok_or(TlsError::Missing("client_ca_file"))?;
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca_file)? {
                roots.add(cert).map_err(|e| TlsError::File {
                    path: ca_file.to_owned(),
                    problem: format!("not a usable authority: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.client_auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let problem = |problem: String| TlsError::File {
        path: path.to_owned(),
        problem,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| problem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(e.to_string()))?;
    if certs.is_empty() {
        return Err(problem("no certificate in it".into()));
    }
    Ok(certs)
}

/// The principal of a TLS connection: its client certificate's subject, or
/// `User:ANONYMOUS` without one (Kafka's default `ssl.principal.mapping.rules`).
pub fn principal_of(connection: &rustls::ServerConnection) -> Principal {
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| subject_name(cert.as_ref()))
        .map_or_else(Principal::anonymous, Principal::user)
}

/// A certificate's subject as RFC 2253 writes it, which is how Kafka (through Java's
/// `X500Principal.getName()`) names the principal: last RDN first, `,` between them,
/// `+` inside a multi-valued one, known attribute types by keyword, others as their
/// dotted OID with the value's DER in hex.
pub fn subject_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut rdns = Vec::new();
    for rdn in cert.subject().iter() {
        let mut parts = Vec::new();
        for attribute in rdn.iter() {
            let oid = attribute.attr_type().to_id_string();
            let value = attribute.attr_value();
            let text = match (keyword(&oid), value.as_str()) {
                (Some(keyword), Ok(text)) => format!("{keyword}={}", escape(text)),
                _ => format!("{oid}=#{}", hex_der(value.header.tag().0, value.data)),
            };
            parts.push(text);
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 2253 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A primitive value's DER (tag, length, contents) in lowercase hex.
fn hex_der(tag: u32, data: &[u8]) -> String {
    let mut der = vec![tag as u8];
    let len = data.len();
    if len < 0x80 {
        der.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        der.push(0x80 | (bytes.len() - skip) as u8);
        der.extend_from_slice(&bytes[skip..]);
    }
    der.extend_from_slice(data);
    der.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(subject: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["client".into()]).expect("params");
        let mut name = rcgen::DistinguishedName::new();
        for (kind, value) in subject {
            name.push(kind.clone(), *value);
        }
        params.distinguished_name = name;
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn the_subject_reads_as_kafka_names_the_principal() {
        let der = certificate(&[
            (rcgen::DnType::CountryName, "DE"),
            (rcgen::DnType::OrganizationName, "Yaks, Inc."),
            (rcgen::DnType::CommonName, "orders-service"),
        ]);
        assert_eq!(
            subject_name(&der).as_deref(),
            Some("CN=orders-service,O=Yaks\\, Inc.,C=DE")
        );
    }

    #[test]
    fn escaping_follows_rfc_2253() {
        assert_eq!(escape("#a b "), "\\#a b\\ ");
        assert_eq!(escape("a+b;c<d>\"e\\"), "a\\+b\\;c\\<d\\>\\\"e\\\\");
    }

    #[test]
    fn long_values_get_a_long_form_length() {
        assert_eq!(hex_der(0x0c, b"ab"), "0c026162");
        let long = vec![0u8; 200];
        assert!(hex_der(0x0c, &long).starts_with("0c81c8"));
    }
}
