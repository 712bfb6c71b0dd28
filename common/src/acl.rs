//! Kafka's access control lists and the decision they make, as Apache Kafka's
//! `StandardAuthorizer` makes it. Pure: the gateway's authorization (issue 22) asks
//! [`Acls::authorize`] with the ACLs it caches; CreateAcls, DescribeAcls and DeleteAcls
//! select bindings with [`AclFilter`].
//!
//! Vocabulary, Kafka's: a *binding* is a resource pattern (type, name, LITERAL or PREFIXED)
//! and an entry (principal, host, operation, ALLOW or DENY). A request is allowed when the
//! principal is a super user, or when some ALLOW binding matches and no DENY binding does
//! (DENY wins); with no matching binding it is denied (`allow.everyone.if.no.acl.found`
//! false). A binding matches a resource when its type is the resource's and its name is the
//! resource's name (LITERAL), `*` (LITERAL), or a prefix of it (PREFIXED); its principal is
//! the requester's or `User:*`; its host the client's or `*`; its operation the one asked,
//! `ALL`, or for ALLOW bindings one that implies it: READ, WRITE, DELETE and ALTER imply
//! DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS. DENY bindings imply nothing.

/// A resource type, by Kafka's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// Only in filters: any type.
    Any,
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// The cluster (`kafka-cluster`).
    Cluster,
    /// A transactional id.
    TransactionalId,
    /// Delegation tokens (not served by yaks; kept so bindings round-trip).
    DelegationToken,
    /// A user (for quotas and SCRAM; kept so bindings round-trip).
    User,
}

impl ResourceType {
    /// Kafka's name (`kafka-acls` and the admin clients print and parse these).
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Any => "ANY",
            ResourceType::Topic => "TOPIC",
            ResourceType::Group => "GROUP",
            ResourceType::Cluster => "CLUSTER",
            ResourceType::TransactionalId => "TRANSACTIONAL_ID",
            ResourceType::DelegationToken => "DELEGATION_TOKEN",
            ResourceType::User => "USER",
        }
    }

    /// The value Kafka names `name` (any case; `-` or `_` between words).
    pub fn from_name(name: &str) -> Option<ResourceType> {
        let wanted = name.replace('-', "_");
        (1..=7)
            .filter_map(ResourceType::from_code)
            .find(|v| v.name().eq_ignore_ascii_case(&wanted))
    }

    /// Kafka's code.
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Any => 1,
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
            ResourceType::DelegationToken => 6,
            ResourceType::User => 7,
        }
    }

    /// The type with Kafka code `code`.
    pub fn from_code(code: i8) -> Option<ResourceType> {
        Some(match code {
            1 => ResourceType::Any,
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            6 => ResourceType::DelegationToken,
            7 => ResourceType::User,
            _ => return None,
        })
    }
}

/// How a binding's resource name is read, by Kafka's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    /// Only in filters: any pattern type.
    Any,
    /// Only in filters: every binding that applies to the filter's resource name.
    Match,
    /// The name itself, or `*` for every resource of the type.
    Literal,
    /// Every resource whose name starts with the name.
    Prefixed,
}

