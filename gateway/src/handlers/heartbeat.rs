//! Heartbeat (key 12), v0–v4: keeps a member's session alive; tells it when to rejoin.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use yaks_common::acl::Operation;

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 4 };

/// Answers Heartbeat.
pub async fn handle(context: RequestContext, request: HeartbeatRequest) -> HeartbeatResponse {
    if !context.allowed_on_group(Operation::Read, request.group_id.0.as_str()) {
        return HeartbeatResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let group_id = request.group_id.0.as_str();
    if group_id.is_empty() {
        return HeartbeatResponse::default().with_error_code(ResponseError::InvalidGroupId.code());
    }
    let instance_id = request.group_instance_id.as_ref().map(|i| i.to_string());
    let code = context
        .state
        .groups
        .heartbeat(
            group_id,
            request.member_id.as_str(),
            instance_id.as_deref(),
            request.generation_id,
        )
        .await;
    HeartbeatResponse::default().with_error_code(code)
}
