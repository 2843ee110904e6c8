//! nftables backend of portmap, compatible with the reference's
//! (`plugins/meta/portmap/portmap_nftables.go`, v1.6.1+ with the v1.9.0
//! `fib daddr type local` fix): tables `ip cni_hostport` and
//! `ip6 cni_hostport`, DNAT rules in `hostports`, masquerade rules in
//! `masquerading`, each commented with the bare container id — the
//! reference's identity, so its DEL removes ours and ours removes its.
//!
//! Beyond the reference: a repeated ADD replaces the container's rules
//! instead of duplicating them (same transaction).

use serde_json::Value;

use super::{Attachment, LiveMapping, Masq, PortMapSpec, Proto};
use crate::firewall::error::FirewallError;
use crate::firewall::nft::{self, Listing, NftRule};
use crate::netlink::{nf_exists, NfFamily};

const TABLE: &str = "cni_hostport";
const HOSTPORTS: &str = "hostports";
const HOSTIP_HOSTPORTS: &str = "hostip_hostports";
const MASQUERADING: &str = "masquerading";
/// The chains that hold per-container rules.
const RULE_CHAINS: [&str; 3] = [HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING];

/// `ip` (IPv4) or `ip6`.
fn family(v6: bool) -> &'static str {
    if v6 {
        "ip6"
    } else {
        "ip"
    }
}

fn table_absent(v6: bool) -> bool {
    let f = if v6 { NfFamily::Ip6 } else { NfFamily::Ip };
    nf_exists(f, TABLE, None) == Some(false)
}

fn listing(v6: bool) -> Result<Listing, FirewallError> {
    if table_absent(v6) {
        return Ok(Listing::default());
    }
    nft::list(&["table", family(v6), TABLE])
}

fn owned<'a>(l: &'a Listing, id: &'a str) -> impl Iterator<Item = &'a NftRule> {
    l.rules.iter().filter(move |r| {
        RULE_CHAINS.contains(&r.chain.as_str()) && r.comment.as_deref() == Some(id)
    })
}

fn delete_line(v6: bool, r: &NftRule) -> String {
    format!(
        "delete rule {} {TABLE} {} handle {}\n",
        family(v6),
        r.chain,
        r.handle
    )
}

/// The transaction for one family: base chains (rewritten, as the
/// reference does on every ADD), removal of the container's older rules,
/// then its rules.
fn setup_script(spec: &PortMapSpec<'_>, v6: bool, stale: &[&NftRule]) -> Option<String> {
    let pod = if v6 { spec.pod_v6? } else { spec.pod_v4? };
    let f = family(v6);
    let t = format!("{f} {TABLE}");
    let id = spec.attachment.container_id;
    let conds: String = spec
        .conditions(v6)
        .iter()
        .map(|c| format!("{c} "))
        .collect();
    let mut s = format!(
        "add table {t} {{ comment \"CNI portmap plugin\" ; }}\n\
         add chain {t} {HOSTPORTS}\n\
         add chain {t} {HOSTIP_HOSTPORTS}\n\
         add chain {t} hostports_all\n\
         flush chain {t} hostports_all\n\
         add rule {t} hostports_all jump {HOSTIP_HOSTPORTS}\n\
         add rule {t} hostports_all jump {HOSTPORTS}\n\
         add chain {t} prerouting {{ type nat hook prerouting priority -100 ; }}\n\
         flush chain {t} prerouting\n\
         add rule {t} prerouting {conds}fib daddr type local jump hostports_all\n\
         add chain {t} output {{ type nat hook output priority -100 ; }}\n\
         flush chain {t} output\n\
         add rule {t} output {conds}fib daddr type local jump hostports_all\n"
    );
    let snat = spec.masq != Masq::Off;
    if snat {
        s += &format!(
            "add chain {t} {MASQUERADING} {{ type nat hook postrouting priority 100 ; }}\n"
        );
    }
    for r in stale {
        s += &delete_line(v6, r);
    }
    for m in spec.mappings.iter().filter(|m| m.applies_to(v6)) {
        let daddr = m
            .dest()
            .map(|d| format!("{f} daddr {d} "))
            .unwrap_or_default();
        let to = if v6 {
            format!("[{}]:{}", pod.addr(), m.container_port)
        } else {
            format!("{}:{}", pod.addr(), m.container_port)
        };
        s += &format!(
            "add rule {t} {HOSTPORTS} {daddr}{} dport {} dnat to {to} comment \"{id}\"\n",
            m.protocol.as_str(),
            m.host_port
        );
    }
    if snat && !spec.mappings.is_empty() {
        let a = pod.addr();
        s += &format!(
            "add rule {t} {MASQUERADING} {f} saddr {a} {f} daddr {a} masquerade comment \"{id}\"\n"
        );
        if !v6 {
            s += &format!("add rule {t} {MASQUERADING} ip saddr 127.0.0.1 ip daddr {a} masquerade comment \"{id}\"\n");
        }
    }
    Some(s)
}

/// Programs the container's rules in each family it has an address in.
pub(super) fn setup(spec: &PortMapSpec<'_>) -> Result<(), FirewallError> {
    for v6 in [false, true] {
        let current = listing(v6)?;
        let stale: Vec<&NftRule> = owned(&current, spec.attachment.container_id).collect();
        if let Some(script) = setup_script(spec, v6, &stale) {
            nft::apply_text(&script)?;
        }
    }
    Ok(())
}

