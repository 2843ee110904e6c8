//! What is already mapped on the node (both backends), for refusing a
//! second attachment on the same host port, and the host-side knobs of an
//! ADD (`route_localnet`, stale UDP conntrack entries).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::iptables::{parse_entry_comment, DNAT_CHAIN};
use super::{nftables, Attachment, PortMapError, PortMapSpec, PortMapping, Proto};
use crate::firewall::error::FirewallError;
use crate::firewall::iptables_save::{split_words, NatTable};
use crate::netlink::{conntrack, Netlink};

/// One host port mapped on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveMapping {
    /// Network name (iptables backend only: nftables rules carry none).
    pub network: Option<String>,
    pub container_id: String,
    /// IPv6 table.
    pub v6: bool,
    pub protocol: Proto,
    pub host_port: u16,
    /// Destination match; `None` for every local address.
    pub host_ip: Option<IpAddr>,
}

impl LiveMapping {
    fn owner(&self) -> String {
        match &self.network {
            Some(n) => format!(
                "attachment {{network {n:?}, containerID {:?}}}",
                self.container_id
            ),
            None => format!(
                "attachment {{containerID {:?}}} (nftables)",
                self.container_id
            ),
        }
    }

    fn is_of(&self, a: &Attachment<'_>) -> bool {
        self.container_id == a.container_id
            && self.network.as_deref().is_none_or(|n| n == a.network)
    }
}

/// Display of a host endpoint: `tcp 0.0.0.0:80`, `udp [::]:53`.
fn endpoint(proto: Proto, v6: bool, ip: Option<IpAddr>, port: u16) -> String {
    let ip = ip.unwrap_or(if v6 {
        IpAddr::from([0u16; 8])
    } else {
        IpAddr::from([0u8; 4])
    });
    match ip {
        IpAddr::V6(a) => format!("{} [{a}]:{port}", proto.as_str()),
        IpAddr::V4(a) => format!("{} {a}:{port}", proto.as_str()),
    }
}

/// The DNAT rules of every `CNI-DN-` chain in an iptables dump, with the
/// attachment named by the entry rule jumping to it.
pub(super) fn from_iptables(v6: bool, table: &NatTable) -> Vec<LiveMapping> {
    let owners: BTreeMap<&str, (String, String)> = table
        .rules_in(DNAT_CHAIN)
        .filter_map(|r| {
            Some((
                r.target.as_deref()?,
                parse_entry_comment(r.comment.as_deref()?)?,
            ))
        })
        .collect();
    let mut out = Vec::new();
    for (chain, (net, id)) in owners {
        for rule in table.rules_in(chain) {
            let Some(words) = split_words(&rule.line) else {
                continue;
            };
            let arg = |flag: &str| {
                words
                    .windows(2)
                    .find(|w| w[0] == flag)
                    .map(|w| w[1].as_str())
            };
            if arg("-j") != Some("DNAT") {
                continue;
            }
            let (Some(protocol), Some(Ok(host_port))) = (
                arg("-p").and_then(Proto::parse),
                arg("--dport").map(str::parse),
            ) else {
                continue;
            };
            let host_ip = arg("-d").and_then(|d| d.split('/').next()?.parse().ok());
            out.push(LiveMapping {
                network: Some(net.clone()),
                container_id: id.clone(),
                v6,
                protocol,
                host_port,
                host_ip,
            });
        }
    }
    out
}

/// Every mapping on the node, in both backends.
pub(super) fn all() -> Result<Vec<LiveMapping>, PortMapError> {
    let (ipt, nft) = std::thread::scope(|s| {
        let nft = s.spawn(nftables::live);
        let ipt: Vec<LiveMapping> = super::iptables::tables()
            .iter()
            .flat_map(|(v6, t)| from_iptables(*v6, t))
            .collect();
        (ipt, nft.join())
    });
    let nft = nft.unwrap_or_else(|_| Err(FirewallError::Missing("nft listing panicked".into())))?;
    Ok(ipt.into_iter().chain(nft).collect())
}

/// The first live mapping of another attachment that `m` (for a pod of
/// family `v6`) would shadow or be shadowed by.
fn conflict<'a>(
    live: &'a [LiveMapping],
    a: &Attachment<'_>,
    m: &PortMapping,
    v6: bool,
) -> Option<&'a LiveMapping> {
    live.iter().find(|e| {
        !e.is_of(a)
            && e.v6 == v6
            && e.protocol == m.protocol
            && e.host_port == m.host_port
            && (e.host_ip.is_none() || m.dest().is_none() || e.host_ip == m.dest())
    })
}

