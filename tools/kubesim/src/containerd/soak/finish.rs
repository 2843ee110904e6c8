//! The end of a soak, where the node must be as clean as before it: what
//! the pods' CNI calls could have left (leases, veths, masquerade and
//! hostPort rules, libcni cache entries in containerd's `/var/lib/cni`),
//! and a CNI GC of both networks containerd attaches (`eth0` from the
//! node's conflist, `lo` from `cni-loopback`) with the sandboxes the
//! runtime still lists as the valid attachments.

use cni::runtime::{Attachment, CniConfig, GcReport, NetworkConfigList};

use crate::containerd::error::{NodeError, Result};
use crate::containerd::node;
use crate::harness::inspect::{self, Leftovers};
use crate::harness::nsutil::Netns;
use crate::harness::state::NodeState;
use crate::harness::{loopback, Harness};

/// The pod interface of the node's conflist.
const IFNAME: &str = "eth0";

/// What a pod could have left on `node`, reading libcni's cache where
/// containerd keeps it.
pub fn leftovers(h: &Harness, node: &NodeState) -> Result<Leftovers> {
    let ns = Netns::of_pid(node.holder.pid)?;
    let mut view = node.clone();
    view.cache_dir = node::dirs(h, node).cni_cache();
    Ok(inspect::leftovers(&view, &ns)?)
}

/// One network's GC on one node.
#[derive(Clone, Debug)]
pub struct NetworkGc {
    /// The network name.
    pub network: String,
    /// Valid attachments sent.
    pub valid: usize,
    /// What GC did.
    pub report: GcReport,
}

/// CNI GC of both networks on `node`, valid = `sandboxes` (the ids the
/// runtime lists as ready). Plugins run as containerd runs them: in the
/// node netns and containerd's mount namespace, on containerd's cache.
pub fn gc(h: &Harness, node: &NodeState, sandboxes: &[String]) -> Result<Vec<NetworkGc>> {
    let ns = Netns::of_pid(node.holder.pid)?;
    let dirs = node::dirs(h, node);
    let rt = CniConfig::new(vec![dirs.cni_bin_mntns()], dirs.cni_cache()).in_netns(ns.path);
    let main = cni::runtime::load_dir(&node.conf_dir)
        .map_err(|e| NodeError::Protocol(format!("CNI config of {}: {e}", node.name)))?;
    let networks: [(NetworkConfigList, &str); 2] =
        [(main, IFNAME), (loopback::network()?, loopback::IFNAME)];
    let mut out = Vec::new();
    for (list, ifname) in networks {
        let valid: Vec<Attachment> = sandboxes
            .iter()
            .map(|id| Attachment {
                container_id: id.clone(),
                ifname: ifname.into(),
            })
            .collect();
        let report = rt.gc_network_list(&list, Some(&valid)).map_err(|e| {
            NodeError::Protocol(format!("GC of {} on {}: {e}", list.name, node.name))
        })?;
        out.push(NetworkGc {
            network: list.name.clone(),
            valid: valid.len(),
            report,
        });
    }
    Ok(out)
}
