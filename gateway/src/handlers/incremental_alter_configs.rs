//! IncrementalAlterConfigs (key 44), v0–v1: SET, DELETE (back to the default), APPEND and
//! SUBTRACT (list configs) on a topic's configs, validated as AlterConfigs does.

use std::collections::BTreeMap;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use yaks_common::kafka::str_bytes;
use yaks_common::topic_config;

use super::alter_configs::alter;
use super::{RequestContext, Versions};

/// Supported versions.
pub const VERSIONS: Versions = Versions { min: 0, max: 1 };

/// Answers IncrementalAlterConfigs.
pub async fn handle(
    context: RequestContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let operations: Vec<(String, i8, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let (code, message) = alter(
            &context,
            resource.resource_type,
            &resource.resource_name,
            |current| apply(current, &operations),
            request.validate_only,
        )
        .await;
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message.map(|m| str_bytes(&m))),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The explicit configs after applying `(name, operation, value)` in order.
fn apply(
    current: &BTreeMap<String, Option<String>>,
    operations: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, Option<String>>, String> {
    let mut configs = current.clone();
    for (name, operation, value) in operations {
        match operation {
            0 => {
                configs.insert(name.clone(), value.clone());
            }
            1 => {
                configs.remove(name);
            }
            2 | 3 => {
                let Some(config) = topic_config::find(name).filter(|c| c.is_list()) else {
                    return Err(format!(
                        "{name} is not a list config: APPEND and SUBTRACT do not apply"
                    ));
                };
                let now = configs
                    .get(name)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| config.default.to_owned());
                let mut items: Vec<String> = now
                    .split(',')
                    .map(|i| i.trim().to_owned())
                    .filter(|i| !i.is_empty())
                    .collect();
                let given: Vec<String> = value
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .map(|i| i.trim().to_owned())
                    .filter(|i| !i.is_empty())
                    .collect();
                if *operation == 2 {
                    for item in given {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                configs.insert(name.clone(), Some(items.join(",")));
            }
            other => return Err(format!("unknown config operation {other} for {name}")),
        }
    }
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_apply_in_order() {
        let mut current = BTreeMap::new();
        current.insert("retention.ms".to_owned(), Some("1000".to_owned()));
        let ops = vec![
            ("max.message.bytes".to_owned(), 0, Some("2000".to_owned())),
            ("retention.ms".to_owned(), 1, None),
            ("cleanup.policy".to_owned(), 2, Some("delete".to_owned())),
        ];
        let after = apply(&current, &ops).expect("applies");
        assert_eq!(
            after.get("max.message.bytes"),
            Some(&Some("2000".to_owned()))
        );
        assert!(!after.contains_key("retention.ms"));
        assert_eq!(
            after.get("cleanup.policy"),
            Some(&Some("delete".to_owned()))
        );
        let subtract = vec![("cleanup.policy".to_owned(), 3, Some("delete".to_owned()))];
        assert_eq!(
            apply(&after, &subtract)
                .expect("applies")
                .get("cleanup.policy"),
            Some(&Some(String::new()))
        );
        assert!(
            apply(
                &current,
                &[("retention.ms".to_owned(), 2, Some("5".to_owned()))]
            )
            .is_err()
        );
        assert!(apply(&current, &[("retention.ms".to_owned(), 9, None)]).is_err());
    }
}
