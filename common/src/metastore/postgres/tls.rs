//! TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` URL parameters ask for it.
//!
//! Managed PostgreSQL (RDS, Cloud SQL, Azure) offers TLS with certificates from its own
//! authority; what protects the connection is checking the server's certificate against
//! that authority and its name against the host, which is libpq's `sslmode=verify-full`.
//! tokio-postgres knows only `disable`, `prefer` and `require`, so the two parameters are
//! taken out of the URL here and turned into a rustls configuration. Supported:
//! - no `sslmode`, `disable`, `prefer`, `allow`: plaintext (`prefer` and `allow` would
//!   fall back to it anyway, which a passive attacker cannot tell from encrypted);
//! - `verify-full` with `sslrootcert=/path/ca.pem`: TLS, the certificate checked against
//!   that authority and the URL's host.
//!
//! `require` and `verify-ca` encrypt without checking who answers, which protects nothing
//! against an active attacker; they are refused with a message naming `verify-full`.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::StoreError;

/// A connection URL without its TLS parameters, and the connector they asked for.
pub(super) struct TlsUrl {
    /// What tokio-postgres parses.
    pub url: String,
    /// `None`: plaintext.
    pub tls: Option<MakeRustlsConnect>,
}

/// Takes `sslmode` and `sslrootcert` out of `url` (URL or `key=value` form).
pub(super) fn split(url: &str) -> Result<TlsUrl, StoreError> {
    let (rest, mode, root) = take_parameters(url);
    let invalid = |problem: String| StoreError::Invalid(format!("postgres.url: {problem}"));
    let tls = match mode.as_deref() {
        None | Some("disable") | Some("allow") | Some("prefer") => None,
        Some("verify-full") => {
            let root = root.ok_or_else(|| {
                invalid("sslmode=verify-full needs sslrootcert=/path/to/ca.pem".into())
            })?;
            let certs = CertificateDer::pem_file_iter(&root)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| invalid(format!("sslrootcert {root}: {e}")))?;
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| invalid(format!("sslrootcert {root}: {e}")))?;
            }
            if roots.is_empty() {
                return Err(invalid(format!("sslrootcert {root}: no certificate in it")));
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(MakeRustlsConnect::new(config))
        }
        Some(mode @ ("require" | "verify-ca")) => {
            return Err(invalid(format!(
                "sslmode={mode} does not check the server's name; use sslmode=verify-full \
                 with sslrootcert=/path/to/ca.pem"
            )));
        }
        Some(other) => return Err(invalid(format!("unknown sslmode {other:?}"))),
    };
    // tokio-postgres must ask for TLS itself when we bring a connector.
    let url = match (&tls, rest.contains("://")) {
        (None, _) => rest,
        (Some(_), true) if rest.contains('?') => format!("{rest}&sslmode=require"),
        (Some(_), true) => format!("{rest}?sslmode=require"),
        (Some(_), false) => format!("{rest} sslmode=require"),
    };
    Ok(TlsUrl { url, tls })
}

/// `url` without `sslmode` and `sslrootcert`, and their values.
fn take_parameters(url: &str) -> (String, Option<String>, Option<String>) {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: &str| match key {
        "sslmode" => {
            mode = Some(value.to_owned());
            true
        }
        "sslrootcert" => {
            root = Some(value.to_owned());
            true
        }
        _ => false,
    };
    if url.contains("://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_owned(), None, None);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| match pair.split_once('=') {
                Some((key, value)) => !take(key, value),
                None => true,
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, mode, root);
    }
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|pair| match pair.split_once('=') {
            Some((key, value)) => !take(key, value),
            None => true,
        })
        .collect();
    (kept.join(" "), mode, root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_either_form() {
        let (rest, mode, root) = take_parameters(
            "postgres://u@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=/ca.pem",
        );
        assert_eq!(rest, "postgres://u@h:5432/db?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/ca.pem"));
        let (rest, mode, _) = take_parameters("host=h user=u sslmode=disable");
        assert_eq!(rest, "host=h user=u");
        assert_eq!(mode.as_deref(), Some("disable"));
        let (rest, mode, _) = take_parameters("postgres://u@h/db");
        assert_eq!((rest.as_str(), mode), ("postgres://u@h/db", None));
    }

    #[test]
    fn only_modes_that_check_the_server_or_plaintext_are_accepted() {
        assert!(split("postgres://u@h/db").expect("plain").tls.is_none());
        assert!(
            split("postgres://u@h/db?sslmode=prefer")
                .expect("plain")
                .tls
                .is_none()
        );
        for refused in ["require", "verify-ca", "bogus"] {
            let url = format!("postgres://u@h/db?sslmode={refused}");
            assert!(split(&url).is_err(), "{refused}");
        }
        let err = split("postgres://u@h/db?sslmode=verify-full")
            .err()
            .expect("refused");
        assert!(err.to_string().contains("sslrootcert"), "{err}");
    }
}
