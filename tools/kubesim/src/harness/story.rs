//! The checks of `kubesim demo`, one function per claim of issue 5.

use std::net::SocketAddr;
use std::time::Duration;

use super::child::probe;
use super::error::{HarnessError, Result};
use super::hostport::{self, HostPort};
use super::inspect;
use super::lookup;
use super::nsutil::Netns;
use super::pod::{self, PodSpec};
use super::report::DemoReport;
use super::state::{PodState, State};
use super::table;
use super::Harness;

/// Port every demo container listens on.
const APP_PORT: u16 = 8080;
/// Pods on node-1 for the "ten pods, same port" check.
const SAME_PORT_PODS: usize = 10;
/// The node port the hostPort pod maps to its :APP_PORT (Docker's `-p 5000:8080`).
const HOST_PORT: u16 = 5000;
/// The pod with the hostPort, and the one refused the same port.
const HOSTPORT_POD: &str = "web-hostport";
const HOSTPORT_POD_2: &str = "web-hostport-2";
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
    all_pairs(h, r, &state)?;
    same_port(h, r, &state)?;
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
    let mut details = Vec::new();
    let mut ok = true;
    for node in &state.nodes {
        let (rt, list) = lookup::node_runtime(h, &state, node)?;
        match rt.status_network_list(&list) {
            Ok(()) if cni::spec::version_at_least(&list.cni_version, "1.1.0") => {
                details.push(format!(
                    "{}: ready (network {}, cniVersion {})",
                    node.name, list.name, list.cni_version
                ))
            }
            Ok(()) => details.push(format!(
                "{}: cniVersion {} has no STATUS verb (skipped)",
                node.name, list.cni_version
            )),
            Err(e) => {
                ok = false;
                details.push(format!("{}: {e}", node.name));
            }
        }
    }
    r.check(
        "CNI STATUS reports the network ready on every node",
        ok,
        details.join("; "),
    );
    Ok(())
}

