//! SyncGroup (key 14), v0–v5: the leader hands in the assignment, every member gets its part.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use yaks_common::acl::Operation;

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 5 };

/// Answers SyncGroup.
pub async fn handle(context: RequestContext, request: SyncGroupRequest) -> SyncGroupResponse {
    if !context.allowed_on_group(Operation::Read, request.group_id.0.as_str()) {
        return SyncGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let group_id = request.group_id.0.to_string();
    if group_id.is_empty() {
        return SyncGroupResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    let groups = &context.state.groups;
    let instance_id = request.group_instance_id.as_ref().map(|i| i.to_string());
    let assignment = request
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let result = groups
        .sync(
            &group_id,
            request.member_id.as_str(),
            instance_id.as_deref(),
            request.generation_id,
            assignment,
        )
        .await;
    let mut response = SyncGroupResponse::default()
        .with_error_code(result.error)
        .with_assignment(result.assignment);
    if context.version >= 5 {
        // The member's own view, which it checks against the JoinGroup answer.
        response.protocol_type = request.protocol_type;
        response.protocol_name = request.protocol_name;
    }
    response
}
