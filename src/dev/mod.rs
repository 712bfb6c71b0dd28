//! The embedded infrastructure of `yaks dev` and the tests: a private PostgreSQL started
//! from the system's binaries and an S3 endpoint on loopback. The product code paths are
//! the same as in a cloud deployment; only these two servers are local. [`tls`] makes the
//! certificates of local TLS listeners.

pub mod postgres;
pub mod s3;
pub mod tls;
