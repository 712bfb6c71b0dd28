//! The gateway's Kafka listeners and the addresses it advertises for them.
//!
//! As in Kafka, a listener is a name, a bound address, an advertised address and a
//! security protocol; a client is told the addresses of the listener it came in on, so a
//! client inside the cluster network and one outside it each get addresses they can reach.
//! Every gateway publishes all its listeners' advertised addresses in its registry entry,
//! in Kafka's `advertised.listeners` form (`INTERNAL://10.0.0.5:9092,EXTERNAL://kafka.example.com:9093`),
//! so any gateway can answer Metadata with another's address on the same listener.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use yaks_common::config::{GatewayConfig, ListenerConfig, SecurityProtocol};
use yaks_common::error::StartError;

/// A bound listener.
pub struct Listener {
    /// Its name.
    pub name: Arc<str>,
    /// What a connection on it must do first.
    pub protocol: SecurityProtocol,
    /// The socket.
    pub tcp: TcpListener,
    /// The host and port clients are told for it.
    pub advertised: (String, u16),
}

/// Where clients reach one gateway through one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The listener's name; empty for an entry without one (a gateway from before
    /// listeners had names), which stands for every listener.
    pub listener: String,
    /// Host clients connect to.
    pub host: String,
    /// Port clients connect to.
    pub port: i32,
}

/// Binds every listener of `config`.
pub async fn bind_all(config: &GatewayConfig) -> Result<Vec<Listener>, StartError> {
    let mut bound = Vec::new();
    for listener in config.effective_listeners() {
        let (tcp, local) = yaks_common::rpc::bind(&listener.listen_addr).await?;
        let advertised = advertised_addr(&listener, local).await?;
        bound.push(Listener {
            name: listener.name.as_str().into(),
            protocol: listener.security_protocol,
            tcp,
            advertised,
        });
    }
    Ok(bound)
}

/// The registry entry of a gateway with `listeners`: `NAME://host:port`, comma-separated.
pub fn registry_address(listeners: &[Listener]) -> String {
    listeners
        .iter()
        .map(|l| {
            format!(
                "{}://{}",
                l.name,
                host_port(&l.advertised.0, l.advertised.1)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The endpoints in a gateway's registry entry; entries that do not parse are left out.
pub fn parse_registry_address(text: &str) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    for entry in text.split(',') {
        let (listener, address) = match entry.split_once("://") {
            Some((name, address)) => (name.to_owned(), address),
            None => (String::new(), entry),
        };
        let Some((host, port)) = address.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        endpoints.push(Endpoint {
            listener,
            host: host.trim_matches(['[', ']']).to_owned(),
            port: i32::from(port),
        });
    }
    endpoints
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn advertised_addr(
    listener: &ListenerConfig,
    local: SocketAddr,
) -> Result<(String, u16), StartError> {
    let name = &listener.name;
    let text = match &listener.advertised_addr {
        Some(addr) => addr.clone(),
        None => match yaks_common::advertise::reachable_ip(local).await? {
            Some(ip) => SocketAddr::new(ip, local.port()).to_string(),
            None => {
                return Err(StartError::Config(format!(
                    "listener {name}: an advertised address must be set when listening on all \
                     interfaces (clients need an address to connect to)"
                )));
            }
        },
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(|| {
        StartError::Config(format!(
            "listener {name}: advertised address {text:?} is not host:port"
        ))
    })?;
    let port = port.parse::<u16>().map_err(|_| {
        StartError::Config(format!(
            "listener {name}: advertised address {text:?} has a bad port"
        ))
    })?;
    let port = if port == 0 { local.port() } else { port };
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_entries_name_each_listener_and_old_ones_stand_for_all() {
        let endpoints = parse_registry_address("INTERNAL://10.0.0.5:9092,EXTERNAL://[::1]:9093");
        assert_eq!(
            endpoints,
            vec![
                Endpoint {
                    listener: "INTERNAL".into(),
                    host: "10.0.0.5".into(),
                    port: 9092
                },
                Endpoint {
                    listener: "EXTERNAL".into(),
                    host: "::1".into(),
                    port: 9093
                },
            ]
        );
        let old = parse_registry_address("kafka-0:9092");
        assert_eq!(old[0].listener, "");
        assert_eq!(old[0].host, "kafka-0");
        assert!(parse_registry_address("garbage").is_empty());
    }

    #[test]
    fn an_ipv6_host_is_bracketed_in_the_entry() {
        assert_eq!(host_port("::1", 9092), "[::1]:9092");
        assert_eq!(host_port("example.com", 9092), "example.com:9092");
    }
}
