//! The vocabulary every yaks role speaks.
//!
//! Each role crate (gateway, writer, reader, compactor) depends on this one and on nothing of
//! each other, so the seams between roles are the types defined here:
//!
//! - [`config`]: the settings tree loaded by figment (defaults < TOML file < `YAKS_*` env).
//! - [`advertise`]: the address a role registers (setting, bound address, or ECS task IP).
//! - [`ids`]: object ids and the one path resolver that turns them into S3 keys.
//! - [`clock`]: injected time, so tests can control it.
//! - [`random`]: ids and random numbers, drawn in one place.
//! - [`batch`]: RecordBatch (magic 2) header parsing and validation, without decoding records.
//! - [`records`]: the records inside a batch, compressed or not, and batches rewritten to keep
//!   some of them (key compaction).
//! - [`metastore`]: PostgreSQL state: topics, partitions, the object index, producer state,
//!   the service registry.
//! - [`objstore`]: the object-store seam, with the S3 implementation and an in-memory one.
//! - [`registry`]: a process's lease in the service registry.
//! - [`rpc`]: the internal HTTP contract between roles (paths, headers, a small client).
//! - [`kafka`]: helpers shared by everything that encodes Kafka messages.
//! - [`scram`]: SCRAM credentials, the server's side of a SCRAM exchange, SASL `PLAIN`.
//! - [`acl`]: Kafka's ACL bindings, filters and the allow/deny decision (StandardAuthorizer's).
//! - [`telemetry`]: logging set-up.
//! - [`topic_config`]: the topic configs yaks accepts, their defaults, and which it enforces.
//! - [`topic_names`]: topic names by id, for labelling metrics.
//! - [`metrics`]: the catalogue of Prometheus metrics every role exports.
//! - [`ops`]: `/healthz`, `/readyz` and `/metrics`, served by every role.
//! - [`error`]: error kinds that say what the caller should do.
//! - [`hashing`]: stable rendezvous hashing, so processes agree on owners without talking.
//! - [`shutdown`]: a cloneable shutdown signal.
//! - [`failpoint`]: named points on the durability path where tests inject failures.

pub mod acl;
pub mod advertise;
pub mod batch;
pub mod clock;
pub mod config;
pub mod dirty;
pub mod error;
pub mod failpoint;
pub mod hashing;
pub mod ids;
pub mod kafka;
pub mod metastore;
pub mod metrics;
pub mod objstore;
pub mod ops;
pub mod random;
pub mod records;
pub mod registry;
pub mod rpc;
pub mod scram;
pub mod shutdown;
pub mod telemetry;
pub mod topic_config;
pub mod topic_names;
