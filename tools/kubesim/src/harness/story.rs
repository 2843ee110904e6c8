//! `kubesim demo` on the built-in runtime: the story of issue 5, each
//! claim's evidence gathered from the simulated pods and handed to
//! [`super::claims`], which words it.

use std::net::SocketAddr;
use std::time::Duration;

use super::child::probe;
use super::claims::{
    self, HostPortDnat, HostPortRefusal, NodeCleanup, Pairs, Peer, PerNode, APP_PORT, DUO_PORT,
    HOSTPORT_POD, HOSTPORT_POD_2, HOST_PORT, SAME_PORT_PODS,
};
use super::error::{HarnessError, Result};
use super::hostport::HostPort;
use super::inspect;
use super::lookup;
use super::nsutil::Netns;
use super::pod::{self, PodSpec};
use super::report::DemoReport;
use super::state::{PodState, State};
use super::table;
use super::Harness;

/// How long one TCP probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The whole story on a running 2-node cluster; fills `r`.
pub fn story(h: &Harness, r: &mut DemoReport) -> Result<()> {
    plugin_status(h, r)?;
    h.say(&format!(
        "== starting {SAME_PORT_PODS} pods on node-1 and 2 on node-2"
    ));
    for i in 1..=SAME_PORT_PODS {
        create(h, &format!("web-{i}"), "node-1", &[("app", APP_PORT)])?;
    }
    for i in 1..=2 {
        create(h, &format!("api-{i}"), "node-2", &[("app", APP_PORT)])?;
    }
    let state = lookup::require_state(h)?;
    unique_ips(r, &state);
    h.say("== probing every pod from every other pod (TCP)");
    traffic(h, r, &state);
    h.say(&format!(
        "== a hostPort: node-1:{HOST_PORT} -> one pod's :{APP_PORT}"
    ));
    host_port(h, r)?;
    let state = lookup::require_state(h)?;
    cni_check_all(h, r, &state);
    h.say("== one pod, two containers");
    localhost(h, r)?;
    h.say("== restarting a container");
    restart(h, r)?;
    h.say("== deleting and recreating a pod");
    recreate(h, r)?;
    let state = lookup::require_state(h)?;
    r.nodes = table::nodes_table(&state);
    r.pods = table::pods_table(&state);
    h.say("== deleting every pod");
    cleanup(h, r)
}

/// CNI STATUS on every node before any pod (a kubelet waits for it).
fn plugin_status(h: &Harness, r: &mut DemoReport) -> Result<()> {
    let state = lookup::require_state(h)?;
    let mut nodes = PerNode::default();
    for node in &state.nodes {
        let (rt, list) = lookup::node_runtime(h, &state, node)?;
        match rt.status_network_list(&list) {
            Ok(()) if cni::spec::version_at_least(&list.cni_version, "1.1.0") => nodes.push(
                true,
                format!(
                    "{}: ready (network {}, cniVersion {})",
                    node.name, list.name, list.cni_version
                ),
            ),
            Ok(()) => nodes.push(
                true,
                format!(
                    "{}: cniVersion {} has no STATUS verb (skipped)",
                    node.name, list.cni_version
                ),
            ),
            Err(e) => nodes.failed(&node.name, e),
        }
    }
    nodes.check(r, "CNI STATUS reports the network ready on every node");
    Ok(())
}

/// CNI CHECK of every attachment: the plugins confirm what they set up.
fn cni_check_all(h: &Harness, r: &mut DemoReport, state: &State) {
    let failed: Vec<String> = state
        .pods
        .iter()
        .filter_map(|p| pod::cni_check(h, &p.key()).err().map(|e| e.to_string()))
        .collect();
    claims::cni_check(r, "", state.pods.len(), &failed);
}

fn spec(name: &str, node: &str, containers: &[(&str, u16)], host_ports: &[HostPort]) -> PodSpec {
    PodSpec {
        namespace: "default".into(),
        name: name.into(),
        node: Some(node.into()),
        containers: containers
            .iter()
            .map(|(n, p)| (n.to_string(), *p))
            .collect(),
        host_ports: host_ports.to_vec(),
    }
}

