//! `kubesim demo --runtime containerd`: the demo's story with containerd
//! doing every CNI call, each fact read where the kubelet (or the plugins)
//! would have it: pod IPs from `PodSandboxStatus`, traffic from inside the
//! real containers (`ExecSync`), restarts proven from libcni's cache file
//! and host-local's lease, CHECK and GC run against containerd's cache.

use std::path::PathBuf;
use std::time::SystemTime;

use cni::runtime::{Attachment, CniConfig, NetworkConfigList, RuntimeConf};

use super::error::{NodeError, Result};
use super::kubelet::{Kubelet, Pod};
use super::node;
use crate::cri::api;
use crate::harness::claims::{
    self, HostPortDnat, HostPortRefusal, NodeCleanup, Pairs, Peer, PerNode, APP_PORT, DUO_PORT,
    HOSTPORT_POD, HOSTPORT_POD_2, HOST_PORT, SAME_PORT_PODS,
};
use crate::harness::hostport::{self, HostPort};
use crate::harness::nsutil::Netns;
use crate::harness::report::DemoReport;
use crate::harness::state::{NodeState, State};
use crate::harness::table::Table;
use crate::harness::{inspect, Harness};

/// The pod interface.
const IFNAME: &str = "eth0";

/// The cluster as the story sees it.
struct Cluster<'a> {
    h: &'a Harness,
    state: &'a State,
    kubelets: &'a [Kubelet],
    pods: Vec<Pod>,
}

impl Cluster<'_> {
    fn kubelet(&self, node: &str) -> Result<&Kubelet> {
        self.kubelets
            .iter()
            .find(|k| k.node == node)
            .ok_or_else(|| NodeError::Protocol(format!("no kubelet for {node}")))
    }
    fn node(&self, name: &str) -> Result<&NodeState> {
        self.state
            .nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| NodeError::Protocol(format!("no node {name}")))
    }
    fn pod(&self, name: &str) -> Result<&Pod> {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| NodeError::Protocol(format!("no pod {name}")))
    }
    fn create(&mut self, name: &str, node: &str, containers: &[(&str, u16)]) -> Result<Pod> {
        self.create_with(name, node, containers, &[])
    }
    fn create_with(
        &mut self,
        name: &str,
        node: &str,
        containers: &[(&str, u16)],
        host_ports: &[HostPort],
    ) -> Result<Pod> {
        let k = self.kubelet(node)?;
        let pod = self.h.step(&format!("pod default/{name} on {node}"), || {
            k.run_pod("default", name, containers, host_ports)
                .map_err(Into::into)
        })?;
        self.pods.push(pod.clone());
        Ok(pod)
    }
    /// What a pod's CNI calls could have left on `node`: leases, veths,
    /// NAT rules, and entries in containerd's libcni cache.
    fn leftovers(&self, node: &NodeState) -> Result<inspect::Leftovers> {
        let ns = Netns::of_pid(node.holder.pid)?;
        let mut view = node.clone();
        view.cache_dir = self.cache_dir(node);
        Ok(inspect::leftovers(&view, &ns)?)
    }
    /// `kubesim-get IP PORT` inside `src`'s first container: (server, seen IP).
    fn get(&self, src: &Pod, ip: &str, port: u16) -> std::result::Result<(String, String), String> {
        let k = self.kubelet(&src.node).map_err(|e| e.to_string())?;
        let c = src.containers.first().ok_or("pod without containers")?;
        let port = port.to_string();
        let (code, out, err) = k
            .exec(&c.id, &["kubesim-get", ip, &port])
            .map_err(|e| e.to_string())?;
        let mut parts = out.split_whitespace();
        match (code, parts.next(), parts.next()) {
            (0, Some(server), Some(seen)) => Ok((server.to_string(), seen_ip(seen))),
            _ => Err(format!("exit {code}: {out} {err}")),
        }
    }
    /// libcni's cache dir of a node (containerd's `/var/lib/cni`).
    fn cache_dir(&self, node: &NodeState) -> PathBuf {
        node::dirs(self.h, node).cni_cache()
    }
    /// Our libcni runtime on containerd's cache and plugins, each plugin run
    /// in the node netns and containerd's mount namespace, as containerd runs them.
    fn runtime(&self, node: &NodeState) -> Result<(CniConfig, NetworkConfigList)> {
        let ns = Netns::of_pid(node.holder.pid)?;
        let list = cni::runtime::load_dir(&node.conf_dir)
            .map_err(|e| NodeError::Protocol(format!("CNI config of {}: {e}", node.name)))?;
        let bin = node::dirs(self.h, node).cni_bin_mntns();
        Ok((
            CniConfig::new(vec![bin], self.cache_dir(node)).in_netns(ns.path),
            list,
        ))
    }
}