impl PatternType {
    /// Kafka's name (`kafka-acls` and the admin clients print and parse these).
    pub fn name(self) -> &'static str {
        match self {
            PatternType::Any => "ANY",
            PatternType::Match => "MATCH",
            PatternType::Literal => "LITERAL",
            PatternType::Prefixed => "PREFIXED",
        }
    }

    /// The value Kafka names `name` (any case; `-` or `_` between words).
    pub fn from_name(name: &str) -> Option<PatternType> {
        let wanted = name.replace('-', "_");
        (1..=4)
            .filter_map(PatternType::from_code)
            .find(|v| v.name().eq_ignore_ascii_case(&wanted))
    }

    /// Kafka's code.
    pub fn code(self) -> i8 {
        match self {
            PatternType::Any => 1,
            PatternType::Match => 2,
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    /// The pattern type with Kafka code `code`.
    pub fn from_code(code: i8) -> Option<PatternType> {
        Some(match code {
            1 => PatternType::Any,
            2 => PatternType::Match,
            3 => PatternType::Literal,
            4 => PatternType::Prefixed,
            _ => return None,
        })
    }
}

/// An operation, by Kafka's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Only in filters: any operation.
    Any,
    /// Every operation.
    All,
    /// Read.
    Read,
    /// Write.
    Write,
    /// Create.
    Create,
    /// Delete.
    Delete,
    /// Alter.
    Alter,
    /// Describe.
    Describe,
    /// Cluster action (between brokers).
    ClusterAction,
    /// Describe configs.
    DescribeConfigs,
    /// Alter configs.
    AlterConfigs,
    /// Idempotent write.
    IdempotentWrite,
    /// Create delegation tokens.
    CreateTokens,
    /// Describe delegation tokens.
    DescribeTokens,
}

impl Operation {
    /// Kafka's name (`kafka-acls` and the admin clients print and parse these).
    pub fn name(self) -> &'static str {
        match self {
            Operation::Any => "ANY",
            Operation::All => "ALL",
            Operation::Read => "READ",
            Operation::Write => "WRITE",
            Operation::Create => "CREATE",
            Operation::Delete => "DELETE",
            Operation::Alter => "ALTER",
            Operation::Describe => "DESCRIBE",
            Operation::ClusterAction => "CLUSTER_ACTION",
            Operation::DescribeConfigs => "DESCRIBE_CONFIGS",
            Operation::AlterConfigs => "ALTER_CONFIGS",
            Operation::IdempotentWrite => "IDEMPOTENT_WRITE",
            Operation::CreateTokens => "CREATE_TOKENS",
            Operation::DescribeTokens => "DESCRIBE_TOKENS",
        }
    }

    /// The value Kafka names `name` (any case; `-` or `_` between words).
    pub fn from_name(name: &str) -> Option<Operation> {
        let wanted = name.replace('-', "_");
        (1..=14)
            .filter_map(Operation::from_code)
            .find(|v| v.name().eq_ignore_ascii_case(&wanted))
    }

    /// Kafka's code.
    pub fn code(self) -> i8 {
        match self {
            Operation::Any => 1,
            Operation::All => 2,
            Operation::Read => 3,
            Operation::Write => 4,
            Operation::Create => 5,
            Operation::Delete => 6,
            Operation::Alter => 7,
            Operation::Describe => 8,
            Operation::ClusterAction => 9,
            Operation::DescribeConfigs => 10,
            Operation::AlterConfigs => 11,
            Operation::IdempotentWrite => 12,
            Operation::CreateTokens => 13,
            Operation::DescribeTokens => 14,
        }
    }

    /// The operation with Kafka code `code`.
    pub fn from_code(code: i8) -> Option<Operation> {
        Some(match code {
            1 => Operation::Any,
            2 => Operation::All,
            3 => Operation::Read,
            4 => Operation::Write,
            5 => Operation::Create,
            6 => Operation::Delete,
            7 => Operation::Alter,
            8 => Operation::Describe,
            9 => Operation::ClusterAction,
            10 => Operation::DescribeConfigs,
            11 => Operation::AlterConfigs,
            12 => Operation::IdempotentWrite,
            13 => Operation::CreateTokens,
            14 => Operation::DescribeTokens,
            _ => return None,
        })
    }

    /// Whether an ALLOW binding for `self` allows `asked`.
    fn allows(self, asked: Operation) -> bool {
        self == asked
            || self == Operation::All
            || (asked == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
            || (asked == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }
}

/// ALLOW or DENY, by Kafka's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Only in filters: either.
    Any,
    /// Denies; wins over every ALLOW.
    Deny,
    /// Allows.
    Allow,
}

