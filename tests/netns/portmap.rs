//! The `portmap` plugin, chained after our `bridge` in throwaway nodes:
//! rules and kernel state against Debian's reference
//! (`/usr/lib/cni/portmap`, 1.1.1), mixed runs (one implementation's ADD,
//! the other's DEL), TCP/UDP traffic through the mapping (from the node,
//! through `127.0.0.1`, and hairpin from the pod itself) with both
//! backends, GC, stale UDP conntrack entries removed on ADD (read with
//! `conntrack -L`), and what we do beyond the reference (refusing a host
//! port another attachment holds; no rule left by a failed ADD).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use cni_test_support::bridge::*;
use cni_test_support::common::*;
use serde_json::{json, Value};

const REFERENCE: &str = "/usr/lib/cni/portmap";
const NET: &str = "pmnet";

fn ours() -> std::path::PathBuf {
    bin("portmap")
}

/// A pod on the node's bridge (`cnitest0`, 10.94.0.0/24 + fd00:94::/64,
/// gateway .1, hairpin on) with our bridge + host-local.
struct Pod {
    ns: PodNs,
    id: String,
    result: Value,
}

fn bridge_conf(node: &Node) -> Value {
    node.conf(
        "1.0.0",
        json!({"name": NET, "hairpinMode": true, "ipam": {"subnet": null,
            "ranges": [[{"subnet": "10.94.0.0/24"}], [{"subnet": "fd00:94::/64"}]]}}),
    )
}

fn add_pod(node: &Node, id: &str) -> Pod {
    let ns = PodNs::new();
    let run = node
        .call(
            "ADD",
            id,
            &ns.path.display().to_string(),
            &bridge_conf(node),
        )
        .expect_ok();
    Pod {
        ns,
        id: id.to_string(),
        result: run.json(),
    }
}

fn mappings() -> Value {
    json!([
        {"hostPort": 5080, "containerPort": 8080, "protocol": "tcp"},
        {"hostPort": 5053, "containerPort": 5353, "protocol": "udp"},
        {"hostPort": 5443, "containerPort": 443, "protocol": "tcp", "hostIP": "10.94.0.1"},
        {"hostPort": 5444, "containerPort": 444, "protocol": "tcp", "hostIP": "fd00:94::1"},
        {"hostPort": 5445, "containerPort": 445, "protocol": "tcp", "hostIP": "0.0.0.0"},
    ])
}

/// A portmap config chained after the pod's bridge result.
fn pm_conf(pod: &Pod, maps: &Value, extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": NET, "type": "portmap",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": maps}, "prevResult": pod.result});
    merge(&mut c, extra);
    c
}

fn pm(binary: &Path, cmd: &str, pod: &Pod, netns: Option<&str>, conf: &Value) -> PluginRun {
    let ns = netns
        .map(str::to_string)
        .unwrap_or_else(|| pod.ns.path.display().to_string());
    let call = PluginCall::new(cmd, &pod.id, &ns, "eth0", Path::new("/nonexistent"))
        .stdin(serde_json::to_vec(conf).expect("json"));
    run_plugin(binary, &call)
}

