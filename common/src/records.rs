//! The records inside a stored batch, compressed or not: each record's key, value and
//! timestamp, and a batch rewritten to keep only some of its records.
//!
//! Everything else in yaks reads batch headers only ([`crate::batch`]). Key compaction is
//! what has to open a batch: the compactor keeps the newest record per key, and a produce to
//! a compacted topic refuses records without a key, which inside a compressed batch means
//! decompressing it. Decompression is bounded ([`OpenBatch::open`]'s `max_records_bytes`),
//! so a batch that inflates past what a caller can hold is refused rather than allocated.
//!
//! A rewritten batch is what Kafka's log cleaner writes (`MemoryRecords.filterTo`): the same
//! base offset and the same last offset, so that a producer's last sequence survives
//! compaction even when the batch's last records do not; the same producer id, epoch, base
//! sequence, partition leader epoch, timestamp type, transactional and control flags and
//! codec. The kept records' bytes are unchanged except their timestamp deltas, which follow
//! the batch's new base timestamp: the first kept record's, or the delete horizon once one is
//! set (attribute bit 6, Kafka 3.1+): the time after which the batch's tombstones may go.
//! A batch keeping no record is written as an empty batch with its offsets and producer
//! fields, which is how Kafka keeps a producer's state when compaction removes its records.

use std::io::Read;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::Compressor;

use crate::batch::{CRC_START, HEADER_LEN, i16_at, i32_at, i64_at, put_varlong};

const ATTR_CODEC: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;
const ATTR_DELETE_HORIZON: i16 = 1 << 6;
const ATTR_TRANSACTIONAL: i16 = 1 << 4;
const ATTR_CONTROL: i16 = 1 << 5;

/// Most bytes a stored batch's records may decompress to when yaks opens it (a time lookup,
/// key compaction, chaos checks): a producer's batch is at most `max.message.bytes`
/// compressed, and 64 MiB leaves room for any ratio a real codec reaches on it, while a
/// batch built to inflate further is refused instead of allocated.
pub const MAX_OPENED_BYTES: usize = 64 << 20;

/// xerial snappy-java's stream header, which Kafka's snappy batches start with.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// Why a batch's records could not be read or rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    /// The batch or one of its records does not parse, or its compressed payload does not
    /// decompress.
    #[error("corrupt batch: {0}")]
    Corrupt(String),
    /// The records decompress to more than the caller's bound.
    #[error("batch records exceed {0} bytes uncompressed")]
    TooLarge(usize),
}

fn corrupt(what: impl Into<String>) -> RecordsError {
    RecordsError::Corrupt(what.into())
}

/// A batch's compression codec (attribute bits 0–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Not compressed.
    None,
    /// gzip.
    Gzip,
    /// snappy, in xerial's stream framing (or raw, which Kafka also reads).
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Codec {
    fn from_attributes(attributes: i16) -> Result<Codec, RecordsError> {
        match attributes & ATTR_CODEC {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy),
            3 => Ok(Codec::Lz4),
            4 => Ok(Codec::Zstd),
            other => Err(corrupt(format!("unknown compression codec {other}"))),
        }
    }
}

/// One record of an open batch, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// The record's timestamp (base timestamp plus its delta).
    pub timestamp: i64,
    /// `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// `None` for a null value: a tombstone.
    pub value: Option<&'a [u8]>,
    attributes: u8,
    /// From the key length to the end of the headers, kept as they are on a rewrite.
    tail: &'a [u8],
}

/// A batch with its records decompressed.
#[derive(Debug, Clone)]
pub struct OpenBatch {
    header: [u8; HEADER_LEN],
    records: Bytes,
}

