//! The newest offset of each key in a partition's dirty range, in memory fixed in advance.
//!
//! Key compaction keeps a record only if no later record has its key. Holding every key
//! would make memory grow with the partition, so, as Kafka's cleaner does
//! (`SkimpyOffsetMap`), the map holds a 16-byte MD5 digest of each key and an offset, in an
//! open-addressed table whose size is set when it is made. When it fills, the pass covers
//! the range up to the offset it reached and the next pass takes the rest: more passes,
//! never more memory. Two keys sharing a digest would make the older one's newest record
//! look superseded; at 128 bits that takes about 2^64 keys.

use md5::{Digest, Md5};

/// Bytes one entry takes: the digest and the offset.
const ENTRY_BYTES: usize = 16 + 8;

/// Share of the slots filled before the map counts as full: probing stays short.
const LOAD_FACTOR: f64 = 0.9;

/// An offset no record has, marking a free slot.
const FREE: i64 = -1;

#[derive(Debug, Clone, Copy)]
struct Slot {
    digest: [u8; 16],
    offset: i64,
}

/// Key digests and the newest offset seen for each, in a table of fixed size.
#[derive(Debug)]
pub struct KeyMap {
    slots: Vec<Slot>,
    entries: usize,
    limit: usize,
    /// The largest offset put so far: how far a pass got.
    last_offset: Option<i64>,
}

impl KeyMap {
    /// A map taking about `bytes` of memory (at least a few entries' worth).
    pub fn with_memory(bytes: usize) -> KeyMap {
        let count = (bytes / ENTRY_BYTES).max(4);
        KeyMap {
            slots: vec![
                Slot {
                    digest: [0; 16],
                    offset: FREE,
                };
                count
            ],
            entries: 0,
            limit: ((count as f64 * LOAD_FACTOR) as usize).max(1),
            last_offset: None,
        }
    }

    /// Records that `key` was seen at `offset` (offsets are put in increasing order, so the
    /// newest replaces the older). `false` if the key is new and the map is full: the pass
    /// ends before this record.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let digest = digest(key);
        let index = self.find(&digest);
        let slot = &mut self.slots[index];
        if slot.offset == FREE {
            if self.entries >= self.limit {
                return false;
            }
            self.entries += 1;
            slot.digest = digest;
        }
        slot.offset = offset;
        self.last_offset = Some(self.last_offset.map_or(offset, |last| last.max(offset)));
        true
    }

    /// Records that every offset up to `offset` was read into the map, keys or not (a
    /// batch's records without a key, a control batch): the pass reaches that far.
    pub fn cover(&mut self, offset: i64) {
        self.last_offset = Some(self.last_offset.map_or(offset, |last| last.max(offset)));
    }

    /// The newest offset put for `key`, if it was put.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let slot = self.slots[self.find(&digest(key))];
        (slot.offset != FREE).then_some(slot.offset)
    }

    /// The largest offset put or covered, `None` while empty: how far the pass reaches.
    pub fn last_offset(&self) -> Option<i64> {
        self.last_offset
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// No key held.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Share of the map's capacity in use, 0 to 1: how close the pass came to the limit.
    pub fn utilization(&self) -> f64 {
        self.entries as f64 / self.limit as f64
    }

    /// Empties the map for the next pass, keeping its memory.
    pub fn clear(&mut self) {
        for slot in &mut self.slots {
            slot.offset = FREE;
        }
        self.entries = 0;
        self.last_offset = None;
    }

    /// The slot holding `digest`, or the free one where it would go (linear probing from a
    /// position the digest picks; a free slot always exists below the load factor).
    fn find(&self, digest: &[u8; 16]) -> usize {
        let mut start = [0u8; 8];
        start.copy_from_slice(&digest[..8]);
        let mut index = (u64::from_be_bytes(start) % self.slots.len() as u64) as usize;
        loop {
            let slot = &self.slots[index];
            if slot.offset == FREE || slot.digest == *digest {
                return index;
            }
            index = (index + 1) % self.slots.len();
        }
    }
}

fn digest(key: &[u8]) -> [u8; 16] {
    Md5::digest(key).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_offset_of_each_key_is_kept() {
        let mut map = KeyMap::with_memory(1 << 16);
        for offset in 0..1_000i64 {
            let key = format!("key-{}", offset % 20);
            assert!(map.put(key.as_bytes(), offset));
        }
        assert_eq!(map.len(), 20);
        for k in 0..20i64 {
            assert_eq!(map.get(format!("key-{k}").as_bytes()), Some(980 + k));
        }
        assert_eq!(map.get(b"never"), None);
        assert_eq!(map.last_offset(), Some(999));
    }

    #[test]
    fn a_full_map_refuses_new_keys_but_updates_known_ones() {
        // 10 slots, 9 usable.
        let mut map = KeyMap::with_memory(10 * ENTRY_BYTES);
        for k in 0..9i64 {
            assert!(map.put(&k.to_be_bytes(), k));
        }
        assert!(!map.put(b"one too many", 9), "new key in a full map");
        assert_eq!(
            map.last_offset(),
            Some(8),
            "the refused record is not covered"
        );
        assert!(map.put(&3i64.to_be_bytes(), 10), "known key");
        assert_eq!(map.get(&3i64.to_be_bytes()), Some(10));
        assert!((map.utilization() - 1.0).abs() < 1e-9);

        map.clear();
        assert!(map.is_empty());
        assert_eq!(map.get(&3i64.to_be_bytes()), None);
        assert!(map.put(b"one too many", 11));
    }

    #[test]
    fn memory_is_what_was_asked_whatever_the_keys() {
        let map = KeyMap::with_memory(24 << 20);
        assert_eq!(map.slots.len(), (24 << 20) / ENTRY_BYTES);
        assert_eq!(std::mem::size_of::<Slot>(), ENTRY_BYTES);
    }
}
