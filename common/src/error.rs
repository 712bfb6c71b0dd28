//! Error kinds at the boundaries between roles and backends.
//!
//! The kinds say what the caller should do, not what broke: retry, fix the input, give up.
//! "Commit outcome unknown" is its own case because the only safe reaction to it differs
//! from both success and failure. Kafka error codes are mapped from these in one place
//! ([`StoreError::kafka_code`]).

use kafka_protocol::ResponseError;

/// Failure of a metastore or object-store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A passing fault (network, throttling, 5xx, pool exhausted): the same call may succeed.
    #[error("retriable: {0}")]
    Retriable(String),
    /// The request cannot succeed as made (bad name, invalid config).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The thing named does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The commit was sent but its outcome was never heard; it may or may not have happened.
    #[error("commit outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// A bug or broken invariant.
    #[error("internal: {0}")]
    Internal(String),
}

impl StoreError {
    /// The Kafka error code a client should see for this failure.
    pub fn kafka_code(&self) -> i16 {
        match self {
            StoreError::Retriable(_) => ResponseError::KafkaStorageError.code(),
            StoreError::Invalid(_) => ResponseError::InvalidRequest.code(),
            StoreError::NotFound(_) => ResponseError::UnknownTopicOrPartition.code(),
            // Retriable for the client; idempotent-producer sequences make the retry safe.
            StoreError::OutcomeUnknown(_) => ResponseError::RequestTimedOut.code(),
            StoreError::Internal(_) => ResponseError::UnknownServerError.code(),
        }
    }
}

impl crate::metastore::SequenceError {
    /// The Kafka error code a producer should see for a refused batch.
    pub fn kafka_code(self) -> i16 {
        match self {
            crate::metastore::SequenceError::OutOfOrder => {
                ResponseError::OutOfOrderSequenceNumber.code()
            }
            // Not OUT_OF_ORDER_SEQUENCE_NUMBER, which Kafka answers for a gap: librdkafka
            // reads that as "the earlier batches are lost", bumps the epoch of the whole
            // producer and re-sends every batch it is unsure of under the new epoch, where
            // the sequence check cannot recognise one that was stored after all. This code
            // means "not stored, retry" to every client (librdkafka: retry, not persisted;
            // Java: a retriable exception), and the retry follows the earlier batch's.
            crate::metastore::SequenceError::Ahead => ResponseError::NotEnoughReplicas.code(),
            crate::metastore::SequenceError::StaleEpoch => {
                ResponseError::InvalidProducerEpoch.code()
            }
            crate::metastore::SequenceError::NotInTransaction => {
                ResponseError::InvalidTxnState.code()
            }
        }
    }
}

/// The message (Produce v8 and later carry one) that goes with an error code a writer
/// answered, where the code's own description would mislead: NOT_ENOUGH_REPLICAS comes only
/// from [`crate::metastore::SequenceError::Ahead`], yaks having no replicas to lack.
pub fn produce_error_message(code: i16) -> Option<String> {
    (code == ResponseError::NotEnoughReplicas.code())
        .then(|| format!("{}; retry after it", crate::metastore::SequenceError::Ahead))
}

/// Why a role could not start: the caller prints it and exits.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding the listener failed.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A setting is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The metastore, the object store or a cache did not open.
    #[error(transparent)]
    Store(#[from] StoreError),
}
