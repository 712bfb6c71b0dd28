//! DeleteAcls (key 31), v1–3: removes the bindings each filter selects, answering with
//! them, one result per filter in order.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use tracing::{info, warn};
use yaks_common::acl::Operation;
use yaks_common::kafka::str_bytes;

use super::acls::{Wire, refusal};
use super::{RequestContext, Versions};

/// Supported versions (Kafka 4 dropped v0).
pub const VERSIONS: Versions = Versions { min: 1, max: 3 };

fn failed(code: i16, message: &str) -> DeleteAclsFilterResult {
    DeleteAclsFilterResult::default()
        .with_error_code(code)
        .with_error_message(Some(str_bytes(message)))
}

/// Answers DeleteAcls.
pub async fn handle(context: RequestContext, request: DeleteAclsRequest) -> DeleteAclsResponse {
    if let Some((code, message)) = refusal(&context, Operation::Alter) {
        let results = request
            .filters
            .iter()
            .map(|_| failed(code, message))
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let mut results = Vec::with_capacity(request.filters.len());
    for f in &request.filters {
        let filter = Wire {
            resource_type: f.resource_type_filter,
            resource_name: f.resource_name_filter.as_deref(),
            pattern_type: f.pattern_type_filter,
            principal: f.principal_filter.as_deref(),
            host: f.host_filter.as_deref(),
            operation: f.operation,
            permission: f.permission_type,
        }
        .filter();
        let filter = match filter {
            Ok(filter) => filter,
            Err(problem) => {
                results.push(failed(ResponseError::InvalidRequest.code(), &problem));
                continue;
            }
        };
        let deleted = match context.state.metastore.delete_acls(&filter).await {
            Ok(deleted) => deleted,
            Err(e) => {
                warn!(error = %e, "deleting acl bindings failed");
                results.push(failed(
                    ResponseError::UnknownServerError.code(),
                    "deleting the ACL bindings failed",
                ));
                continue;
            }
        };
        if !deleted.is_empty() {
            info!(principal = %context.connection.principal, count = deleted.len(), "acl bindings deleted");
        }
        let matching = deleted
            .iter()
            .map(|b| {
                DeleteAclsMatchingAcl::default()
                    .with_resource_type(b.resource_type.code())
                    .with_resource_name(str_bytes(&b.resource_name))
                    .with_pattern_type(b.pattern_type.code())
                    .with_principal(str_bytes(&b.principal))
                    .with_host(str_bytes(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code())
            })
            .collect();
        results.push(DeleteAclsFilterResult::default().with_matching_acls(matching));
    }
    DeleteAclsResponse::default().with_filter_results(results)
}
