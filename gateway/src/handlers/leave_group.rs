//! LeaveGroup (key 13), v0–v5 (several members at once from v3).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use tracing::debug;
use yaks_common::acl::Operation;

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 5 };

/// Answers LeaveGroup.
pub async fn handle(context: RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse {
    if !context.allowed_on_group(Operation::Read, request.group_id.0.as_str()) {
        return LeaveGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let group_id = request.group_id.0.to_string();
    if group_id.is_empty() {
        return LeaveGroupResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    let leaving: Vec<(String, Option<String>)> = if context.version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                if let Some(reason) = &m.reason {
                    debug!(group = %group_id, member = %m.member_id.as_str(), reason = %reason.as_str(), "leave");
                }
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    match context.state.groups.leave(&group_id, &leaving).await {
        Err(error) => LeaveGroupResponse::default().with_error_code(error.code()),
        Ok(codes) if context.version >= 3 => LeaveGroupResponse::default().with_members(
            leaving
                .into_iter()
                .zip(codes)
                .map(|((member_id, instance_id), code)| {
                    MemberResponse::default()
                        .with_member_id(member_id.into())
                        .with_group_instance_id(instance_id.map(Into::into))
                        .with_error_code(code)
                })
                .collect(),
        ),
        Ok(codes) => LeaveGroupResponse::default()
            .with_error_code(codes.first().copied().unwrap_or_default()),
    }
}
