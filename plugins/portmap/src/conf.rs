//! portmap's network configuration (reference `parseConfig`): fields,
//! defaults and validation, plus the pod addresses taken from `prevResult`.

use std::net::IpAddr;

use cni::error::{codes, CniError, Result};
use cni::firewall::portmap::{Backend, Masq, PortMapping, Proto};
use cni::spec::{casefold_from_value, CniResult, NetConf};
use ipnet::IpNet;
use serde::Deserialize;

/// The reference's default masquerade mark bit.
const DEFAULT_MARK_BIT: i64 = 13;

/// Plugin-specific fields, matched like Go (case-insensitively).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    snat: Option<bool>,
    mark_masq_bit: Option<i64>,
    external_set_mark_chain: Option<String>,
    #[serde(rename = "conditionsV4")]
    conditions_v4: Option<Vec<String>>,
    #[serde(rename = "conditionsV6")]
    conditions_v6: Option<Vec<String>>,
    backend: Option<String>,
}

/// One `portMappings` entry as sent: the reference's JSON names, or the Go
/// field names containerd sends (`HostPort`...), matched case-insensitively.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMapping {
    #[serde(default)]
    host_port: i64,
    #[serde(default)]
    container_port: i64,
    #[serde(default)]
    protocol: String,
    #[serde(rename = "hostIP", default)]
    host_ip: String,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub mappings: Vec<PortMapping>,
    pub masq: Masq,
    pub conditions_v4: Vec<String>,
    pub conditions_v6: Vec<String>,
    pub backend: Backend,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(codes::INVALID_CONFIG, msg)
}

fn port(value: i64, what: &str) -> Result<u16> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid(format!("Invalid {what} port number: {value}")))
}

fn mapping(i: usize, raw: RawMapping) -> Result<PortMapping> {
    let at = |e: CniError| e.context(format!("portMappings[{i}]"));
    let protocol = Proto::parse(&raw.protocol).ok_or_else(|| {
        at(invalid(format!(
            "unsupported protocol {:?} (expected tcp, udp or sctp)",
            raw.protocol
        )))
    })?;
    let host_ip = match raw.host_ip.as_str() {
        "" => None,
        s => Some(
            s.parse::<IpAddr>()
                .map_err(|e| at(invalid(format!("invalid hostIP {s:?}: {e}"))))?,
        ),
    };
    Ok(PortMapping {
        host_port: port(raw.host_port, "host").map_err(at)?,
        container_port: port(raw.container_port, "container").map_err(at)?,
        protocol,
        host_ip,
    })
}

fn mappings(conf: &NetConf) -> Result<Vec<PortMapping>> {
    let Some(v) = conf
        .runtime_config
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("portMappings"))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
    else {
        return Ok(Vec::new());
    };
    let raw: Vec<RawMapping> = casefold_from_value(v.clone()).map_err(|e| {
        CniError::new(
            codes::DECODE,
            format!("failed to decode runtimeConfig.portMappings: {e}"),
        )
    })?;
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| mapping(i, r))
        .collect()
}

/// Conditions whose first token starts with `-` or `!` are iptables
/// arguments; anything else is nftables syntax (the reference's rule).
fn is_iptables_style(conds: &[String]) -> bool {
    conds.first().is_some_and(|c| c.starts_with(['-', '!']))
}

/// The backend: `backend` if set, else iptables unless only nftables works
/// here; options of the other backend are an error (reference v1.6+).
fn backend(raw: &Raw) -> Result<Backend> {
    let chosen = match raw.backend.as_deref() {
        Some("iptables") => Backend::Iptables,
        Some("nftables") => Backend::Nftables,
        Some(other) => return Err(invalid(format!("unrecognized backend {other:?}"))),
        None => match cni::firewall::default_backend() {
            cni::firewall::MasqBackend::Iptables => Backend::Iptables,
            cni::firewall::MasqBackend::Nftables => Backend::Nftables,
        },
    };
    let mut ipt_opts = Vec::new();
    let mut nft_opts = Vec::new();
    if raw.external_set_mark_chain.is_some() {
        ipt_opts.push("externalSetMarkChain");
    }
    for (name, conds) in [
        ("conditionsV4", &raw.conditions_v4),
        ("conditionsV6", &raw.conditions_v6),
    ] {
        match conds {
            Some(c) if !c.is_empty() && is_iptables_style(c) => ipt_opts.push(name),
            Some(c) if !c.is_empty() => nft_opts.push(name),
            _ => {}
        }
    }
    let (wrong, other) = match chosen {
        Backend::Iptables => (nft_opts, "nftables"),
        Backend::Nftables => (ipt_opts, "iptables"),
    };
    if !wrong.is_empty() {
        let name = match chosen {
            Backend::Iptables => "iptables",
            Backend::Nftables => "nftables",
        };
        return Err(invalid(format!(
            "{name} backend was requested but configuration contains {other}-specific options [{}]",
            wrong.join(" ")
        )));
    }
    Ok(chosen)
}