fn create(h: &Harness, name: &str, node: &str, containers: &[(&str, u16)]) -> Result<PodState> {
    h.step(&format!("pod default/{name} on {node}"), || {
        pod::run_pod(h, &spec(name, node, containers, &[]))
    })
}

fn unique_ips(r: &mut DemoReport, state: &State) {
    let mut ips: Vec<String> = state.pods.iter().filter_map(PodState::ip).collect();
    ips.sort();
    ips.dedup();
    let bad: Vec<String> = state
        .pods
        .iter()
        .filter(|p| {
            let cidr = state.nodes.iter().find(|n| n.name == p.node).and_then(|n| {
                n.pod_cidrs
                    .first()
                    .and_then(|c| c.parse::<ipnet::IpNet>().ok())
            });
            let ip = p.ips.first().and_then(|s| s.parse::<ipnet::IpNet>().ok());
            !matches!((ip, cidr), (Some(ip), Some(c)) if c.contains(&ip.addr()))
        })
        .map(|p| {
            format!(
                "{}: {} (not in {}'s pod CIDR)",
                p.name,
                p.ip().unwrap_or_else(|| "no IP".into()),
                p.node
            )
        })
        .collect();
    claims::unique_ips(r, "", state.pods.len(), ips.len(), &bad);
}

/// Probes `dst`'s container `container` from inside `src`'s netns.
fn probe_from(
    h: &Harness,
    src: &PodState,
    dst_ip: &str,
    port: u16,
) -> std::result::Result<super::child::Pong, String> {
    let addr: SocketAddr = format!("{dst_ip}:{port}")
        .parse()
        .map_err(|e| format!("{dst_ip}: {e}"))?;
    let ns = pod::pod_netns(h, src).map_err(|e| e.to_string())?;
    ns.with(|| probe(addr, PROBE_TIMEOUT))
        .map_err(|e| e.to_string())?
}

/// The IP part of a peer address as the echo server printed it
/// (`1.2.3.4:5`, `[fd10::1]:5` or a bare IP).
fn seen_as_ip(seen: &str) -> String {
    match seen.parse::<SocketAddr>() {
        Ok(sa) => sa.ip().to_canonical().to_string(),
        Err(_) => seen.trim_matches(|c| c == '[' || c == ']').to_string(),
    }
}

fn expect_server(dst: &PodState, container: &str) -> String {
    format!("{}/{container}", dst.key())
}

/// Pod-to-pod traffic: every pair, then the node-1 pods sharing one port.
fn traffic(h: &Harness, r: &mut DemoReport, state: &State) {
    let peers: Vec<Peer> = state
        .pods
        .iter()
        .map(|p| Peer {
            name: p.name.clone(),
            node: p.node.clone(),
            ip: p.ip().unwrap_or_default(),
            key: p.key(),
        })
        .collect();
    let mut probe = |src: usize, dst: usize| {
        probe_from(h, &state.pods[src], &peers[dst].ip, APP_PORT)
            .map(|p| (p.server, seen_as_ip(&p.seen_as)))
    };
    Pairs::probe_all(&peers, &mut probe).check(r, " (TCP)", "");
    let listening = state
        .pods
        .iter()
        .filter(|p| {
            p.node == "node-1"
                && p.containers
                    .iter()
                    .any(|c| c.port == APP_PORT && c.process.is_some())
        })
        .count();
    claims::same_port(
        r,
        &peers,
        listening,
        &format!("listening on :{APP_PORT}"),
        probe,
    );
}