/// `[::ffff:10.244.1.2]` / `10.244.1.2` → `10.244.1.2`.
fn seen_ip(seen: &str) -> String {
    let s = seen.trim_matches(|c| c == '[' || c == ']');
    s.strip_prefix("::ffff:").unwrap_or(s).to_string()
}

/// The whole story on a running cluster whose nodes run containerd.
pub fn story(h: &Harness, state: &State, kubelets: &[Kubelet], r: &mut DemoReport) -> Result<()> {
    let mut c = Cluster {
        h,
        state,
        kubelets,
        pods: Vec::new(),
    };
    runtime_version(&c, r);
    h.say(&format!(
        "== starting {SAME_PORT_PODS} pods on node-1 and 2 on node-2 through CRI"
    ));
    for i in 1..=SAME_PORT_PODS {
        c.create(&format!("web-{i}"), "node-1", &[("app", APP_PORT)])?;
    }
    for i in 1..=2 {
        c.create(&format!("api-{i}"), "node-2", &[("app", APP_PORT)])?;
    }
    pod_ips(&c, r)?;
    h.say("== probing every pod from inside every other pod (ExecSync)");
    traffic(&c, r)?;
    h.say(&format!(
        "== a hostPort through CRI port_mappings: node-1:{HOST_PORT} -> one pod's :{APP_PORT}"
    ));
    host_port(&mut c, r)?;
    cni_check_all(&c, r);
    h.say("== one pod, two containers");
    localhost(&mut c, r)?;
    h.say("== restarting a container the kubelet's way");
    restart(&mut c, r)?;
    h.say("== deleting and recreating a pod");
    recreate(&mut c, r)?;
    gc_keeps_live(&c, r)?;
    r.nodes = crate::harness::table::nodes_table(state);
    r.pods = pods_table(&c)?;
    h.say("== deleting every pod");
    cleanup(&mut c, r)
}

