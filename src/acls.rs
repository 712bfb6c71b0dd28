//! `yaks acl add|list|remove`: Kafka's ACL bindings, written straight to the metastore.
//!
//! Kafka's admin clients manage ACLs through a gateway (CreateAcls, DescribeAcls,
//! DeleteAcls, as `kafka-acls` and confluent-kafka's admin API do), which needs a principal
//! allowed to ALTER the cluster; this command needs only the settings' PostgreSQL URL, like
//! `yaks user`, so an operator can grant the first rights. Every gateway applies a change
//! within a second (PostgreSQL's NOTIFY reaches their caches).

use anyhow::bail;
use clap::{Args, Subcommand};
use yaks_common::acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};
use yaks_common::config::Config;
use yaks_common::metastore::AclBindings;

/// `yaks acl …`.
#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// Allow (or with `--deny`, deny) a principal operations on a resource.
    Add {
        #[command(flatten)]
        resource: Resource,
        /// Who: `User:alice`, `User:CN=app,O=example` for a client certificate, or
        /// `User:*` for every principal.
        #[arg(long)]
        principal: String,
        /// What, as Kafka names operations: read, write, create, delete, alter, describe,
        /// describe-configs, alter-configs, idempotent-write, all. Repeat for several.
        #[arg(long = "operation", required = true)]
        operations: Vec<String>,
        /// From which client address (`*`: any).
        #[arg(long, default_value = "*")]
        host: String,
        /// A DENY binding, which wins over every ALLOW.
        #[arg(long)]
        deny: bool,
    },
    /// List bindings, all or those the options select.
    List {
        #[command(flatten)]
        resource: OptionalResource,
        /// Only this principal's bindings.
        #[arg(long)]
        principal: Option<String>,
    },
    /// Remove the bindings the options select (an option left out selects any value).
    Remove {
        #[command(flatten)]
        resource: Resource,
        /// Only this principal's bindings.
        #[arg(long)]
        principal: Option<String>,
        /// Only bindings of these operations. Repeat for several.
        #[arg(long = "operation")]
        operations: Vec<String>,
        /// Only bindings for this host.
        #[arg(long)]
        host: Option<String>,
        /// Only DENY bindings.
        #[arg(long, conflicts_with = "allow")]
        deny: bool,
        /// Only ALLOW bindings.
        #[arg(long)]
        allow: bool,
    },
}

/// The resource a binding is about: exactly one of the options.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ResourceName {
    /// A topic (`*`: every topic).
    #[arg(long)]
    topic: Option<String>,
    /// A consumer group (`*`: every group).
    #[arg(long)]
    group: Option<String>,
    /// A transactional id (`*`: every one).
    #[arg(long)]
    transactional_id: Option<String>,
    /// The cluster (creating topics, idempotent writes, managing users and ACLs).
    #[arg(long)]
    cluster: bool,
}

/// A resource and how its name reads.
#[derive(Args, Debug)]
pub struct Resource {
    #[command(flatten)]
    name: ResourceName,
    /// The name is a prefix: the binding covers every resource whose name starts with it.
    #[arg(long)]
    prefixed: bool,
}

/// For `list`: any resource unless one is named.
#[derive(Args, Debug)]
pub struct OptionalResource {
    /// Bindings that apply to this topic (literal, `*` and prefixes of it).
    #[arg(long, conflicts_with_all = ["group", "transactional_id", "cluster"])]
    topic: Option<String>,
    /// Bindings that apply to this group.
    #[arg(long, conflicts_with_all = ["transactional_id", "cluster"])]
    group: Option<String>,
    /// Bindings that apply to this transactional id.
    #[arg(long, conflicts_with = "cluster")]
    transactional_id: Option<String>,
    /// Bindings on the cluster.
    #[arg(long)]
    cluster: bool,
}

impl ResourceName {
    fn parts(&self) -> (ResourceType, String) {
        match (&self.topic, &self.group, &self.transactional_id) {
            (Some(topic), _, _) => (ResourceType::Topic, topic.clone()),
            (_, Some(group), _) => (ResourceType::Group, group.clone()),
            (_, _, Some(id)) => (ResourceType::TransactionalId, id.clone()),
            _ => (ResourceType::Cluster, "kafka-cluster".into()),
        }
    }
}

