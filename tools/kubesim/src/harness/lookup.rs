//! Reading the recorded cluster back: the state (or why there is none), a
//! node by name, and the CNI runtime that acts for a node. Below `cluster`,
//! `pod` and `teardown`, which all need it.

use super::error::{HarnessError, Result};
use super::nsutil::Netns;
use super::state::{NodeState, State};
use super::Harness;
use cni::runtime::{CniConfig, NetworkConfigList};

/// The runtime for `node`: plugins from the state's bin dir, run inside the
/// node netns, cache in the node's cache dir; plus the node's network config
/// loaded from its conf dir like a kubelet would.
pub fn node_runtime(
    h: &Harness,
    state: &State,
    node: &NodeState,
) -> Result<(CniConfig, NetworkConfigList)> {
    if !node.holder.is_ours(&h.dir.root) {
        return Err(HarnessError::State {
            path: h.dir.file(),
            reason: format!(
                "node {} is not running (its netns holder pid {} is gone)",
                node.name, node.holder.pid
            ),
        });
    }
    let ns = Netns::of_pid(node.holder.pid)?;
    let list = cni::runtime::load_dir(&node.conf_dir).map_err(HarnessError::cni(format!(
        "load CNI config of {}",
        node.name
    )))?;
    let rt = CniConfig::new(vec![state.cni_bin_dir.clone()], &node.cache_dir)
        .in_netns(ns.path)
        .with_call_log(h.dir.cni_log());
    Ok((rt, list))
}

/// Finds a node by name.
pub fn find_node<'a>(state: &'a State, name: &str) -> Result<&'a NodeState> {
    state.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
        HarnessError::Usage(format!("no node {name:?} (nodes: {})", node_names(state)))
    })
}

fn node_names(state: &State) -> String {
    state
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Loads the state or explains that there is no cluster.
pub fn require_state(h: &Harness) -> Result<State> {
    match h.dir.load()? {
        Some(s) if !s.nodes.is_empty() => Ok(s),
        _ => Err(HarnessError::Usage(format!(
            "no cluster in {}; run `kubesim up` first",
            h.dir.root.display()
        ))),
    }
}
