//! What an oracle record holds, so anything consumed can be checked without the ledger.
//!
//! Record `sequence` of producer `producer` has a key, a value and one header that are pure
//! functions of the pair: the key names the pair, the value is pseudo-random bytes seeded by
//! it, and the header carries the pair and a CRC32C of key and value. A consumed record is
//! identified by its key; it is *intact* when its bytes equal what the pair generates.

/// Name of the header every oracle record carries.
pub const HEADER: &str = "yaks-oracle";

/// Which record: a producer's n-th send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId {
    /// Producer number in the run.
    pub producer: u32,
    /// Its sequence, from 0.
    pub sequence: u64,
}

/// The bytes a record is sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Key: `producer-sequence`.
    pub key: Vec<u8>,
    /// Value: 16–271 pseudo-random bytes.
    pub value: Vec<u8>,
    /// Value of the [`HEADER`] header.
    pub header: Vec<u8>,
}

impl RecordId {
    /// The record's content.
    pub fn content(self) -> Content {
        let key = format!("{}-{}", self.producer, self.sequence).into_bytes();
        let mut state = (u64::from(self.producer) << 40) ^ self.sequence ^ 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            // xorshift64*: cheap, deterministic, good enough to make every value different.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let size = 16 + (next() % 256) as usize;
        let value: Vec<u8> = (0..size).map(|_| next() as u8).collect();
        let hash = content_hash(&key, &value);
        let header = format!("{}:{}:{hash:08x}", self.producer, self.sequence).into_bytes();
        Content { key, value, header }
    }

    /// The id a key names, if it is an oracle key.
    pub fn from_key(key: &[u8]) -> Option<RecordId> {
        let key = std::str::from_utf8(key).ok()?;
        let (producer, sequence) = key.split_once('-')?;
        Some(RecordId {
            producer: producer.parse().ok()?,
            sequence: sequence.parse().ok()?,
        })
    }
}

/// CRC32C of key then value, recorded with each acknowledgement.
pub fn content_hash(key: &[u8], value: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(key), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_a_function_of_the_id_and_keys_name_it() {
        let id = RecordId {
            producer: 3,
            sequence: 41,
        };
        assert_eq!(id.content(), id.content());
        let other = RecordId {
            producer: 3,
            sequence: 42,
        };
        assert_ne!(id.content().value, other.content().value);
        assert_eq!(RecordId::from_key(&id.content().key), Some(id));
        assert_eq!(RecordId::from_key(b"not-an-oracle-key"), None);
    }
}
