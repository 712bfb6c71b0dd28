//! What CreateAcls, DescribeAcls and DeleteAcls share: reading bindings and filters off the
//! wire, and the answers Kafka gives before any binding is looked at.

use kafka_protocol::ResponseError;
use yaks_common::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};

use super::RequestContext;

/// Why the request cannot touch ACLs at all, as Kafka says it: SECURITY_DISABLED without
/// an authorizer, else CLUSTER_AUTHORIZATION_FAILED unless the principal may do
/// `operation` (ALTER to create or delete, DESCRIBE to describe) to the cluster.
pub fn refusal(context: &RequestContext, operation: Operation) -> Option<(i16, &'static str)> {
    if !context.state.authorizer.enabled() {
        return Some((
            ResponseError::SecurityDisabled.code(),
            "No Authorizer is configured.",
        ));
    }
    if !context.allowed_on_cluster(operation) {
        return Some((
            ResponseError::ClusterAuthorizationFailed.code(),
            "Cluster authorization failed.",
        ));
    }
    None
}

/// The fields every binding and filter carries on the wire, by Kafka's codes.
pub struct Wire<'a> {
    /// Resource type code.
    pub resource_type: i8,
    /// Resource name (`None`: any, in filters).
    pub resource_name: Option<&'a str>,
    /// Pattern type code.
    pub pattern_type: i8,
    /// Principal (`None`: any, in filters).
    pub principal: Option<&'a str>,
    /// Host (`None`: any, in filters).
    pub host: Option<&'a str>,
    /// Operation code.
    pub operation: i8,
    /// Permission code.
    pub permission: i8,
}

impl Wire<'_> {
    /// The filter these fields describe, or why it is not one (INVALID_REQUEST).
    pub fn filter(&self) -> Result<AclFilter, String> {
        let filter = AclFilter {
            resource_type: ResourceType::from_code(self.resource_type)
                .ok_or_else(|| format!("unknown resource type {}", self.resource_type))?,
            resource_name: self.resource_name.map(str::to_owned),
            pattern_type: PatternType::from_code(self.pattern_type)
                .ok_or_else(|| format!("unknown pattern type {}", self.pattern_type))?,
            principal: self.principal.map(str::to_owned),
            host: self.host.map(str::to_owned),
            operation: Operation::from_code(self.operation)
                .ok_or_else(|| format!("unknown operation {}", self.operation))?,
            permission: Permission::from_code(self.permission)
                .ok_or_else(|| format!("unknown permission type {}", self.permission))?,
        };
        Ok(filter)
    }

    /// The binding these fields describe, or why Kafka would not create it.
    pub fn binding(&self) -> Result<AclBinding, String> {
        let filter = self.filter()?;
        let binding = AclBinding {
            resource_type: filter.resource_type,
            resource_name: filter.resource_name.unwrap_or_default(),
            pattern_type: filter.pattern_type,
            principal: filter.principal.unwrap_or_default(),
            host: filter.host.unwrap_or_default(),
            operation: filter.operation,
            permission: filter.permission,
        };
        match binding.invalid() {
            Some(problem) => Err(problem.to_owned()),
            None => Ok(binding),
        }
    }
}
