//! CreateAcls (key 30), v1–3: adds ACL bindings, which every gateway applies within a
//! second (PostgreSQL's NOTIFY reaches their caches).
//!
//! As Kafka: SECURITY_DISABLED without authorization, CLUSTER_AUTHORIZATION_FAILED without
//! ALTER on the cluster, INVALID_REQUEST for a binding Kafka would not create (an ANY
//! field, a PREFIXED `*`, a principal without a type…), one result per creation in order.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use tracing::{info, warn};
use yaks_common::acl::Operation;
use yaks_common::kafka::str_bytes;

use super::acls::{Wire, refusal};
use super::{RequestContext, Versions};

/// Supported versions (Kafka 4 dropped v0).
pub const VERSIONS: Versions = Versions { min: 1, max: 3 };

fn failed(code: i16, message: &str) -> AclCreationResult {
    AclCreationResult::default()
        .with_error_code(code)
        .with_error_message(Some(str_bytes(message)))
}

/// Answers CreateAcls.
pub async fn handle(context: RequestContext, request: CreateAclsRequest) -> CreateAclsResponse {
    let all_failed = |code: i16, message: &str| {
        let results = request
            .creations
            .iter()
            .map(|_| failed(code, message))
            .collect();
        CreateAclsResponse::default().with_results(results)
    };
    if let Some((code, message)) = refusal(&context, Operation::Alter) {
        return all_failed(code, message);
    }
    let parsed: Vec<Result<_, String>> = request
        .creations
        .iter()
        .map(|c| {
            Wire {
                resource_type: c.resource_type,
                resource_name: Some(&c.resource_name),
                pattern_type: c.resource_pattern_type,
                principal: Some(&c.principal),
                host: Some(&c.host),
                operation: c.operation,
                permission: c.permission_type,
            }
            .binding()
        })
        .collect();
    let valid: Vec<_> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .cloned()
        .collect();
    if !valid.is_empty() {
        if let Err(e) = context.state.metastore.create_acls(&valid).await {
            warn!(error = %e, "storing acl bindings failed");
            return all_failed(
                ResponseError::UnknownServerError.code(),
                "storing the ACL bindings failed",
            );
        }
        info!(principal = %context.connection.principal, count = valid.len(), "acl bindings created");
    }
    let results = parsed
        .into_iter()
        .map(|p| match p {
            Ok(_) => AclCreationResult::default(),
            Err(problem) => failed(ResponseError::InvalidRequest.code(), &problem),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}
