//! DescribeGroups (key 15), v0–v5: state, protocol, members and their assignments.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use yaks_common::acl::Operation;
use yaks_common::kafka::str_bytes;

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 5 };

/// "Not requested" in `authorized_operations`.
const NO_OPERATIONS: i32 = i32::MIN;

/// Answers DescribeGroups.
pub async fn handle(
    context: RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let version = context.version;
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in &request.groups {
        let mut described = DescribedGroup::default().with_group_id(group_id.clone());
        if version >= 3 {
            described.authorized_operations = if request.include_authorized_operations {
                group_operations(&context, group_id.0.as_str())
            } else {
                NO_OPERATIONS
            };
        }
        if !context.allowed_on_group(Operation::Describe, group_id.0.as_str()) {
            described.error_code = ResponseError::GroupAuthorizationFailed.code();
            groups.push(described);
            continue;
        }
        match context.state.groups.describe(group_id.0.as_str()).await {
            Err(e) => described.error_code = e.code(),
            Ok(group) => {
                described.group_state = str_bytes(group.state);
                described.protocol_type = str_bytes(&group.protocol_type);
                described.protocol_data = str_bytes(&group.protocol);
                described.members = group
                    .members
                    .iter()
                    .map(|m| {
                        let mut member = DescribedGroupMember::default()
                            .with_member_id(str_bytes(&m.member_id))
                            .with_client_id(str_bytes(&m.client_id))
                            .with_client_host(str_bytes(&m.client_host))
                            .with_member_metadata(m.metadata.clone())
                            .with_member_assignment(m.assignment.clone());
                        if version >= 4 {
                            member.group_instance_id = m.instance_id.as_deref().map(str_bytes);
                        }
                        member
                    })
                    .collect();
            }
        }
        groups.push(described);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

/// The bit field of what the principal may do to `group` (Kafka's group operations:
/// READ, DESCRIBE, DELETE), as `authorized_operations`.
fn group_operations(context: &RequestContext, group: &str) -> i32 {
    [Operation::Read, Operation::Describe, Operation::Delete]
        .into_iter()
        .filter(|op| context.allowed_on_group(*op, group))
        .fold(0, |bits, op| bits | (1 << op.code()))
}
