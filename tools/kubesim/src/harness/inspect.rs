//! Reading kernel and disk state back, to prove what the CNI calls did:
//! the pod's address on eth0, and leftovers on a node after all pods are
//! gone (leases, veths, masquerade rules, cache entries).

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
    /// Entries in the libcni result cache.
    pub cache_entries: Vec<String>,
}

impl Leftovers {
    /// True when nothing is left.
    pub fn is_clean(&self) -> bool {
        self.leases.is_empty()
            && self.veths.is_empty()
            && self.masq_rules.is_empty()
            && self.cache_entries.is_empty()
    }

    /// One-line summary.
    pub fn summary(&self) -> String {
        format!(
            "{} leases, {} veths, {} masquerade rules, {} cache entries",
            self.leases.len(),
            self.veths.len(),
            self.masq_rules.len(),
            self.cache_entries.len()
        )
    }
}

/// Collects leftovers on `node` (netns `ns`).
pub fn leftovers(node: &NodeState, ns: &Netns) -> Result<Leftovers> {
    Ok(Leftovers {
        leases: leases(node),
        veths: veths(ns)?,
        masq_rules: masq_rules(ns),
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

/// Pod masquerade rules of both reference backends: iptables `CNI-…`
/// chains/jumps in nat, and nft `… saddr … masquerade` rules.
fn masq_rules(ns: &Netns) -> Vec<String> {
    let mut rules: Vec<String> = ns
        .run("iptables", &["-w", "-t", "nat", "-S"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("CNI-") || l.contains("MASQUERADE"))
        .map(String::from)
        .collect();
    rules.extend(
        ns.run("nft", &["list", "ruleset"])
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| l.contains("saddr") && l.contains("masquerade"))
            .map(String::from),
    );
    rules
}