/// Deletes every rule commented with the container id, in both families
/// (retried once: a concurrent DEL may delete a handle first).
pub(super) fn teardown(a: &Attachment<'_>) -> Result<(), FirewallError> {
    for v6 in [false, true] {
        let attempt = || {
            let l = listing(v6)?;
            let script: String = owned(&l, a.container_id)
                .map(|r| delete_line(v6, r))
                .collect();
            if script.is_empty() {
                return Ok(());
            }
            nft::apply_text(&script)
        };
        attempt().or_else(|_| attempt())?;
    }
    Ok(())
}

/// The reference's CHECK: enough rules with the container's comment in
/// `hostports` (one per mapping of the family) and `masquerading`.
pub(super) fn check(spec: &PortMapSpec<'_>) -> Result<(), FirewallError> {
    for pod in spec.pod_ips() {
        let v6 = pod.addr().is_ipv6();
        let l = listing(v6)?;
        let count = |chain: &str| {
            owned(&l, spec.attachment.container_id)
                .filter(|r| r.chain == chain)
                .count()
        };
        let want_dnat = spec.mappings.iter().filter(|m| m.applies_to(v6)).count();
        let want_masq = match (&spec.masq, v6) {
            (Masq::Off, _) => 0,
            (_, true) => 1,
            (_, false) => 2,
        };
        for (chain, want) in [(HOSTPORTS, want_dnat), (MASQUERADING, want_masq)] {
            if count(chain) < want {
                return Err(FirewallError::Missing(format!(
                    "missing hostport rules in {chain:?} chain ({} {TABLE})",
                    family(v6)
                )));
            }
        }
    }
    Ok(())
}

/// The DNAT rules of both families (for conflict checks).
pub(super) fn live() -> Result<Vec<LiveMapping>, FirewallError> {
    let mut out = Vec::new();
    for v6 in [false, true] {
        let l = listing(v6)?;
        for r in l
            .rules
            .iter()
            .filter(|r| r.chain == HOSTPORTS || r.chain == HOSTIP_HOSTPORTS)
        {
            if let (Some(id), Some((protocol, host_port, host_ip))) =
                (&r.comment, dnat_match(&r.expr))
            {
                out.push(LiveMapping {
                    network: None,
                    container_id: id.clone(),
                    v6,
                    protocol,
                    host_port,
                    host_ip,
                });
            }
        }
    }
    Ok(out)
}

/// (protocol, dport, daddr) of a DNAT rule's JSON expression.
fn dnat_match(expr: &Value) -> Option<(Proto, u16, Option<std::net::IpAddr>)> {
    let stmts = expr.as_array()?;
    let mut port = None;
    let mut daddr = None;
    for s in stmts {
        let m = &s["match"];
        let payload = &m["left"]["payload"];
        match payload["field"].as_str() {
            Some("dport") => {
                let proto = Proto::parse(payload["protocol"].as_str()?)?;
                port = Some((proto, u16::try_from(m["right"].as_u64()?).ok()?));
            }
            Some("daddr") => daddr = m["right"].as_str().and_then(|a| a.parse().ok()),
            _ => {}
        }
    }
    let (proto, port) = port?;
    Some((proto, port, daddr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::portmap::PortMapping;

    #[test]
    fn script_has_the_reference_rules() {
        let maps = [PortMapping {
            host_port: 5080,
            container_port: 8080,
            protocol: Proto::Tcp,
            host_ip: None,
        }];
        let spec = PortMapSpec {
            attachment: Attachment {
                network: "pmnet",
                container_id: "ctr-0001",
            },
            mappings: &maps,
            masq: Masq::MarkBit(13),
            conditions_v4: &[],
            conditions_v6: &[],
            pod_v4: Some("10.94.0.2/24".parse().unwrap()),
            pod_v6: None,
        };
        let s = setup_script(&spec, false, &[]).unwrap();
        assert!(s.contains("add rule ip cni_hostport hostports tcp dport 5080 dnat to 10.94.0.2:8080 comment \"ctr-0001\"\n"), "{s}");
        assert!(s.contains("ip saddr 10.94.0.2 ip daddr 10.94.0.2 masquerade comment \"ctr-0001\""));
        assert!(s.contains("ip saddr 127.0.0.1 ip daddr 10.94.0.2 masquerade"));
        assert!(s.contains(
            "add rule ip cni_hostport prerouting fib daddr type local jump hostports_all"
        ));
        assert!(setup_script(&spec, true, &[]).is_none());
    }

    #[test]
    fn dnat_rules_are_read_back() {
        let expr: Value = serde_json::from_str(
            r#"[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"10.0.0.1"}},
                {"match":{"op":"==","left":{"payload":{"protocol":"udp","field":"dport"}},"right":53}},
                {"dnat":{"addr":"10.94.0.2","port":53}}]"#,
        )
        .unwrap();
        assert_eq!(
            dnat_match(&expr),
            Some((Proto::Udp, 53, Some("10.0.0.1".parse().unwrap())))
        );
        assert_eq!(dnat_match(&Value::Null), None);
    }
}
