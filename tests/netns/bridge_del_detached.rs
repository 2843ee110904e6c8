//! DEL returns once callers can no longer observe the container interface,
//! and leaves the kernel's remaining work (≈ 20 ms of `rcu_barrier`) to a
//! detached helper process (issue 16; docs/benchmarks.md F12). ADD leaves
//! the pod's gratuitous ARP to one too (F16).
//!
//! This test process makes itself a child subreaper, as init or a runtime's
//! supervisor would be: helpers orphaned by a finished plugin are then
//! reparented here, where the test can inspect them (no descriptor of the
//! plugin's, own session) and prove that every one of them exits and is
//! reaped. The tests of this file run one at a time (the subreaper role is
//! process-wide).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cni_test_support::bridge::*;
use cni_test_support::common::*;
use serde_json::{json, Value};

/// `comm` of the delete helper (plugins/bridge/src/detached_del.rs) and
/// of the ARP announcer (plugins/bridge/src/announce.rs).
const HELPER_NAMES: [&str; 2] = ["bridge-dellink", "bridge-announce"];

/// The IP every ADD of the churn test must get back (a one-address range).
const ONLY_IP: &str = "10.88.0.7";

/// Serializes the tests of this binary (see the module doc).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// This process as a child subreaper, one test at a time; the role ends
/// when dropped, even when the test fails.
struct Subreaper {
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Subreaper {
    fn become_one() -> Subreaper {
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
        Subreaper { _serial: serial }
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        let _ = nix::sys::prctl::set_child_subreaper(false);
    }
}

/// Children of this process (any thread) whose `comm` is a helper's.
fn helpers() -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if HELPER_NAMES.contains(&comm.trim_end()) {
                out.insert(pid);
            }
        }
    }
    out
}

/// Asserts that a live helper holds nothing of the plugin's: stdin, stdout
/// and stderr are `/dev/null`, fd 3 is its report channel (a socket pair)
/// or its packet socket, anything above is its own netlink socket; and it
/// left the caller's session. Returns false
/// when the helper had already exited (nothing to inspect).
fn inspect(pid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let mut fds = Vec::new();
    for e in entries.flatten() {
        let fd: i32 = e.file_name().to_string_lossy().parse().expect("fd number");
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        fds.push((fd, target.display().to_string()));
    }
    if fds.is_empty() {
        return false; // exited between the two reads (a zombie has no fds)
    }
    for (fd, target) in &fds {
        let ok = match fd {
            0..=2 => target == "/dev/null",
            _ => target.starts_with("socket:"),
        };
        assert!(ok, "helper {pid} holds fd {fd} -> {target}; all: {fds:?}");
    }
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid)));
    if let Ok(sid) = sid {
        assert_eq!(
            sid.as_raw(),
            pid,
            "helper {pid} did not start its own session"
        );
    }
    true
}

