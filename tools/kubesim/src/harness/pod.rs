//! Pod sandboxes and containers, as the kubelet + CRI runtime handle them:
//! RunPodSandbox (pause process + CNI ADD), containers joining the sandbox
//! netns, StopPodSandbox/RemovePodSandbox (CNI DEL + kill pause).

use std::process::{Command, ExitStatus};

use super::error::{HarnessError, Result};
use super::hostport::{self, HostPort};
use super::lookup::{find_node, node_runtime, require_state};
use super::loopback;
use super::nsutil::Netns;
use super::state::{ContainerState, PodState, State};
use super::{random_hex, Harness};
use cni::runtime::{result, RuntimeConf};

/// The pod interface name (what the kubelet asks for).
pub const POD_IFNAME: &str = "eth0";

/// What to run.
#[derive(Clone, Debug)]
pub struct PodSpec {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Node to run on (default: the node with the fewest pods).
    pub node: Option<String>,
    /// Containers: (name, echo-server port).
    pub containers: Vec<(String, u16)>,
    /// `hostPort`s (opt-in DNAT from the node's address).
    pub host_ports: Vec<HostPort>,
}

/// Kubernetes-style names (RFC 1123 label, ≤ 63 chars): they end up in
/// `CNI_ARGS`, where `;` and `=` would break the `K=V;K=V` format, and in
/// log file names.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(ok_char)
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(HarnessError::Usage(format!(
            "invalid {what} {name:?}: use lowercase letters, digits and '-' (at most 63 characters)"
        )))
    }
}

/// `namespace/name` or `name` (namespace `default`).
pub fn split_key(key: &str) -> (String, String) {
    match key.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => ("default".to_string(), key.to_string()),
    }
}

fn find_pod<'a>(state: &'a State, key: &str) -> Result<&'a PodState> {
    let (ns, name) = split_key(key);
    state
        .pods
        .iter()
        .find(|p| p.namespace == ns && p.name == name)
        .ok_or_else(|| HarnessError::Usage(format!("no pod {ns}/{name}")))
}

fn pod_index(state: &State, key: &str) -> Result<usize> {
    let pod = find_pod(state, key)?;
    let k = pod.key();
    Ok(state
        .pods
        .iter()
        .position(|p| p.key() == k)
        .unwrap_or_default())
}

/// The kubelet's runtime config for a pod's attachment, with its
/// `hostPort`s as the `portMappings` capability (containerd sends them at
/// ADD and at every DEL).
pub fn runtime_conf(pod: &PodState) -> RuntimeConf {
    RuntimeConf {
        container_id: pod.sandbox_id.clone(),
        netns: pod.netns_path.clone(),
        ifname: POD_IFNAME.into(),
        args: RuntimeConf::kubernetes_args(&pod.namespace, &pod.name, &pod.sandbox_id, &pod.uid),
        capability_args: hostport::capability_args(&pod.host_ports),
    }
}

/// The pod netns (after checking the pause process is still ours).
pub fn pod_netns(h: &Harness, pod: &PodState) -> Result<Netns> {
    if !pod.pause.is_ours(&h.dir.root) {
        return Err(HarnessError::State {
            path: h.dir.file(),
            reason: format!(
                "pause process {} of pod {} is gone",
                pod.pause.pid,
                pod.key()
            ),
        });
    }
    Netns::of_pid(pod.pause.pid)
}

/// RunPodSandbox + containers. On any failure the sandbox is torn down
/// again (CNI DEL, as the spec requires after a failed ADD) and the pod is
/// forgotten, so nothing is left behind.
pub fn run_pod(h: &Harness, spec: &PodSpec) -> Result<PodState> {
    validate_name("namespace", &spec.namespace)?;
    validate_name("pod name", &spec.name)?;
    for (name, _) in &spec.containers {
        validate_name("container name", name)?;
    }
    let _lock = h.dir.lock()?;
    let mut state = require_state(h)?;
    if let Ok(existing) = find_pod(&state, &format!("{}/{}", spec.namespace, spec.name)) {
        return Err(HarnessError::Usage(format!(
            "pod {} already exists (sandbox {}, node {}, IP {}); delete it first or pick another name",
            existing.key(),
            existing.short_id(),
            existing.node,
            existing.ip().unwrap_or_else(|| "-".into())
        )));
    }
    let node = match &spec.node {
        Some(n) => find_node(&state, n)?.name.clone(),
        None => least_loaded(&state),
    };
    start_sandbox(h, &mut state, spec, &node)?;
    let idx = state.pods.len() - 1;
    let ready = add_network(h, &mut state, idx).and_then(|()| {
        for (name, port) in &spec.containers {
            let c = start_container(h, &state.pods[idx], name, *port)?;
            state.pods[idx].containers.push(c);
            h.dir.save(&state)?;
        }
        Ok(())
    });
    if let Err(e) = ready {
        let snapshot = state.pods[idx].clone();
        destroy_sandbox(h, &state, &snapshot);
        state.pods.remove(idx);
        h.dir.save(&state)?;
        return Err(e);
    }
    h.dir.save(&state)?;
    Ok(state.pods[idx].clone())
}

