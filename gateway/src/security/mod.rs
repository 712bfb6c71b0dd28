//! Who a connection is, and how it proved it.
//!
//! Vocabulary, as Kafka's: a *listener* is a named address with a security protocol
//! (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`); a *principal* is who a connection
//! acts as, `User:<name>`, and `User:ANONYMOUS` where nothing was proved. On an `SSL`
//! listener the principal is the client certificate's subject (Kafka's default principal
//! builder: the distinguished name in RFC 2253 form), if the client sent one; on a `SASL_*`
//! listener it is the user that authenticated (`User:alice`).
//! - [`tls`]: the certificate, key and client authorities of TLS listeners, read again when
//!   their files change.
//! - [`sasl`]: authentication on `SASL_*` listeners, before anything else is served.
//! - [`oauth`]: `OAUTHBEARER` tokens checked against an identity provider's keys.
//! - [`authorizer`]: what a principal may do, decided with the ACLs each gateway caches.

pub mod authorizer;
pub mod oauth;
pub mod sasl;
pub mod tls;

use std::fmt;

/// Who a connection acts as (Kafka's `KafkaPrincipal`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// Always `User` for principals yaks builds; kept so a principal reads as Kafka's.
    pub kind: String,
    /// The user name, certificate subject or `ANONYMOUS`.
    pub name: String,
}

impl Principal {
    /// A user principal.
    pub fn user(name: impl Into<String>) -> Principal {
        Principal {
            kind: "User".into(),
            name: name.into(),
        }
    }

    /// A connection that proved nothing: `User:ANONYMOUS`.
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}