/// Fails naming the other attachment if any mapping of `spec` overlaps one
/// already programmed.
pub(super) fn refuse_conflicts(spec: &PortMapSpec<'_>) -> Result<(), PortMapError> {
    if spec.mappings.is_empty() {
        return Ok(());
    }
    let live = all()?;
    for pod in spec.pod_ips() {
        let v6 = pod.addr().is_ipv6();
        for m in spec.mappings.iter().filter(|m| m.applies_to(v6)) {
            if let Some(e) = conflict(&live, &spec.attachment, m, v6) {
                return Err(PortMapError::Conflict {
                    wanted: endpoint(m.protocol, v6, m.dest(), m.host_port),
                    owner: e.owner(),
                    existing: endpoint(e.protocol, v6, e.host_ip, e.host_port),
                });
            }
        }
    }
    Ok(())
}

/// Lets `127.0.0.1:<hostPort>` reach the pod: `route_localnet=1` on the
/// host interface that routes to `pod` (the reference's
/// `getRoutableHostIF`; a failed lookup is silent there too).
pub(super) fn enable_route_localnet(pod: IpAddr) -> Result<(), FirewallError> {
    let Some(ifname) = route_ifname(pod) else {
        return Ok(());
    };
    let key = format!("net/ipv4/conf/{ifname}/route_localnet");
    crate::sysctl::set(&key, "1").map(drop).map_err(|e| {
        FirewallError::Missing(format!("unable to enable route_localnet ({key}): {e}"))
    })
}

/// The interface of the most specific main-table route covering `ip`.
fn route_ifname(ip: IpAddr) -> Option<String> {
    let mut nl = Netlink::open().ok()?;
    let routes = nl.routes(ip.is_ipv6()).ok()?;
    let best = routes
        .iter()
        .filter(|r| r.table == 254 && r.dst.contains(&ip) && r.oif.is_some())
        .max_by_key(|r| r.dst.prefix_len())?;
    Some(nl.link_by_index(best.oif?).ok()??.name)
}

/// Deletes the conntrack entries of UDP flows to each UDP host port, in
/// each family the pod has, so clients that sent before the mapping
/// existed reach the pod now (the reference does this on ADD). Failures
/// are reported on stderr only, as the reference does.
pub fn flush_udp_conntrack(mappings: &[PortMapping], v4: bool, v6: bool) {
    for m in mappings.iter().filter(|m| m.protocol == Proto::Udp) {
        for (fam_v6, present) in [(false, v4), (true, v6)] {
            if !present || !m.applies_to(fam_v6) {
                continue;
            }
            if let Err(e) =
                conntrack::delete_by_dst_port(fam_v6, conntrack::IPPROTO_UDP, m.host_port)
            {
                eprintln!(
                    "failed to delete stale UDP conntrack entries for port {}: {e}",
                    m.host_port
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_dump_gives_owned_mappings() {
        let dump = r#"*nat
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-DN-930fcb050ce9ff63c84e1 - [0:0]
-A CNI-DN-930fcb050ce9ff63c84e1 -s 10.94.0.0/24 -p tcp -m tcp --dport 5080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-930fcb050ce9ff63c84e1 -p tcp -m tcp --dport 5080 -j DNAT --to-destination 10.94.0.3:8080
-A CNI-DN-930fcb050ce9ff63c84e1 -d 10.94.0.1/32 -p udp -m udp --dport 5443 -j DNAT --to-destination 10.94.0.3:443
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"pmnet\" id: \"ctr-0002\"" -m multiport --dports 5080,5443 -j CNI-DN-930fcb050ce9ff63c84e1
COMMIT
"#;
        let live = from_iptables(false, &NatTable::parse(dump));
        assert_eq!(live.len(), 2);
        assert_eq!(live[0].container_id, "ctr-0002");
        assert_eq!(live[0].network.as_deref(), Some("pmnet"));
        assert_eq!(
            (live[0].protocol, live[0].host_port, live[0].host_ip),
            (Proto::Tcp, 5080, None)
        );
        assert_eq!(live[1].host_ip, Some("10.94.0.1".parse().unwrap()));
        let me = Attachment {
            network: "pmnet",
            container_id: "new",
        };
        let want = |ip: Option<&str>, port| PortMapping {
            host_port: port,
            container_port: 1,
            protocol: Proto::Tcp,
            host_ip: ip.map(|i| i.parse().unwrap()),
        };
        assert!(conflict(&live, &me, &want(None, 5080), false).is_some());
        assert!(conflict(&live, &me, &want(Some("10.0.0.9"), 5080), false).is_some());
        assert!(
            conflict(&live, &me, &want(None, 5080), true).is_none(),
            "other family"
        );
        assert!(
            conflict(&live, &me, &want(None, 5443), false).is_none(),
            "other protocol"
        );
        let same = Attachment {
            network: "pmnet",
            container_id: "ctr-0002",
        };
        assert!(
            conflict(&live, &same, &want(None, 5080), false).is_none(),
            "its own"
        );
        assert_eq!(endpoint(Proto::Udp, true, None, 53), "udp [::]:53");
    }
}
