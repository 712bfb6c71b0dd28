//! OffsetDelete (key 47), v0: deletes a group's committed offsets of some partitions,
//! refused (GROUP_SUBSCRIBED_TO_TOPIC) for topics the group's consumers subscribe to.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 0 };

/// Answers OffsetDelete.
pub async fn handle(context: RequestContext, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
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
            .map(|t| {
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(codes.next().unwrap_or_default())
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