impl Permission {
    /// Kafka's name (`kafka-acls` and the admin clients print and parse these).
    pub fn name(self) -> &'static str {
        match self {
            Permission::Any => "ANY",
            Permission::Deny => "DENY",
            Permission::Allow => "ALLOW",
        }
    }

    /// The value Kafka names `name` (any case; `-` or `_` between words).
    pub fn from_name(name: &str) -> Option<Permission> {
        let wanted = name.replace('-', "_");
        (1..=3)
            .filter_map(Permission::from_code)
            .find(|v| v.name().eq_ignore_ascii_case(&wanted))
    }

    /// Kafka's code.
    pub fn code(self) -> i8 {
        match self {
            Permission::Any => 1,
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }

    /// The permission with Kafka code `code`.
    pub fn from_code(code: i8) -> Option<Permission> {
        Some(match code {
            1 => Permission::Any,
            2 => Permission::Deny,
            3 => Permission::Allow,
            _ => return None,
        })
    }
}

/// One ACL: a resource pattern and who may or may not do what to it from where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    /// Never `Any`.
    pub resource_type: ResourceType,
    /// A name, `*` (LITERAL only), or a prefix.
    pub resource_name: String,
    /// `Literal` or `Prefixed`.
    pub pattern_type: PatternType,
    /// `User:alice`, or `User:*` for everyone.
    pub principal: String,
    /// A client address, or `*`.
    pub host: String,
    /// Never `Any`.
    pub operation: Operation,
    /// `Allow` or `Deny`.
    pub permission: Permission,
}

impl AclBinding {
    /// Why Kafka would refuse to create this binding (INVALID_REQUEST), if it would.
    pub fn invalid(&self) -> Option<&'static str> {
        if self.resource_type == ResourceType::Any {
            return Some("the resource type must not be ANY");
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return Some("the pattern type must be LITERAL or PREFIXED");
        }
        if self.operation == Operation::Any {
            return Some("the operation must not be ANY");
        }
        if self.permission == Permission::Any {
            return Some("the permission must be ALLOW or DENY");
        }
        if self.resource_name.is_empty() {
            return Some("the resource name must not be empty");
        }
        if self.pattern_type == PatternType::Prefixed && self.resource_name == "*" {
            return Some("a PREFIXED pattern cannot be *");
        }
        if !self.principal.contains(':') {
            return Some("the principal must be TYPE:NAME, such as User:alice");
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != "kafka-cluster" {
            return Some("the cluster resource is named kafka-cluster");
        }
        None
    }

    /// Whether the binding's pattern covers the resource `name` of its type.
    fn covers(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == name || self.resource_name == "*",
            PatternType::Prefixed => name.starts_with(&self.resource_name),
            PatternType::Any | PatternType::Match => false,
        }
    }
}

/// Which bindings DescribeAcls and DeleteAcls select: each field matches anything when it is
/// `Any`/`None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    /// A type, or `Any`.
    pub resource_type: ResourceType,
    /// A name; `None` matches any.
    pub resource_name: Option<String>,
    /// `Any`, `Match` (bindings that apply to `resource_name`), `Literal` or `Prefixed`.
    pub pattern_type: PatternType,
    /// A principal; `None` matches any.
    pub principal: Option<String>,
    /// A host; `None` matches any.
    pub host: Option<String>,
    /// An operation, or `Any`.
    pub operation: Operation,
    /// A permission, or `Any`.
    pub permission: Permission,
}

