//! The object-store seam.
//!
//! Roles see objects through [`ObjectStore`]: put an immutable object, read a byte range,
//! delete, list. The backends stay dumb; what an object means is decided by the services.
//! [`S3ObjectStore`] is what the product runs on (any S3 protocol endpoint);
//! [`MemoryObjectStore`] exists for unit tests of the services' logic.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine;
use bytes::Bytes;
use futures::future::BoxFuture;
use tracing::info;

use crate::config::S3Config;
use crate::error::StoreError;

/// Immutable objects by key.
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores `body` under `key`. Retried inside on passing faults.
    fn put(&self, key: String, body: Bytes) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Reads `range` of the object at `key`.
    fn get_range(&self, key: String, range: Range<u64>)
    -> BoxFuture<'_, Result<Bytes, StoreError>>;
    /// Deletes the object at `key`; deleting a missing object succeeds.
    fn delete(&self, key: String) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Keys under `prefix`, in lexical order.
    fn list(&self, prefix: String) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
    /// Checks the store answers and the bucket is there, for readiness probes. Stores with
    /// nothing remote to reach (the in-memory one) are always reachable.
    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A shared object-store handle.
pub type SharedObjectStore = Arc<dyn ObjectStore>;

/// The S3 implementation, through aws-sdk-s3.
///
/// Retries (5xx, SlowDown, throttling, timeouts, connection errors) use the SDK's standard
/// strategy with exponential backoff and jitter, bounded by `s3.max_attempts`.
#[derive(Clone, Debug)]
pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    sign_payload: bool,
}

impl S3ObjectStore {
    /// Builds a client from settings; credentials come from the settings or the AWS chain.
    pub async fn connect(config: &S3Config) -> Result<S3ObjectStore, StoreError> {
        let retry = RetryConfig::standard()
            .with_max_attempts(config.max_attempts)
            .with_initial_backoff(Duration::from_millis(config.initial_backoff_ms))
            .with_max_backoff(Duration::from_secs(5));
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(Duration::from_millis(config.attempt_timeout_ms))
            .operation_timeout(Duration::from_millis(config.operation_timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(config.region.clone()))
            .retry_config(retry)
            .timeout_config(timeouts);
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                id,
                secret,
                None,
                None,
                "yaks-config",
            ));
        }
        let shared = loader.load().await;
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(config.force_path_style)
            .build();
        let store = S3ObjectStore {
            client: aws_sdk_s3::Client::from_conf(s3_config),
            bucket: config.bucket.clone(),
            sign_payload: config.sign_payload,
        };
        if config.create_bucket {
            store.ensure_bucket().await?;
        }
        Ok(store)
    }

    /// Creates the bucket when it does not exist yet.
    pub async fn ensure_bucket(&self) -> Result<(), StoreError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(err) if status_of(&err) == Some(404) => {}
            Err(err) => return Err(classify(err, "head bucket")),
        }
        info!(bucket = %self.bucket, "creating bucket");
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.code(),
                    Some("BucketAlreadyOwnedByYou") | Some("BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(classify(err, "create bucket")),
        }
    }
}

fn status_of<E, R>(err: &SdkError<E, R>) -> Option<u16>
where
    R: HasStatus,
{
    err.raw_response().map(|r| r.status_code())
}

/// Lets [`status_of`] read the HTTP status of any SDK response type.
trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn classify<E>(err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>, what: &str) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = status_of(&err);
    let detail = format!(
        "s3 {what}: {} (status {status:?})",
        aws_smithy_types::error::display::DisplayErrorContext(&err)
    );
    match (&err, status) {
        (_, Some(404)) => StoreError::NotFound(detail),
        (SdkError::ServiceError(_), Some(s)) if (400..500).contains(&s) && s != 408 && s != 429 => {
            StoreError::Invalid(detail)
        }
        _ => StoreError::Retriable(detail),
    }
}