fn route_localnet() -> String {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Both nat tables, without the shared chains' counters (none) and
/// without the bridge's own chains.
fn nat_state() -> String {
    format!("{}\n---\n{}", nat_rules(false), nat_rules(true))
}

/// The per-attachment rules (chain declarations, chain rules, entries).
fn attachment_rules(state: &str) -> Vec<&str> {
    state.lines().filter(|l| l.contains("CNI-DN-")).collect()
}

/// One implementation's view: ADD output, nat tables, route_localnet,
/// then the nat tables after its DEL.
fn reference_run(binary: std::path::PathBuf) -> (bool, String, String, String) {
    std::thread::spawn(move || {
        let node = Node::new();
        let pod = add_pod(&node, "ctr-0002");
        let conf = pm_conf(&pod, &mappings(), json!({}));
        node.ns.assert_inside();
        let add = pm(&binary, "ADD", &pod, None, &conf).expect_ok();
        let state = nat_state();
        let localnet = route_localnet();
        pm(&binary, "DEL", &pod, None, &conf).expect_ok();
        let after = nat_state();
        node.call(
            "DEL",
            &pod.id,
            &pod.ns.path.display().to_string(),
            &bridge_conf(&node),
        )
        .expect_ok();
        (add.json() == pod.result, state, localnet, after)
    })
    .join()
    .expect("node thread")
}

#[test]
fn iptables_state_matches_the_reference() {
    require_root!();
    let reference = reference_run(REFERENCE.into());
    let our = reference_run(ours());
    assert!(our.0 && reference.0, "ADD prints prevResult unchanged");
    assert_eq!(our.1, reference.1, "nat tables after ADD");
    assert_eq!(our.2, "1", "route_localnet on the bridge");
    assert_eq!(our.2, reference.2);
    assert_eq!(our.3, reference.3, "nat tables after DEL");
    assert!(attachment_rules(&our.3).is_empty(), "{}", our.3);
    assert!(!attachment_rules(&our.1).is_empty());
}

#[test]
fn mixed_runs_leave_no_attachment_rule() {
    require_root!();
    let node = Node::new();
    node.ns.assert_inside();
    let pairs = [(ours(), REFERENCE.into()), (REFERENCE.into(), ours())];
    for (i, (adder, deleter)) in pairs.into_iter().enumerate() {
        let pod = add_pod(&node, &format!("mixed-{i}"));
        let conf = pm_conf(&pod, &mappings(), json!({}));
        pm(&adder, "ADD", &pod, None, &conf).expect_ok();
        assert!(!attachment_rules(&nat_state()).is_empty());
        // DEL as the CRI repeats it: no netns, no prevResult.
        let mut bare = conf.clone();
        bare.as_object_mut().expect("object").remove("prevResult");
        pm(&deleter, "DEL", &pod, Some(""), &bare).expect_ok();
        pm(&deleter, "DEL", &pod, Some(""), &bare).expect_ok();
        let state = nat_state();
        assert!(
            attachment_rules(&state).is_empty(),
            "{} ADD, {} DEL:\n{state}",
            adder.display(),
            deleter.display()
        );
    }
}

/// Serves TCP on `port` and UDP on `port + 1` inside the pod, answering
/// each connection or datagram with the peer's address.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(pod: &PodNs, port: u16) -> Server {
        let path = pod.path.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("pod netns");
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns pod");
            let tcp = TcpListener::bind(("::", port)).expect("bind tcp");
            tcp.set_nonblocking(true).expect("nonblocking");
            let udp = UdpSocket::bind(("::", port + 1)).expect("bind udp");
            udp.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("timeout");
            ready_tx.send(()).expect("ready");
            let mut buf = [0u8; 64];
            while !flag.load(Ordering::SeqCst) {
                if let Ok((mut s, peer)) = tcp.accept() {
                    let _ = s.write_all(peer.ip().to_canonical().to_string().as_bytes());
                }
                if let Ok((_, peer)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(peer.ip().to_canonical().to_string().as_bytes(), peer);
                }
            }
        });
        ready_rx.recv().expect("server ready");
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects to `addr` and returns what the server answered (its view of
/// our address), or `None`.
fn tcp_peer(addr: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().expect("addr");
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn udp_peer(addr: &str) -> Option<String> {
    let s = UdpSocket::bind(if addr.starts_with('[') {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    })
    .ok()?;
    s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
    ask(&s, addr)
}

/// Runs `f` on a thread inside the pod (a client in the pod).
fn in_pod<T: Send + 'static>(pod: &PodNs, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = pod.path.clone();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).expect("pod netns");
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns pod");
        f()
    })
    .join()
    .expect("pod client")
}

#[test]
fn traffic_flows_through_the_mapping_with_both_backends() {
    require_root!();
    for backend in ["iptables", "nftables"] {
        // Each backend on a fresh thread: a node netns entered from inside
        // the previous one would take that node for the machine in its
        // leak check.
        std::thread::spawn(move || traffic_through(backend))
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
    }
}

