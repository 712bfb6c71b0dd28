//! The raw limits `yaks bench` measures yaks against, on the same endpoints in the same
//! run: S3 PUT and ranged GET throughput with the writer's object size and concurrency and
//! the reader's block size, and the latency of a one-row PostgreSQL commit.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use yaks_common::objstore::ObjectStore;

use super::load::percentile_us;

/// What the object store did.
#[derive(Debug, Clone, Default)]
pub struct S3Limits {
    /// PUT MiB/s with `concurrency` uploads of `object_bytes` at once.
    pub put_mib_per_s: f64,
    /// PUT latency p99, ms.
    pub put_p99_ms: f64,
    /// Ranged GET MiB/s with `concurrency` reads of `block_bytes` at once.
    pub get_mib_per_s: f64,
}

/// Uploads `objects` objects of `object_bytes`, `concurrency` at a time, then reads them
/// back in `block_bytes` ranges, `concurrency` at a time; deletes them after.
pub async fn s3(
    store: Arc<dyn ObjectStore>,
    objects: usize,
    object_bytes: usize,
    block_bytes: usize,
    concurrency: usize,
) -> anyhow::Result<S3Limits> {
    let body = Bytes::from(vec![0x5a_u8; object_bytes]);
    let keys: Vec<String> = (0..objects)
        .map(|i| format!("bench-raw/{:x}-{i}", yaks_common::random::u64()))
        .collect();
    let started = yaks_common::clock::now();
    let mut latencies: Vec<u32> = futures::stream::iter(keys.iter().cloned())
        .map(|key| {
            let store = store.clone();
            let body = body.clone();
            async move {
                let put = yaks_common::clock::now();
                store.put(key, body).await?;
                Ok::<_, anyhow::Error>(put.elapsed().as_micros() as u32)
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let put_seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();

    let ranges: Vec<(String, u64)> = keys
        .iter()
        .flat_map(|key| {
            (0..object_bytes.div_ceil(block_bytes))
                .map(move |b| (key.clone(), (b * block_bytes) as u64))
        })
        .collect();
    let started = yaks_common::clock::now();
    let read: u64 = futures::stream::iter(ranges)
        .map(|(key, start)| {
            let store = store.clone();
            let end = (start + block_bytes as u64).min(object_bytes as u64);
            async move {
                store
                    .get_range(key, start..end)
                    .await
                    .map(|b| b.len() as u64)
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum::<Result<u64, _>>()?;
    let get_seconds = started.elapsed().as_secs_f64();
    for key in keys {
        let _ = store.delete(key).await;
    }
    let mib = |bytes: f64| bytes / (1 << 20) as f64;
    Ok(S3Limits {
        put_mib_per_s: mib((objects * object_bytes) as f64) / put_seconds,
        put_p99_ms: percentile_us(&latencies, 0.99) / 1e3,
        get_mib_per_s: mib(read as f64) / get_seconds,
    })
}

/// Latency of a one-row transaction (BEGIN, UPDATE one row, COMMIT), `count` times: p50
/// and p99 ms.
pub async fn postgres_commit(url: &str, count: usize) -> anyhow::Result<[f64; 2]> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to postgres")?;
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS bench_commit (id int PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO bench_commit VALUES (1, 0) ON CONFLICT DO NOTHING;",
        )
        .await?;
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = yaks_common::clock::now();
        client
            .batch_execute("BEGIN; UPDATE bench_commit SET n = n + 1 WHERE id = 1; COMMIT;")
            .await?;
        latencies.push(started.elapsed().as_micros() as u32);
    }
    client.batch_execute("DROP TABLE bench_commit").await?;
    latencies.sort_unstable();
    Ok([
        percentile_us(&latencies, 0.50) / 1e3,
        percentile_us(&latencies, 0.99) / 1e3,
    ])
}

/// How long a phase may take before the bench gives up on it.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(300);
