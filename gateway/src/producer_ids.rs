//! Producer ids for InitProducerId, handed out from blocks reserved in the metastore.
//!
//! Every idempotent producer asks for an id once at start (and again only after a fatal
//! error), but a fleet of short-lived producers asks often. A gateway reserves
//! [`PRODUCER_ID_BLOCK`] ids at a time, so only one InitProducerId in that many waits for
//! PostgreSQL; blocks never overlap, so ids are unique across gateways. Ids left in a block
//! when the gateway stops are simply never used.

use std::ops::Range;
use std::sync::Arc;

use tokio::sync::Mutex;
use yaks_common::error::StoreError;
use yaks_common::metastore::{PRODUCER_ID_BLOCK, Producers};

/// This gateway's current block of producer ids.
pub struct ProducerIds {
    metastore: Arc<dyn Producers>,
    /// Ids not handed out yet; empty until the first call.
    block: Mutex<Range<i64>>,
}

impl ProducerIds {
    /// An allocator that reserves its first block on first use.
    pub fn new(metastore: Arc<dyn Producers>) -> ProducerIds {
        ProducerIds {
            metastore,
            block: Mutex::new(0..0),
        }
    }

    /// A producer id no one else has or will get.
    pub async fn next(&self) -> Result<i64, StoreError> {
        // Held across the reservation, so concurrent callers share one new block.
        let mut block = self.block.lock().await;
        if block.is_empty() {
            let first = self.metastore.allocate_producer_ids().await?;
            *block = first..first + PRODUCER_ID_BLOCK;
        }
        let id = block.start;
        block.start += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use yaks_common::metastore::MemoryMetastore;

    use super::*;

    #[tokio::test]
    async fn two_gateways_never_hand_out_the_same_id() {
        let metastore = Arc::new(MemoryMetastore::default());
        let a = ProducerIds::new(metastore.clone());
        let b = ProducerIds::new(metastore);
        let mut seen = HashSet::new();
        for _ in 0..(PRODUCER_ID_BLOCK * 2 + 5) {
            assert!(seen.insert(a.next().await.expect("id")));
            assert!(seen.insert(b.next().await.expect("id")));
        }
    }
}