/// Waits (at most 10 s) until every helper child has exited, reaping each;
/// returns how many were reaped.
fn reap_all_helpers() -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reaped = 0;
    loop {
        let live = helpers();
        if live.is_empty() {
            return reaped;
        }
        for pid in live {
            let p = nix::unistd::Pid::from_raw(pid);
            match nix::sys::wait::waitpid(p, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) => {}
                Ok(_) | Err(_) => reaped += 1,
            }
        }
        assert!(
            Instant::now() < deadline,
            "delete helpers still running after 10 s: {:?}",
            helpers()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Veths of the calling thread's netns (the node), through netlink.
fn node_veths() -> Vec<String> {
    let mut nl = cni::netlink::Netlink::open().expect("netlink in the node");
    nl.links()
        .expect("dump node links")
        .into_iter()
        .filter(|l| l.kind == Some(cni::netlink::InfoKind::Veth))
        .map(|l| l.name)
        .collect()
}

/// A config whose IPAM range holds exactly [`ONLY_IP`].
fn one_ip_conf(node: &Node) -> Value {
    node.conf(
        "1.0.0",
        json!({"ipam": {"subnet": null, "ranges": [[{
            "subnet": "10.88.0.0/24",
            "rangeStart": "10.88.0.7",
            "rangeEnd": "10.88.0.7",
        }]]}}),
    )
}

/// 200 rounds of DEL immediately followed by ADD of the same pod netns,
/// which must get the same IP and a new `eth0`: at DEL's return both veth
/// ends are gone. Every helper holds no descriptor of the plugin's, and all
/// of them exit.
#[test]
fn del_then_add_at_once_reuses_netns_and_ip_200_times() {
    require_root!();
    let _subreaper = Subreaper::become_one();
    let node = Node::new();
    let pod = PodNs::new();
    let netns = pod.path.display().to_string();
    let conf = one_ip_conf(&node);
    let (mut inspected, mut reaped) = (0, 0);
    let mut seen = BTreeSet::new();
    let mut add = node.call("ADD", "c1", &netns, &conf).expect_ok().json();
    for round in 0..200 {
        assert_eq!(result_ip(&add, false), ONLY_IP, "round {round}: {add}");
        node.call("DEL", "c1", &netns, &with_prev(&conf, &add))
            .expect_ok();
        let veths = node_veths();
        assert!(
            veths.is_empty(),
            "round {round}: host veth left after DEL: {veths:?}"
        );
        for pid in helpers() {
            if seen.insert(pid) && inspect(pid) {
                inspected += 1;
            }
        }
        let again = node.call("ADD", "c1", &netns, &conf);
        assert_eq!(
            again.code,
            Some(0),
            "round {round}: ADD right after DEL:\n{again:#?}"
        );
        add = again.json();
        if round % 50 == 49 {
            reaped += reap_all_helpers();
        }
    }
    node.call("DEL", "c1", &netns, &with_prev(&conf, &add))
        .expect_ok();
    reaped += reap_all_helpers();
    pod.assert_no_link("eth0");
    assert!(node_veths().is_empty(), "veths left: {:?}", node_veths());
    assert!(
        !node.leases().iter().any(|f| f.starts_with("10.")),
        "lease left: {:?}",
        node.leases()
    );
    // Most helpers outlive their plugin (the barrier takes 15–30 ms, the
    // vanishing 1–3 ms); one is enough to prove the hand-over and the reaping.
    assert!(reaped > 0, "no helper was ever reparented to the subreaper");
    assert!(inspected > 0, "no live helper could be inspected");
    eprintln!("{reaped} helpers reparented and reaped, {inspected} inspected alive");
}

/// DEL with an empty `CNI_NETNS` or a netns that is gone has no interface
/// to delete: it forks no helper and still releases the lease.
#[test]
fn del_without_an_interface_forks_no_helper() {
    require_root!();
    let _subreaper = Subreaper::become_one();
    let node = Node::new();
    let conf = one_ip_conf(&node);
    for vanish in [false, true] {
        let pod = PodNs::new();
        let netns = pod.path.display().to_string();
        let add = node.call("ADD", "c2", &netns, &conf).expect_ok().json();
        drop(pod); // the pod's netns (and both veth ends) go with it
        reap_all_helpers();
        let del_netns = if vanish { netns.as_str() } else { "" };
        node.call("DEL", "c2", del_netns, &with_prev(&conf, &add))
            .expect_ok();
        assert!(
            helpers().is_empty(),
            "a helper was forked without an interface"
        );
        assert!(
            !node.leases().iter().any(|f| f.starts_with("10.")),
            "lease left (vanished netns: {vanish}): {:?}",
            node.leases()
        );
        eventually("the host veth goes with the pod netns", || {
            node_veths().is_empty()
        });
    }
}

/// A packet socket in the calling thread's netns that sees every ARP
/// packet on every interface (received and sent copies alike).
struct ArpTap(std::os::fd::OwnedFd);

impl ArpTap {
    fn open() -> ArpTap {
        ArpTap(cni::arp::packet_socket().expect("ARP packet socket in the node"))
    }

    /// ARP payloads seen until `deadline` (or until `stop` says enough).
    fn until(&self, deadline: Instant, mut stop: impl FnMut(&[u8]) -> bool) -> Vec<Vec<u8>> {
        use std::os::fd::AsFd;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            let mut fds = [nix::poll::PollFd::new(
                self.0.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            if nix::poll::poll(&mut fds, ms).unwrap_or(0) == 0 {
                continue;
            }
            let mut buf = [0u8; 128];
            let n = nix::unistd::read(&self.0, &mut buf).expect("read the packet socket");
            let packet = buf[..n].to_vec();
            let done = stop(&packet);
            out.push(packet);
            if done {
                return out;
            }
        }
    }
}

/// ADD returns before the pod's gratuitous ARP is sent by a detached
/// helper; the packet is the one the kernel's `arp_notify` sends
/// (request, sender = target = the pod's IP, target MAC zero), it reaches
/// the bridge, `arp_notify` is 1 in the pod as with the reference, and
/// every helper exits.
#[test]
fn add_announces_the_pod_from_a_helper() {
    require_root!();
    let _subreaper = Subreaper::become_one();
    let node = Node::new();
    let conf = node.conf("1.0.0", json!({}));
    let first = PodNs::new();
    let first_add = node
        .call("ADD", "a1", &first.path.display().to_string(), &conf)
        .expect_ok()
        .json();
    reap_all_helpers();
    let tap = ArpTap::open();
    let pod = PodNs::new();
    let netns = pod.path.display().to_string();
    let add = node.call("ADD", "a2", &netns, &conf).expect_ok().json();
    let ip: std::net::Ipv4Addr = result_ip(&add, false).parse().expect("pod IPv4");
    let mac: Vec<u8> = add["interfaces"][2]["mac"]
        .as_str()
        .expect("container MAC")
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex MAC"))
        .collect();
    let mac: [u8; 6] = mac.try_into().expect("six-byte MAC");
    let expected = cni::arp::gratuitous(mac, ip).to_vec();
    let seen = tap.until(Instant::now() + Duration::from_secs(3), |p| {
        p == expected.as_slice()
    });
    assert!(
        seen.iter().any(|p| p == &expected),
        "no gratuitous ARP for {ip} within 3 s; saw {seen:02x?}"
    );
    let notify = pod.exec(&["cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify"]);
    assert_eq!(String::from_utf8_lossy(&notify.stdout).trim(), "1");
    assert!(reap_all_helpers() > 0, "no announce helper was reparented");
    for (pod, cid, add) in [(&first, "a1", &first_add), (&pod, "a2", &add)] {
        let netns = pod.path.display().to_string();
        node.call("DEL", cid, &netns, &with_prev(&conf, add))
            .expect_ok();
    }
    reap_all_helpers();
}
