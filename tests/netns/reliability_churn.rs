//! Churn: 200 pods (bridge + host-local, ipMasq on) created and deleted by
//! concurrent workers in random order on one node, with stray DELs for pods
//! that never existed, pods "leaked" by a forgetful runtime, and GC runs.
//!
//! GC and ADD/DEL: the spec says a runtime never runs GC while ADD or DEL
//! runs (SPEC §3 "Lifecycle"), so GC here runs at quiescent points between
//! waves of churn (workers pause, GC runs with the currently valid set,
//! workers resume). ADD and DEL race each other freely.
//!
//! Checked while running: no IP is ever held by two pods at once (the test
//! keeps IP → pod from ADD success until DEL starts, and a monitor thread
//! compares that with the lease files), every ADD's address is on the pod's
//! eth0, GC never touches a live pod and always removes leaked ones.
//! Afterwards: zero leases, zero veths, zero masquerade rules.

use cni_test_support::common::*;
use cni_test_support::reliability::*;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

const NET: &str = "churnnet";
const WORKERS: usize = 6;
const GC_EVERY: usize = 40;
const LEAKS_PER_GC: usize = 2;

fn pod_count() -> usize {
    std::env::var("CNI_RS_CHURN_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn conf(data_dir: &Path, extra: Option<(&str, serde_json::Value)>) -> String {
    let mut v = serde_json::json!({
        "cniVersion": "1.1.0",
        "name": NET,
        "type": "bridge",
        "bridge": "cni-churn0",
        "isGateway": true,
        "ipMasq": true,
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "ranges": [[{"subnet": "10.80.0.0/23"}]]
        }
    });
    if let Some((k, val)) = extra {
        v[k] = val;
    }
    v.to_string()
}

fn pod_id(i: usize) -> String {
    format!("churn-{i}")
}

/// xorshift64*: a reproducible random order.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1) as u64) as usize
    }
}

/// What the workers share.
struct Churn<'a> {
    data_dir: &'a Path,
    /// Pods not added yet, in random order.
    to_add: Mutex<Vec<usize>>,
    /// Pods whose ADD succeeded and whose DEL has not started.
    live: Mutex<Vec<usize>>,
    /// Each live pod's netns (dropped after its DEL, or when leaked).
    netns: Mutex<HashMap<usize, PodNs>>,
    /// IP → pod, from ADD success until DEL starts.
    ips: Mutex<HashMap<IpAddr, usize>>,
    /// Per pod, the IPs its ADD returned.
    pod_ips: Mutex<HashMap<usize, Vec<IpAddr>>>,
    rng: Mutex<Rng>,
    /// Readers = ADD/DEL in flight; GC takes it exclusively.
    gate: RwLock<()>,
    in_flight: AtomicUsize,
    adds_done: AtomicUsize,
    stop_monitor: AtomicBool,
    violations: Mutex<Vec<String>>,
    stats: Mutex<Stats>,
}

#[derive(Default, Debug)]
struct Stats {
    adds: usize,
    dels: usize,
    stray_dels: usize,
    double_dels: usize,
    gcs: usize,
    leaked: usize,
    max_live: usize,
    monitor_checks: usize,
}

enum Action {
    Add(usize),
    Del(usize),
    Done,
    Wait,
}

