//! DescribeAcls (key 29), v1–3: the bindings a filter selects, grouped by resource pattern,
//! from this gateway's cache (the bindings it decides with, at most a second behind the
//! store).

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use yaks_common::acl::Operation;
use yaks_common::kafka::str_bytes;

use super::acls::{Wire, refusal};
use super::{RequestContext, Versions};

/// Supported versions (Kafka 4 dropped v0).
pub const VERSIONS: Versions = Versions { min: 1, max: 3 };

/// Answers DescribeAcls.
pub async fn handle(context: RequestContext, request: DescribeAclsRequest) -> DescribeAclsResponse {
    let refused = |code: i16, message: &str| {
        DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
    };
    if let Some((code, message)) = refusal(&context, Operation::Describe) {
        return refused(code, message);
    }
    let filter = Wire {
        resource_type: request.resource_type_filter,
        resource_name: request.resource_name_filter.as_deref(),
        pattern_type: request.pattern_type_filter,
        principal: request.principal_filter.as_deref(),
        host: request.host_filter.as_deref(),
        operation: request.operation,
        permission: request.permission_type,
    }
    .filter();
    let filter = match filter {
        Ok(filter) => filter,
        Err(problem) => return refused(ResponseError::InvalidRequest.code(), &problem),
    };
    let acls = context.state.authorizer.acls();
    let mut resources: BTreeMap<_, Vec<AclDescription>> = BTreeMap::new();
    for b in acls.bindings().iter().filter(|b| filter.selects(b)) {
        resources
            .entry((b.resource_type, b.resource_name.as_str(), b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(&b.principal))
                    .with_host(str_bytes(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    let resources = resources
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type.code())
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pattern_type.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}