impl ObjectStore for S3ObjectStore {
    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.client
                .head_bucket()
                .bucket(&self.bucket)
                .send()
                .await
                .map(|_| ())
                .map_err(|err| classify(err, "head bucket"))
        })
    }

    fn put(&self, key: String, body: Bytes) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // The body's CRC32, which S3 verifies, guards it either way. Given as a header,
            // it spares the SDK its aws-chunked framing with the checksum as a trailer, which
            // the endpoint must then unframe: the body goes as it is.
            let crc32 = base64::engine::general_purpose::STANDARD
                .encode(crc32fast::hash(&body).to_be_bytes());
            let request = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .checksum_crc32(crc32)
                .body(ByteStream::from(body));
            // Signing the body's SHA-256 as well cost a fifth of the writer's CPU.
            let sent = if self.sign_payload {
                request.send().await
            } else {
                request.customize().disable_payload_signing().send().await
            };
            sent.map_err(|e| classify(e, "put"))?;
            Ok(())
        })
    }

    fn get_range(
        &self,
        key: String,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Bytes, StoreError>> {
        Box::pin(async move {
            if range.is_empty() {
                return Ok(Bytes::new());
            }
            let output = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .range(format!("bytes={}-{}", range.start, range.end - 1))
                .send()
                .await
                .map_err(|e| classify(e, "get"))?;
            let body = output
                .body
                .collect()
                .await
                .map_err(|e| StoreError::Retriable(format!("s3 get body: {e}")))?;
            Ok(body.into_bytes())
        })
    }

    fn delete(&self, key: String) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| classify(e, "delete"))?;
            Ok(())
        })
    }

    fn list(&self, prefix: String) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let mut keys = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify(e, "list"))?;
                for object in page.contents() {
                    if let Some(key) = object.key() {
                        keys.push(key.to_owned());
                    }
                }
            }
            Ok(keys)
        })
    }
}

/// In-memory objects, for unit tests of the services.
#[derive(Debug, Default, Clone)]
pub struct MemoryObjectStore {
    objects: Arc<Mutex<BTreeMap<String, Bytes>>>,
}

impl MemoryObjectStore {
    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        // A panic while holding this lock only happens in a failing test; keep its data.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ObjectStore for MemoryObjectStore {
    fn put(&self, key: String, body: Bytes) -> BoxFuture<'_, Result<(), StoreError>> {
        self.objects().insert(key, body);
        Box::pin(async { Ok(()) })
    }

    fn get_range(
        &self,
        key: String,
        range: Range<u64>,
    ) -> BoxFuture<'_, Result<Bytes, StoreError>> {
        let result = match self.objects().get(&key) {
            None => Err(StoreError::NotFound(key)),
            Some(body) if range.end as usize > body.len() || range.start > range.end => Err(
                StoreError::Invalid(format!("range {range:?} outside {} bytes", body.len())),
            ),
            Some(body) => Ok(body.slice(range.start as usize..range.end as usize)),
        };
        Box::pin(async move { result })
    }

    fn delete(&self, key: String) -> BoxFuture<'_, Result<(), StoreError>> {
        self.objects().remove(&key);
        Box::pin(async { Ok(()) })
    }

    fn list(&self, prefix: String) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let keys = self
            .objects()
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        Box::pin(async move { Ok(keys) })
    }
}

/// The behaviour every [`ObjectStore`] must share, run against each implementation.
#[doc(hidden)]
pub async fn conformance_suite(store: &dyn ObjectStore, prefix: &str) {
    let a = format!("{prefix}a/1");
    let b = format!("{prefix}b/2");
    store
        .put(a.clone(), Bytes::from_static(b"hello world"))
        .await
        .expect("put a");
    store
        .put(b.clone(), Bytes::from_static(b"second"))
        .await
        .expect("put b");
    let middle = store.get_range(a.clone(), 6..11).await.expect("range");
    assert_eq!(&middle[..], b"world");
    assert_eq!(
        store.list(prefix.to_owned()).await.expect("list"),
        vec![a.clone(), b.clone()]
    );
    store.delete(a.clone()).await.expect("delete");
    store.delete(a.clone()).await.expect("delete twice");
    assert!(matches!(
        store.get_range(a, 0..1).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list(prefix.to_owned()).await.expect("list"), vec![b]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_conforms() {
        conformance_suite(&MemoryObjectStore::default(), "t/").await;
    }
}
