//! The object cache: S3 objects in aligned blocks, in memory and on local disk.
//!
//! Vocabulary: a *block* is the `block_bytes`-aligned slice `[i * block_bytes, (i + 1) *
//! block_bytes)` of one object (the last block of an object is shorter). Blocks are what
//! is fetched from S3 (one ranged GET each), cached and evicted; reads of arbitrary byte
//! ranges are assembled from them. Objects are immutable, so a cached block never goes
//! stale: it is only ever evicted.
//!
//! foyer's hybrid cache keeps hot blocks in memory and spills them to the disk tier; a miss
//! in both makes one GET, and concurrent misses on the same block wait for that one GET
//! (foyer deduplicates fetches by key). Blocks stay well under the disk engine's 16 MiB
//! eviction block, because foyer silently drops disk entries that do not fit one
//! (`reader.cache_block_bytes` is validated against [`MAX_CACHE_BLOCK_BYTES`]).
//!
//! A read is assembled block by block, in order; a caller that knows which blocks it is
//! about to need [`loads`](BlockCache::load) them first, several GETs at once, and names
//! the blocks after them for [read-ahead](BlockCache::read_ahead): GETs in the background,
//! never more than `reader.read_ahead_blocks` in flight, so a consumer walking history
//! finds its next fetch cached without the reader holding more than those blocks for it.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, Code, DeviceBuilder, Event, EventListener, FsDeviceBuilder, HybridCache,
    HybridCacheBuilder, Source,
};
use futures::StreamExt;
use yaks_common::config::{MAX_CACHE_BLOCK_BYTES, ReaderConfig};
use yaks_common::error::StoreError;
use yaks_common::metrics::{TierLabels, metrics};
use yaks_common::objstore::SharedObjectStore;

/// The disk engine's eviction unit; every cached block must fit well inside it.
const DISK_ENGINE_BLOCK_BYTES: usize = 16 * 1024 * 1024;

/// One block of one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// S3 key of the object.
    pub object_key: String,
    /// Block number: the block starts at `index * block_bytes`.
    pub index: u64,
}

impl BlockRef {
    fn key(&self) -> BlockKey {
        BlockKey {
            object_key: self.object_key.clone(),
            index: self.index,
        }
    }
}

impl Code for BlockKey {
    fn encode(&self, writer: &mut impl std::io::Write) -> foyer::Result<()> {
        self.object_key.encode(writer)?;
        self.index.encode(writer)
    }

    fn decode(reader: &mut impl std::io::Read) -> foyer::Result<Self> {
        Ok(BlockKey {
            object_key: String::decode(reader)?,
            index: u64::decode(reader)?,
        })
    }

    fn estimated_size(&self) -> usize {
        self.object_key.estimated_size() + 8
    }
}

/// A block to load: which object, how long that object is, which block of it, and the
/// topic its S3 read is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRef {
    pub object_key: String,
    pub object_size: u64,
    pub index: u64,
    pub topic: String,
}

/// The bytes of one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block(pub Bytes);

impl Code for Block {
    fn encode(&self, writer: &mut impl std::io::Write) -> foyer::Result<()> {
        self.0.len().encode(writer)?;
        writer.write_all(&self.0).map_err(foyer::Error::io_error)
    }

    fn decode(reader: &mut impl std::io::Read) -> foyer::Result<Self> {
        let len = usize::decode(reader)?;
        if len > MAX_CACHE_BLOCK_BYTES as usize {
            return Err(foyer::Error::new(
                foyer::ErrorKind::Parse,
                format!("cached block of {len} bytes is larger than any block written"),
            ));
        }
        let mut bytes = vec![0u8; len];
        reader
            .read_exact(&mut bytes)
            .map_err(foyer::Error::io_error)?;
        Ok(Block(Bytes::from(bytes)))
    }

    fn estimated_size(&self) -> usize {
        std::mem::size_of::<usize>() + self.0.len()
    }
}

/// Counters a test or a metrics endpoint can read.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Ranged GETs sent to the object store.
    pub object_gets: AtomicU64,
    /// Bytes those GETs returned.
    pub object_get_bytes: AtomicU64,
}

