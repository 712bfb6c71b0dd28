//! OffsetDelete (key 47), v0: deletes a group's committed offsets of some partitions,
//! refused (GROUP_SUBSCRIBED_TO_TOPIC) for topics the group's consumers subscribe to.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use yaks_common::acl::Operation;

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 0 };

/// Answers OffsetDelete.
pub async fn handle(context: RequestContext, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    if !context.allowed_on_group(Operation::Delete, request.group_id.0.as_str()) {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let readable: Vec<bool> = request
        .topics
        .iter()
        .map(|t| context.allowed_on_topic(Operation::Read, t.name.0.as_str()))
        .collect();
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .zip(&readable)
        .filter(|(_, readable)| **readable)
        .flat_map(|(t, _)| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let codes = match context
        .state
        .groups
        .delete_offsets(request.group_id.0.as_str(), &partitions)
        .await
    {
        Ok(codes) => codes,
        Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
    };
    let mut codes = codes.into_iter();
    OffsetDeleteResponse::default().with_topics(
        request
            .topics
            .iter()
            .zip(&readable)
            .map(|(t, readable)| {
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let code = if *readable {
                                    codes.next().unwrap_or_default()
                                } else {
                                    ResponseError::TopicAuthorizationFailed.code()
                                };
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
