//! The `yaks` binary's library: start any subset of roles, or everything at once.
//!
//! - [`roles`]: connect to the metastore and object store, then run a gateway or a writer.
//! - [`dev`]: the embedded infrastructure (private PostgreSQL, loopback S3) of `yaks dev`.
//! - [`devmode`]: `yaks dev` itself — all roles in one process over loopback HTTP.
//! - [`oracle`]: `yaks oracle`, which produces, reads back and checks that nothing
//!   acknowledged was lost, moved, duplicated or damaged.
//! - [`chaos`]: `yaks chaos`, the oracle against a split deployment of separate processes
//!   while they are killed, frozen, and their PostgreSQL and S3 fail.
//!
//! - [`bench`](mod@bench): `yaks bench`, throughput and latency next to the raw limits of the same
//!   S3 endpoint and PostgreSQL, against the targets.
//! - [`admin`]: the admin CLI (`yaks topic|produce|consume|group`), a Kafka client of a
//!   gateway like Kafka's own tools.
//! - [`acls`]: `yaks acl`, Kafka's ACL bindings written to the metastore (an operator's
//!   way to grant the first rights without a principal allowed to).
//! - [`users`]: `yaks user`, SASL/SCRAM users written to the metastore (the first user of a
//!   cluster cannot be made through a gateway that asks for one).
//! - [`txns`]: `yaks txn`, transactional ids in the metastore, and an operator's abort of a
//!   hanging transaction.
//!
//! The role logic lives in the role crates (`yaks-gateway`, `yaks-writer`, …); this crate
//! only wires them to configuration, signals and each other.

pub mod acls;
pub mod admin;
pub mod bench;
pub mod chaos;
pub mod dev;
pub mod devmode;
pub mod oracle;
pub mod roles;
pub mod txns;
pub mod users;
