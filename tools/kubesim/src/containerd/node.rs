//! The containerd runtime across a cluster: start one daemon per node after
//! `up` built the node netns, and stop them all (drain over CRI when the
//! daemon answers, then by PID) before the node netns go.

use serde_json::Value;

use super::config::NodeDirs;
use super::daemon::{self, DaemonRecord};
use super::error::{io, NodeError, Result};
use super::image;
use super::kubelet::Kubelet;
use crate::harness::nsutil::Netns;
use crate::harness::state::{NodeState, State};
use crate::harness::Harness;

/// The containerd dirs of `node`.
pub fn dirs(h: &Harness, node: &NodeState) -> NodeDirs {
    NodeDirs::new(&h.dir.node_dir(&node.name))
}

/// True if the cluster in `state` runs pods through containerd.
pub fn in_use(h: &Harness, state: &State) -> bool {
    state
        .nodes
        .iter()
        .any(|n| dirs(h, n).record().exists() || dirs(h, n).config().exists())
}

/// Plugin types (and IPAM types) of a node's conflist.
fn plugin_types(node: &NodeState) -> Result<Vec<String>> {
    let list = cni::runtime::load_dir(&node.conf_dir)
        .map_err(|e| NodeError::Protocol(format!("CNI config of {}: {e}", node.name)))?;
    let mut out: Vec<String> = Vec::new();
    for p in &list.plugins {
        for t in [p.get("type"), p.get("ipam").and_then(|i| i.get("type"))]
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !out.iter().any(|o| o == t) {
                out.push(t.to_string());
            }
        }
    }
    Ok(out)
}

/// Starts containerd on every node of `state` and returns their kubelets.
/// On failure the caller tears the cluster down (every daemon is recorded).
pub fn start_all(h: &Harness, state: &State) -> Result<Vec<Kubelet>> {
    daemon::check_tools()?;
    let images = h.dir.root.join("images");
    std::fs::create_dir_all(&images).map_err(io("create image dir"))?;
    let archive = h.step("building pause and busybox images", || {
        image::build(&images).map_err(Into::into)
    })?;
    let root = std::fs::canonicalize(&h.dir.root).map_err(io("resolve state dir"))?;
    let mut kubelets = Vec::new();
    for node in &state.nodes {
        let d = dirs(h, node);
        let ns = Netns::of_pid(node.holder.pid).map_err(|e| NodeError::Safety(e.to_string()))?;
        h.step(&format!("starting containerd on {}", node.name), || {
            daemon::install_plugins(&d, &state.cni_bin_dir, &plugin_types(node)?)?;
            daemon::start(&node.name, &ns, &root, &d, &node.conf_dir, &archive)
                .map(drop)
                .map_err(Into::into)
        })?;
        kubelets.push(Kubelet::connect(&node.name, d)?);
    }
    Ok(kubelets)
}

/// The kubelet of every node whose containerd is running.
pub fn kubelets(h: &Harness, state: &State) -> Result<Vec<Kubelet>> {
    state
        .nodes
        .iter()
        .map(|n| {
            let d = dirs(h, n);
            match DaemonRecord::load(&d) {
                Some(r) if r.is_ours() => Kubelet::connect(&n.name, d),
                _ => Err(NodeError::Protocol(format!(
                    "containerd of {} is not running; run `kubesim down`",
                    n.name
                ))),
            }
        })
        .collect()
}

/// What stopping the runtime did on every node.
#[derive(Clone, Debug, Default)]
pub struct StopAll {
    /// Sandboxes stopped and removed over CRI (their CNI DEL by containerd).
    pub pods_drained: usize,
    /// Processes killed by PID.
    pub killed: usize,
    /// Stale cgroups removed.
    pub cgroups_removed: usize,
    /// Problems that did not stop the teardown.
    pub warnings: Vec<String>,
}

/// Drains (when containerd answers) and stops every node's containerd.
/// Works after a crash: everything is found from the records.
pub fn stop_all(h: &Harness, state: &State) -> StopAll {
    let mut out = StopAll::default();
    for node in &state.nodes {
        let d = dirs(h, node);
        let Some(rec) = DaemonRecord::load(&d) else {
            continue;
        };
        if rec.is_ours() && node.holder.is_ours(&h.dir.root) {
            match Kubelet::connect(&node.name, d.clone()).and_then(|k| k.drain()) {
                Ok(n) => out.pods_drained += n,
                Err(e) => out
                    .warnings
                    .push(format!("drain of {} over CRI: {e}", node.name)),
            }
        }
        let r = daemon::stop(&d);
        out.killed += r.killed;
        out.cgroups_removed += r.cgroups_removed;
        out.warnings.extend(r.warnings);
    }
    out
}

/// The pods every node's runtime reports (ListPodSandbox), for `status`.
pub fn pods_table(h: &Harness, state: &State) -> Result<String> {
    let mut t = crate::harness::table::Table::new(&["POD", "NODE", "IP", "SANDBOX", "STATE"]);
    for k in kubelets(h, state)? {
        for sb in k.list()? {
            let meta = sb.metadata.clone().unwrap_or_default();
            let state = crate::cri::api::PodSandboxState::try_from(sb.state)
                .map(|s| s.as_str_name().to_string())
                .unwrap_or_default();
            t.row(vec![
                format!("{}/{}", meta.namespace, meta.name),
                k.node.clone(),
                k.pod_ip(&sb.id).unwrap_or_else(|_| "-".into()),
                sb.id.chars().take(12).collect(),
                state,
            ]);
        }
    }
    Ok(t.render())
}
