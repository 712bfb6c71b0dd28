//! The compaction job queue: SQS in the cloud, an in-process queue for `yaks dev`.
//!
//! Planners send jobs; workers receive them with a visibility timeout longer than a job
//! takes, delete them when done, and leave a failing job to be received again. A job
//! received too often is set aside: by SQS's redrive policy into a dead-letter queue, or by
//! [`MemoryQueue`] into its own dead list. Jobs travel as JSON ([`JobMessage`]); a body
//! that does not parse is a poison job, left to the same fate.

use std::sync::Mutex;
use std::time::Duration;
use yaks_common::clock::Instant;

use async_trait::async_trait;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use yaks_common::config::{CompactorConfig, S3Config};
use yaks_common::error::StoreError;
use yaks_common::metastore::IndexEntry;

use crate::planner::Job;

/// One input of a job, as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInput {
    /// First offset.
    pub base_offset: i64,
    /// Last offset.
    pub last_offset: i64,
    /// Largest timestamp.
    pub max_timestamp: i64,
    /// Object key.
    pub object_key: String,
    /// Where the range starts.
    pub byte_offset: i64,
    /// Its length.
    pub byte_length: i64,
    /// The object's size.
    pub object_size: i64,
    /// The range's bytes when its object is kept in the metastore (markers, tens of bytes);
    /// absent from jobs of objects in S3 and of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<Vec<u8>>,
}

/// A compaction job on the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    /// Topic.
    pub topic_id: Uuid,
    /// Partition.
    pub partition_index: i32,
    /// Inputs in offset order.
    pub inputs: Vec<JobInput>,
}

impl JobMessage {
    /// The message for a planned job.
    pub fn new(topic_id: Uuid, partition_index: i32, job: &Job) -> JobMessage {
        JobMessage {
            topic_id,
            partition_index,
            inputs: job
                .inputs
                .iter()
                .map(|e| JobInput {
                    base_offset: e.base_offset,
                    last_offset: e.last_offset,
                    max_timestamp: e.max_timestamp,
                    object_key: e.object_key.clone(),
                    byte_offset: e.byte_offset,
                    byte_length: e.byte_length,
                    object_size: e.object_size,
                    inline: e.inline.as_ref().map(|b| b.to_vec()),
                })
                .collect(),
        }
    }

    /// The job it carries.
    pub fn job(&self) -> Job {
        Job {
            inputs: self
                .inputs
                .iter()
                .map(|i| IndexEntry {
                    base_offset: i.base_offset,
                    last_offset: i.last_offset,
                    max_timestamp: i.max_timestamp,
                    object_key: i.object_key.clone(),
                    byte_offset: i.byte_offset,
                    byte_length: i.byte_length,
                    object_size: i.object_size,
                    inline: i.inline.clone().map(Into::into),
                })
                .collect(),
        }
    }
}

/// A received job.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The job, or why its body is not one (a poison job).
    pub job: Result<JobMessage, String>,
    /// Handle for [`JobQueue::delete`].
    pub receipt: String,
    /// How many times it was received, this time included.
    pub receive_count: u32,
}

/// Where jobs wait.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueues a job.
    async fn send(&self, job: &JobMessage) -> Result<(), StoreError>;
    /// Up to `max` jobs, hidden from other receivers for the visibility timeout.
    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, StoreError>;
    /// Removes a job that was done.
    async fn delete(&self, receipt: &str) -> Result<(), StoreError>;
}

fn parse(body: &str) -> Result<JobMessage, String> {
    serde_json::from_str(body).map_err(|e| format!("not a compaction job: {e}"))
}

fn body_of(job: &JobMessage) -> Result<String, StoreError> {
    serde_json::to_string(job).map_err(|e| StoreError::Internal(format!("job to JSON: {e}")))
}

struct Waiting {
    id: u64,
    body: String,
    visible_at: Instant,
    receives: u32,
}

#[derive(Default)]
struct MemoryState {
    next_id: u64,
    waiting: Vec<Waiting>,
    dead: Vec<String>,
}

/// The in-process queue of `yaks dev` and of a compactor without `compactor.queue_url`:
/// visibility timeouts and a dead list like SQS with a redrive policy.
pub struct MemoryQueue {
    visibility: Duration,
    max_receives: u32,
    state: Mutex<MemoryState>,
}