impl Churn<'_> {
    fn violation(&self, v: String) {
        self.violations.lock().expect("lock").push(v);
    }

    fn next_action(&self) -> Action {
        let mut to_add = self.to_add.lock().expect("lock");
        let mut live = self.live.lock().expect("lock");
        let mut rng = self.rng.lock().expect("lock");
        let del = !live.is_empty() && (to_add.is_empty() || rng.below(3) == 0);
        if del {
            let i = rng.below(live.len());
            return Action::Del(live.swap_remove(i));
        }
        if let Some(p) = to_add.pop() {
            return Action::Add(p);
        }
        // `in_flight` counts this worker too: wait while anyone else runs
        // (an ADD in flight will add a live pod to delete).
        if self.in_flight.load(Ordering::SeqCst) > 1 {
            Action::Wait
        } else {
            Action::Done
        }
    }

    fn call(&self, cmd: &str, id: &str, netns: &str) -> PluginRun {
        let c = PluginCall::new(cmd, id, netns, "eth0", &our_cni_path())
            .stdin(conf(self.data_dir, None));
        run_plugin(&bin("bridge"), &c)
    }

    fn add(&self, p: usize) {
        let pod = PodNs::new();
        let run = self.call("ADD", &pod_id(p), &pod.path.display().to_string());
        if run.code != Some(0) {
            self.violation(format!("ADD {p} failed: {run:#?}"));
            return;
        }
        let v = run.json();
        let ips: Vec<IpAddr> = v["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["address"].as_str())
            .filter_map(|a| a.split('/').next()?.parse().ok())
            .collect();
        if ips.is_empty() {
            self.violation(format!("ADD {p}: no IP in {v}"));
        }
        let on_eth0 = pod
            .ip_json(&["-4", "addr", "show", "dev", "eth0"])
            .to_string();
        for ip in &ips {
            if !on_eth0.contains(&format!("\"{ip}\"")) {
                self.violation(format!("pod {p}: {ip} not on eth0: {on_eth0}"));
            }
        }
        {
            let mut map = self.ips.lock().expect("lock");
            for ip in &ips {
                if let Some(other) = map.insert(*ip, p) {
                    self.violation(format!("{ip} given to pod {p} while pod {other} holds it"));
                }
            }
        }
        self.pod_ips.lock().expect("lock").insert(p, ips);
        self.netns.lock().expect("lock").insert(p, pod);
        let mut live = self.live.lock().expect("lock");
        live.push(p);
        let mut st = self.stats.lock().expect("lock");
        st.adds += 1;
        st.max_live = st.max_live.max(live.len());
    }

    /// Forgets the pod's IPs (before DEL starts: from then on it may lose them).
    fn forget(&self, p: usize) {
        let ips = self
            .pod_ips
            .lock()
            .expect("lock")
            .remove(&p)
            .unwrap_or_default();
        let mut map = self.ips.lock().expect("lock");
        for ip in ips {
            map.remove(&ip);
        }
    }

    fn del(&self, p: usize) {
        self.forget(p);
        let pod = self.netns.lock().expect("lock").remove(&p);
        let ns = pod
            .as_ref()
            .map(|n| n.path.display().to_string())
            .unwrap_or_default();
        let run = self.call("DEL", &pod_id(p), &ns);
        if run.code != Some(0) {
            self.violation(format!("DEL {p} failed: {run:#?}"));
        }
        let (stray, double) = {
            let mut rng = self.rng.lock().expect("lock");
            (rng.below(10) == 0, rng.below(10) == 0)
        };
        if double {
            // Runtimes repeat DEL (kubelet retries): must succeed again.
            let run = self.call("DEL", &pod_id(p), &ns);
            if run.code != Some(0) {
                self.violation(format!("second DEL {p} failed: {run:#?}"));
            }
            self.stats.lock().expect("lock").double_dels += 1;
        }
        drop(pod);
        if stray {
            // A DEL for a sandbox whose ADD never ran (empty netns).
            let run = self.call("DEL", &format!("ghost-{p}"), "");
            if run.code != Some(0) {
                self.violation(format!("stray DEL failed: {run:#?}"));
            }
            self.stats.lock().expect("lock").stray_dels += 1;
        }
        self.stats.lock().expect("lock").dels += 1;
    }

    fn worker(&self) {
        loop {
            let guard = self.gate.read().expect("gate");
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let action = self.next_action();
            match action {
                Action::Add(p) => {
                    self.add(p);
                    self.adds_done.fetch_add(1, Ordering::SeqCst);
                }
                Action::Del(p) => self.del(p),
                Action::Done | Action::Wait => {}
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
            match action {
                Action::Done => return,
                Action::Wait => std::thread::sleep(Duration::from_millis(5)),
                _ => {}
            }
        }
    }

    /// The monitor: every lease the test believes live must be on disk,
    /// owned by that pod. Holding the IP map lock keeps DELs from starting.
    fn monitor(&self) {
        while !self.stop_monitor.load(Ordering::SeqCst) {
            {
                let map = self.ips.lock().expect("lock");
                let on_disk = leases(self.data_dir, NET);
                for (ip, p) in map.iter() {
                    let want = format!("{}\r\neth0", pod_id(*p));
                    match on_disk.get(ip) {
                        Some(c) if *c == want => {}
                        other => self.violation(format!(
                            "monitor: pod {p} holds {ip} but the lease says {other:?}"
                        )),
                    }
                }
                self.stats.lock().expect("lock").monitor_checks += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A quiescent GC point: leak some pods (no DEL, netns gone), then GC
    /// with the live set; live pods keep everything, leaked ones lose all.
    fn gc_point(&self) {
        let _quiet = self.gate.write().expect("gate");
        let leaked: Vec<usize> = {
            let mut live = self.live.lock().expect("lock");
            let mut rng = self.rng.lock().expect("lock");
            (0..LEAKS_PER_GC.min(live.len()))
                .map(|_| {
                    let i = rng.below(live.len());
                    live.swap_remove(i)
                })
                .collect()
        };
        for p in &leaked {
            self.forget(*p);
            drop(self.netns.lock().expect("lock").remove(p));
        }
        let live: Vec<usize> = self.live.lock().expect("lock").clone();
        let valid: Vec<serde_json::Value> = live
            .iter()
            .map(|p| serde_json::json!({"containerID": pod_id(*p), "ifname": "eth0"}))
            .collect();
        let c = PluginCall::new("GC", "", "", "", &our_cni_path()).stdin(conf(
            self.data_dir,
            Some(("cni.dev/valid-attachments", valid.into())),
        ));
        let run = run_plugin(&bin("bridge"), &c);
        if run.code != Some(0) {
            self.violation(format!("GC failed: {run:#?}"));
        }
        let owners: BTreeSet<String> = leases(self.data_dir, NET).into_values().collect();
        let want: BTreeSet<String> = live
            .iter()
            .map(|p| format!("{}\r\neth0", pod_id(*p)))
            .collect();
        if owners != want {
            self.violation(format!(
                "after GC, lease owners {owners:?} != live {want:?}"
            ));
        }
        let rules = cni_firewall_rules().join("\n");
        for p in &leaked {
            if mentions(&rules, &pod_id(*p)) {
                self.violation(format!("GC left masquerade rules of leaked pod {p}"));
            }
        }
        for p in &live {
            if !mentions(&rules, &pod_id(*p)) {
                self.violation(format!("GC removed the masquerade rules of live pod {p}"));
            }
        }
        let mut st = self.stats.lock().expect("lock");
        st.gcs += 1;
        st.leaked += leaked.len();
    }
}

/// Whether `text` names `id` as a whole word (`churn-1` is not `churn-10`).
fn mentions(text: &str, id: &str) -> bool {
    text.match_indices(id).any(|(i, _)| {
        let next = text[i + id.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    })
}

#[test]
fn two_hundred_pods_churn_without_sharing_or_leaking() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let tmp = TempDir::new("churn");
    let n = pod_count();
    let mut rng = Rng(0xc4u64 << 32 | n as u64);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let churn = Churn {
        data_dir: tmp.path(),
        to_add: Mutex::new(order),
        live: Mutex::new(Vec::new()),
        netns: Mutex::new(HashMap::new()),
        ips: Mutex::new(HashMap::new()),
        pod_ips: Mutex::new(HashMap::new()),
        rng: Mutex::new(rng),
        gate: RwLock::new(()),
        in_flight: AtomicUsize::new(0),
        adds_done: AtomicUsize::new(0),
        stop_monitor: AtomicBool::new(false),
        violations: Mutex::new(Vec::new()),
        stats: Mutex::new(Stats::default()),
    };
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                // Threads inherit the creating thread's netns; joining the
                // node's explicitly keeps that true whatever spawns them.
                let node_path = node.path.clone();
                let churn = &churn;
                s.spawn(move || {
                    let f = std::fs::File::open(&node_path).expect("open node netns");
                    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns node");
                    churn.worker();
                })
            })
            .collect();
        let monitor = s.spawn(|| churn.monitor());
        let mut next_gc = GC_EVERY;
        while workers.iter().any(|w| !w.is_finished()) {
            if churn.adds_done.load(Ordering::SeqCst) >= next_gc {
                churn.gc_point();
                next_gc += GC_EVERY;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        churn.stop_monitor.store(true, Ordering::SeqCst);
        let _ = monitor.join();
    });
    let stats = churn.stats.lock().expect("lock");
    eprintln!("churn stats: {stats:?}");
    let violations = churn.violations.lock().expect("lock");
    assert!(
        violations.is_empty(),
        "{} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
    assert_eq!(stats.adds, n, "every pod was added once");
    assert_eq!(
        stats.dels + stats.leaked,
        n,
        "every pod was deleted or leaked"
    );
    assert!(stats.gcs >= 1 && stats.monitor_checks >= 1);
    // Leaked pods were handled by GC; one final GC with an empty valid set
    // (no pod left) must find nothing more to do.
    assert_no_leaks(&LeakScope {
        data_dir: tmp.path(),
        networks: &[NET],
        allowed_veths: &[],
    });
    let c = PluginCall::new("GC", "", "", "", &our_cni_path()).stdin(conf(
        tmp.path(),
        Some(("cni.dev/valid-attachments", serde_json::json!([]))),
    ));
    run_plugin(&bin("bridge"), &c).expect_ok();
    assert_no_leaks(&LeakScope {
        data_dir: tmp.path(),
        networks: &[NET],
        allowed_veths: &[],
    });
}