impl Resource {
    fn parts(&self) -> (ResourceType, String, PatternType) {
        let (resource_type, name) = self.name.parts();
        let pattern = if self.prefixed {
            PatternType::Prefixed
        } else {
            PatternType::Literal
        };
        (resource_type, name, pattern)
    }
}

fn operation(name: &str) -> anyhow::Result<Operation> {
    match Operation::from_name(name) {
        Some(Operation::Any) | None => bail!(
            "unknown operation {name:?}: read, write, create, delete, alter, describe, \
             describe-configs, alter-configs, idempotent-write, cluster-action, all"
        ),
        Some(op) => Ok(op),
    }
}

/// Runs a `yaks acl` command.
pub async fn run(config: &Config, command: AclCommand) -> anyhow::Result<()> {
    let store = crate::users::metastore(config).await?;
    match command {
        AclCommand::Add {
            resource,
            principal,
            operations,
            host,
            deny,
        } => {
            let (resource_type, resource_name, pattern_type) = resource.parts();
            let permission = if deny {
                Permission::Deny
            } else {
                Permission::Allow
            };
            let mut bindings = Vec::new();
            for name in &operations {
                let binding = AclBinding {
                    resource_type,
                    resource_name: resource_name.clone(),
                    pattern_type,
                    principal: principal.clone(),
                    host: host.clone(),
                    operation: operation(name)?,
                    permission,
                };
                if let Some(problem) = binding.invalid() {
                    bail!("{problem}");
                }
                bindings.push(binding);
            }
            store.create_acls(&bindings).await?;
            for binding in &bindings {
                println!("added {}", line(binding));
            }
        }
        AclCommand::List {
            resource,
            principal,
        } => {
            let (resource_type, resource_name) = match (
                resource.topic,
                resource.group,
                resource.transactional_id,
                resource.cluster,
            ) {
                (Some(t), _, _, _) => (ResourceType::Topic, Some(t)),
                (_, Some(g), _, _) => (ResourceType::Group, Some(g)),
                (_, _, Some(id), _) => (ResourceType::TransactionalId, Some(id)),
                (_, _, _, true) => (ResourceType::Cluster, Some("kafka-cluster".into())),
                _ => (ResourceType::Any, None),
            };
            let filter = AclFilter {
                resource_type,
                pattern_type: if resource_name.is_some() {
                    PatternType::Match
                } else {
                    PatternType::Any
                },
                resource_name,
                principal,
                host: None,
                operation: Operation::Any,
                permission: Permission::Any,
            };
            for binding in store.list_acls().await? {
                if filter.selects(&binding) {
                    println!("{}", line(&binding));
                }
            }
        }
        AclCommand::Remove {
            resource,
            principal,
            operations,
            host,
            deny,
            allow,
        } => {
            let (resource_type, resource_name, pattern_type) = resource.parts();
            let permission = match (deny, allow) {
                (true, _) => Permission::Deny,
                (_, true) => Permission::Allow,
                _ => Permission::Any,
            };
            let operations = if operations.is_empty() {
                vec![Operation::Any]
            } else {
                operations
                    .iter()
                    .map(|name| operation(name))
                    .collect::<anyhow::Result<_>>()?
            };
            let mut removed = 0;
            for operation in operations {
                let filter = AclFilter {
                    resource_type,
                    resource_name: Some(resource_name.clone()),
                    pattern_type,
                    principal: principal.clone(),
                    host: host.clone(),
                    operation,
                    permission,
                };
                for binding in store.delete_acls(&filter).await? {
                    println!("removed {}", line(&binding));
                    removed += 1;
                }
            }
            if removed == 0 {
                bail!("no binding matched");
            }
        }
    }
    Ok(())
}

/// One binding as `yaks acl list` prints it, in the words of Kafka's `kafka-acls`.
fn line(b: &AclBinding) -> String {
    format!(
        "{} {:?} {} principal={} host={} operation={} permission={}",
        b.resource_type.name(),
        b.resource_name,
        b.pattern_type.name(),
        b.principal,
        b.host,
        b.operation.name(),
        b.permission.name(),
    )
}
