//! DeleteGroups (key 42), v0–v2: removes empty groups with their committed offsets.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use yaks_common::acl::Operation;

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 2 };

/// Answers DeleteGroups.
pub async fn handle(context: RequestContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in &request.groups_names {
        let code = if !context.allowed_on_group(Operation::Delete, group_id.0.as_str()) {
            ResponseError::GroupAuthorizationFailed.code()
        } else {
            match context.state.groups.delete(group_id.0.as_str()).await {
                Ok(()) => 0,
                Err(e) => e.code(),
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id.clone())
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