impl AclFilter {
    /// Whether `binding` is selected.
    pub fn selects(&self, binding: &AclBinding) -> bool {
        let type_ok =
            self.resource_type == ResourceType::Any || self.resource_type == binding.resource_type;
        let pattern_ok = match (self.pattern_type, &self.resource_name) {
            (PatternType::Any, None) => true,
            (PatternType::Any, Some(name)) => &binding.resource_name == name,
            (PatternType::Match, None) => true,
            (PatternType::Match, Some(name)) => binding.covers(name),
            (wanted, name) => {
                binding.pattern_type == wanted
                    && name.as_ref().is_none_or(|n| &binding.resource_name == n)
            }
        };
        type_ok
            && pattern_ok
            && self
                .principal
                .as_ref()
                .is_none_or(|p| p == &binding.principal)
            && self.host.as_ref().is_none_or(|h| h == &binding.host)
            && (self.operation == Operation::Any || self.operation == binding.operation)
            && (self.permission == Permission::Any || self.permission == binding.permission)
    }
}

/// A request to authorize: who, from where, what, on which resource.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `User:alice`.
    pub principal: &'a str,
    /// The client's address.
    pub host: &'a str,
    /// What it wants to do.
    pub operation: Operation,
    /// To what kind of resource.
    pub resource_type: ResourceType,
    /// Named what (`kafka-cluster` for the cluster).
    pub resource_name: &'a str,
}

/// The bindings in force and the super users: what every authorization decision reads.
#[derive(Debug, Clone, Default)]
pub struct Acls {
    bindings: Vec<AclBinding>,
    super_users: Vec<String>,
}

impl Acls {
    /// `bindings` in force, with `super_users` (principals allowed everything).
    pub fn new(bindings: Vec<AclBinding>, super_users: Vec<String>) -> Acls {
        Acls {
            bindings,
            super_users,
        }
    }

    /// Every binding in force.
    pub fn bindings(&self) -> &[AclBinding] {
        &self.bindings
    }

    /// Whether `request` is allowed (see the module's documentation).
    pub fn authorize(&self, request: &Request<'_>) -> bool {
        if self.super_users.iter().any(|s| s == request.principal) {
            return true;
        }
        let mut allowed = false;
        for binding in &self.bindings {
            let applies = binding.resource_type == request.resource_type
                && binding.covers(request.resource_name)
                && (binding.principal == request.principal || binding.principal == "User:*")
                && (binding.host == request.host || binding.host == "*");
            if !applies {
                continue;
            }
            match binding.permission {
                Permission::Deny
                    if binding.operation == request.operation
                        || binding.operation == Operation::All =>
                {
                    return false;
                }
                Permission::Allow if binding.operation.allows(request.operation) => {
                    allowed = true;
                }
                _ => {}
            }
        }
        allowed
    }