/// Docker's `-p` next to the Kubernetes model: one pod maps node-1's
/// :HOST_PORT to its :APP_PORT and is reached from node-2 at node-1's
/// address; a second pod asking for the same host port is refused by
/// portmap and leaves nothing behind.
fn host_port(h: &Harness, r: &mut DemoReport) -> Result<()> {
    let mapping = HostPort {
        host_port: HOST_PORT,
        container_port: APP_PORT,
        protocol: "tcp".into(),
    };
    let run = |name: &str| {
        pod::run_pod(
            h,
            &spec(
                name,
                "node-1",
                &[("app", APP_PORT)],
                std::slice::from_ref(&mapping),
            ),
        )
    };
    let target = h.step(
        &format!("pod default/{HOSTPORT_POD} on node-1, hostPort {mapping}"),
        || run(HOSTPORT_POD),
    )?;
    let state = lookup::require_state(h)?;
    let node = lookup::find_node(&state, "node-1")?;
    let node_ip = node.underlay_ip.clone();
    let from = pod::get_pod(h, "default/api-1")?;
    let want = expect_server(&target, "app");
    let answer = |ip: &str, port: u16| match probe_from(h, &from, ip, port) {
        Ok(p) if p.server == want => Ok(seen_as_ip(&p.seen_as)),
        Ok(p) => Err(format!("answered by {}", p.server)),
        Err(e) => Err(e),
    };
    let pod_ip = target.ip().unwrap_or_default();
    claims::host_port_dnat(
        r,
        &HostPortDnat {
            how: String::new(),
            from: &from.name,
            node_ip: &node_ip,
            pod_ip: &pod_ip,
            server: &want,
            via_node: answer(&node_ip, HOST_PORT),
            direct: answer(&pod_ip, APP_PORT),
        },
    );
    let ns = Netns::of_pid(node.holder.pid)?;
    let before = inspect::leftovers(node, &ns)?;
    h.say(&format!(
        "  pod default/{HOSTPORT_POD_2} on node-1, the same hostPort {mapping} (must be refused)"
    ));
    let second = run(HOSTPORT_POD_2);
    let after = inspect::leftovers(node, &ns)?;
    let recorded = lookup::require_state(h)?
        .pods
        .iter()
        .filter(|p| p.name == HOSTPORT_POD_2)
        .count();
    claims::host_port_refused(
        r,
        &HostPortRefusal {
            by: "",
            second: second.map(|p| p.key()).map_err(|e| e.to_string()),
            before: &before,
            after: &after,
            recorded_in: "pods recorded",
            recorded,
            still: answer(&node_ip, HOST_PORT).is_ok(),
        },
    );
    Ok(())
}

fn localhost(h: &Harness, r: &mut DemoReport) -> Result<()> {
    let duo = create(h, "duo", "node-2", &[("server", DUO_PORT)])?;
    // The client is a second container process in the same sandbox netns.
    let argv = [
        h.launcher.exe.display().to_string(),
        "__tcp-check".into(),
        "127.0.0.1".into(),
        DUO_PORT.to_string(),
        "--expect".into(),
        "default/duo/server".into(),
    ];
    let client = pod::exec_command(h, "default/duo", &argv)?
        .output()
        .map_err(HarnessError::io("run the client container"))?;
    let reply = String::from_utf8_lossy(&client.stdout).trim().to_string();
    claims::localhost(r, client.status.success(), "client container", &reply);
    let second = pod::add_container(h, "default/duo", "server-2", DUO_PORT);
    let in_use =
        matches!(&second, Err(HarnessError::Start { reason, .. }) if reason.contains("EADDRINUSE"));
    let sidecar = pod::add_container(h, "default/duo", "sidecar", DUO_PORT + 1).is_ok();
    claims::one_bind(
        r,
        in_use && sidecar,
        &match &second {
            Err(e) => format!("refused ({e}); :{} ok: {sidecar}", DUO_PORT + 1),
            Ok(_) => format!("started in {} — ports are not shared!", duo.key()),
        },
    );
    Ok(())
}