impl OpenBatch {
    /// Opens the single batch `batch`, decompressing its records to at most
    /// `max_records_bytes` (an uncompressed batch's records are shared, not copied). The
    /// CRC is not checked: stored batches were checked on produce.
    pub fn open(batch: Bytes, max_records_bytes: usize) -> Result<OpenBatch, RecordsError> {
        if batch.len() < HEADER_LEN || batch[16] != 2 {
            return Err(corrupt("not a magic-2 batch"));
        }
        let declared = i32_at(&batch, 8);
        if usize::try_from(declared).ok().map(|l| l + 12) != Some(batch.len()) {
            return Err(corrupt(format!(
                "batch length {declared} does not match {} bytes",
                batch.len()
            )));
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&batch[..HEADER_LEN]);
        let payload = &batch[HEADER_LEN..];
        let codec = Codec::from_attributes(i16_at(&header, 21))?;
        let records = match codec {
            Codec::None if payload.len() > max_records_bytes => {
                return Err(RecordsError::TooLarge(max_records_bytes));
            }
            Codec::None => batch.slice(HEADER_LEN..),
            Codec::Gzip => bounded(
                flate2::read::MultiGzDecoder::new(payload),
                max_records_bytes,
            )?,
            Codec::Zstd => bounded(
                zstd::stream::read::Decoder::new(payload).map_err(|e| corrupt(e.to_string()))?,
                max_records_bytes,
            )?,
            Codec::Lz4 => bounded(
                lz4::Decoder::new(payload).map_err(|e| corrupt(e.to_string()))?,
                max_records_bytes,
            )?,
            Codec::Snappy => snappy(payload, max_records_bytes)?,
        };
        Ok(OpenBatch { header, records })
    }

    /// The batch's base offset.
    pub fn base_offset(&self) -> i64 {
        i64_at(&self.header, 0)
    }

    /// The batch's last offset, whether or not a record still holds it.
    pub fn last_offset(&self) -> i64 {
        self.base_offset() + i64::from(i32_at(&self.header, 23))
    }

    /// The batch's codec.
    pub fn codec(&self) -> Codec {
        Codec::from_attributes(self.attributes()).unwrap_or(Codec::None)
    }

    /// The producer id, -1 without idempotence.
    pub fn producer_id(&self) -> i64 {
        i64_at(&self.header, 43)
    }