fn least_loaded(state: &State) -> String {
    state
        .nodes
        .iter()
        .min_by_key(|n| state.pods.iter().filter(|p| p.node == n.name).count())
        .map(|n| n.name.clone())
        .unwrap_or_default()
}

/// Starts the pause process and records the pod before any CNI call.
fn start_sandbox(h: &Harness, state: &mut State, spec: &PodSpec, node: &str) -> Result<()> {
    let key = format!("{}/{}", spec.namespace, spec.name);
    let log = h
        .dir
        .logs()
        .join(format!("pod-{}-{}.log", spec.namespace, spec.name));
    let (pause, _) = h
        .launcher
        .start("__pause", &["pod".into(), key], None, &log)?;
    let ns = match Netns::of_pid(pause.pid) {
        Ok(ns) => ns,
        Err(e) => {
            pause.kill(&h.dir.root);
            return Err(e);
        }
    };
    let uid = random_hex(16);
    let pod = PodState {
        namespace: spec.namespace.clone(),
        name: spec.name.clone(),
        uid: format!(
            "{}-{}-{}-{}-{}",
            &uid[..8],
            &uid[8..12],
            &uid[12..16],
            &uid[16..20],
            &uid[20..]
        ),
        sandbox_id: random_hex(32),
        node: node.to_string(),
        pause,
        netns_inode: ns.inode,
        netns_path: ns.path.display().to_string(),
        ips: Vec::new(),
        network_ready: false,
        host_ports: spec.host_ports.clone(),
        containers: Vec::new(),
    };
    state.pods.push(pod);
    h.dir.save(state)
}

/// CNI ADD for pod `idx`: the loopback network for `lo`, then the node's
/// network for `eth0` (containerd runs both for every sandbox); records
/// the pod's IPs.
fn add_network(h: &Harness, state: &mut State, idx: usize) -> Result<()> {
    let pod = &state.pods[idx];
    let node = find_node(state, &pod.node)?;
    let (rt, list) = node_runtime(h, state, node)?;
    rt.add_network_list(
        &loopback::network()?,
        &loopback::runtime_conf(&runtime_conf(pod)),
    )
    .map_err(HarnessError::cni(format!(
        "CNI ADD of lo (loopback) for pod {} on {}",
        pod.key(),
        node.name
    )))?;
    let res = rt
        .add_network_list(&list, &runtime_conf(pod))
        .map_err(HarnessError::cni(format!(
            "CNI ADD for pod {} on {}",
            pod.key(),
            node.name
        )))?;
    if result::first_ip(&res).is_none() {
        return Err(HarnessError::Usage(format!(
            "CNI ADD for pod {} returned no IP: {res:?}",
            pod.key()
        )));
    }
    let pod = &mut state.pods[idx];
    pod.ips = res.ips.iter().map(|ip| ip.address.to_string()).collect();
    pod.network_ready = true;
    h.dir.save(state)
}

/// CNI DEL for a pod (also when its ADD failed or never happened): the
/// loopback network, then the node's network, in containerd's order. Both
/// are attempted; the first failure is reported.
pub fn cni_del(h: &Harness, state: &State, pod: &PodState) -> Result<()> {
    let node = find_node(state, &pod.node)?;
    let (rt, list) = node_runtime(h, state, node)?;
    let mut conf = runtime_conf(pod);
    // A vanished sandbox is DEL'd with an empty netns, as containerd does.
    if !pod.pause.is_ours(&h.dir.root) {
        conf.netns.clear();
    }
    let lo = rt
        .del_network_list(&loopback::network()?, &loopback::runtime_conf(&conf))
        .map_err(HarnessError::cni(format!(
            "CNI DEL of lo (loopback) for pod {} on {}",
            pod.key(),
            node.name
        )));
    let main = rt
        .del_network_list(&list, &conf)
        .map_err(HarnessError::cni(format!(
            "CNI DEL for pod {} on {}",
            pod.key(),
            node.name
        )));
    lo.and(main)
}

fn destroy_sandbox(h: &Harness, state: &State, pod: &PodState) {
    for c in &pod.containers {
        if let Some(p) = &c.process {
            p.kill(&h.dir.root);
        }
    }
    if let Err(e) = cni_del(h, state, pod) {
        h.say(&format!("  warning: {e}"));
    }
    pod.pause.kill(&h.dir.root);
}