/// Reads byte ranges of immutable objects through the hybrid cache.
#[derive(Clone)]
pub struct BlockCache {
    cache: HybridCache<BlockKey, Block>,
    objects: SharedObjectStore,
    block_bytes: u64,
    stats: Arc<CacheStats>,
    has_disk_tier: bool,
    /// One permit per read-ahead GET allowed in flight.
    read_ahead: Arc<tokio::sync::Semaphore>,
}

/// Counts the memory tier's evictions (`yaks_reader_cache_evictions_total{tier="memory"}`).
/// The disk tier reclaims whole 16 MiB regions without reporting the entries in them, so
/// it has no per-block eviction count.
struct EvictionCounter;

impl EventListener for EvictionCounter {
    type Key = BlockKey;
    type Value = Block;

    fn on_leave(&self, reason: Event, _key: &BlockKey, _value: &Block) {
        if matches!(reason, Event::Evict) {
            metrics()
                .reader
                .cache_evictions
                .get_or_create(&TierLabels { tier: "memory" })
                .inc();
        }
    }
}

impl BlockCache {
    /// Opens the cache: memory tier of `cache_memory_bytes`, and a disk tier of
    /// `cache_disk_bytes` under `cache_dir` when both are set (its content survives restarts).
    pub async fn open(
        config: &ReaderConfig,
        objects: SharedObjectStore,
    ) -> Result<BlockCache, StoreError> {
        let builder = HybridCacheBuilder::new()
            .with_name("yaks-reader")
            .with_event_listener(Arc::new(EvictionCounter))
            .memory(config.cache_memory_bytes as usize)
            .with_weighter(|key: &BlockKey, block: &Block| key.object_key.len() + block.0.len())
            .storage();
        let has_disk_tier = config.cache_dir.is_some() && config.cache_disk_bytes > 0;
        let builder = match (&config.cache_dir, config.cache_disk_bytes) {
            (Some(dir), bytes) if bytes > 0 => {
                let dir = Path::new(dir);
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Invalid(format!("reader.cache_dir {}: {e}", dir.display()))
                })?;
                let device = FsDeviceBuilder::new(dir)
                    .with_capacity(bytes as usize)
                    .build()
                    .map_err(|e| {
                        StoreError::Invalid(format!("reader.cache_dir {}: {e}", dir.display()))
                    })?;
                builder.with_engine_config(
                    BlockEngineConfig::new(device).with_block_size(DISK_ENGINE_BLOCK_BYTES),
                )
            }
            _ => builder,
        };
        let cache = builder
            .build()
            .await
            .map_err(|e| StoreError::Internal(format!("opening the reader cache: {e}")))?;
        debug_assert!(config.cache_block_bytes as usize * 4 <= DISK_ENGINE_BLOCK_BYTES);
        Ok(BlockCache {
            cache,
            objects,
            block_bytes: config.cache_block_bytes,
            stats: Arc::new(CacheStats::default()),
            has_disk_tier,
            read_ahead: Arc::new(tokio::sync::Semaphore::new(
                config.read_ahead_blocks as usize,
            )),
        })
    }

    /// The cache's counters.
    pub fn stats(&self) -> &Arc<CacheStats> {
        &self.stats
    }

    /// Bytes `range` of the object at `object_key`, which is `object_size` bytes long, read
    /// for `topic` (which S3 reads on a miss are counted under). A range inside one block is
    /// a zero-copy slice of it.
    pub async fn read(
        &self,
        object_key: &str,
        object_size: u64,
        range: Range<u64>,
        topic: &str,
    ) -> Result<Bytes, StoreError> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        if range.end > object_size {
            return Err(StoreError::Internal(format!(
                "range {range:?} past the end of {object_key} ({object_size} bytes)"
            )));
        }
        let first = range.start / self.block_bytes;
        let last = (range.end - 1) / self.block_bytes;
        if first == last {
            let block = self.block(object_key, object_size, first, topic).await?;
            let at = first * self.block_bytes;
            return Ok(block.slice((range.start - at) as usize..(range.end - at) as usize));
        }
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for index in first..=last {
            let block = self.block(object_key, object_size, index, topic).await?;
            let at = index * self.block_bytes;
            let from = range.start.max(at) - at;
            let to = range.end.min(at + block.len() as u64) - at;
            out.extend_from_slice(&block[from as usize..to as usize]);
        }
        Ok(out.freeze())
    }

    /// The blocks holding `range` of the object at `object_key`, `object_size` bytes long.
    pub fn blocks_of(
        &self,
        object_key: &str,
        object_size: u64,
        range: Range<u64>,
        topic: &str,
    ) -> Vec<BlockRef> {
        let end = range.end.min(object_size);
        if range.start >= end {
            return Vec::new();
        }
        (range.start / self.block_bytes..=(end - 1) / self.block_bytes)
            .map(|index| BlockRef {
                object_key: object_key.to_owned(),
                object_size,
                index,
                topic: topic.to_owned(),
            })
            .collect()
    }

    /// Loads into memory the `blocks` a read is about to need, up to `concurrency` GETs at
    /// once, so that its block-by-block assembly hits memory instead of waiting for one GET
    /// after another. A block that fails to load is left to the read, which tries again
    /// and reports the error.
    pub async fn load(&self, blocks: Vec<BlockRef>, concurrency: usize) {
        let missing: Vec<BlockRef> = blocks
            .into_iter()
            .filter(|b| !self.cache.memory().contains(&b.key()))
            .collect();
        if missing.len() < 2 {
            // Nothing to overlap: the read makes its one GET itself.
            return;
        }
        futures::stream::iter(missing)
            .map(|b| async move {
                let _ = self
                    .block(&b.object_key, b.object_size, b.index, &b.topic)
                    .await;
            })
            .buffer_unordered(concurrency.max(1))
            .collect::<Vec<()>>()
            .await;
    }

    /// Starts loading `blocks` in the background, in order, each only while a read-ahead
    /// permit is free: read-ahead never waits, never queues behind itself, and never has
    /// more than `reader.read_ahead_blocks` GETs in flight. Blocks already cached are
    /// skipped.
    pub fn read_ahead(&self, blocks: impl IntoIterator<Item = BlockRef>) {
        for b in blocks {
            if self.cache.contains(&b.key()) {
                continue;
            }
            let Ok(permit) = self.read_ahead.clone().try_acquire_owned() else {
                return;
            };
            let cache = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                metrics().reader.read_ahead_blocks.inc();
                // A failure here costs only the head start: the read that needs the
                // block makes its own GET.
                let _ = cache
                    .block(&b.object_key, b.object_size, b.index, &b.topic)
                    .await;
            });
        }
    }

    async fn block(
        &self,
        object_key: &str,
        object_size: u64,
        index: u64,
        topic: &str,
    ) -> Result<Bytes, StoreError> {
        let key = BlockKey {
            object_key: object_key.to_owned(),
            index,
        };
        let start = index * self.block_bytes;
        let end = (start + self.block_bytes).min(object_size);
        let objects = self.objects.clone();
        let stats = self.stats.clone();
        let owned_key = object_key.to_owned();
        let topic = topic.to_owned();
        let entry = self
            .cache
            .get_or_fetch(&key, move || async move {
                stats.object_gets.fetch_add(1, Ordering::Relaxed);
                let started = yaks_common::clock::now();
                let got = objects.get_range(owned_key, start..end).await;
                let shares = [(topic, end - start)];
                metrics()
                    .reader
                    .s3
                    .record("get", &shares, started.elapsed(), got.is_ok());
                let bytes = got?;
                stats
                    .object_get_bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                if bytes.len() as u64 != end - start {
                    return Err(StoreError::Internal(format!(
                        "asked for {} bytes, got {}",
                        end - start,
                        bytes.len()
                    )));
                }
                Ok::<_, StoreError>(Block(bytes))
            })
            .await
            .map_err(|e| match e.downcast_ref::<StoreError>() {
                Some(StoreError::NotFound(key)) => StoreError::NotFound(key.clone()),
                _ => StoreError::Retriable(format!("reading {object_key} block {index}: {e}")),
            })?;
        self.count_lookup(entry.source());
        Ok(entry.value().0.clone())
    }

    /// Counts which tier answered a block lookup.
    fn count_lookup(&self, source: Source) {
        let reader = &metrics().reader;
        let (memory_hit, disk_hit) = match source {
            Source::Memory => (true, false),
            Source::Disk => (false, true),
            Source::Outer => (false, false),
        };
        let count = |hit: bool, tier: &'static str| {
            let family = if hit {
                &reader.cache_hits
            } else {
                &reader.cache_misses
            };
            family.get_or_create(&TierLabels { tier }).inc();
        };
        count(memory_hit, "memory");
        if !memory_hit && self.has_disk_tier {
            count(disk_hit, "disk");
        }
    }

    /// Flushes the memory tier to disk where configured, and closes the cache.
    pub async fn close(&self) {
        if let Err(e) = self.cache.close().await {
            tracing::warn!(error = %e, "closing the reader cache failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use yaks_common::objstore::{MemoryObjectStore, ObjectStore};

    fn config(block_bytes: u64, dir: Option<&Path>) -> ReaderConfig {
        ReaderConfig {
            cache_block_bytes: block_bytes,
            cache_memory_bytes: 4 * 1024 * 1024,
            cache_disk_bytes: if dir.is_some() { 64 * 1024 * 1024 } else { 0 },
            cache_dir: dir.map(|d| d.display().to_string()),
            ..ReaderConfig::default()
        }
    }

    #[tokio::test]
    async fn ranges_across_blocks_read_back_exactly_with_one_get_per_block() {
        let store = Arc::new(MemoryObjectStore::default());
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        store
            .put("o".into(), Bytes::from(body.clone()))
            .await
            .expect("put");
        let cache = BlockCache::open(&config(64 * 1024, None), store)
            .await
            .expect("open");
        let size = body.len() as u64;
        for range in [0..10, 65_530..65_546, 100..299_999, 299_990..300_000] {
            let got = cache
                .read("o", size, range.clone(), "t")
                .await
                .expect("read");
            assert_eq!(&got[..], &body[range.start as usize..range.end as usize]);
        }
        // Five blocks of 64 KiB cover 300,000 bytes; each was fetched once.
        assert_eq!(cache.stats().object_gets.load(Ordering::Relaxed), 5);
        assert!(cache.read("o", size, 10..size + 1, "t").await.is_err());
    }

    #[tokio::test]
    async fn concurrent_misses_on_one_block_make_one_get() {
        let store = Arc::new(MemoryObjectStore::default());
        store
            .put("o".into(), Bytes::from(vec![7u8; 100_000]))
            .await
            .expect("put");
        let dir = tempfile::tempdir().expect("dir");
        let cache = BlockCache::open(&config(64 * 1024, Some(dir.path())), store)
            .await
            .expect("open");
        let reads: Vec<_> = (0..16)
            .map(|i| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.read("o", 100_000, i..i + 1000, "t").await })
            })
            .collect();
        for read in reads {
            assert_eq!(read.await.expect("task").expect("read").len(), 1000);
        }
        assert_eq!(cache.stats().object_gets.load(Ordering::Relaxed), 1);
        cache.close().await;
    }

    #[tokio::test]
    async fn a_missing_object_is_not_found() {
        let store = Arc::new(MemoryObjectStore::default());
        let cache = BlockCache::open(&config(64 * 1024, None), store)
            .await
            .expect("open");
        let err = cache
            .read("gone", 10, 0..10, "t")
            .await
            .expect_err("missing");
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn loaded_blocks_are_read_from_memory_and_read_ahead_stays_within_its_permits() {
        let store = Arc::new(MemoryObjectStore::default());
        store
            .put("o".into(), Bytes::from(vec![1u8; 6 * 64 * 1024]))
            .await
            .expect("put");
        let mut config = config(64 * 1024, None);
        config.read_ahead_blocks = 2;
        let cache = BlockCache::open(&config, store).await.expect("open");
        let size = 6 * 64 * 1024;
        let gets = || cache.stats().object_gets.load(Ordering::Relaxed);
        cache
            .load(cache.blocks_of("o", size, 0..2 * 64 * 1024, "t"), 4)
            .await;
        assert_eq!(gets(), 2);
        cache
            .read("o", size, 0..2 * 64 * 1024, "t")
            .await
            .expect("read");
        assert_eq!(gets(), 2, "the read found both blocks loaded");
        // Four blocks asked for ahead, two permits: two GETs, the others left to the reads.
        cache.read_ahead(cache.blocks_of("o", size, 2 * 64 * 1024..size, "t"));
        for _ in 0..100 {
            if cache.read_ahead.available_permits() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(gets(), 4);
        // Blocks already cached are skipped, not fetched again.
        cache.read_ahead(cache.blocks_of("o", size, 0..4 * 64 * 1024, "t"));
        assert_eq!(cache.read_ahead.available_permits(), 2);
        assert_eq!(gets(), 4);
    }
}