    /// The batch is a control batch (a transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes() & (1 << 5) != 0
    }

    /// The batch is part of a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes() & (1 << 4) != 0
    }

    /// When the batch's tombstones may be removed, once a compaction has set it.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes() & ATTR_DELETE_HORIZON != 0).then(|| i64_at(&self.header, 27))
    }

    fn attributes(&self) -> i16 {
        i16_at(&self.header, 21)
    }

    /// The batch's records, in order.
    pub fn records(&self) -> Result<Vec<Record<'_>>, RecordsError> {
        let count = usize::try_from(i32_at(&self.header, 57))
            .map_err(|_| corrupt("negative record count"))?;
        let base_timestamp = i64_at(&self.header, 27);
        let log_append_time =
            (self.attributes() & ATTR_LOG_APPEND_TIME != 0).then(|| i64_at(&self.header, 35));
        let bytes = &self.records[..];
        // Each record takes at least 7 bytes: never reserve more than the bytes could hold.
        let mut out = Vec::with_capacity(count.min(bytes.len() / 7));
        let mut at = 0usize;
        for _ in 0..count {
            let (length, used) = varint(&bytes[at..])?;
            let start = at + used;
            let end = usize::try_from(length)
                .ok()
                .and_then(|l| start.checked_add(l))
                .filter(|&end| end <= bytes.len())
                .ok_or_else(|| corrupt("record length out of bounds"))?;
            out.push(parse_record(
                &bytes[start..end],
                base_timestamp,
                log_append_time,
            )?);
            at = end;
        }
        if at != bytes.len() {
            return Err(corrupt("bytes after the last record"));
        }
        Ok(out)
    }

    /// This batch keeping only `kept` (records of this batch, in order), with its tombstones'
    /// delete horizon set to `delete_horizon_ms` if given (a horizon already set is kept
    /// otherwise). An empty `kept` gives an empty batch holding the same offsets.
    pub fn rewrite(
        &self,
        kept: &[Record<'_>],
        delete_horizon_ms: Option<i64>,
    ) -> Result<Bytes, RecordsError> {
        let horizon = delete_horizon_ms.or(self.delete_horizon_ms());
        let original_max = i64_at(&self.header, 35);
        let log_append_time = self.attributes() & ATTR_LOG_APPEND_TIME != 0;
        let Some(first) = kept.first() else {
            return Ok(self.empty(original_max));
        };
        let base_timestamp = horizon.unwrap_or(first.timestamp);
        let max_timestamp = if log_append_time {
            original_max
        } else {
            kept.iter()
                .map(|r| r.timestamp)
                .max()
                .unwrap_or(original_max)
        };
        let mut records = Vec::with_capacity(self.records.len());
        let mut body = Vec::new();
        for record in kept {
            body.clear();
            body.push(record.attributes);
            // A log-append-time batch's records are read at the batch's time whatever
            // their delta, as Kafka's rewrite writes them: with none.
            let delta = if log_append_time {
                0
            } else {
                record.timestamp.wrapping_sub(base_timestamp)
            };
            put_varlong(&mut body, delta);
            put_varlong(&mut body, i64::from(record.offset_delta));
            body.extend_from_slice(record.tail);
            put_varlong(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let codec = self.codec();
        let payload = compress(codec, &records)?;
        let mut attributes = self.attributes();
        if horizon.is_some() {
            attributes |= ATTR_DELETE_HORIZON;
        }
        let count = i32::try_from(kept.len()).map_err(|_| corrupt("too many records"))?;
        Ok(self.assemble(attributes, base_timestamp, max_timestamp, count, &payload))
    }

    /// An empty batch with this batch's offsets and producer fields, uncompressed.
    fn empty(&self, timestamp: i64) -> Bytes {
        let attributes = (self.attributes() & !ATTR_CODEC) & !ATTR_DELETE_HORIZON;
        self.assemble(attributes, timestamp, timestamp, 0, &[])
    }

    fn assemble(
        &self,
        attributes: i16,
        base_timestamp: i64,
        max_timestamp: i64,
        count: i32,
        payload: &[u8],
    ) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
        out.put_slice(&self.header[..8]); // base offset
        out.put_i32((HEADER_LEN - 12 + payload.len()) as i32);
        out.put_slice(&self.header[12..17]); // partition leader epoch, magic
        out.put_u32(0); // crc, below
        out.put_i16(attributes);
        out.put_slice(&self.header[23..27]); // last offset delta
        out.put_i64(base_timestamp);
        out.put_i64(max_timestamp);
        out.put_slice(&self.header[43..57]); // producer id, epoch, base sequence
        out.put_i32(count);
        out.put_slice(payload);
        let crc = crc32c::crc32c(&out[CRC_START..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }
}

/// An empty batch holding `offset_count` offsets and no record, of no producer: what
/// covers offsets compaction emptied where no kept batch can (see `compactor::clean`). Its
/// base offset field is 0, as stored batches' are; readers place it.
pub fn filler(offset_count: i64) -> Result<Bytes, RecordsError> {
    let delta = i32::try_from(offset_count - 1)
        .ok()
        .filter(|d| *d >= 0)
        .ok_or_else(|| corrupt(format!("a filler of {offset_count} offsets")))?;
    let mut header = [0u8; HEADER_LEN];
    header[16] = 2;
    header[23..27].copy_from_slice(&delta.to_be_bytes());
    header[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    header[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    header[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    let open = OpenBatch {
        header,
        records: Bytes::new(),
    };
    Ok(open.assemble(0, -1, -1, 0, &[]))
}

/// A transaction marker: the control batch (Kafka's `EndTransactionMarker`) that ends a
/// producer's transaction in one partition. One record, whose key is the control type
/// (version 0, then 0 for ABORT or 1 for COMMIT: consumers accept exactly these four
/// bytes) and whose value is version 0 and the coordinator epoch. No sequence; base offset
/// 0, as stored batches' are: readers place it.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Bytes {
    let mut body = Vec::with_capacity(16);
    body.push(0); // record attributes
    put_varlong(&mut body, 0); // timestamp delta
    put_varlong(&mut body, 0); // offset delta
    put_varlong(&mut body, 4);
    body.extend_from_slice(&[0, 0, 0, u8::from(commit)]);
    put_varlong(&mut body, 6);
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&coordinator_epoch.to_be_bytes());
    put_varlong(&mut body, 0); // headers
    let mut record = Vec::with_capacity(body.len() + 1);
    put_varlong(&mut record, body.len() as i64);
    record.extend_from_slice(&body);
    let mut header = [0u8; HEADER_LEN];
    header[16] = 2;
    header[43..51].copy_from_slice(&producer_id.to_be_bytes());
    header[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    header[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    let open = OpenBatch {
        header,
        records: Bytes::new(),
    };
    open.assemble(
        ATTR_TRANSACTIONAL | ATTR_CONTROL,
        timestamp,
        timestamp,
        1,
        &record,
    )
}

/// `batch` holding `offset_count` offsets from its base, its records unchanged: Kafka lets
/// a batch's last offset pass its last record's, and consumers resume after it.
pub fn with_offset_count(batch: &[u8], offset_count: i64) -> Result<Bytes, RecordsError> {
    if batch.len() < HEADER_LEN {
        return Err(corrupt("not a batch"));
    }
    let current = i32_at(batch, 23);
    let delta = i32::try_from(offset_count - 1)
        .ok()
        .filter(|d| *d >= current)
        .ok_or_else(|| corrupt(format!("{offset_count} offsets for this batch")))?;
    let mut out = BytesMut::from(batch);
    out[23..27].copy_from_slice(&delta.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// Record layout (Kafka's `DefaultRecord`): attributes i8, timestamp delta varlong, offset
/// delta varint, key length varint (-1: null) and key, value length and value, header count
/// and headers.
fn parse_record(
    body: &[u8],
    base_timestamp: i64,
    log_append_time: Option<i64>,
) -> Result<Record<'_>, RecordsError> {
    let attributes = *body.first().ok_or_else(|| corrupt("empty record"))?;
    let mut at = 1;
    let (timestamp_delta, used) = varint(&body[at..])?;
    at += used;
    let (offset_delta, used) = varint(&body[at..])?;
    at += used;
    let tail = &body[at..];
    let (key, used) = nullable_bytes(&body[at..])?;
    at += used;
    let (value, used) = nullable_bytes(&body[at..])?;
    at += used;
    let (headers, used) = varint(&body[at..])?;
    let mut rest = &body[at + used..];
    if headers < 0 {
        return Err(corrupt("negative header count"));
    }
    // Each header takes at least two bytes, so a forged count ends at the record's end.
    for _ in 0..headers {
        let (key_length, used) = varint(rest)?;
        let key_end = usize::try_from(key_length)
            .ok()
            .and_then(|l| used.checked_add(l))
            .ok_or_else(|| corrupt("header key length"))?;
        rest = rest
            .get(key_end..)
            .ok_or_else(|| corrupt("header key out of bounds"))?;
        let (_, used) = nullable_bytes(rest)?;
        rest = &rest[used..];
    }
    if !rest.is_empty() {
        return Err(corrupt("record length does not match its fields"));
    }
    Ok(Record {
        offset_delta: i32::try_from(offset_delta).map_err(|_| corrupt("offset delta"))?,
        timestamp: log_append_time.unwrap_or(base_timestamp.wrapping_add(timestamp_delta)),
        key,
        value,
        attributes,
        tail,
    })
}

/// A varint length (-1: null) and the bytes it announces, and the bytes taken in all.
fn nullable_bytes(bytes: &[u8]) -> Result<(Option<&[u8]>, usize), RecordsError> {
    let (length, used) = varint(bytes)?;
    if length < 0 {
        return Ok((None, used));
    }
    let end = usize::try_from(length)
        .ok()
        .and_then(|l| used.checked_add(l))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| corrupt("field length out of bounds"))?;
    Ok((Some(&bytes[used..end]), end))
}

/// Reads `reader` to its end, refusing more than `limit` bytes.
fn bounded(reader: impl Read, limit: usize) -> Result<Bytes, RecordsError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format!("decompressing: {e}")))?;
    if out.len() > limit {
        return Err(RecordsError::TooLarge(limit));
    }
    Ok(out.into())
}

/// Snappy as Kafka writes it (xerial's framing: a header, then length-prefixed blocks) or
/// raw, as Kafka also reads; each block's size is known before it is inflated.
fn snappy(payload: &[u8], limit: usize) -> Result<Bytes, RecordsError> {
    let mut decoder = snap::raw::Decoder::new();
    let mut out = BytesMut::new();
    let mut inflate = |block: &[u8], out: &mut BytesMut| -> Result<(), RecordsError> {
        let length = snap::raw::decompress_len(block).map_err(|e| corrupt(e.to_string()))?;
        let start = out.len();
        if start + length > limit {
            return Err(RecordsError::TooLarge(limit));
        }
        out.resize(start + length, 0);
        decoder
            .decompress(block, &mut out[start..])
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(())
    };
    if !payload.starts_with(XERIAL_MAGIC) {
        inflate(payload, &mut out)?;
        return Ok(out.freeze());
    }
    let mut at = XERIAL_HEADER_LEN.min(payload.len());
    while at < payload.len() {
        let length = payload
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| corrupt("truncated snappy block length"))?;
        let block = payload
            .get(at + 4..at + 4 + length)
            .ok_or_else(|| corrupt("truncated snappy block"))?;
        inflate(block, &mut out)?;
        at += 4 + length;
    }
    Ok(out.freeze())
}

/// Compresses records as Kafka's producers do for `codec`.
fn compress(codec: Codec, records: &[u8]) -> Result<BytesMut, RecordsError> {
    use kafka_protocol::compression::{Gzip, Lz4, Snappy, Zstd};
    let mut out = BytesMut::new();
    let fill = |buf: &mut BytesMut| {
        buf.put_slice(records);
        Ok(())
    };
    let done = match codec {
        Codec::None => {
            out.put_slice(records);
            Ok(())
        }
        Codec::Gzip => Gzip::compress(&mut out, fill),
        Codec::Snappy => Snappy::compress(&mut out, fill),
        Codec::Lz4 => Lz4::compress(&mut out, fill),
        Codec::Zstd => Zstd::compress(&mut out, fill),
    };
    done.map_err(|e| corrupt(format!("compressing: {e}")))?;
    Ok(out)
}

/// A zig-zag varint and the bytes it took.
fn varint(bytes: &[u8]) -> Result<(i64, usize), RecordsError> {
    crate::batch::varint(bytes).ok_or_else(|| corrupt("truncated varint"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One record to build: key, value, timestamp delta, headers.
    type Spec<'a> = (
        Option<&'a [u8]>,
        Option<&'a [u8]>,
        i64,
        &'a [(&'a [u8], Option<&'a [u8]>)],
    );

    const BASE_TS: i64 = 1_700_000_000_000;

    fn bits(codec: Codec) -> i16 {
        match codec {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    #[test]
    fn a_marker_is_one_control_record_of_kafkas_layout() {
        for commit in [false, true] {
            let marker = control_batch(42, 3, commit, 0, BASE_TS);
            assert_eq!(
                crc32c::crc32c(&marker[CRC_START..]),
                u32::from_be_bytes(marker[17..21].try_into().expect("four bytes"))
            );
            let open = OpenBatch::open(marker.clone(), 1 << 10).expect("opens");
            assert!(open.is_control() && open.is_transactional());
            assert_eq!((open.producer_id(), open.last_offset()), (42, 0));
            assert_eq!(i16_at(&marker, 51), 3);
            assert_eq!(i32_at(&marker, 53), -1, "markers carry no sequence");
            let records = open.records().expect("records");
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].key, Some(&[0, 0, 0, u8::from(commit)][..]));
            assert_eq!(records[0].value, Some(&[0, 0, 0, 0, 0, 0][..]));
            assert_eq!(records[0].timestamp, BASE_TS);
        }
    }

    fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
        match bytes {
            Some(b) => {
                put_varlong(out, b.len() as i64);
                out.extend_from_slice(b);
            }
            None => put_varlong(out, -1),
        }
    }

    /// A batch at base offset 100 from producer 7 (epoch 2, base sequence 40), records at
    /// offset deltas 0, 1, … compressed with `codec`.
    fn build(codec: Codec, specs: &[Spec<'_>], extra_attributes: i16) -> Vec<u8> {
        let mut records = Vec::new();
        for (i, (key, value, ts_delta, headers)) in specs.iter().enumerate() {
            let mut body = vec![0u8];
            put_varlong(&mut body, *ts_delta);
            put_varlong(&mut body, i as i64);
            put_bytes(&mut body, *key);
            put_bytes(&mut body, *value);
            put_varlong(&mut body, headers.len() as i64);
            for (name, value) in *headers {
                put_bytes(&mut body, Some(name));
                put_bytes(&mut body, *value);
            }
            put_varlong(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let payload = compress(codec, &records).expect("compress");
        let max = specs.iter().map(|s| BASE_TS + s.2).max().unwrap_or(BASE_TS);
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(&100i64.to_be_bytes());
        header[12..16].copy_from_slice(&5i32.to_be_bytes());
        header[16] = 2;
        header[23..27].copy_from_slice(&(specs.len() as i32 - 1).to_be_bytes());
        header[43..51].copy_from_slice(&7i64.to_be_bytes());
        header[51..53].copy_from_slice(&2i16.to_be_bytes());
        header[53..57].copy_from_slice(&40i32.to_be_bytes());
        let open = OpenBatch {
            header,
            records: Bytes::new(),
        };
        open.assemble(
            bits(codec) | extra_attributes,
            BASE_TS,
            max,
            specs.len() as i32,
            &payload,
        )
        .to_vec()
    }

    fn sample() -> Vec<Spec<'static>> {
        vec![
            (Some(b"a"), Some(b"a1"), 0, &[]),
            (
                Some(b"b"),
                Some(b"b1"),
                5,
                &[(b"h", Some(b"1")), (b"h", Some(b"2"))],
            ),
            (Some(b"a"), None, 9, &[]),
            (None, Some(b"keyless"), 3, &[(b"x", None)]),
            (Some(b"c"), Some(b"c1"), 20, &[]),
        ]
    }

    /// The batch's CRC32C covers what it holds.
    fn assert_crc(batch: &[u8]) {
        assert_eq!(
            crc32c::crc32c(&batch[CRC_START..]),
            u32::from_be_bytes(batch[17..21].try_into().expect("4 bytes")),
            "crc"
        );
    }

    const CODECS: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    #[test]
    fn records_read_the_same_whatever_the_codec() {
        for codec in CODECS {
            let raw = build(codec, &sample(), 0);
            let open = OpenBatch::open(raw.clone().into(), 1 << 20).expect("open");
            assert_eq!(open.codec(), codec);
            let records = open.records().expect("records");
            let seen: Vec<_> = records
                .iter()
                .map(|r| (r.offset_delta, r.key, r.value, r.timestamp - BASE_TS))
                .collect();
            assert_eq!(
                seen,
                vec![
                    (0, Some(&b"a"[..]), Some(&b"a1"[..]), 0),
                    (1, Some(&b"b"[..]), Some(&b"b1"[..]), 5),
                    (2, Some(&b"a"[..]), None, 9),
                    (3, None, Some(&b"keyless"[..]), 3),
                    (4, Some(&b"c"[..]), Some(&b"c1"[..]), 20),
                ],
                "{codec:?}"
            );
        }
    }

    #[test]
    fn a_rewrite_keeps_offsets_producer_codec_headers_and_times() {
        for codec in CODECS {
            let raw = build(codec, &sample(), 0);
            let open = OpenBatch::open(raw.clone().into(), 1 << 20).expect("open");
            let records = open.records().expect("records");
            // The newest per key: b (with its duplicate headers), a's tombstone; not c, the
            // batch's last record, so the last offset must survive without it.
            let kept = [records[1], records[2]];
            let rewritten = open.rewrite(&kept, None).expect("rewrite");

            assert_crc(&rewritten);
            let again = OpenBatch::open(rewritten.clone(), 1 << 20).expect("reopen");
            assert_eq!(again.codec(), codec);
            assert_eq!((again.base_offset(), again.last_offset()), (100, 104));
            assert_eq!(again.producer_id(), 7);
            assert_eq!(&rewritten[12..16], &raw[12..16], "leader epoch");
            assert_eq!(&rewritten[51..57], &raw[51..57], "epoch and base sequence");
            assert_eq!(i32_at(&rewritten, 57), 2);
            assert_eq!(
                i64_at(&rewritten, 27),
                BASE_TS + 5,
                "base: first kept record"
            );
            assert_eq!(i64_at(&rewritten, 35), BASE_TS + 9, "max of the kept");
            let reread = again.records().expect("records");
            assert_eq!(reread.len(), 2);
            for (before, after) in kept.iter().zip(&reread) {
                assert_eq!(
                    (
                        before.offset_delta,
                        before.key,
                        before.value,
                        before.timestamp
                    ),
                    (after.offset_delta, after.key, after.value, after.timestamp)
                );
                // Key, value and headers byte for byte (duplicate header keys included).
                assert_eq!(before.tail, after.tail);
            }
            assert_eq!(again.delete_horizon_ms(), None);
        }
    }

    #[test]
    fn another_decoder_reads_a_rewritten_batch_as_written() {
        use kafka_protocol::records::RecordBatchDecoder;
        for codec in CODECS {
            let raw = build(codec, &sample(), 0);
            let open = OpenBatch::open(raw.clone().into(), 1 << 20).expect("open");
            let records = open.records().expect("records");
            let kept = [records[1], records[3]];
            let rewritten = open.rewrite(&kept, Some(BASE_TS + 1_000)).expect("rewrite");
            // kafka-protocol's decoder checks the CRC and applies the codec on its own.
            let set = RecordBatchDecoder::decode(&mut rewritten.clone()).expect("decodes");
            let seen: Vec<_> = set
                .records
                .iter()
                .map(|r| {
                    let headers: Vec<_> = r
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.clone()))
                        .collect();
                    (
                        r.offset,
                        r.timestamp,
                        r.key.clone(),
                        r.value.clone(),
                        r.producer_id,
                        r.sequence,
                        headers,
                    )
                })
                .collect();
            let bytes = |b: &'static [u8]| Some(Bytes::from_static(b));
            assert_eq!(
                seen,
                vec![
                    // (Its header map keeps one value per key: the last.)
                    (
                        101,
                        BASE_TS + 5,
                        bytes(b"b"),
                        bytes(b"b1"),
                        7,
                        41,
                        vec![("h".into(), bytes(b"2"))]
                    ),
                    (
                        103,
                        BASE_TS + 3,
                        None,
                        bytes(b"keyless"),
                        7,
                        43,
                        vec![("x".into(), None)]
                    ),
                ],
                "{codec:?}"
            );
        }
    }

    #[test]
    fn a_delete_horizon_becomes_the_base_timestamp_and_record_times_stay() {
        let raw = build(Codec::Lz4, &sample(), 0);
        let open = OpenBatch::open(raw.clone().into(), 1 << 20).expect("open");
        let records = open.records().expect("records");
        let horizon = BASE_TS + 86_400_000;
        let rewritten = open.rewrite(&records, Some(horizon)).expect("rewrite");
        let again = OpenBatch::open(rewritten.clone(), 1 << 20).expect("reopen");
        assert_eq!(again.delete_horizon_ms(), Some(horizon));
        let times = |r: &[Record<'_>]| r.iter().map(|r| r.timestamp).collect::<Vec<_>>();
        assert_eq!(times(&again.records().expect("records")), times(&records));
        // A later rewrite without a new horizon keeps the one set.
        let kept = again.records().expect("records");
        let later = again.rewrite(&kept[..1], None).expect("rewrite");
        let later = OpenBatch::open(later, 1 << 20).expect("reopen");
        assert_eq!(later.delete_horizon_ms(), Some(horizon));
        assert_eq!(later.records().expect("records")[0].timestamp, BASE_TS);
    }

    #[test]
    fn keeping_nothing_leaves_an_empty_batch_holding_the_offsets() {
        let raw = build(Codec::Zstd, &sample(), 1 << 4);
        let open = OpenBatch::open(raw.clone().into(), 1 << 20).expect("open");
        let empty = open.rewrite(&[], None).expect("rewrite");
        assert_eq!(empty.len(), HEADER_LEN);
        let again = OpenBatch::open(empty.clone(), 1 << 20).expect("reopen");
        assert_eq!((again.base_offset(), again.last_offset()), (100, 104));
        assert_eq!(again.codec(), Codec::None);
        assert!(again.is_transactional());
        assert_eq!(again.producer_id(), 7);
        assert!(again.records().expect("records").is_empty());
    }

    #[test]
    fn log_append_time_records_keep_the_batch_time() {
        let raw = build(Codec::None, &sample(), ATTR_LOG_APPEND_TIME);
        let open = OpenBatch::open(raw.clone().into(), 1 << 20).expect("open");
        let records = open.records().expect("records");
        assert!(records.iter().all(|r| r.timestamp == BASE_TS + 20));
        let rewritten = open.rewrite(&records[..2], None).expect("rewrite");
        assert_eq!(i64_at(&rewritten, 35), BASE_TS + 20);
        let again = OpenBatch::open(rewritten.clone(), 1 << 20).expect("reopen");
        assert!(
            again
                .records()
                .expect("records")
                .iter()
                .all(|r| r.timestamp == BASE_TS + 20)
        );
    }

    #[test]
    fn a_batch_inflating_past_the_bound_is_refused() {
        let big = vec![0u8; 4 << 20];
        let spec: Vec<Spec<'_>> = vec![(Some(b"k"), Some(&big), 0, &[])];
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let raw = build(codec, &spec, 0);
            assert!(raw.len() < 1 << 20, "{codec:?} compresses zeros");
            assert_eq!(
                OpenBatch::open(raw.clone().into(), 1 << 20).map(|_| ()),
                Err(RecordsError::TooLarge(1 << 20)),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        for codec in [Codec::None, Codec::Snappy] {
            let raw = build(codec, &sample(), 0);
            for at in HEADER_LEN..raw.len() {
                for value in [0x00, 0x7f, 0x80, 0xff] {
                    let mut damaged = raw.clone();
                    damaged[at] = value;
                    if let Ok(open) = OpenBatch::open(damaged.clone().into(), 1 << 20)
                        && let Ok(records) = open.records()
                    {
                        let _ = open.rewrite(&records, Some(0));
                    }
                }
            }
            for cut in 0..raw.len() {
                let mut short = raw[..cut].to_vec();
                if short.len() >= 12 {
                    let length = (short.len() - 12) as i32;
                    short[8..12].copy_from_slice(&length.to_be_bytes());
                }
                if let Ok(open) = OpenBatch::open(short.clone().into(), 1 << 20) {
                    let _ = open.records();
                }
            }
        }
    }

    #[test]
    fn a_batch_stretches_over_later_offsets_but_never_shrinks() {
        let raw = build(Codec::Gzip, &sample(), 0);
        let longer = with_offset_count(&raw, 9).expect("stretch");
        let open = OpenBatch::open(longer.clone(), 1 << 20).expect("open");
        assert_eq!(open.last_offset() - open.base_offset(), 8);
        assert_eq!(open.records().expect("records").len(), 5);
        assert_crc(&longer);
        assert!(
            with_offset_count(&raw, 4).is_err(),
            "records would fall outside"
        );
        assert!(filler(0).is_err());
        let empty = OpenBatch::open(filler(3).expect("filler"), 0).expect("open");
        assert_eq!(
            (
                empty.last_offset() - empty.base_offset(),
                empty.producer_id()
            ),
            (2, -1)
        );
    }
}