fn runtime_version(c: &Cluster, r: &mut DemoReport) {
    let mut nodes = PerNode::default();
    for k in c.kubelets {
        match (k.cri.version(), k.cri.status()) {
            (Ok(v), Ok(st)) => {
                let conds: Vec<String> = st
                    .status
                    .map(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .map(|c| format!("{}={}", c.r#type, c.status))
                    .collect();
                nodes.push(
                    v.runtime_name == "containerd"
                        && v.runtime_api_version.starts_with("v1")
                        && conds.iter().all(|c| c.ends_with("=true"))
                        && conds.len() >= 2,
                    format!(
                        "{}: {} {} (CRI {}), {}",
                        k.node,
                        v.runtime_name,
                        v.runtime_version,
                        v.runtime_api_version,
                        conds.join(" ")
                    ),
                );
            }
            (Err(e), _) | (_, Err(e)) => nodes.failed(&k.node, e),
        }
    }
    nodes.check(
        r,
        "every node's runtime answers CRI Version and Status (runtime and network ready)",
    );
}

fn pod_ips(c: &Cluster, r: &mut DemoReport) -> Result<()> {
    let mut ips: Vec<&str> = c.pods.iter().map(|p| p.ip.as_str()).collect();
    let mut bad = Vec::new();
    for p in &c.pods {
        let cidr: ipnet::IpNet = c.node(&p.node)?.pod_cidrs[0]
            .parse()
            .map_err(|e| NodeError::Protocol(format!("pod CIDR: {e}")))?;
        let inside =
            p.ip.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| cidr.contains(&ip));
        let k = c.kubelet(&p.node)?;
        let cid = &p.containers[0].id;
        let (_, eth0, _) = k.exec(cid, &["ip", "-4", "-o", "addr", "show", IFNAME])?;
        if !inside || !eth0.contains(&format!("inet {}/", p.ip)) {
            bad.push(format!("{}: {} (eth0: {eth0})", p.name, p.ip));
        }
    }
    ips.sort();
    ips.dedup();
    claims::unique_ips(
        r,
        " (PodSandboxStatus = eth0 in the container)",
        c.pods.len(),
        ips.len(),
        &bad,
    );
    Ok(())
}

/// Pod-to-pod traffic: every pair, then the node-1 pods sharing one port.
fn traffic(c: &Cluster, r: &mut DemoReport) -> Result<()> {
    let peers: Vec<Peer> = c
        .pods
        .iter()
        .map(|p| Peer {
            name: p.name.clone(),
            node: p.node.clone(),
            ip: p.ip.clone(),
            key: p.key(),
        })
        .collect();
    let probe = |src: usize, dst: usize| c.get(&c.pods[src], &c.pods[dst].ip, APP_PORT);
    Pairs::probe_all(&peers, probe).check(r, " from inside their containers", " (underlay)");
    let k = c.kubelet("node-1")?;
    let running = c
        .pods
        .iter()
        .filter(|p| {
            p.node == "node-1"
                && k.cri
                    .container_status(&p.containers[0].id)
                    .is_ok_and(|s| s.state == api::ContainerState::ContainerRunning as i32)
        })
        .count();
    claims::same_port(
        r,
        &peers,
        running,
        "containers RUNNING (ContainerStatus)",
        probe,
    );
    Ok(())
}

/// The host ports containerd hands to portmap: the sandbox's port
/// mappings with a host port (containerd's `toCNIPortMappings`).
fn cni_host_ports(config: &api::PodSandboxConfig) -> Vec<HostPort> {
    config
        .port_mappings
        .iter()
        .filter_map(|m| {
            Some(HostPort {
                host_port: u16::try_from(m.host_port).ok().filter(|p| *p > 0)?,
                container_port: u16::try_from(m.container_port).ok()?,
                protocol: api::Protocol::try_from(m.protocol)
                    .unwrap_or(api::Protocol::Tcp)
                    .as_str_name()
                    .to_ascii_lowercase(),
            })
        })
        .collect()
}

/// The runtime conf containerd used for a pod's attachment (its netns path
/// is the one in the cached result, so CHECK compares like for like; its
/// host ports are the `portMappings` containerd sent).
fn runtime_conf(k: &Kubelet, p: &Pod) -> Result<RuntimeConf> {
    Ok(RuntimeConf {
        container_id: p.sandbox_id.clone(),
        netns: k.sandbox_netns_path(&p.sandbox_id)?,
        ifname: IFNAME.into(),
        args: RuntimeConf::kubernetes_args(&p.namespace, &p.name, &p.sandbox_id, &p.uid),
        capability_args: hostport::capability_args(&cni_host_ports(&p.config)),
    })
}

fn cni_check_all(c: &Cluster, r: &mut DemoReport) {
    let mut failed = Vec::new();
    for p in &c.pods {
        let res = (|| -> Result<()> {
            let k = c.kubelet(&p.node)?;
            let (rt, list) = c.runtime(c.node(&p.node)?)?;
            rt.check_network_list(&list, &runtime_conf(k, p)?)
                .map_err(|e| NodeError::Protocol(e.to_string()))
        })();
        if let Err(e) = res {
            failed.push(format!("{}: {e}", p.name));
        }
    }
    claims::cni_check(r, ", from containerd's libcni cache", c.pods.len(), &failed);
}

/// Docker's `-p` next to the Kubernetes model, the kubelet's way: the
/// hostPort travels in `PodSandboxConfig.port_mappings`, containerd hands
/// it to portmap; node-2 reaches the pod at node-1's address, and a second
/// sandbox asking for the same host port fails RunPodSandbox with
/// portmap's error and leaves nothing behind.
fn host_port(c: &mut Cluster, r: &mut DemoReport) -> Result<()> {
    let mapping = HostPort {
        host_port: HOST_PORT,
        container_port: APP_PORT,
        protocol: "tcp".into(),
    };
    let target = c.create_with(
        HOSTPORT_POD,
        "node-1",
        &[("app", APP_PORT)],
        std::slice::from_ref(&mapping),
    )?;
    let node = c.node("node-1")?.clone();
    let from = c.pod("api-1")?.clone();
    let want = format!("{}/app", target.key());
    let answer = |ip: &str, port: u16| match c.get(&from, ip, port) {
        Ok((server, seen)) if server == want => Ok(seen),
        Ok((server, _)) => Err(format!("answered by {server}")),
        Err(e) => Err(e),
    };
    claims::host_port_dnat(
        r,
        &HostPortDnat {
            how: format!("port_mappings [{mapping}] in RunPodSandbox; ExecSync kubesim-get in "),
            from: &from.name,
            node_ip: &node.underlay_ip,
            pod_ip: &target.ip,
            server: &want,
            via_node: answer(&node.underlay_ip, HOST_PORT),
            direct: answer(&target.ip, APP_PORT),
        },
    );
    let before = c.leftovers(&node)?;
    c.h.say(&format!(
        "  pod default/{HOSTPORT_POD_2} on node-1, the same hostPort {mapping} (must be refused)"
    ));
    let k = c.kubelet("node-1")?;
    let second = k.run_pod(
        "default",
        HOSTPORT_POD_2,
        &[("app", APP_PORT)],
        std::slice::from_ref(&mapping),
    );
    let after = c.leftovers(&node)?;
    let sandboxes = k
        .list()?
        .iter()
        .filter(|sb| {
            sb.metadata
                .as_ref()
                .is_some_and(|m| m.name == HOSTPORT_POD_2)
        })
        .count();
    let still = answer(&node.underlay_ip, HOST_PORT).is_ok();
    if let Ok(p) = second.as_ref() {
        c.pods.push(p.clone());
    }
    claims::host_port_refused(
        r,
        &HostPortRefusal {
            by: "RunPodSandbox ",
            second: second.map(|p| p.key()).map_err(|e| e.to_string()),
            before: &before,
            after: &after,
            recorded_in: "its sandboxes (ListPodSandbox)",
            recorded: sandboxes,
            still,
        },
    );
    Ok(())
}

fn localhost(c: &mut Cluster, r: &mut DemoReport) -> Result<()> {
    let duo = c.create(
        "duo",
        "node-2",
        &[("server", DUO_PORT), ("client", DUO_PORT + 1)],
    )?;
    let k = c.kubelet("node-2")?;
    let client = duo.container("client")?;
    let port = DUO_PORT.to_string();
    let (code, out, err) = k.exec(&client.id, &["kubesim-get", "127.0.0.1", &port])?;
    claims::localhost(
        r,
        code == 0 && out.starts_with("default/duo/server "),
        "duo/client (ExecSync kubesim-get)",
        &format!("{out}{err}"),
    );
    // A third container binding the server's port: it must fail (shared netns).
    let third = k.start_container(&duo, "server-2", DUO_PORT, 0)?;
    let st = k.wait_state(&third.id, api::ContainerState::ContainerExited)?;
    let log = std::fs::read_to_string(&st.log_path).unwrap_or_default();
    let in_use = log.contains("Address in use") || log.contains("Address already in use");
    claims::one_bind(
        r,
        st.state == api::ContainerState::ContainerExited as i32 && st.exit_code != 0 && in_use,
        &format!(
            "duo/server-2 ContainerStatus {} exit code {}; log: {}",
            api::ContainerState::try_from(st.state)
                .map(|s| s.as_str_name())
                .unwrap_or("?"),
            st.exit_code,
            log.lines().last().unwrap_or("").trim()
        ),
    );
    k.cri
        .remove_container(&third.id)
        .map_err(super::error::cri("RemoveContainer"))?;
    Ok(())
}

/// A file's bytes and mtime (the plugins' evidence that nothing ran).
fn fingerprint(path: &std::path::Path) -> Option<(Vec<u8>, SystemTime)> {
    let bytes = std::fs::read(path).ok()?;
    let mtime = std::fs::metadata(path).ok()?.modified().ok()?;
    Some((bytes, mtime))
}

/// The host-local lease file(s) naming `sandbox_id`.
fn lease_files(node: &NodeState, sandbox_id: &str) -> Vec<PathBuf> {
    inspect::leases(node)
        .into_iter()
        .map(|l| node.data_dir.join(l))
        .filter(|p| {
            std::fs::read_to_string(p)
                .map(|t| t.starts_with(sandbox_id))
                .unwrap_or(false)
        })
        .collect()
}

fn restart(c: &mut Cluster, r: &mut DemoReport) -> Result<()> {
    let pod = c.pod("web-1")?.clone();
    let node = c.node(&pod.node)?.clone();
    let k = c.kubelet(&pod.node)?;
    let cache = c
        .cache_dir(&node)
        .join("results")
        .join(format!("{}-{}-{IFNAME}", c.state.network, pod.sandbox_id));
    let leases = lease_files(&node, &pod.sandbox_id);
    let before: Vec<_> = std::iter::once(&cache)
        .chain(&leases)
        .map(|p| fingerprint(p))
        .collect();
    let old = pod.container("app")?.clone();
    let fresh = k.restart_container(&pod, &old)?;
    let after: Vec<_> = std::iter::once(&cache)
        .chain(&leases)
        .map(|p| fingerprint(p))
        .collect();
    let ip_after = k.pod_ip(&pod.sandbox_id)?;
    let from = c.pod("api-1")?;
    let reach = c.get(from, &ip_after, APP_PORT).is_ok();
    let unchanged = before == after && before.iter().all(Option::is_some) && !leases.is_empty();
    claims::restart(
        r,
        &claims::Restart {
            proof: " (libcni cache file and lease untouched)",
            old: old.id[..12.min(old.id.len())].to_string(),
            new: format!(
                "{} (attempt {})",
                &fresh.id[..12.min(fresh.id.len())],
                fresh.attempt
            ),
            replaced: fresh.id != old.id && fresh.attempt == 1,
            ip_before: pod.ip.clone(),
            ip_after,
            no_cni_call: unchanged,
            cni_evidence: format!(
                "cache file + {} lease file(s) unchanged (bytes, mtime): {unchanged}",
                leases.len()
            ),
            reachable: reach,
        },
    );
    if let Some(p) = c.pods.iter_mut().find(|p| p.name == "web-1") {
        p.containers[0] = fresh;
    }
    Ok(())
}

fn recreate(c: &mut Cluster, r: &mut DemoReport) -> Result<()> {
    let old = c.pod("web-2")?.clone();
    let k = c.kubelet(&old.node)?;
    c.h.step(
        "delete pod default/web-2 (StopPodSandbox, RemovePodSandbox)",
        || k.delete_pod(&old.sandbox_id).map_err(Into::into),
    )?;
    c.pods.retain(|p| p.name != "web-2");
    let new = c.create("web-2", "node-1", &[("app", APP_PORT)])?;
    let from = c.pod("api-2")?;
    let reach = c.get(from, &new.ip, APP_PORT).is_ok();
    claims::recreate(
        r,
        "sandbox",
        [&old.sandbox_id, &new.sandbox_id],
        [&old.ip, &new.ip],
        reach,
    );
    Ok(())
}

/// CNI GC with the valid attachments the kubelet knows (ListPodSandbox):
/// nothing of a live pod may go.
fn gc_keeps_live(c: &Cluster, r: &mut DemoReport) -> Result<()> {
    let mut nodes = PerNode::default();
    for node in &c.state.nodes {
        let k = c.kubelet(&node.name)?;
        let valid: Vec<Attachment> = k
            .list()?
            .into_iter()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
            .map(|s| Attachment {
                container_id: s.id,
                ifname: IFNAME.into(),
            })
            .collect();
        let before = c.leftovers(node)?;
        let (rt, list) = c.runtime(node)?;
        match rt.gc_network_list(&list, Some(&valid)) {
            Ok(rep) => {
                let after = c.leftovers(node)?;
                let kept = after.leases == before.leases && after.dnat_rules == before.dnat_rules;
                nodes.push(
                    rep.stale_deleted.is_empty() && kept,
                    format!(
                        "{}: {} valid (ListPodSandbox), {} stale, {} leases and {} hostPort rules kept: {kept}",
                        node.name,
                        valid.len(),
                        rep.stale_deleted.len(),
                        before.leases.len(),
                        before.dnat_rules.len()
                    ),
                );
            }
            Err(e) => nodes.failed(&node.name, format_args!("GC failed: {e}")),
        }
    }
    nodes.check(
        r,
        "CNI GC with the sandboxes ListPodSandbox reports keeps every live pod's lease and hostPort rules",
    );
    Ok(())
}

fn pods_table(c: &Cluster) -> Result<String> {
    let mut t = Table::new(&["POD", "NODE", "IP", "SANDBOX", "STATE", "CONTAINERS"]);
    for k in c.kubelets {
        for sb in k.list()? {
            let meta = sb.metadata.clone().unwrap_or_default();
            let ip = k.pod_ip(&sb.id).unwrap_or_else(|_| "-".into());
            let containers: Vec<String> = k
                .cri
                .list_containers(&sb.id)
                .map_err(super::error::cri("ListContainers"))?
                .iter()
                .map(|ct| {
                    let m = ct.metadata.clone().unwrap_or_default();
                    format!("{}#{}", m.name, m.attempt)
                })
                .collect();
            t.row(vec![
                format!("{}/{}", meta.namespace, meta.name),
                k.node.clone(),
                ip,
                sb.id[..12.min(sb.id.len())].to_string(),
                api::PodSandboxState::try_from(sb.state)
                    .map(|s| s.as_str_name().to_string())
                    .unwrap_or_default(),
                containers.join(","),
            ]);
        }
    }
    Ok(t.render())
}

fn cleanup(c: &mut Cluster, r: &mut DemoReport) -> Result<()> {
    let mut with_pods = Vec::new();
    for node in &c.state.nodes {
        with_pods.push(c.leftovers(node)?);
    }
    let mut deleted = 0;
    for k in c.kubelets {
        for sb in k.list()? {
            k.delete_pod(&sb.id)?;
            deleted += 1;
        }
    }
    c.pods.clear();
    let mut nodes = Vec::new();
    for (node, before) in c.state.nodes.iter().zip(with_pods) {
        nodes.push(NodeCleanup {
            name: node.name.clone(),
            before,
            pods_left: c.kubelet(&node.name)?.list()?.len(),
            after: c.leftovers(node)?,
        });
    }
    claims::cleanup(
        r,
        "StopPodSandbox/RemovePodSandbox of every pod",
        "sandbox, ",
        "sandboxes (ListPodSandbox)",
        deleted,
        &nodes,
    );
    let mut gc = PerNode::default();
    for node in &c.state.nodes {
        let (rt, list) = c.runtime(node)?;
        let outcome = rt.gc_network_list(&list, Some(&[]));
        let after = c.leftovers(node)?;
        claims::gc_empty_on(&mut gc, &node.name, &list.cni_version, outcome, &after);
    }
    claims::gc_empty(r, gc);
    Ok(())
}