/// StopPodSandbox + RemovePodSandbox: containers killed, CNI DEL, pause
/// killed, a second CNI DEL with an empty netns. If the first DEL fails the
/// pod is kept (retry, or `down`).
pub fn delete_pod(h: &Harness, key: &str) -> Result<PodState> {
    let _lock = h.dir.lock()?;
    let mut state = require_state(h)?;
    let idx = pod_index(&state, key)?;
    let mut pod = state.pods[idx].clone();
    for c in pod.containers.iter_mut() {
        if let Some(p) = c.process.take() {
            p.kill(&h.dir.root);
        }
    }
    state.pods[idx] = pod.clone();
    h.dir.save(&state)?;
    // StopPodSandbox: DEL while the netns exists, with the cached prevResult.
    cni_del(h, &state, &pod)?;
    pod.pause.kill(&h.dir.root);
    // RemovePodSandbox: containerd DELs once more, now with an empty netns
    // and no prevResult (reference §7); a correct plugin just succeeds.
    let again = cni_del(h, &state, &pod);
    state.pods.remove(idx);
    h.dir.save(&state)?;
    again.map(|()| pod)
}

/// Starts an echo-server container in the pod's netns.
fn start_container(h: &Harness, pod: &PodState, name: &str, port: u16) -> Result<ContainerState> {
    let ns = pod_netns(h, pod)?;
    let log = h
        .dir
        .logs()
        .join(format!("ctr-{}-{}-{name}.log", pod.namespace, pod.name));
    let ident = format!("{}/{name}", pod.key());
    let (rec, _) = h
        .launcher
        .start("__echo-server", &[port.to_string(), ident], Some(&ns), &log)
        .map_err(|e| match e {
            HarnessError::Start { reason, .. } => HarnessError::Start {
                what: format!("container {name} (port {port}) in pod {}", pod.key()),
                reason,
            },
            other => other,
        })?;
    Ok(ContainerState {
        name: name.to_string(),
        port,
        process: Some(rec),
        restarts: 0,
    })
}

/// Adds a container to a running pod (no CNI call).
pub fn add_container(h: &Harness, key: &str, name: &str, port: u16) -> Result<ContainerState> {
    validate_name("container name", name)?;
    let _lock = h.dir.lock()?;
    let mut state = require_state(h)?;
    let idx = pod_index(&state, key)?;
    if state.pods[idx].containers.iter().any(|c| c.name == name) {
        return Err(HarnessError::Usage(format!(
            "pod {key} already has a container {name:?}"
        )));
    }
    let c = start_container(h, &state.pods[idx], name, port)?;
    state.pods[idx].containers.push(c.clone());
    h.dir.save(&state)?;
    Ok(c)
}

/// Restarts a container: kill, start again in the same sandbox netns. No
/// CNI call; the pod keeps its IP.
pub fn restart_container(h: &Harness, key: &str, name: &str) -> Result<ContainerState> {
    let _lock = h.dir.lock()?;
    let mut state = require_state(h)?;
    let idx = pod_index(&state, key)?;
    let pos = state.pods[idx]
        .containers
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| HarnessError::Usage(format!("pod {key} has no container {name:?}")))?;
    let old = state.pods[idx].containers[pos].clone();
    if let Some(p) = &old.process {
        p.kill(&h.dir.root);
    }
    state.pods[idx].containers[pos].process = None;
    h.dir.save(&state)?;
    let mut fresh = start_container(h, &state.pods[idx], name, old.port)?;
    fresh.restarts = old.restarts + 1;
    state.pods[idx].containers[pos] = fresh.clone();
    h.dir.save(&state)?;
    Ok(fresh)
}

/// A command that runs `argv` inside the pod netns (kubectl exec); the
/// caller decides about stdio.
pub fn exec_command(h: &Harness, key: &str, argv: &[String]) -> Result<Command> {
    let state = require_state(h)?;
    let pod = find_pod(&state, key)?;
    let ns = pod_netns(h, pod)?;
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| HarnessError::Usage("exec needs a command after --".into()))?;
    let mut cmd = ns.command(prog)?;
    cmd.args(args);
    Ok(cmd)
}

/// Runs `argv` inside the pod netns with our stdio.
pub fn exec(h: &Harness, key: &str, argv: &[String]) -> Result<ExitStatus> {
    exec_command(h, key, argv)?
        .status()
        .map_err(HarnessError::io(format!("run {argv:?} in pod {key}")))
}

/// CNI CHECK for a pod.
pub fn cni_check(h: &Harness, key: &str) -> Result<()> {
    let state = require_state(h)?;
    let pod = find_pod(&state, key)?;
    let node = find_node(&state, &pod.node)?;
    let (rt, list) = node_runtime(h, &state, node)?;
    rt.check_network_list(&list, &runtime_conf(pod))
        .map_err(HarnessError::cni(format!(
            "CNI CHECK for pod {}",
            pod.key()
        )))
}

/// The current state of one pod.
pub fn get_pod(h: &Harness, key: &str) -> Result<PodState> {
    let state = require_state(h)?;
    find_pod(&state, key).cloned()
}
