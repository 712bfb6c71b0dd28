//! Fetch routing: which reader serves a partition.
//!
//! Each partition goes to the reader ranked first by rendezvous hashing of (topic id,
//! partition) over the live readers, so every gateway sends a partition to the same reader
//! and each object tends to be cached by one reader. Readers are the configured
//! `gateway.reader_urls`, or else the readers holding a lease in the registry. A reader that
//! cannot be reached is skipped for [`DOWN_FOR`] (its partitions go to the next reader in
//! their ranking), and a reader that died leaves the registry when its lease runs out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use yaks_common::clock::Instant;

use bytes::Bytes;
use uuid::Uuid;
use yaks_common::hashing::{rendezvous_order, stable_hash};
use yaks_common::rpc::{FETCH_PATH, RpcClient, RpcError, read_body};

use crate::cluster::ClusterView;

/// How long a reader that failed is skipped.
pub const DOWN_FOR: Duration = Duration::from_secs(2);

/// The readers and their recent health.
pub struct ReaderPool {
    configured: Vec<String>,
    down_until: Mutex<HashMap<String, Instant>>,
    rpc: RpcClient,
}

impl ReaderPool {
    /// A pool over `configured` URLs; empty means the registry's live readers.
    pub fn new(configured: Vec<String>) -> ReaderPool {
        ReaderPool {
            configured: configured
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            down_until: Mutex::new(HashMap::new()),
            rpc: RpcClient::new(),
        }
    }

    /// The pool with `rpc` as its client (one carrying the deployment's token).
    pub fn with_rpc(mut self, rpc: RpcClient) -> ReaderPool {
        self.rpc = rpc;
        self
    }

    /// The readers to use now.
    pub fn members(&self, cluster: &ClusterView) -> Vec<String> {
        if !self.configured.is_empty() {
            return self.configured.clone();
        }
        cluster
            .live_readers()
            .into_iter()
            .map(|m| m.address)
            .collect()
    }

    /// `members` in the order a partition should try them: its rendezvous ranking, readers
    /// marked down moved to the end.
    pub fn ranking(&self, members: &[String], topic_id: Uuid, partition: i32) -> Vec<String> {
        let mut key = [0u8; 20];
        key[..16].copy_from_slice(topic_id.as_bytes());
        key[16..].copy_from_slice(&partition.to_be_bytes());
        let ranked = rendezvous_order(&key, members, |url| stable_hash(url.as_bytes()) as i64);
        let (up, down): (Vec<&String>, Vec<&String>) =
            ranked.into_iter().partition(|url| !self.is_down(url));
        up.into_iter().chain(down).cloned().collect()
    }

    /// Sends an internal fetch body to `url`; a reader that fails is marked down, one that
    /// refuses the request itself ([`RpcError::Rejected`]) is not.
    pub async fn fetch(&self, url: &str, body: Bytes) -> Result<Bytes, RpcError> {
        let result = match self.rpc.post(url, FETCH_PATH, body).await {
            Ok(response) => read_body(response).await,
            Err(e) => Err(e),
        };
        match &result {
            Err(RpcError::Rejected { .. }) => {}
            Ok(_) => {
                self.down_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(url);
            }
            Err(_) => {
                self.down_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(url.to_owned(), yaks_common::clock::now() + DOWN_FOR);
            }
        }
        result
    }

    fn is_down(&self, url: &str) -> bool {
        self.down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .is_some_and(|until| yaks_common::clock::now() < *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_over_readers_and_a_down_reader_goes_last() {
        let pool = ReaderPool::new(vec!["http://a:1".into(), "http://b:1".into()]);
        let members = pool.configured.clone();
        let topic = Uuid::from_u128(5);
        let firsts: Vec<String> = (0..64)
            .map(|p| pool.ranking(&members, topic, p)[0].clone())
            .collect();
        assert!(firsts.iter().any(|u| u == "http://a:1"));
        assert!(firsts.iter().any(|u| u == "http://b:1"));
        pool.down_until
            .lock()
            .expect("lock")
            .insert("http://a:1".into(), yaks_common::clock::now() + DOWN_FOR);
        for p in 0..64 {
            assert_eq!(
                pool.ranking(&members, topic, p),
                vec!["http://b:1", "http://a:1"]
            );
        }
    }
}
