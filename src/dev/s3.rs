//! An S3 endpoint on loopback for `yaks dev` and the tests, serving files in a directory.
//!
//! Built from `s3s` (the S3 protocol: routing, SigV4 authentication, XML) and `s3s-fs` (a
//! filesystem backend), so yaks talks to it through the same aws-sdk-s3 code path as to AWS.
//! Requests are counted, so tests can assert how many S3 calls a scenario made.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use yaks_common::config::S3Config;
use yaks_common::shutdown::{Shutdown, ShutdownTrigger};

/// Access key of the loopback endpoint.
pub const ACCESS_KEY: &str = "yaks-dev";
/// Secret key of the loopback endpoint.
pub const SECRET_KEY: &str = "yaks-dev-secret";

/// A running loopback S3 endpoint; stops when dropped.
pub struct DevS3 {
    addr: SocketAddr,
    requests: Arc<AtomicU64>,
    trigger: ShutdownTrigger,
    task: Option<JoinHandle<()>>,
}

impl DevS3 {
    /// Serves the files under `root` on `127.0.0.1:port` (0: any free port).
    pub async fn start(root: &Path, port: u16) -> anyhow::Result<DevS3> {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("s3s-fs: {e:?}"))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .context("binding the s3 endpoint")?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let (trigger, shutdown) = Shutdown::new();
        let counter = requests.clone();
        let task = tokio::spawn(serve(listener, service, counter, shutdown));
        Ok(DevS3 {
            addr,
            requests,
            trigger,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests served so far.
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Settings pointing yaks at this endpoint for `bucket`.
    pub fn s3_config(&self, bucket: &str) -> S3Config {
        S3Config {
            bucket: bucket.to_owned(),
            endpoint: Some(self.endpoint()),
            force_path_style: true,
            access_key_id: Some(ACCESS_KEY.to_owned()),
            secret_access_key: Some(SECRET_KEY.to_owned()),
            create_bucket: true,
            ..S3Config::default()
        }
    }

    /// Stops serving and waits for open requests.
    pub async fn stop(mut self) {
        self.trigger.trigger();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for DevS3 {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

async fn serve(
    listener: TcpListener,
    service: s3s::service::S3Service,
    counter: Arc<AtomicU64>,
    shutdown: Shutdown,
) {
    yaks_common::rpc::serve(
        listener,
        move |request: http::Request<hyper::body::Incoming>| {
            let service = service.clone();
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                match hyper::service::Service::call(&service, request).await {
                    Ok(response) => response,
                    Err(e) => {
                        let mut response = http::Response::new(s3s::Body::from(format!(
                            "s3 endpoint error: {e:?}"
                        )));
                        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                        response
                    }
                }
            }
        },
        shutdown,
    )
    .await;
}
