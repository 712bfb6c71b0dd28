//! The embedded infrastructure of `yaks dev` and the tests: a private PostgreSQL started
//! from the system's binaries and an S3 endpoint on loopback. The product code paths are
//! the same as in a cloud deployment; only these two servers are local.

pub mod postgres;
pub mod s3;