/// CNI CHECK of every attachment: the plugins confirm what they set up.
fn cni_check_all(h: &Harness, r: &mut DemoReport, state: &State) {
    let failed: Vec<String> = state
        .pods
        .iter()
        .filter_map(|p| pod::cni_check(h, &p.key()).err().map(|e| e.to_string()))
        .collect();
    r.check(
        "CNI CHECK passes for every pod (interfaces, addresses, routes, leases)",
        failed.is_empty(),
        if failed.is_empty() {
            format!("{} attachments checked", state.pods.len())
        } else {
            failed.join("; ")
        },
    );
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
    let ips: Vec<String> = state.pods.iter().filter_map(PodState::ip).collect();
    let mut sorted = ips.clone();
    sorted.sort();
    sorted.dedup();
    let in_cidr = state.pods.iter().all(|p| {
        let node = state.nodes.iter().find(|n| n.name == p.node);
        match (
            p.ips.first().and_then(|s| s.parse::<ipnet::IpNet>().ok()),
            node,
        ) {
            (Some(ip), Some(n)) => n.pod_cidrs[0]
                .parse::<ipnet::IpNet>()
                .is_ok_and(|c| c.contains(&ip.addr())),
            _ => false,
        }
    });
    r.check(
        "every pod gets a unique IP from its node's pod CIDR",
        ips.len() == state.pods.len() && sorted.len() == ips.len() && in_cidr,
        format!(
            "{} pods, {} distinct IPs, all inside their node's CIDR: {in_cidr}",
            state.pods.len(),
            sorted.len()
        ),
    );
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

fn all_pairs(h: &Harness, r: &mut DemoReport, state: &State) -> Result<()> {
    let (mut same, mut cross, mut failed, mut natted) = (0, 0, Vec::new(), Vec::new());
    let mut seen_cross = String::new();
    for src in &state.pods {
        for dst in state.pods.iter().filter(|d| d.key() != src.key()) {
            let ip = dst.ip().unwrap_or_default();
            match probe_from(h, src, &ip, APP_PORT) {
                Ok(p) if p.server == expect_server(dst, "app") => {
                    if !seen_as_ip(&p.seen_as).eq(&src.ip().unwrap_or_default()) {
                        natted.push(format!("{}->{} seen as {}", src.name, dst.name, p.seen_as));
                    }
                    if src.node == dst.node {
                        same += 1;
                    } else {
                        cross += 1;
                        if seen_cross.is_empty() {
                            seen_cross = format!(
                                "; e.g. {} -> {} seen as {}",
                                src.name, dst.name, p.seen_as
                            );
                        }
                    }
                }
                Ok(p) => failed.push(format!(
                    "{}->{}: answered by {}",
                    src.name, dst.name, p.server
                )),
                Err(e) => failed.push(format!("{}->{}: {e}", src.name, dst.name)),
            }
        }
    }
    let total = state.pods.len() * (state.pods.len() - 1);
    // The Kubernetes model: pods talk to pods without NAT. With an ipMasq
    // conflist the reference masquerades everything outside the node's own
    // subnet, so cross-node peers would see the node's address instead.
    r.check(
        "pod-to-pod traffic is not NATed: every server sees the client's pod IP",
        natted.is_empty() && same + cross > 0,
        if natted.is_empty() {
            format!(
                "{} connections, all seen from the client's pod IP",
                same + cross
            )
        } else {
            format!(
                "{} NATed (is ipMasq on in the conflist?): {}",
                natted.len(),
                natted
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        },
    );
    r.check(
        "all pairs of pods reach each other by pod IP (TCP), same node and across nodes",
        failed.is_empty() && same + cross == total,
        if failed.is_empty() {
            format!(
                "{total}/{total} connections ok ({same} same-node, {cross} cross-node{seen_cross})"
            )
        } else {
            format!(
                "{} failed: {}",
                failed.len(),
                failed
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        },
    );
    Ok(())
}

fn same_port(h: &Harness, r: &mut DemoReport, state: &State) -> Result<()> {
    let web: Vec<&PodState> = state.pods.iter().filter(|p| p.node == "node-1").collect();
    let listening = web
        .iter()
        .filter(|p| {
            p.containers
                .iter()
                .any(|c| c.port == APP_PORT && c.process.is_some())
        })
        .count();
    let from = state
        .pods
        .iter()
        .find(|p| p.node != "node-1")
        .ok_or_else(|| HarnessError::Usage("no pod outside node-1".into()))?;
    let reachable = web
        .iter()
        .filter(|p| {
            probe_from(h, from, &p.ip().unwrap_or_default(), APP_PORT)
                .is_ok_and(|x| x.server == expect_server(p, "app"))
        })
        .count();
    r.check(
        &format!("{SAME_PORT_PODS} pods on one node all listen on :{APP_PORT}, no conflict, all reachable"),
        web.len() == SAME_PORT_PODS && listening == SAME_PORT_PODS && reachable == SAME_PORT_PODS,
        format!("{listening}/{} listening on :{APP_PORT}, {reachable}/{} answered {} from node-2", web.len(), web.len(), from.name),
    );
    Ok(())
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
    let target = h.step(
        &format!("pod default/{HOSTPORT_POD} on node-1, hostPort {mapping}"),
        || {
            pod::run_pod(
                h,
                &spec(
                    HOSTPORT_POD,
                    "node-1",
                    &[("app", APP_PORT)],
                    std::slice::from_ref(&mapping),
                ),
            )
        },
    )?;
    let state = lookup::require_state(h)?;
    let node = lookup::find_node(&state, "node-1")?;
    let node_ip = node.underlay_ip.clone();
    let from = pod::get_pod(h, "default/api-1")?;
    let want = expect_server(&target, "app");
    let answer = |ip: &str, port: u16| match probe_from(h, &from, ip, port) {
        Ok(p) if p.server == want => Ok(p),
        Ok(p) => Err(format!("answered by {}", p.server)),
        Err(e) => Err(e),
    };
    let pod_ip = target.ip().unwrap_or_default();
    let via_node = answer(&node_ip, HOST_PORT);
    let direct = answer(&pod_ip, APP_PORT);
    r.check(
        &format!("a hostPort is an opt-in DNAT on the node's address: node-1:{HOST_PORT} reaches one pod's :{APP_PORT} from node-2"),
        via_node.is_ok() && direct.is_ok(),
        match (&via_node, &direct) {
            (Ok(p), Ok(_)) => format!(
                "{} -> {node_ip}:{HOST_PORT} answered by {} (it saw {}); the same pod also at its own IP {pod_ip}:{APP_PORT}",
                from.name, p.server, p.seen_as
            ),
            _ => format!("via node-1:{HOST_PORT}: {via_node:?}; via pod IP: {direct:?}"),
        },
    );
    let ns = Netns::of_pid(node.holder.pid)?;
    let before = inspect::leftovers(node, &ns)?;
    h.say(&format!(
        "  pod default/{HOSTPORT_POD_2} on node-1, the same hostPort {mapping} (must be refused)"
    ));
    let second = pod::run_pod(
        h,
        &spec(
            HOSTPORT_POD_2,
            "node-1",
            &[("app", APP_PORT)],
            std::slice::from_ref(&mapping),
        ),
    );
    let after = inspect::leftovers(node, &ns)?;
    let recorded = lookup::require_state(h)?
        .pods
        .iter()
        .any(|p| p.name == HOSTPORT_POD_2);
    let still = answer(&node_ip, HOST_PORT).is_ok();
    let refused = matches!(&second, Err(e) if e.to_string().contains("already allocated"));
    r.check(
        &format!("a second pod asking for hostPort {HOST_PORT} on that node is refused by portmap and leaves nothing behind"),
        refused && !recorded && before == after && still,
        format!(
            "{}; node-1 before: {}; after: {}; pod recorded: {recorded}; node-1:{HOST_PORT} still answered by {HOSTPORT_POD}: {still}",
            match &second {
                Err(e) => format!("refused: {e}"),
                Ok(p) => format!("{} started with hostPort {HOST_PORT} too!", p.key()),
            },
            before.summary(),
            after.summary()
        ),
    );
    r.note(hostport::LESSON);
    Ok(())
}

fn localhost(h: &Harness, r: &mut DemoReport) -> Result<()> {
    let duo = create(h, "duo", "node-2", &[("server", 9000)])?;
    // The client is a second container process in the same sandbox netns.
    let argv = [
        h.launcher.exe.display().to_string(),
        "__tcp-check".into(),
        "127.0.0.1".into(),
        "9000".into(),
        "--expect".into(),
        "default/duo/server".into(),
    ];
    let client = pod::exec_command(h, "default/duo", &argv)?
        .output()
        .map_err(HarnessError::io("run the client container"))?;
    let reply = String::from_utf8_lossy(&client.stdout).trim().to_string();
    r.check(
        "two containers in one pod talk over 127.0.0.1",
        client.status.success(),
        format!("client container -> 127.0.0.1:9000: {reply}"),
    );
    let second = pod::add_container(h, "default/duo", "server-2", 9000);
    let in_use =
        matches!(&second, Err(HarnessError::Start { reason, .. }) if reason.contains("EADDRINUSE"));
    let sidecar = pod::add_container(h, "default/duo", "sidecar", 9001).is_ok();
    r.check(
        "two containers in one pod cannot bind the same port",
        in_use && sidecar,
        match &second {
            Err(e) => format!("second bind of :9000 refused ({e}); :9001 ok: {sidecar}"),
            Ok(_) => format!(
                "second server on :9000 started in {} — ports are not shared!",
                duo.key()
            ),
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
    r.check(
        "restarting a container keeps the pod IP and makes no CNI call",
        before.ips == after.ips && eth0_before == eth0_after && cni_calls(h) == calls && reach && old_pid != new_pid,
        format!(
            "web-1/app pid {old_pid} -> {new_pid}; IP {} -> {}; eth0 {:?}; CNI calls during restart: {}; reachable: {reach}",
            before.ip().unwrap_or_default(),
            after.ip().unwrap_or_default(),
            eth0_after,
            cni_calls(h) - calls
        ),
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
    r.check(
        "deleting and recreating a pod gives a new sandbox ID and a new IP",
        old.sandbox_id != new.sandbox_id && old.ip() != new.ip() && reach,
        format!(
            "sandbox {} -> {}; IP {} -> {}; reachable: {reach}",
            old.short_id(),
            new.short_id(),
            old.ip().unwrap_or_default(),
            new.ip().unwrap_or_default()
        ),
    );
    Ok(())
}

fn cleanup(h: &Harness, r: &mut DemoReport) -> Result<()> {
    let before = lookup::require_state(h)?;
    let mut present = Vec::new();
    for node in &before.nodes {
        let left = inspect::leftovers(node, &Netns::of_pid(node.holder.pid)?)?;
        present.push(format!("{}: {}", node.name, left.summary()));
    }
    let keys: Vec<String> = before.pods.iter().map(PodState::key).collect();
    for key in &keys {
        h.step(&format!("delete pod {key}"), || pod::delete_pod(h, key))?;
    }
    let state = lookup::require_state(h)?;
    let mut details = Vec::new();
    let mut clean = state.pods.is_empty();
    for node in &state.nodes {
        let ns = Netns::of_pid(node.holder.pid)?;
        let left = inspect::leftovers(node, &ns)?;
        clean &= left.is_clean();
        details.push(format!("{}: {}", node.name, left.summary()));
    }
    r.check(
        "after deleting all pods no lease, veth, masquerade or hostPort (DNAT) rule, or cache entry is left",
        clean,
        format!(
            "with pods: {}; after: {}",
            present.join("; "),
            details.join("; ")
        ),
    );
    let mut gc_ok = true;
    let mut gc_details = Vec::new();
    for node in &state.nodes {
        let (rt, list) = lookup::node_runtime(h, &state, node)?;
        match rt.gc_network_list(&list, Some(&[])) {
            Ok(rep) => {
                let ns = Netns::of_pid(node.holder.pid)?;
                let left = inspect::leftovers(node, &ns)?;
                gc_ok &= rep.stale_deleted.is_empty() && left.is_clean();
                gc_details.push(format!(
                    "{}: {} stale attachments, GC sent to {} plugins (cniVersion {}), after GC {}",
                    node.name,
                    rep.stale_deleted.len(),
                    rep.plugins_collected,
                    list.cni_version,
                    left.summary()
                ));
            }
            Err(e) => {
                gc_ok = false;
                gc_details.push(format!("{}: GC failed: {e}", node.name));
            }
        }
    }
    r.check(
        "GC with an empty valid-attachment list finds nothing left",
        gc_ok,
        gc_details.join("; "),
    );
    Ok(())
}