fn cni_calls(h: &Harness) -> usize {
    std::fs::read_to_string(h.dir.cni_log())
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn eth0_ips(h: &Harness, pod: &PodState) -> Result<Vec<std::net::IpAddr>> {
    inspect::iface_ips(&pod::pod_netns(h, pod)?, pod::POD_IFNAME)
}

/// All of a pod's IPs, without prefix (a restart must keep every one).
fn pod_ips(pod: &PodState) -> String {
    let ips: Vec<&str> = pod
        .ips
        .iter()
        .map(|s| s.split('/').next().unwrap_or(s))
        .collect();
    ips.join(",")
}

fn restart(h: &Harness, r: &mut DemoReport) -> Result<()> {
    let before = pod::get_pod(h, "default/web-1")?;
    let eth0_before = eth0_ips(h, &before)?;
    let calls = cni_calls(h);
    let fresh = pod::restart_container(h, "default/web-1", "app")?;
    let after = pod::get_pod(h, "default/web-1")?;
    let eth0_after = eth0_ips(h, &after)?;
    let from = pod::get_pod(h, "default/api-1")?;
    let reach = probe_from(h, &from, &after.ip().unwrap_or_default(), APP_PORT).is_ok();
    let old_pid = before.containers[0]
        .process
        .as_ref()
        .map(|p| p.pid)
        .unwrap_or_default();
    let new_pid = fresh.process.as_ref().map(|p| p.pid).unwrap_or_default();
    let calls = cni_calls(h) - calls;
    claims::restart(
        r,
        &claims::Restart {
            proof: "",
            old: format!("pid {old_pid}"),
            new: format!("pid {new_pid}"),
            replaced: old_pid != new_pid,
            ip_before: pod_ips(&before),
            ip_after: pod_ips(&after),
            no_cni_call: eth0_before == eth0_after && calls == 0,
            cni_evidence: format!("eth0 {eth0_after:?}; CNI calls during restart: {calls}"),
            reachable: reach,
        },
    );
    Ok(())
}

fn recreate(h: &Harness, r: &mut DemoReport) -> Result<()> {
    let old = h.step("delete pod default/web-2", || {
        pod::delete_pod(h, "default/web-2")
    })?;
    let new = create(h, "web-2", "node-1", &[("app", APP_PORT)])?;
    let from = pod::get_pod(h, "default/api-2")?;
    let reach = probe_from(h, &from, &new.ip().unwrap_or_default(), APP_PORT).is_ok();
    claims::recreate(
        r,
        "sandbox ID",
        [&old.sandbox_id, &new.sandbox_id],
        [&old.ip().unwrap_or_default(), &new.ip().unwrap_or_default()],
        reach,
    );
    Ok(())
}

fn cleanup(h: &Harness, r: &mut DemoReport) -> Result<()> {
    let before = lookup::require_state(h)?;
    let mut with_pods = Vec::new();
    for node in &before.nodes {
        with_pods.push(inspect::leftovers(node, &Netns::of_pid(node.holder.pid)?)?);
    }
    let keys: Vec<String> = before.pods.iter().map(PodState::key).collect();
    for key in &keys {
        h.step(&format!("delete pod {key}"), || pod::delete_pod(h, key))?;
    }
    let state = lookup::require_state(h)?;
    let mut nodes = Vec::new();
    for (node, before) in state.nodes.iter().zip(with_pods) {
        nodes.push(NodeCleanup {
            name: node.name.clone(),
            before,
            pods_left: state.pods.iter().filter(|p| p.node == node.name).count(),
            after: inspect::leftovers(node, &Netns::of_pid(node.holder.pid)?)?,
        });
    }
    claims::cleanup(
        r,
        "deleting all pods",
        "",
        "pods recorded",
        keys.len(),
        &nodes,
    );
    let mut gc = PerNode::default();
    for node in &state.nodes {
        let (rt, list) = lookup::node_runtime(h, &state, node)?;
        let outcome = rt.gc_network_list(&list, Some(&[]));
        let after = inspect::leftovers(node, &Netns::of_pid(node.holder.pid)?)?;
        claims::gc_empty_on(&mut gc, &node.name, &list.cni_version, outcome, &after);
    }
    claims::gc_empty(r, gc);
    Ok(())
}
