//! RecordBatch (magic 2) headers: parse, validate, patch — never decode records (that is
//! `records`).
//!
//! Batches are stored exactly as producers sent them, so duplicate header keys, unknown
//! attribute bits and the producer's compression survive. Only the 61-byte header is read
//! here. Layout (big-endian), from Kafka's `DefaultRecordBatch`:
//!
//! ```text
//! 0  baseOffset i64        8  batchLength i32      12 partitionLeaderEpoch i32
//! 16 magic i8              17 crc u32 (CRC32C of bytes 21..end)
//! 21 attributes i16        23 lastOffsetDelta i32  27 baseTimestamp i64
//! 35 maxTimestamp i64      43 producerId i64       51 producerEpoch i16
//! 53 baseSequence i32      57 recordsCount i32     61 records…
//! ```
//!
//! `baseOffset` sits outside the CRC, which is what lets the read path patch offsets on the
//! way out without touching the producer's bytes.

use bytes::Bytes;

use crate::metastore::ProducerBatch;
use crate::metastore::producers::last_sequence;

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s coverage starts (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
pub(crate) const CRC_START: usize = 21;
const ATTR_TRANSACTIONAL: i16 = 1 << 4;
const ATTR_CONTROL: i16 = 1 << 5;

/// What the write path needs to know about one valid batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// Offsets the batch occupies: `lastOffsetDelta + 1`.
    pub offset_count: i64,
    /// Records in the batch.
    pub record_count: i32,
    /// Largest record timestamp, from the header.
    pub max_timestamp: i64,
    /// First record timestamp, from the header.
    pub base_timestamp: i64,
    /// -1 for non-idempotent producers.
    pub producer_id: i64,
    /// Producer epoch, -1 without idempotence.
    pub producer_epoch: i16,
    /// First sequence number, -1 without idempotence.
    pub base_sequence: i32,
    /// Batch is part of a transaction.
    pub is_transactional: bool,
    /// Batch is a control batch (transaction marker).
    pub is_control: bool,
}

/// Why a batch was refused; maps to a Kafka error code in the gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Bytes that cannot be a batch: short, wrong length, wrong CRC, wrong magic.
    #[error("corrupt batch: {0}")]
    Corrupt(String),
    /// A well-formed batch the broker refuses (several batches, control batch, bad counts).
    #[error("invalid batch: {0}")]
    Invalid(String),
}

pub(crate) fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

pub(crate) fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(raw)
}

/// Validates the records of one partition of a Produce request (v3+): exactly one batch, magic 2,
/// length consistent, CRC32C correct, record count consistent with the offset delta.
pub fn validate_produce_batch(records: &[u8]) -> Result<BatchInfo, BatchError> {
    let info = header_info(records)?;
    let expected_crc = u32::from_be_bytes([records[17], records[18], records[19], records[20]]);
    let actual_crc = crc32c::crc32c(&records[CRC_START..]);
    if expected_crc != actual_crc {
        return Err(BatchError::Corrupt(format!(
            "crc mismatch: header {expected_crc:#010x}, computed {actual_crc:#010x}"
        )));
    }
    Ok(info)
}

/// Reads and checks the header of a single batch without computing its CRC: for callers
/// behind the gateway, which already checked the CRC once.
pub fn header_info(records: &[u8]) -> Result<BatchInfo, BatchError> {
    if records.len() < HEADER_LEN {
        return Err(BatchError::Corrupt(format!(
            "{} bytes is shorter than a batch header",
            records.len()
        )));
    }
    let batch_length = i32_at(records, 8);
    if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Err(BatchError::Corrupt(format!(
            "batch length {batch_length} too small"
        )));
    }
    let declared = batch_length as usize + LOG_OVERHEAD;
    if declared > records.len() {
        return Err(BatchError::Corrupt(format!(
            "batch declares {declared} bytes but {} arrived",
            records.len()
        )));
    }
    if declared < records.len() {
        return Err(BatchError::Invalid(
            "produce requests v3+ must carry exactly one record batch per partition".into(),
        ));
    }
    let magic = records[16] as i8;
    if magic != 2 {
        return Err(BatchError::Corrupt(format!(
            "magic {magic}, only 2 is supported"
        )));
    }
    let attributes = i16_at(records, 21);
    let last_offset_delta = i32_at(records, 23);
    let record_count = i32_at(records, 57);
    if record_count <= 0 {
        return Err(BatchError::Invalid(format!("record count {record_count}")));
    }
    if last_offset_delta != record_count - 1 {
        return Err(BatchError::Invalid(format!(
            "last offset delta {last_offset_delta} does not match {record_count} records"
        )));
    }
    let info = BatchInfo {
        offset_count: i64::from(last_offset_delta) + 1,
        record_count,
        base_timestamp: i64_at(records, 27),
        max_timestamp: i64_at(records, 35),
        producer_id: i64_at(records, 43),
        producer_epoch: i16_at(records, 51),
        base_sequence: i32_at(records, 53),
        is_transactional: attributes & ATTR_TRANSACTIONAL != 0,
        is_control: attributes & ATTR_CONTROL != 0,
    };
    if info.is_control {
        return Err(BatchError::Invalid(
            "producers may not send control batches".into(),
        ));
    }
    if info.producer_id >= 0 && (info.producer_epoch < 0 || info.base_sequence < 0) {
        return Err(BatchError::Invalid(format!(
            "producer id {} with epoch {} and base sequence {}: an idempotent batch needs both",
            info.producer_id, info.producer_epoch, info.base_sequence
        )));
    }
    Ok(info)
}

