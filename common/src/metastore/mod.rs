//! The metastore seam: everything that must be agreed on, one domain per trait.
//!
//! | domain | trait | what it keeps | used by |
//! |---|---|---|---|
//! | [`cluster`] | [`Cluster`] | cluster id, health, the store's clock, leases | gateway, writer, reader |
//! | [`topics`] | [`Topics`] | topics, partition counts, explicit configs | every role |
//! | [`log`] | [`Log`] | partitions' offsets (and where key compaction stands), the flush commit, the object index, the commit feed | gateway, writer, reader, compactor |
//! | [`objects`] | [`Objects`] | compaction swaps, key compaction's `cleaned_through`, retention's drops, garbage collection | compactor |
//! | [`producers`] | [`Producers`] | producer ids and epochs, their expiry, the idempotence rules, producers' last batches | gateway, writer, compactor |
//! | [`groups`] | [`Groups`] | consumer groups' generations and committed offsets | gateway |
//! | [`credentials`] | [`Credentials`] | users' SCRAM credentials (salted, hashed) | gateway, `yaks user` |
//! | [`acls`] | [`AclBindings`] | Kafka's ACL bindings | gateway (authorization, issue 22) |
//! | [`transactions`] | [`Transactions`] | transactional ids, open transactions, how they end | gateway (transaction coordinator, issue 23) |
//!
//! Each role names the domains it uses in a trait of its own (`GatewayStore`,
//! `WriterStore`, …) and is handed one store implementing them; parts of a role take the
//! one domain they use. Kafka semantics live in the roles and in pure modules the backends
//! call, so each rule is written once: [`plan`] (what a flush commit writes),
//! [`producers`] (sequences and epochs), [`groups`] (fencing), [`transactions`] (Kafka's
//! transaction coordinator); the backends stay dumb.
//!
//! - [`postgres`]: [`PgMetastore`], what the product runs on; one file per domain.
//! - [`memory`]: [`MemoryMetastore`], for unit tests of the roles' logic; one file per domain.
//! - [`model`]: the types the domains share.
//! - `suite`: the behaviour both must share, one test per case
//!   (`metastore_test_suite!`); compiled for tests, or with the `test-suite` feature.
//!
//! A new domain is a trait in its own file, a file in each backend, a file of cases in
//! `suite`, and a bound on [`Metastore`].

pub mod acls;
pub mod cluster;
pub mod credentials;
pub mod groups;
pub mod log;
pub mod memory;
pub mod model;
pub mod objects;
pub mod plan;
pub mod postgres;
pub mod producers;
#[cfg(any(test, feature = "test-suite"))]
pub mod suite;
pub mod topics;
pub mod transactions;

pub use acls::AclBindings;
pub use cluster::Cluster;
pub use credentials::Credentials;
pub use groups::*;
pub use log::Log;
pub use memory::MemoryMetastore;
pub use model::*;
pub use objects::Objects;
pub use postgres::PgMetastore;
pub use producers::{PRODUCER_ID_BLOCK, Producers};
pub use topics::Topics;
pub use transactions::Transactions;

/// Every domain at once: what a backend implements, and what tools that touch all of it
/// (tests, `yaks chaos`) hold. Roles ask for less.
pub trait Metastore:
    Cluster + Topics + Log + Objects + Producers + Groups + Credentials + AclBindings + Transactions
{
}

impl<T> Metastore for T where
    T: Cluster
        + Topics
        + Log
        + Objects
        + Producers
        + Groups
        + Credentials
        + AclBindings
        + Transactions
        + ?Sized
{
}
