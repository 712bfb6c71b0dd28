//! The address a role tells others to reach it at.
//!
//! In order: the setting (`gateway.advertised_addr`, `writer.advertised_url`,
//! `reader.advertised_url`); else the bound address when it names one interface; else, on
//! Amazon ECS (awsvpc networking, as Fargate uses), the task's private IP read from the
//! task metadata endpoint, so task definitions need no per-task setting; else start-up
//! fails naming the setting. Kubernetes pods pass `$(POD_IP)` through the setting.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::error::StartError;
use crate::rpc::{RpcClient, read_body};

/// Variable ECS sets in every container: the base URL of its task metadata (v4).
pub const ECS_METADATA_ENV: &str = "ECS_CONTAINER_METADATA_URI_V4";

/// The host part others should use for a listener bound to `local`, or `None` when it is
/// bound to all interfaces and no environment tells the address (the caller then needs
/// its setting).
pub async fn reachable_ip(local: SocketAddr) -> Result<Option<IpAddr>, StartError> {
    if !local.ip().is_unspecified() {
        return Ok(Some(local.ip()));
    }
    match std::env::var(ECS_METADATA_ENV) {
        Ok(uri) => ecs_task_ip(&uri)
            .await
            .map(Some)
            .map_err(StartError::Config),
        Err(_) => Ok(None),
    }
}

/// A base URL (`http://host:port`) for an HTTP role: `configured`, else from the bound
/// address as [`reachable_ip`] finds it.
pub async fn advertised_url(
    configured: Option<&str>,
    local: SocketAddr,
    role: &str,
) -> Result<String, StartError> {
    if let Some(url) = configured {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    match reachable_ip(local).await? {
        Some(ip) => Ok(format!("http://{}", SocketAddr::new(ip, local.port()))),
        None => Err(StartError::Config(format!(
            "`{role}.advertised_url` must be set when listening on all interfaces \
             (gateways need an address to reach this {role})"
        ))),
    }
}

/// This container's private IPv4 address, from the ECS container metadata at `uri`
/// (`Networks[0].IPv4Addresses[0]`).
pub async fn ecs_task_ip(uri: &str) -> Result<IpAddr, String> {
    let client = RpcClient::new();
    let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri, ""))
        .await
        .map_err(|_| format!("ECS task metadata at {uri} did not answer"))?
        .map_err(|_| format!("ECS task metadata at {uri} is unreachable"))?;
    if !response.status().is_success() {
        return Err(format!(
            "ECS task metadata at {uri} answered {}",
            response.status()
        ));
    }
    let body = read_body(response)
        .await
        .map_err(|e| format!("reading ECS task metadata: {e}"))?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("ECS task metadata is not JSON: {e}"))?;
    metadata["Networks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|network| network["IPv4Addresses"].as_array())
        .flatten()
        .filter_map(|address| address.as_str()?.parse::<IpAddr>().ok())
        .next()
        .ok_or_else(|| format!("ECS task metadata at {uri} lists no IPv4 address"))
}
