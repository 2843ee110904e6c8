//! A pod's `hostPort`s: Docker's `-p HOST:CONTAINER` in Kubernetes, an
//! opt-in DNAT from the node's address to one pod. The runtime hands them
//! to the `portmap` plugin as the `portMappings` capability, spelled the way
//! containerd spells them (go-cni's struct has no JSON tags, so the keys are
//! the Go field names `HostPort`, `ContainerPort`, `Protocol`, `HostIP`).

use cni::firewall::portmap::Proto;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// What the demo's hostPort checks show, next to the pods reached by IP.
pub const LESSON: &str = "pods are reached at their own IP on their own port (ten pods on node-1 \
     all serve :8080); a hostPort is an opt-in NAT on the node's address, and two pods cannot \
     share one";

/// The capability key portmap declares (`"capabilities": {"portMappings": true}`).
pub const CAPABILITY: &str = "portMappings";

/// One host port mapped to a container port of the pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPort {
    /// The port on every address of the node.
    pub host_port: u16,
    /// The pod's port it leads to.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp` (lowercase, as containerd sends it).
    pub protocol: String,
}

impl HostPort {
    /// `HOST:CONTAINER[/PROTO]`, e.g. `5000:8080` or `5353:53/udp`.
    pub fn parse(spec: &str) -> Result<HostPort, String> {
        let bad = || format!("expected HOST:CONTAINER[/tcp|udp|sctp], got {spec:?}");
        let (ports, proto) = match spec.split_once('/') {
            Some((ports, proto)) => (ports, Proto::parse(proto).ok_or_else(bad)?),
            None => (spec, Proto::Tcp),
        };
        let (host, container) = ports.split_once(':').ok_or_else(bad)?;
        let port = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
        Ok(HostPort {
            host_port: port(host)?,
            container_port: port(container)?,
            protocol: proto.as_str().to_string(),
        })
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

/// The runtime's capability args for `ports`: `{"portMappings": [...]}`,
/// or nothing when the pod maps no port (containerd then sends none).
pub fn capability_args(ports: &[HostPort]) -> Map<String, Value> {
    let mut args = Map::new();
    if !ports.is_empty() {
        let entries: Vec<Value> = ports
            .iter()
            .map(|p| {
                json!({
                    "HostPort": p.host_port,
                    "ContainerPort": p.container_port,
                    "Protocol": p.protocol,
                    "HostIP": "",
                })
            })
            .collect();
        args.insert(CAPABILITY.into(), Value::Array(entries));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_style_specs() {
        let p = HostPort::parse("5000:8080").expect("tcp default");
        assert_eq!((p.host_port, p.container_port), (5000, 8080));
        assert_eq!(p.protocol, "tcp");
        assert_eq!(HostPort::parse("53:5353/UDP").expect("udp").protocol, "udp");
        for bad in ["5000", "0:80", "5000:x", "70000:80", "1:2/icmp", ":80"] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn capability_args_use_go_field_names() {
        assert!(capability_args(&[]).is_empty());
        let args = capability_args(&[HostPort::parse("5000:8080").expect("parse")]);
        assert_eq!(
            Value::Object(args),
            json!({"portMappings": [
                {"HostPort": 5000, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": ""}
            ]})
        );
    }
}
