//! JoinGroup (key 11), v0–v9: joining a consumer group, waiting while it rebalances.
//!
//! v4+ dynamic members first get MEMBER_ID_REQUIRED with an id to join with; v5+ static
//! members (`group.instance.id`) keep their place across restarts. The state machine is in
//! [`crate::groups::state`]; this file translates the request and answer.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use tracing::debug;
use yaks_common::acl::Operation;
use yaks_common::kafka::str_bytes;

use super::{RequestContext, Versions};
use crate::groups::state::JoinRequest;

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 9 };

/// Answers JoinGroup.
pub async fn handle(context: RequestContext, request: JoinGroupRequest) -> JoinGroupResponse {
    if !context.allowed_on_group(Operation::Read, request.group_id.0.as_str()) {
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code())
            .with_generation_id(-1)
            .with_member_id(request.member_id);
    }
    let version = context.version;
    let group_id = request.group_id.0.to_string();
    if group_id.is_empty() {
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::InvalidGroupId.code())
            .with_generation_id(-1)
            .with_member_id(request.member_id);
    }
    if let Some(reason) = &request.reason {
        debug!(group = %group_id, member = %request.member_id.as_str(), reason = %reason.as_str(), "join");
    }
    let instance_id = request.group_instance_id.as_ref().map(|i| i.to_string());
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        require_known_member_id: version >= 4 && instance_id.is_none(),
        instance_id,
        client_id: context
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", context.connection.peer.ip()),
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        session_timeout_ms: request.session_timeout_ms,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
    };
    let result = context.state.groups.join(&group_id, join).await;
    let mut response = JoinGroupResponse::default()
        .with_error_code(result.error)
        .with_generation_id(result.generation)
        .with_protocol_name(result.protocol_name.as_deref().map(str_bytes))
        .with_leader(str_bytes(&result.leader))
        .with_member_id(str_bytes(&result.member_id))
        .with_members(
            result
                .members
                .iter()
                .map(|m| {
                    let mut member = JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_metadata(m.metadata.clone());
                    if version >= 5 {
                        member.group_instance_id = m.instance_id.as_deref().map(str_bytes);
                    }
                    member
                })
                .collect(),
        );
    if version >= 7 {
        response.protocol_type = result.protocol_type.as_deref().map(str_bytes);
    }
    if version < 7 && response.protocol_name.is_none() {
        // Before v7 the protocol name is not nullable.
        response.protocol_name = Some(str_bytes(""));
    }
    response
}