fn traffic_through(backend: &'static str) {
    {
        let node = Node::new();
        node.ns.assert_inside();
        let pod = add_pod(&node, "traffic-1");
        let pod_ip = result_ip(&pod.result, false);
        let maps = json!([{"hostPort": 5080, "containerPort": 8080, "protocol": "tcp"},
                          {"HostPort": 5081, "ContainerPort": 8081, "Protocol": "UDP"}]);
        let conf = pm_conf(&pod, &maps, json!({"backend": backend}));
        let _server = Server::start(&pod.ns, 8080);
        assert_eq!(
            tcp_peer("10.94.0.1:5080"),
            None,
            "{backend}: no mapping yet"
        );
        pm(&ours(), "ADD", &pod, None, &conf).expect_ok();
        pm(&ours(), "CHECK", &pod, None, &conf).expect_ok();
        // From the node to its own address: DNAT in OUTPUT.
        assert_eq!(
            tcp_peer("10.94.0.1:5080").as_deref(),
            Some("10.94.0.1"),
            "{backend}: node → hostPort"
        );
        assert_eq!(
            udp_peer("10.94.0.1:5081").as_deref(),
            Some("10.94.0.1"),
            "{backend}: udp"
        );
        // Through 127.0.0.1 (route_localnet + masquerade).
        assert!(
            tcp_peer("127.0.0.1:5080").is_some(),
            "{backend}: 127.0.0.1 → hostPort"
        );
        // Hairpin: the pod reaches its own hostPort, masqueraded to the gateway.
        let hairpin = in_pod(&pod.ns, || tcp_peer("10.94.0.1:5080"));
        assert_eq!(
            hairpin.as_deref(),
            Some("10.94.0.1"),
            "{backend}: hairpin (pod {pod_ip})"
        );
        let mut bare = conf.clone();
        bare.as_object_mut().expect("object").remove("prevResult");
        pm(&ours(), "DEL", &pod, Some(""), &bare).expect_ok();
        assert_eq!(
            tcp_peer("10.94.0.1:5080"),
            None,
            "{backend}: mapping removed"
        );
        assert!(attachment_rules(&nat_state()).is_empty());
        assert!(
            !nft_ruleset().contains("comment \"traffic-1\""),
            "{}",
            nft_ruleset()
        );
    }
}

#[test]
fn a_host_port_held_by_another_attachment_is_refused() {
    require_root!();
    let node = Node::new();
    node.ns.assert_inside();
    let a = add_pod(&node, "holder");
    let b = add_pod(&node, "latecomer");
    let maps = json!([{"hostPort": 6080, "containerPort": 80, "protocol": "tcp"}]);
    pm(&ours(), "ADD", &a, None, &pm_conf(&a, &maps, json!({}))).expect_ok();
    // Re-ADD of the same attachment is not a conflict.
    pm(&ours(), "ADD", &a, None, &pm_conf(&a, &maps, json!({}))).expect_ok();
    let before = nat_state();
    for (what, m) in [
        (
            "same port",
            json!([{"hostPort": 6080, "containerPort": 81, "protocol": "tcp"}]),
        ),
        (
            "same port on one address",
            json!([{"hostPort": 6080, "containerPort": 81, "protocol": "TCP", "hostIP": "10.94.0.1"}]),
        ),
    ] {
        let err = pm(&ours(), "ADD", &b, None, &pm_conf(&b, &m, json!({}))).expect_err(999);
        let msg = err["msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains("already allocated") && msg.contains("\"holder\""),
            "{what}: {msg}"
        );
        assert_eq!(nat_state(), before, "{what}: a refused ADD leaves no rule");
    }
    // Also across backends: an nftables ADD sees the iptables mapping.
    let err = pm(
        &ours(),
        "ADD",
        &b,
        None,
        &pm_conf(&b, &maps, json!({"backend": "nftables"})),
    )
    .expect_err(999);
    assert!(
        err["msg"].as_str().is_some_and(|m| m.contains("holder")),
        "{err}"
    );
    // Another protocol or port is fine.
    let other = json!([{"hostPort": 6080, "containerPort": 80, "protocol": "udp"}]);
    pm(&ours(), "ADD", &b, None, &pm_conf(&b, &other, json!({}))).expect_ok();
    for p in [&a, &b] {
        pm(&ours(), "DEL", p, None, &pm_conf(p, &maps, json!({}))).expect_ok();
    }
    assert!(attachment_rules(&nat_state()).is_empty());
}

#[test]
fn failed_add_leaves_no_rule() {
    require_root!();
    let node = Node::new();
    node.ns.assert_inside();
    let pod = add_pod(&node, "fails-1");
    // The external mark chain does not exist: the reference leaves an empty
    // CNI-DN chain behind here; we leave nothing.
    let conf = pm_conf(
        &pod,
        &mappings(),
        json!({"externalSetMarkChain": "KUBE-MARK-MASQ"}),
    );
    pm(&ours(), "ADD", &pod, None, &conf).expect_err(999);
    assert!(attachment_rules(&nat_state()).is_empty(), "{}", nat_state());
}