impl BatchInfo {
    /// The idempotent-producer identity of the batch; `None` for a producer without one.
    pub fn producer(&self) -> Option<ProducerBatch> {
        (self.producer_id >= 0).then(|| ProducerBatch {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            first_sequence: self.base_sequence,
            last_sequence: last_sequence(self.base_sequence, self.offset_count),
            transactional: self.is_transactional,
        })
    }
}

/// Attribute bit of a batch whose timestamps are the broker's append time.
const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;

/// A copy of one validated batch stamped with the broker's append time, as Kafka does for
/// topics with `message.timestamp.type=LogAppendTime`: the timestamp-type attribute is set,
/// the max timestamp becomes `now_ms` (consumers read it as every record's timestamp), and
/// the CRC32C is recomputed. The only case where stored bytes differ from the producer's.
pub fn with_log_append_time(batch: &[u8], now_ms: i64) -> Bytes {
    let mut copy = batch.to_vec();
    if copy.len() < HEADER_LEN {
        return Bytes::from(copy);
    }
    let attributes = i16_at(&copy, 21) | ATTR_LOG_APPEND_TIME;
    copy[21..23].copy_from_slice(&attributes.to_be_bytes());
    copy[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&copy[CRC_START..]);
    copy[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(copy)
}

/// Offsets the batch starting at `batch` occupies (`lastOffsetDelta + 1`), if its header is
/// there.
pub fn offset_count(batch: &[u8]) -> Option<i64> {
    (batch.len() >= HEADER_LEN).then(|| i64::from(i32_at(batch, 23)) + 1)
}

/// Splits concatenated batches into `(start, len)` spans, stopping at the first incomplete one.
pub fn spans(bytes: &Bytes) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= LOG_OVERHEAD {
        let len = i32_at(bytes, at + 8);
        if len < 0 {
            break;
        }
        let total = len as usize + LOG_OVERHEAD;
        if bytes.len() - at < total {
            break;
        }
        out.push((at, total));
        at += total;
    }
    out
}

/// Header fields of a stored batch that a time lookup reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchTimes {
    /// Offsets the batch occupies.
    pub offset_count: i64,
    /// First record's timestamp, unless the batch carries a delete horizon.
    pub base_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// The base timestamp field holds a delete horizon (attribute bit 6, set by key
    /// compaction), not a record's time.
    pub has_delete_horizon: bool,
}

/// Times of the batch starting `batch`, if its header is there.
pub fn batch_times(batch: &[u8]) -> Option<BatchTimes> {
    (batch.len() >= HEADER_LEN).then(|| BatchTimes {
        offset_count: i64::from(i32_at(batch, 23)) + 1,
        base_timestamp: i64_at(batch, 27),
        max_timestamp: i64_at(batch, 35),
        has_delete_horizon: i16_at(batch, 21) & (1 << 6) != 0,
    })
}

/// A zig-zag varint (up to 64 bits) and the bytes it took.
pub(crate) fn varint(bytes: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let value = (raw >> 1) as i64 ^ -((raw & 1) as i64);
            return Some((value, i + 1));
        }
    }
    None
}

/// Appends `value` as a zig-zag varint.
pub(crate) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// Test helpers that build real batches, shared by unit and end-to-end tests.
pub mod testing {
    /// Builds an uncompressed magic-2 batch holding `values` as records with no key and no
    /// headers, with a correct CRC.
    pub fn batch(values: &[&[u8]], timestamp: i64) -> Vec<u8> {
        idempotent_batch(values, timestamp, -1, -1, -1)
    }