/// Parses and validates the plugin's fields (not `prevResult`).
pub fn parse(conf: &NetConf) -> Result<Config> {
    let raw: Raw = casefold_from_value(conf.raw.clone()).map_err(|e| {
        CniError::new(
            codes::DECODE,
            format!("failed to parse network configuration: {e}"),
        )
    })?;
    if raw.mark_masq_bit.is_some() && raw.external_set_mark_chain.is_some() {
        return Err(invalid(
            "Cannot specify externalSetMarkChain and markMasqBit",
        ));
    }
    let masq = if !raw.snat.unwrap_or(true) {
        Masq::Off
    } else if let Some(chain) = &raw.external_set_mark_chain {
        if chain.is_empty()
            || chain.len() > 28
            || chain.contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(format!("invalid externalSetMarkChain {chain:?}")));
        }
        Masq::External(chain.clone())
    } else {
        let bit = raw.mark_masq_bit.unwrap_or(DEFAULT_MARK_BIT);
        let bit = u8::try_from(bit)
            .ok()
            .filter(|b| *b <= 31)
            .ok_or_else(|| invalid("MasqMarkBit must be between 0 and 31"))?;
        Masq::MarkBit(bit)
    };
    let backend = backend(&raw)?;
    let conditions_v4 = raw.conditions_v4.unwrap_or_default();
    let conditions_v6 = raw.conditions_v6.unwrap_or_default();
    cni::firewall::portmap::validate_conditions(&conditions_v4)?;
    cni::firewall::portmap::validate_conditions(&conditions_v6)?;
    Ok(Config {
        mappings: mappings(conf)?,
        masq,
        conditions_v4,
        conditions_v6,
        backend,
    })
}

/// The first IPv4 and first IPv6 address of the pod in `prev`, skipping
/// addresses of another interface or of a host-side one (reference
/// `parseConfig`); addresses without an interface index count.
pub fn pod_addresses(prev: &CniResult, ifname: &str) -> (Option<IpNet>, Option<IpNet>) {
    let mut v4 = None;
    let mut v6 = None;
    for ip in &prev.ips {
        if let Some(iface) = ip.interface.and_then(|i| prev.interfaces.get(i)) {
            if iface.name != ifname || iface.sandbox.as_deref().unwrap_or("").is_empty() {
                continue;
            }
        }
        let slot = if ip.address.addr().is_ipv6() {
            &mut v6
        } else {
            &mut v4
        };
        slot.get_or_insert(ip.address);
    }
    (v4, v6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn conf(extra: Value) -> NetConf {
        let mut v =
            json!({"cniVersion":"1.0.0","name":"pmnet","type":"portmap","backend":"iptables"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        NetConf::from_value(v).unwrap()
    }

    #[test]
    fn defaults_and_go_field_names() {
        let c = parse(&conf(json!({"runtimeConfig":{"portMappings":[
            {"HostPort":8080,"ContainerPort":80,"Protocol":"TCP","HostIP":"127.0.0.1"},
            {"hostPort":53,"containerPort":53,"protocol":"udp"}]}})))
        .unwrap();
        assert_eq!(c.masq, Masq::MarkBit(13));
        assert_eq!(c.mappings.len(), 2);
        assert_eq!(c.mappings[0].protocol, Proto::Tcp);
        assert_eq!(c.mappings[0].host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(c.mappings[1].host_ip, None);
    }

    #[test]
    fn validation_errors() {
        let err = |extra: Value| parse(&conf(extra)).unwrap_err();
        let e = err(json!({"markMasqBit":5,"externalSetMarkChain":"KUBE-MARK-MASQ"}));
        assert_eq!(
            e.msg(),
            "Cannot specify externalSetMarkChain and markMasqBit"
        );
        assert_eq!(
            err(json!({"markMasqBit":32})).msg(),
            "MasqMarkBit must be between 0 and 31"
        );
        for (m, needle) in [
            (
                json!({"hostPort":0,"containerPort":1,"protocol":"tcp"}),
                "Invalid host port number: 0",
            ),
            (
                json!({"hostPort":70000,"containerPort":1,"protocol":"tcp"}),
                "Invalid host port number: 70000",
            ),
            (
                json!({"hostPort":1,"containerPort":-1,"protocol":"tcp"}),
                "Invalid container port number: -1",
            ),
            (
                json!({"hostPort":1,"containerPort":1}),
                "unsupported protocol \"\"",
            ),
            (
                json!({"hostPort":1,"containerPort":1,"protocol":"tcp","hostIP":"x"}),
                "invalid hostIP",
            ),
        ] {
            let e = err(json!({"runtimeConfig":{"portMappings":[m]}}));
            assert!(e.to_string().contains(needle), "{e} vs {needle}");
            assert_eq!(e.code(), 7);
        }
        let e = err(json!({"backend":"nftables","conditionsV4":["-s","1.2.3.4"]}));
        assert!(
            e.msg().contains("iptables-specific options [conditionsV4]"),
            "{}",
            e.msg()
        );
        assert!(err(json!({"backend":"ebtables"}))
            .msg()
            .contains("unrecognized backend"));
    }

    #[test]
    fn snat_off_and_external_chain() {
        assert_eq!(parse(&conf(json!({"snat":false}))).unwrap().masq, Masq::Off);
        assert_eq!(
            parse(&conf(json!({"externalSetMarkChain":"KUBE-MARK-MASQ"})))
                .unwrap()
                .masq,
            Masq::External("KUBE-MARK-MASQ".into())
        );
    }

    #[test]
    fn pod_addresses_follow_the_reference() {
        let prev = CniResult::from_json_any(
            &json!({"cniVersion":"1.0.0",
                "interfaces":[{"name":"cni0"},{"name":"eth0","sandbox":"/ns"},{"name":"net1","sandbox":"/ns"}],
                "ips":[{"address":"10.0.0.1/24","interface":0},{"address":"10.1.0.2/24","interface":2},
                       {"address":"10.0.0.2/24","interface":1},{"address":"fd00::2/64"}]}),
            "1.0.0",
        )
        .unwrap();
        let (v4, v6) = pod_addresses(&prev, "eth0");
        assert_eq!(v4, Some("10.0.0.2/24".parse().unwrap()));
        assert_eq!(v6, Some("fd00::2/64".parse().unwrap()));
    }
}
