//! The gateway's Kafka listeners and the addresses it advertises for them.
//!
//! As in Kafka, a listener is a name, a bound address, an advertised address and a
//! security protocol; a client is told the addresses of the listener it came in on, so a
//! client inside the cluster network and one outside it each get addresses they can reach.
//! Every gateway publishes all its listeners' advertised addresses in its registry entry,
//! in Kafka's `advertised.listeners` form (`INTERNAL://10.0.0.5:9092,EXTERNAL://kafka.example.com:9093`),
//! so any gateway can answer Metadata with another's address on the same listener.
//!
//! A gateway may present several brokers (`gateway.brokers`): broker `i` binds every
//! listener at its port + `i` and has a registry entry, so a broker id, of its own.

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
    /// Which of the gateway's brokers it belongs to (0 for the first).
    pub broker: u16,
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

/// Binds every listener of `config`, once per broker the gateway presents, broker by
/// broker.
pub async fn bind_all(config: &GatewayConfig) -> Result<Vec<Listener>, StartError> {
    let mut bound = Vec::new();
    for broker in 0..config.brokers.max(1) {
        for listener in config.effective_listeners() {
            let listener = offset_ports(&listener, broker);
            let (tcp, local) = yaks_common::rpc::bind(&listener.listen_addr).await?;
            let advertised = advertised_addr(&listener, local).await?;
            bound.push(Listener {
                name: listener.name.as_str().into(),
                protocol: listener.security_protocol,
                tcp,
                advertised,
                broker,
            });
        }
    }
    Ok(bound)
}

/// `listener` as broker `broker` binds it: a fixed port moved up by `broker`, a port 0
/// (any free port) left as it is.
fn offset_ports(listener: &ListenerConfig, broker: u16) -> ListenerConfig {
    fn shift(addr: &str, broker: u16) -> String {
        match addr.rsplit_once(':') {
            Some((host, port)) => match port.parse::<u16>() {
                Ok(port) if port != 0 => format!("{host}:{}", port.saturating_add(broker)),
                _ => addr.to_owned(),
            },
            None => addr.to_owned(),
        }
    }
    ListenerConfig {
        listen_addr: shift(&listener.listen_addr, broker),
        advertised_addr: listener
            .advertised_addr
            .as_deref()
            .map(|a| shift(a, broker)),
        ..listener.clone()
    }
}

/// The registry entries of a gateway with `listeners`, one per broker it presents.
pub fn registry_addresses(listeners: &[Listener]) -> Vec<String> {
    let brokers = listeners
        .iter()
        .map(|l| l.broker)
        .max()
        .map_or(0, |b| b + 1);
    (0..brokers)
        .map(|broker| {
            let own: Vec<&Listener> = listeners.iter().filter(|l| l.broker == broker).collect();
            registry_address(&own)
        })
        .collect()
}

/// The registry entry of one broker with `listeners`: `NAME://host:port`, comma-separated.
fn registry_address(listeners: &[&Listener]) -> String {
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
    fn broker_i_moves_fixed_ports_up_by_i_and_leaves_any_port_alone() {
        let listener = ListenerConfig {
            name: "EXTERNAL".into(),
            listen_addr: "[::]:9092".into(),
            advertised_addr: Some("kafka.example.com:19092".into()),
            security_protocol: SecurityProtocol::Ssl,
        };
        let third = offset_ports(&listener, 2);
        assert_eq!(third.listen_addr, "[::]:9094");
        assert_eq!(
            third.advertised_addr.as_deref(),
            Some("kafka.example.com:19094")
        );
        let any = ListenerConfig {
            listen_addr: "127.0.0.1:0".into(),
            advertised_addr: None,
            ..listener
        };
        assert_eq!(offset_ports(&any, 3).listen_addr, "127.0.0.1:0");
    }

    #[test]
    fn an_ipv6_host_is_bracketed_in_the_entry() {
        assert_eq!(host_port("::1", 9092), "[::1]:9092");
        assert_eq!(host_port("example.com", 9092), "example.com:9092");
    }
}