#[test]
fn gc_sweeps_attachments_that_are_not_valid() {
    require_root!();
    let node = Node::new();
    node.ns.assert_inside();
    let keep = add_pod(&node, "gc-keep");
    let stale = add_pod(&node, "gc-stale");
    let maps = |p: u16| json!([{"hostPort": p, "containerPort": 80, "protocol": "tcp"}]);
    pm(
        &ours(),
        "ADD",
        &keep,
        None,
        &pm_conf(&keep, &maps(7080), json!({})),
    )
    .expect_ok();
    // The stale one is the reference's: GC removes its rules too.
    pm(
        Path::new(REFERENCE),
        "ADD",
        &stale,
        None,
        &pm_conf(&stale, &maps(7081), json!({})),
    )
    .expect_ok();
    let gc = json!({"cniVersion": "1.1.0", "name": NET, "type": "portmap",
        "cni.dev/valid-attachments": [{"containerID": "gc-keep", "ifname": "eth0"}]});
    let call = PluginCall::new("GC", "", "", "", Path::new("/nonexistent")).stdin(gc.to_string());
    run_plugin(&ours(), &call).expect_ok();
    let state = nat_state();
    assert!(state.contains("--dports 7080"), "{state}");
    assert!(!state.contains("7081"), "{state}");
    // Another network's GC does not touch this network's attachments.
    let other = json!({"cniVersion": "1.1.0", "name": "othernet", "type": "portmap",
        "cni.dev/valid-attachments": []});
    let call =
        PluginCall::new("GC", "", "", "", Path::new("/nonexistent")).stdin(other.to_string());
    run_plugin(&ours(), &call).expect_ok();
    assert!(nat_state().contains("--dports 7080"));
    pm(
        &ours(),
        "DEL",
        &keep,
        None,
        &pm_conf(&keep, &maps(7080), json!({})),
    )
    .expect_ok();
}

#[test]
fn nftables_backend_uses_the_reference_table() {
    require_root!();
    let node = Node::new();
    node.ns.assert_inside();
    let pod = add_pod(&node, "nft-1");
    let conf = pm_conf(&pod, &mappings(), json!({"backend": "nftables"}));
    pm(&ours(), "ADD", &pod, None, &conf).expect_ok();
    // A repeated ADD replaces rather than duplicates.
    pm(&ours(), "ADD", &pod, None, &conf).expect_ok();
    let rules = nft_ruleset();
    let ip4 = result_ip(&pod.result, false);
    let ip6 = result_ip(&pod.result, true);
    for needle in [
        "table ip cni_hostport".to_string(),
        "table ip6 cni_hostport".to_string(),
        format!("tcp dport 5080 dnat to {ip4}:8080 comment \"nft-1\""),
        format!("ip daddr 10.94.0.1 tcp dport 5443 dnat to {ip4}:443 comment \"nft-1\""),
        format!("tcp dport 5080 dnat to [{ip6}]:8080 comment \"nft-1\""),
        format!("ip saddr 127.0.0.1 ip daddr {ip4} masquerade comment \"nft-1\""),
    ] {
        assert_eq!(
            rules.matches(needle.as_str()).count(),
            1,
            "{needle}\n{rules}"
        );
    }
    // prerouting and output, in both families.
    assert_eq!(
        rules
            .matches("fib daddr type local jump hostports_all")
            .count(),
        4
    );
    pm(&ours(), "CHECK", &pod, None, &conf).expect_ok();
    // DEL from a config without `backend` (default iptables) still finds them.
    let mut plain = conf.clone();
    plain.as_object_mut().expect("object").remove("backend");
    pm(&ours(), "DEL", &pod, Some(""), &plain).expect_ok();
    let after = nft_ruleset();
    assert!(!after.contains("\"nft-1\""), "{after}");
    pm(&ours(), "CHECK", &pod, None, &conf).expect_err(999);
}

