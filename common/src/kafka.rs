//! Helpers for encoding and decoding Kafka messages with the `kafka-protocol` crate.
//!
//! The crate's message structs carry every version's fields; these helpers always take the
//! version explicitly so that only that version's fields are written.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// A message that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

/// Encodes `message` at `version` into a fresh buffer.
pub fn encode<T: Encodable>(message: &T, version: i16) -> Result<Bytes, CodecError> {
    let mut buf = BytesMut::new();
    message
        .encode(&mut buf, version)
        .map_err(|e| CodecError(format!("{e:#}")))?;
    Ok(buf.freeze())
}

/// Decodes a `T` at `version` from `bytes`.
///
/// Bytes after the message are ignored, as Apache Kafka's parser does: some clients send
/// fields of neighbouring versions (librdkafka adds three to its Metadata v12 request).
pub fn decode<T: Decodable>(mut bytes: Bytes, version: i16) -> Result<T, CodecError> {
    let message = T::decode(&mut bytes, version).map_err(|e| CodecError(format!("{e:#}")))?;
    if !bytes.is_empty() {
        tracing::debug!(
            trailing = bytes.len(),
            version,
            "ignoring bytes after a message"
        );
    }
    Ok(message)
}

/// A topic name from a `&str`.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

/// A `StrBytes` from a `&str`.
pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// One partition of a Fetch answer that failed with `code`: offsets unknown (-1), no records.
/// Readers and gateways answer failures the same way.
pub fn fetch_error(partition: i32, code: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()))
}
