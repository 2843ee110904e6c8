//! Reading kernel and disk state back, to prove what the CNI calls did:
//! the pod's address on eth0, and leftovers on a node after all pods are
//! gone (leases, veths, masquerade and DNAT rules, cache entries).

use std::net::IpAddr;

use super::cluster::NODE_UPLINK;
use super::error::Result;
use super::netlink::{self, in_netns};
use super::nsutil::Netns;
use super::state::NodeState;

/// IPs configured on `ifname` in a netns, global scope only.
pub fn iface_ips(ns: &Netns, ifname: &str) -> Result<Vec<IpAddr>> {
    in_netns(ns, |h| async move {
        netlink::global_addresses(&h, ifname).await
    })
}

/// Everything found on one node that a deleted pod could have left behind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Leftovers {
    /// Lease files in the host-local dataDir (not `lock`/`last_reserved_ip.*`).
    pub leases: Vec<String>,
    /// veth interfaces in the node netns (except the underlay uplink).
    pub veths: Vec<String>,
    /// iptables nat rules / nft rules that masquerade for pods.
    pub masq_rules: Vec<String>,
    /// portmap's per-pod DNAT rules (hostPorts), in either backend.
    pub dnat_rules: Vec<String>,
    /// Entries in the libcni result cache.
    pub cache_entries: Vec<String>,
}

impl Leftovers {
    /// True when nothing is left.
    pub fn is_clean(&self) -> bool {
        self.leases.is_empty()
            && self.veths.is_empty()
            && self.masq_rules.is_empty()
            && self.dnat_rules.is_empty()
            && self.cache_entries.is_empty()
    }

    /// One-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{} leases, {} veths, {} masquerade rules, {} hostPort rules, {} cache entries",
            self.leases.len(),
            self.veths.len(),
            self.masq_rules.len(),
            self.dnat_rules.len(),
            self.cache_entries.len()
        )
    }
}

/// Collects leftovers on `node` (netns `ns`).
pub fn leftovers(node: &NodeState, ns: &Netns) -> Result<Leftovers> {
    let nat = Nat::read(ns);
    Ok(Leftovers {
        leases: leases(node),
        veths: veths(ns)?,
        masq_rules: nat.masq_rules(),
        dnat_rules: nat.dnat_rules(),
        cache_entries: list_names(&node.cache_dir.join("results")),
    })
}

/// Lease files: every file under `<dataDir>/<network>/` except the lock and
/// the round-robin cursors host-local keeps forever, plus any attachment
/// marker left in our host-local's index (`<dataDir>/.cni-rs-index/<net>/by-id/`).
/// Network names never start with '.', so dot entries are not networks.
pub fn leases(node: &NodeState) -> Vec<String> {
    let mut out = Vec::new();
    for net in list_names(&node.data_dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
    {
        for f in list_names(&node.data_dir.join(&net)) {
            if f != "lock" && !f.starts_with("last_reserved_ip") {
                out.push(format!("{net}/{f}"));
            }
        }
    }
    let index = node.data_dir.join(cni::ipam::index::INDEX_DIR);
    for net in list_names(&index) {
        for marker in list_names(&index.join(&net).join("by-id")) {
            out.push(format!(
                "{}/{net}/by-id/{marker}",
                cni::ipam::index::INDEX_DIR
            ));
        }
    }
    out
}

fn list_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn veths(ns: &Netns) -> Result<Vec<String>> {
    let mut names = in_netns(ns, |h| async move { netlink::veth_names(&h).await })?;
    names.retain(|n| n != NODE_UPLINK);
    Ok(names)
}

/// The node's NAT rules as the tools print them (`iptables -t nat -S`,
/// `nft list ruleset`; a missing tool reads as no rules).
struct Nat {
    iptables: Vec<String>,
    nft: Vec<String>,
}

/// portmap's shared iptables chains and their jumps: created by the first
/// hostPort and, as in the reference, never deleted; they name no pod.
const SHARED_HOSTPORT_CHAINS: &str = "CNI-HOSTPORT-";

impl Nat {
    fn read(ns: &Netns) -> Nat {
        let lines =
            |out: String| -> Vec<String> { out.lines().map(|l| l.trim().to_string()).collect() };
        Nat {
            iptables: lines(
                ns.run("iptables", &["-w", "-t", "nat", "-S"])
                    .unwrap_or_default(),
            ),
            nft: lines(ns.run("nft", &["list", "ruleset"]).unwrap_or_default()),
        }
    }

    fn is_dnat(line: &str) -> bool {
        line.contains("CNI-DN-") || line.contains("CNI-SN-") || line.contains("-j DNAT")
    }

    /// Pod masquerade rules of both reference backends: bridge's iptables
    /// `CNI-…` chains/jumps in nat, and nft `… saddr … masquerade` rules
    /// (bridge's, and portmap's per-pod hairpin rules).
    fn masq_rules(&self) -> Vec<String> {
        let ipt = self.iptables.iter().filter(|l| {
            (l.contains("CNI-") || l.contains("MASQUERADE"))
                && !l.contains(SHARED_HOSTPORT_CHAINS)
                && !Self::is_dnat(l)
        });
        let nft = self
            .nft
            .iter()
            .filter(|l| l.contains("saddr") && l.contains("masquerade"));
        ipt.chain(nft).cloned().collect()
    }

    /// portmap's per-pod rules: iptables `CNI-DN-<hash>` chains, their
    /// entry rules and DNAT targets; nft `dnat to` rules.
    fn dnat_rules(&self) -> Vec<String> {
        let ipt = self.iptables.iter().filter(|l| Self::is_dnat(l));
        let nft = self.nft.iter().filter(|l| l.contains("dnat to"));
        ipt.chain(nft).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_hostport_chains_are_neither_masquerade_nor_dnat() {
        let nat = Nat {
            iptables: [
                "-N CNI-HOSTPORT-MASQ",
                "-A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ",
                "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
                "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
                "-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment \"dnat name: \\\"n\\\" id: \\\"x\\\"\" -m multiport --dports 5000 -j CNI-DN-1",
                "-A CNI-DN-1 -p tcp -m tcp --dport 5000 -j DNAT --to-destination 10.244.1.2:8080",
                "-A POSTROUTING -s 10.244.1.2/32 -j CNI-abc",
            ]
            .map(String::from)
            .to_vec(),
            nft: vec!["tcp dport 5000 dnat to 10.244.1.2:8080 comment \"x\"".into()],
        };
        assert_eq!(
            nat.masq_rules(),
            ["-A POSTROUTING -s 10.244.1.2/32 -j CNI-abc"]
        );
        assert_eq!(nat.dnat_rules().len(), 3);
    }
}