    /// Like [`batch`], stamped with an idempotent producer's id, epoch and first sequence.
    pub fn idempotent_batch(
        values: &[&[u8]],
        timestamp: i64,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Vec<u8> {
        let records: Vec<_> = values.iter().map(|v| (None, Some(*v))).collect();
        keyed_batch(
            &records,
            timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
        )
    }

    /// A record's key and value; `None` is null (a null value is a tombstone).
    pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    /// A batch of `(key, value)` records, stamped with a producer's id, epoch and first
    /// sequence (-1s for none).
    pub fn keyed_batch(
        records: &[KeyValue<'_>],
        timestamp: i64,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Vec<u8> {
        let put_bytes = |out: &mut Vec<u8>, bytes: Option<&[u8]>| match bytes {
            Some(bytes) => {
                super::put_varlong(out, bytes.len() as i64);
                out.extend_from_slice(bytes);
            }
            None => super::put_varlong(out, -1),
        };
        let values = records;
        let mut records = Vec::new();
        for (i, (key, value)) in values.iter().enumerate() {
            let mut body = Vec::new();
            body.push(0u8); // attributes
            super::put_varlong(&mut body, 0); // timestamp delta
            super::put_varlong(&mut body, i as i64); // offset delta
            put_bytes(&mut body, *key);
            put_bytes(&mut body, *value);
            super::put_varlong(&mut body, 0); // headers
            super::put_varlong(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let count = values.len() as i32;
        let mut after_crc = Vec::new();
        after_crc.extend_from_slice(&0i16.to_be_bytes()); // attributes
        after_crc.extend_from_slice(&(count - 1).to_be_bytes()); // last offset delta
        after_crc.extend_from_slice(&timestamp.to_be_bytes());
        after_crc.extend_from_slice(&timestamp.to_be_bytes());
        after_crc.extend_from_slice(&producer_id.to_be_bytes());
        after_crc.extend_from_slice(&producer_epoch.to_be_bytes());
        after_crc.extend_from_slice(&base_sequence.to_be_bytes());
        after_crc.extend_from_slice(&count.to_be_bytes());
        after_crc.extend_from_slice(&records);
        let crc = crc32c::crc32c(&after_crc);
        let mut out = Vec::new();
        out.extend_from_slice(&0i64.to_be_bytes());
        out.extend_from_slice(&((after_crc.len() + 9) as i32).to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        out.push(2);
        out.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(&after_crc);
        out
    }

    /// `batch` marked as part of its producer's transaction (the attributes' bit 4, and
    /// the CRC over them again).
    pub fn transactional(mut batch: Vec<u8>) -> Vec<u8> {
        batch[22] |= 0x10;
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_batch_is_accepted() {
        let raw = testing::batch(&[b"a", b"bb", b"ccc"], 1_700_000_000_000);
        let info = validate_produce_batch(&raw).expect("valid");
        assert_eq!(info.record_count, 3);
        assert_eq!(info.offset_count, 3);
        assert_eq!(info.max_timestamp, 1_700_000_000_000);
        assert_eq!(info.producer_id, -1);
    }

    #[test]
    fn log_append_time_stamps_the_batch_and_keeps_it_valid() {
        let original = testing::batch(&[b"a", b"b"], 1_000);
        let stamped = with_log_append_time(&original, 5_000);
        let info = validate_produce_batch(&stamped).expect("still valid");
        assert_eq!(info.max_timestamp, 5_000);
        assert_eq!(
            info.base_timestamp, 1_000,
            "the base timestamp is the producer's"
        );
        assert_ne!(i16_at(&stamped, 21) & ATTR_LOG_APPEND_TIME, 0);
        assert_eq!(stamped.len(), original.len());
        assert_eq!(stamped[61..], original[61..], "records unchanged");
    }

    #[test]
    fn a_flipped_bit_is_corrupt() {
        let mut raw = testing::batch(&[b"payload"], 0);
        let last = raw.len() - 2;
        raw[last] ^= 1;
        assert!(matches!(
            validate_produce_batch(&raw),
            Err(BatchError::Corrupt(_))
        ));
    }

    #[test]
    fn truncated_and_short_batches_are_corrupt() {
        let raw = testing::batch(&[b"payload"], 0);
        assert!(matches!(
            validate_produce_batch(&raw[..raw.len() - 1]),
            Err(BatchError::Corrupt(_))
        ));
        assert!(matches!(
            validate_produce_batch(&raw[..10]),
            Err(BatchError::Corrupt(_))
        ));
    }

    #[test]
    fn two_batches_are_refused() {
        let mut raw = testing::batch(&[b"one"], 0);
        raw.extend(testing::batch(&[b"two"], 0));
        assert!(matches!(
            validate_produce_batch(&raw),
            Err(BatchError::Invalid(_))
        ));
        assert_eq!(spans(&Bytes::from(raw)).len(), 2);
    }

    #[test]
    fn old_magic_is_corrupt() {
        let mut raw = testing::batch(&[b"x"], 0);
        raw[16] = 1;
        assert!(matches!(
            validate_produce_batch(&raw),
            Err(BatchError::Corrupt(_))
        ));
    }
}
