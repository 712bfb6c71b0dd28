//! End-to-end tests: the product driven by a real Kafka client (librdkafka through the
//! `rdkafka` crate) and raw protocol frames, against a private PostgreSQL and a real S3
//! protocol endpoint started per test, so tests pass on a fresh machine and in parallel.

mod harness;

mod acls;
mod admin;
mod chaos;
mod cli;
mod clients;
mod compaction;
mod consume;
mod discovery;
mod failures;
mod groups;
mod idempotence;
mod key_compaction;
mod latency_bound;
mod operations;
mod oracle;
mod processes;
mod produce;
mod protocol;
mod seams;
mod security;
mod transactions;
