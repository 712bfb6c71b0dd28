//! ListGroups (key 16), v0–v5 (state filter from v4, type filter from v5).
//!
//! Like a Kafka broker, a gateway lists the groups it coordinates; admin clients ask every
//! broker and merge the answers.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use yaks_common::acl::Operation;
use yaks_common::kafka::str_bytes;

use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 5 };

/// Answers ListGroups.
pub async fn handle(context: RequestContext, request: ListGroupsRequest) -> ListGroupsResponse {
    let listed = match context.state.groups.list().await {
        Ok(listed) => listed,
        Err(e) => return ListGroupsResponse::default().with_error_code(e.code()),
    };
    let version = context.version;
    let wanted_state = |state: &str| {
        version < 4
            || request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|s| s.as_str().eq_ignore_ascii_case(state))
    };
    // Every group here is a classic group.
    let wanted_type = version < 5
        || request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|t| t.as_str().eq_ignore_ascii_case("classic"));
    // As Kafka: every group with DESCRIBE on the cluster, else those the principal may
    // describe.
    let all = context.allowed_on_cluster(Operation::Describe);
    let groups = listed
        .into_iter()
        .filter(|g| wanted_type && wanted_state(g.state))
        .filter(|g| all || context.allowed_on_group(Operation::Describe, &g.group_id))
        .map(|g| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type));
            if version >= 4 {
                listed.group_state = str_bytes(g.state);
            }
            if version >= 5 {
                listed.group_type = str_bytes("classic");
            }
            listed
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