impl MemoryQueue {
    /// A queue hiding received jobs for `visibility`, setting aside one received
    /// `max_receives` times without being deleted.
    pub fn new(visibility: Duration, max_receives: u32) -> MemoryQueue {
        MemoryQueue {
            visibility,
            max_receives,
            state: Mutex::new(MemoryState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bodies of the jobs set aside.
    pub fn dead(&self) -> Vec<String> {
        self.state().dead.clone()
    }

    /// Puts a raw body on the queue (tests of poison jobs).
    pub fn send_raw(&self, body: String) {
        let mut state = self.state();
        state.next_id += 1;
        let id = state.next_id;
        state.waiting.push(Waiting {
            id,
            body,
            visible_at: yaks_common::clock::now(),
            receives: 0,
        });
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn send(&self, job: &JobMessage) -> Result<(), StoreError> {
        self.send_raw(body_of(job)?);
        Ok(())
    }

    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, StoreError> {
        let now = yaks_common::clock::now();
        let mut state = self.state();
        // As SQS's redrive: a job received `max_receives` times goes when it next shows.
        let (dead, waiting): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut state.waiting)
            .into_iter()
            .partition(|w| w.visible_at <= now && w.receives >= self.max_receives);
        state.waiting = waiting;
        state.dead.extend(dead.into_iter().map(|w| w.body));
        let mut out = Vec::new();
        for waiting in state.waiting.iter_mut() {
            if out.len() >= max {
                break;
            }
            if waiting.visible_at > now {
                continue;
            }
            waiting.receives += 1;
            waiting.visible_at = now + self.visibility;
            out.push(Delivery {
                job: parse(&waiting.body),
                receipt: waiting.id.to_string(),
                receive_count: waiting.receives,
            });
        }
        Ok(out)
    }

    async fn delete(&self, receipt: &str) -> Result<(), StoreError> {
        self.state().waiting.retain(|w| w.id.to_string() != receipt);
        Ok(())
    }
}

/// An SQS queue (a dead-letter queue is the queue's redrive policy).
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    visibility_timeout_s: i32,
}

fn sqs_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Retriable(format!("sqs {what}: {e}"))
}

impl SqsQueue {
    /// A client for SQS at `compactor.sqs_endpoint` (or AWS's), with the `s3` region and
    /// static credentials when set.
    pub async fn client(compactor: &CompactorConfig, s3: &S3Config) -> aws_sdk_sqs::Client {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(s3.region.clone()));
        if let Some(endpoint) = &compactor.sqs_endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
            loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
                id,
                secret,
                None,
                None,
                "yaks-config",
            ));
        }
        aws_sdk_sqs::Client::new(&loader.load().await)
    }

    /// The queue at `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String, visibility_timeout_s: i32) -> Self {
        SqsQueue {
            client,
            queue_url,
            visibility_timeout_s,
        }
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn send(&self, job: &JobMessage) -> Result<(), StoreError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body_of(job)?)
            .send()
            .await
            .map_err(|e| sqs_error("send", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        Ok(())
    }

    async fn receive(&self, max: usize) -> Result<Vec<Delivery>, StoreError> {
        let received = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .visibility_timeout(self.visibility_timeout_s)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sqs_error("receive", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        Ok(received
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receipt = m.receipt_handle?;
                let receive_count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Some(Delivery {
                    job: parse(m.body.as_deref().unwrap_or_default()),
                    receipt,
                    receive_count,
                })
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), StoreError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sqs_error("delete", aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> JobMessage {
        JobMessage {
            topic_id: Uuid::nil(),
            partition_index: 3,
            inputs: vec![JobInput {
                base_offset: 0,
                last_offset: 9,
                max_timestamp: 5,
                object_key: "k".into(),
                byte_offset: 0,
                byte_length: 10,
                object_size: 10,
                inline: None,
            }],
        }
    }

    /// On paused time: the visibility timeouts pass without the test waiting for them.
    #[tokio::test(start_paused = true)]
    async fn jobs_hide_while_received_come_back_and_poison_ends_up_dead() {
        let queue = MemoryQueue::new(Duration::from_secs(30), 2);
        queue.send(&message()).await.expect("send");
        let first = queue.receive(10).await.expect("receive");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].job.as_ref().expect("parses"), &message());
        assert!(
            queue.receive(10).await.expect("receive").is_empty(),
            "hidden"
        );
        yaks_common::clock::sleep(Duration::from_secs(31)).await;
        let again = queue.receive(10).await.expect("receive");
        assert_eq!(again[0].receive_count, 2, "not deleted: received again");
        queue.delete(&again[0].receipt).await.expect("delete");
        yaks_common::clock::sleep(Duration::from_secs(31)).await;
        assert!(queue.receive(10).await.expect("receive").is_empty(), "done");

        queue.send_raw("{not json".into());
        for _ in 0..2 {
            let poison = queue.receive(10).await.expect("receive");
            assert!(poison[0].job.is_err());
            yaks_common::clock::sleep(Duration::from_secs(31)).await;
        }
        assert!(queue.receive(10).await.expect("receive").is_empty());
        assert_eq!(queue.dead(), vec!["{not json".to_owned()]);
    }
}