    /// Whether `principal` from `host` may do `operation` to some resource of
    /// `resource_type`, as Kafka's `authorizeByResourceType` decides (InitProducerId asks
    /// it for an idempotent producer: WRITE on any topic will do): some ALLOW binding
    /// applies whose pattern no DENY binding covers whole.
    pub fn authorize_any(
        &self,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if self.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let applying = |b: &&AclBinding| {
            b.resource_type == resource_type
                && (b.principal == principal || b.principal == "User:*")
                && (b.host == host || b.host == "*")
        };
        let denies: Vec<&AclBinding> = self
            .bindings
            .iter()
            .filter(applying)
            .filter(|b| {
                b.permission == Permission::Deny
                    && (b.operation == operation || b.operation == Operation::All)
            })
            .collect();
        let denied = |allow: &AclBinding| {
            denies.iter().any(|deny| match deny.pattern_type {
                PatternType::Literal => {
                    deny.resource_name == "*"
                        || (allow.pattern_type == PatternType::Literal
                            && deny.resource_name == allow.resource_name)
                }
                PatternType::Prefixed => allow.resource_name.starts_with(&deny.resource_name),
                PatternType::Any | PatternType::Match => false,
            })
        };
        self.bindings.iter().filter(applying).any(|b| {
            b.permission == Permission::Allow && b.operation.allows(operation) && !denied(b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(
        resource_type: ResourceType,
        name: &str,
        pattern_type: PatternType,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.into(),
            pattern_type,
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission,
        }
    }

    fn ask<'a>(principal: &'a str, operation: Operation, topic: &'a str) -> Request<'a> {
        Request {
            principal,
            host: "10.0.0.1",
            operation,
            resource_type: ResourceType::Topic,
            resource_name: topic,
        }
    }

    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::Topic;

    #[test]
    fn nothing_is_allowed_without_a_binding_except_to_super_users() {
        let acls = Acls::new(Vec::new(), vec!["User:admin".into()]);
        assert!(!acls.authorize(&ask("User:alice", Read, "orders")));
        assert!(acls.authorize(&ask("User:admin", Read, "orders")));
    }

    #[test]
    fn literal_wildcard_and_prefixed_patterns_cover_their_names() {
        let acls = Acls::new(
            vec![
                binding(Topic, "orders", Literal, "User:alice", Read, Allow),
                binding(Topic, "*", Literal, "User:bob", Write, Allow),
                binding(Topic, "payments-", Prefixed, "User:carol", Read, Allow),
            ],
            Vec::new(),
        );
        assert!(acls.authorize(&ask("User:alice", Read, "orders")));
        assert!(!acls.authorize(&ask("User:alice", Read, "orders-eu")));
        assert!(acls.authorize(&ask("User:bob", Write, "anything")));
        assert!(acls.authorize(&ask("User:carol", Read, "payments-eu")));
        assert!(!acls.authorize(&ask("User:carol", Read, "payment")));
    }

    #[test]
    fn some_resource_of_a_type_is_allowed_unless_every_allowing_pattern_is_denied() {
        let write = |name: &str, pattern, permission| {
            binding(Topic, name, pattern, "User:alice", Write, permission)
        };
        let any = |acls: &Acls| acls.authorize_any("User:alice", "10.0.0.1", Write, Topic);
        assert!(!any(&Acls::default()));
        let allowed = vec![write("orders", Literal, Allow)];
        assert!(any(&Acls::new(allowed.clone(), vec![])));
        let mut denied = allowed.clone();
        denied.push(write("ord", Prefixed, Deny));
        assert!(!any(&Acls::new(denied, vec![])));
        let mut elsewhere = allowed.clone();
        elsewhere.push(write("payments", Literal, Deny));
        assert!(any(&Acls::new(elsewhere, vec![])));
        let mut everything = allowed;
        everything.push(write("*", Literal, Deny));
        assert!(!any(&Acls::new(everything, vec![])));
        assert!(any(&Acls::new(vec![], vec!["User:alice".into()])));
    }

    #[test]
    fn deny_wins_and_implies_nothing() {
        let acls = Acls::new(
            vec![
                binding(Topic, "*", Literal, "User:*", All, Allow),
                binding(Topic, "secret-", Prefixed, "User:alice", Read, Deny),
            ],
            Vec::new(),
        );
        assert!(!acls.authorize(&ask("User:alice", Read, "secret-plans")));
        // DENY READ does not deny DESCRIBE, which the ALLOW ALL still grants.
        assert!(acls.authorize(&ask("User:alice", Describe, "secret-plans")));
        assert!(acls.authorize(&ask("User:bob", Read, "secret-plans")));
    }

    #[test]
    fn read_write_delete_and_alter_imply_describe_and_alter_configs_implies_describe_configs() {
        for granted in [Read, Write, Delete, Alter] {
            let acls = Acls::new(
                vec![binding(Topic, "t", Literal, "User:a", granted, Allow)],
                Vec::new(),
            );
            assert!(acls.authorize(&ask("User:a", Describe, "t")), "{granted:?}");
            assert!(
                !acls.authorize(&ask("User:a", DescribeConfigs, "t")),
                "{granted:?}"
            );
        }
        let acls = Acls::new(
            vec![binding(Topic, "t", Literal, "User:a", AlterConfigs, Allow)],
            Vec::new(),
        );
        assert!(acls.authorize(&ask("User:a", DescribeConfigs, "t")));
        assert!(!acls.authorize(&ask("User:a", Describe, "t")));
    }

    #[test]
    fn hosts_and_resource_types_must_match() {
        let mut from_one_host = binding(Topic, "t", Literal, "User:a", Read, Allow);
        from_one_host.host = "10.0.0.9".into();
        let group = binding(ResourceType::Group, "t", Literal, "User:a", Read, Allow);
        let acls = Acls::new(vec![from_one_host, group], Vec::new());
        assert!(!acls.authorize(&ask("User:a", Read, "t")));
        let mut elsewhere = ask("User:a", Read, "t");
        elsewhere.host = "10.0.0.9";
        assert!(acls.authorize(&elsewhere));
    }

    #[test]
    fn filters_select_as_describe_and_delete_acls_do() {
        let literal = binding(Topic, "orders", Literal, "User:a", Read, Allow);
        let wildcard = binding(Topic, "*", Literal, "User:b", Write, Allow);
        let prefixed = binding(Topic, "ord", Prefixed, "User:c", Read, Deny);
        let all = AclFilter {
            resource_type: ResourceType::Any,
            resource_name: None,
            pattern_type: PatternType::Any,
            principal: None,
            host: None,
            operation: Operation::Any,
            permission: Permission::Any,
        };
        for b in [&literal, &wildcard, &prefixed] {
            assert!(all.selects(b));
        }
        let matching = AclFilter {
            resource_type: Topic,
            resource_name: Some("orders".into()),
            pattern_type: Match,
            ..all.clone()
        };
        assert!(matching.selects(&literal) && matching.selects(&wildcard));
        assert!(matching.selects(&prefixed));
        let exact = AclFilter {
            pattern_type: Literal,
            ..matching.clone()
        };
        assert!(exact.selects(&literal) && !exact.selects(&wildcard) && !exact.selects(&prefixed));
        let denies = AclFilter {
            permission: Deny,
            ..all
        };
        assert!(denies.selects(&prefixed) && !denies.selects(&literal));
    }

    #[test]
    fn invalid_bindings_are_named() {
        let mut b = binding(Topic, "*", Prefixed, "User:a", Read, Allow);
        assert!(b.invalid().is_some());
        b.pattern_type = Literal;
        assert!(b.invalid().is_none());
        b.principal = "alice".into();
        assert!(b.invalid().is_some());
        let cluster = binding(
            ResourceType::Cluster,
            "other",
            Literal,
            "User:a",
            Alter,
            Allow,
        );
        assert!(cluster.invalid().is_some());
    }

    #[test]
    fn names_round_trip() {
        for code in 1..=14 {
            if let Some(op) = Operation::from_code(code) {
                assert_eq!(Operation::from_name(op.name()), Some(op));
            }
        }
        assert_eq!(
            ResourceType::from_name("transactional-id"),
            Some(ResourceType::TransactionalId)
        );
        assert_eq!(
            PatternType::from_name("prefixed"),
            Some(PatternType::Prefixed)
        );
        assert_eq!(Permission::from_name("Deny"), Some(Permission::Deny));
        assert_eq!(
            Operation::from_name("idempotent_write"),
            Some(Operation::IdempotentWrite)
        );
        assert_eq!(Operation::from_name("fly"), None);
    }

    #[test]
    fn codes_round_trip() {
        for code in 1..=14 {
            assert_eq!(Operation::from_code(code).map(Operation::code), Some(code));
        }
        for code in 1..=7 {
            assert_eq!(
                ResourceType::from_code(code).map(ResourceType::code),
                Some(code)
            );
        }
        for code in 1..=4 {
            assert_eq!(
                PatternType::from_code(code).map(PatternType::code),
                Some(code)
            );
        }
        for code in 1..=3 {
            assert_eq!(
                Permission::from_code(code).map(Permission::code),
                Some(code)
            );
        }
        assert_eq!(Operation::from_code(0), None);
    }
}