/// UDP flows to `port` in the calling thread's netns, as `conntrack -L`
/// (Debian package `conntrack`) lists them: an independent reader of the
/// table our ctnetlink code deletes from.
fn udp_flows(v6: bool, port: u16) -> Vec<String> {
    let family = if v6 { "ipv6" } else { "ipv4" };
    let out = std::process::Command::new("conntrack")
        .args([
            "-L",
            "-f",
            family,
            "-p",
            "udp",
            "--dport",
            &port.to_string(),
        ])
        .output()
        .expect("run conntrack (apt-get install conntrack)");
    assert!(
        out.status.success(),
        "conntrack -L: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("dport={port} ")))
        .map(str::to_string)
        .collect()
}

/// A UDP client with one fixed source port (the 5-tuple a stale conntrack
/// entry pins).
fn udp_client(v6: bool) -> UdpSocket {
    let s = UdpSocket::bind(if v6 { "[::]:0" } else { "0.0.0.0:0" }).expect("bind client");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    s
}

/// Sends from `s` to `addr` until a conntrack entry for `port` exists
/// (an IPv6 gateway address may still be in DAD at first).
fn send_until_tracked(s: &UdpSocket, addr: &str, v6: bool, port: u16) {
    eventually(&format!("conntrack entry for {addr}"), || {
        let _ = s.send_to(b"early", addr);
        !udp_flows(v6, port).is_empty()
    });
}

/// The reply to a datagram from `s`, if any (a few tries).
fn ask(s: &UdpSocket, addr: &str) -> Option<String> {
    let mut buf = [0u8; 64];
    for _ in 0..5 {
        s.send_to(b"ping", addr).ok()?;
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

/// What one implementation's ADD did to stale UDP flows: (IPv4 flows to
/// the host port left, IPv6 flows left, flows to another port left, the
/// pinned client's reply after ADD).
fn conntrack_after_add(binary: &Path) -> (usize, usize, usize, Option<String>) {
    let node = Node::new();
    node.ns.assert_inside();
    // Conntrack tracks a netns's flows only once a rule there needs it.
    for tool in ["iptables", "ip6tables"] {
        let st = std::process::Command::new(tool)
            .args([
                "-A",
                "OUTPUT",
                "-p",
                "udp",
                "-m",
                "conntrack",
                "--ctstate",
                "NEW",
            ])
            .args(["-j", "ACCEPT"])
            .status()
            .expect("run iptables");
        assert!(st.success(), "{tool} conntrack rule");
    }
    let pod = add_pod(&node, "ct-1");
    let _server = Server::start(&pod.ns, 8080);
    let (c4, c6, other) = (udp_client(false), udp_client(true), udp_client(false));
    // Clients that send before the port is mapped: nothing answers, the
    // kernel tracks their flows (no DNAT in them).
    send_until_tracked(&c4, "10.94.0.1:5053", false, 5053);
    send_until_tracked(&c6, "[fd00:94::1]:5053", true, 5053);
    send_until_tracked(&other, "10.94.0.1:5054", false, 5054);
    assert_eq!(ask(&c4, "10.94.0.1:5053"), None, "nothing mapped yet");
    let maps = json!([{"hostPort": 5053, "containerPort": 8081, "protocol": "udp"}]);
    let conf = pm_conf(&pod, &maps, json!({}));
    pm(binary, "ADD", &pod, None, &conf).expect_ok();
    let left = (
        udp_flows(false, 5053).len(),
        udp_flows(true, 5053).len(),
        udp_flows(false, 5054).len(),
    );
    // The same socket (same 5-tuple) now reaches the pod.
    let reply = ask(&c4, "10.94.0.1:5053");
    pm(binary, "DEL", &pod, None, &conf).expect_ok();
    node.call(
        "DEL",
        &pod.id,
        &pod.ns.path.display().to_string(),
        &bridge_conf(&node),
    )
    .expect_ok();
    (left.0, left.1, left.2, reply)
}

#[test]
fn add_deletes_stale_udp_conntrack_entries_like_the_reference() {
    require_root!();
    let run = |b: std::path::PathBuf| {
        std::thread::spawn(move || conntrack_after_add(&b))
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    };
    let reference = run(REFERENCE.into());
    let our = run(ours());
    assert_eq!(
        our,
        (0, 0, 1, Some("10.94.0.1".to_string())),
        "ours: v4 and v6 flows to the host port deleted, another port's kept, client reaches the pod"
    );
    assert_eq!(our, reference, "the reference does the same");
}
