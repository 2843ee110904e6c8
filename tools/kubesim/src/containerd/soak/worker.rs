//! One soak worker: the kubelet's pod lifecycle over CRI, many times, with
//! the kubelet's answers to failure. A RunPodSandbox that fails (a plugin
//! was killed, or containerd went away mid-call) is followed by the
//! kubelet's cleanup of whatever sandbox of that pod the runtime still
//! lists (StopPodSandbox + RemovePodSandbox), then a new attempt with
//! `attempt + 1`; a StopPodSandbox that fails (a DEL was killed) is simply
//! sent again. Calls that only read, stop or remove wait through a
//! containerd restart (reconnecting), as the kubelet's do.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ledger::{Holder, Ledger};
use super::rng::Rng;
use crate::containerd::config::NodeDirs;
use crate::containerd::error::{NodeError, Result};
use crate::containerd::kubelet::{new_uid, Kubelet};
use crate::cri::api;
use crate::cri::CriError;
use crate::harness::hostport::HostPort;

/// The Kubernetes namespace of every soak pod.
pub const NAMESPACE: &str = "soak";
/// The container port every soak pod declares.
const APP_PORT: u16 = 8080;
/// Every `HOSTPORT_EVERY`-th pod also maps a host port (portmap's rules).
const HOSTPORT_EVERY: usize = 4;
/// First host port (pod `i` maps `HOSTPORT_BASE + i`, so live pods never
/// share one).
const HOSTPORT_BASE: usize = 20000;
/// Attempts per pod before the soak gives up on it.
const MAX_ATTEMPTS: u32 = 25;
/// How long a call may wait for an unreachable runtime.
const UNAVAILABLE_PATIENCE: Duration = Duration::from_secs(180);

/// Counters the workers share.
#[derive(Debug, Default)]
pub struct Stats {
    /// Sandboxes that reached Ready with an IP.
    pub ready: AtomicUsize,
    /// Sandboxes stopped and removed after being Ready.
    pub removed: AtomicUsize,
    /// RunPodSandbox failures because a plugin was killed (then retried).
    pub run_failed_killed: AtomicUsize,
    /// RunPodSandbox failures because the runtime went away mid-call.
    pub run_failed_unavailable: AtomicUsize,
    /// RunPodSandbox failures for any other reason (then retried).
    pub run_failed_other: AtomicUsize,
    /// StopPodSandbox failures (a DEL killed), sent again.
    pub stop_failed: AtomicUsize,
    /// RemovePodSandbox failures, sent again.
    pub remove_failed: AtomicUsize,
    /// Sandboxes of a failed attempt the runtime still listed, cleaned up.
    pub reconciled: AtomicUsize,
    /// Calls that waited for the runtime to come back.
    pub waited_unavailable: AtomicUsize,
    /// Pods whose IP lies outside the node's pod CIDR.
    pub outside_cidr: AtomicUsize,
    /// A few distinct failure messages, for the summary.
    pub samples: Mutex<Vec<String>>,
    /// Set when a worker gave up: the others stop taking pods.
    pub abort: AtomicBool,
}

impl Stats {
    fn sample(&self, what: String) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        // Sandbox ids and pod names make every message unique; compare the
        // shape only.
        let shape: String = what.chars().filter(|c| !c.is_ascii_hexdigit()).collect();
        let known = s.iter().any(|k| {
            k.chars()
                .filter(|c| !c.is_ascii_hexdigit())
                .collect::<String>()
                == shape
        });
        if !known && s.len() < 8 {
            s.push(what);
        }
    }
    /// Every failed RunPodSandbox.
    pub fn run_failed(&self) -> usize {
        self.run_failed_killed.load(Ordering::Relaxed)
            + self.run_failed_unavailable.load(Ordering::Relaxed)
            + self.run_failed_other.load(Ordering::Relaxed)
    }
}

/// A node as the workers see it.
#[derive(Clone, Debug)]
pub struct SoakNode {
    /// Its name.
    pub name: String,
    /// Its containerd dirs.
    pub dirs: NodeDirs,
    /// Its IPv4 pod CIDR.
    pub cidr: ipnet::IpNet,
}

/// What every worker shares.
pub struct Shared<'a> {
    /// The nodes; pod `i` runs on node `i % len`.
    pub nodes: &'a [SoakNode],
    /// Who holds which IP.
    pub ledger: &'a Ledger,
    /// The counters.
    pub stats: &'a Stats,
    /// The next pod index to start.
    pub next: AtomicUsize,
    /// How many pods to start in all.
    pub total: usize,
    /// Most pods one worker keeps running at once.
    pub hold: usize,
    /// The run's seed.
    pub seed: u64,
}

/// A pod this worker runs.
struct LivePod {
    key: String,
    node: usize,
    sandbox_id: String,
    ip: String,
}

/// True for the runtime's report of a plugin that died of SIGKILL (Go's
/// `signal: killed`, or our bridge naming its IPAM child's signal).
fn plugin_killed(e: &NodeError) -> bool {
    let text = e.to_string();
    text.contains("signal: killed") || text.contains("killed by signal 9")
}

/// True for errors that mean "the runtime is not there" rather than "the
/// runtime said no": the kubelet waits and asks again.
fn unavailable(e: &NodeError) -> bool {
    match e {
        NodeError::Cri { source, .. } => match source {
            CriError::Connect { .. } | CriError::Timeout { .. } => true,
            CriError::Call { code, message, .. } => {
                matches!(code, tonic::Code::Unavailable | tonic::Code::Cancelled)
                    || (*code == tonic::Code::Unknown
                        && (message.contains("transport")
                            // The CRI plugin after a restart, still
                            // recovering its sandboxes.
                            || message.contains("server is not initialized yet")))
            }
            CriError::Runtime(_) => false,
        },
        _ => false,
    }
}

/// A kubelet connection per node, re-made after the runtime went away.
struct Conns<'a> {
    nodes: &'a [SoakNode],
    kubelets: Vec<Option<Kubelet>>,
    stats: &'a Stats,
}

impl<'a> Conns<'a> {
    fn new(nodes: &'a [SoakNode], stats: &'a Stats) -> Conns<'a> {
        Conns {
            nodes,
            kubelets: nodes.iter().map(|_| None).collect(),
            stats,
        }
    }

    /// Runs `f` with the node's kubelet; an unreachable runtime is waited
    /// for when `patient` (the call can be repeated safely).
    fn call<T>(
        &mut self,
        node: usize,
        patient: bool,
        mut f: impl FnMut(&Kubelet) -> Result<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + UNAVAILABLE_PATIENCE;
        let mut waited = false;
        loop {
            let out = match &self.kubelets[node] {
                Some(k) => f(k),
                None => {
                    let n = &self.nodes[node];
                    Kubelet::connect(&n.name, n.dirs.clone()).and_then(|k| {
                        let out = f(&k);
                        self.kubelets[node] = Some(k);
                        out
                    })
                }
            };
            match out {
                Err(e) if unavailable(&e) => {
                    self.kubelets[node] = None;
                    if !patient || Instant::now() > deadline {
                        return Err(e);
                    }
                    if !waited {
                        waited = true;
                        self.stats
                            .waited_unavailable
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }
}

fn cri(context: String) -> impl FnOnce(CriError) -> NodeError {
    crate::containerd::error::cri(context)
}

/// Runs pods until none is left to start, then stops its own.
pub fn run(shared: &Shared, index: usize) -> Result<()> {
    let mut rng = Rng::new(shared.seed, index as u64);
    let mut conns = Conns::new(shared.nodes, shared.stats);
    let mut live: Vec<LivePod> = Vec::new();
    let out = (|| -> Result<()> {
        loop {
            if shared.stats.abort.load(Ordering::Relaxed) {
                return Ok(());
            }
            let i = shared.next.fetch_add(1, Ordering::Relaxed);
            if i >= shared.total {
                return Ok(());
            }
            live.push(start(shared, &mut conns, i)?);
            // Random lifetimes: always back under `hold`, sometimes lower.
            while live.len() > shared.hold || (!live.is_empty() && rng.chance(0.3)) {
                let pod = live.swap_remove(rng.below(live.len()));
                stop(shared, &mut conns, &pod)?;
            }
        }
    })();
    if out.is_err() {
        shared.stats.abort.store(true, Ordering::Relaxed);
    }
    // Own pods go in every case (the final drain would find them anyway).
    let mut first_err = out.err();
    for pod in live.drain(..) {
        if let Err(e) = stop(shared, &mut conns, &pod) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Runs pod `i` to Ready, retrying as the kubelet does.
fn start(shared: &Shared, conns: &mut Conns, i: usize) -> Result<LivePod> {
    let node = i % shared.nodes.len();
    let n = &shared.nodes[node];
    let name = format!("soak-{i}");
    let key = format!("{NAMESPACE}/{name}");
    let uid = new_uid();
    let host_ports: Vec<HostPort> = (i % HOSTPORT_EVERY == 0)
        .then(|| HostPort {
            host_port: u16::try_from(HOSTPORT_BASE + i).unwrap_or(u16::MAX),
            container_port: APP_PORT,
            protocol: "tcp".into(),
        })
        .into_iter()
        .collect();
    for attempt in 0..MAX_ATTEMPTS {
        let run = conns.call(node, false, |k| {
            let mut config = k.sandbox_config(NAMESPACE, &name, &uid, &[APP_PORT], &host_ports);
            if let Some(m) = config.metadata.as_mut() {
                m.attempt = attempt;
            }
            k.cri.run_pod_sandbox(config).map_err(cri(format!(
                "RunPodSandbox {key} (attempt {attempt}) on {}",
                n.name
            )))
        });
        let id = match run {
            Ok(id) => id,
            Err(e) => {
                let counter = if unavailable(&e) {
                    &shared.stats.run_failed_unavailable
                } else if plugin_killed(&e) {
                    &shared.stats.run_failed_killed
                } else {
                    shared.stats.sample(e.to_string());
                    &shared.stats.run_failed_other
                };
                counter.fetch_add(1, Ordering::Relaxed);
                reconcile(shared, conns, node, &uid)?;
                continue;
            }
        };
        let status = conns.call(node, true, |k| {
            k.cri
                .pod_sandbox_status(&id, false)
                .map_err(cri(format!("PodSandboxStatus {key}")))
        })?;
        let st = status.status.unwrap_or_default();
        let ip = st.network.map(|n| n.ip).unwrap_or_default();
        if st.state != api::PodSandboxState::SandboxReady as i32 || ip.is_empty() {
            // Ready without an IP would be a runtime bug; treat it as a
            // failed attempt so that the pod still gets one.
            shared.stats.sample(format!(
                "{key}: sandbox {id} not ready or without IP after RunPodSandbox"
            ));
            shared
                .stats
                .run_failed_other
                .fetch_add(1, Ordering::Relaxed);
            reconcile(shared, conns, node, &uid)?;
            continue;
        }
        if !ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| n.cidr.contains(&a))
        {
            shared.stats.outside_cidr.fetch_add(1, Ordering::Relaxed);
            shared
                .stats
                .sample(format!("{key}: IP {ip} outside {}", n.cidr));
        }
        let holder = Holder {
            pod: key.clone(),
            node: n.name.clone(),
            sandbox_id: id.clone(),
        };
        if let Err(d) = shared.ledger.acquire(&ip, holder) {
            shared.stats.sample(format!("double allocation: {d}"));
        }
        shared.stats.ready.fetch_add(1, Ordering::Relaxed);
        return Ok(LivePod {
            key,
            node,
            sandbox_id: id,
            ip,
        });
    }
    Err(NodeError::Protocol(format!(
        "{key}: RunPodSandbox failed {MAX_ATTEMPTS} times; samples: {:?}",
        shared
            .stats
            .samples
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    )))
}

/// The kubelet's cleanup after a failed attempt: every sandbox of pod
/// `uid` the runtime still lists is stopped and removed.
fn reconcile(shared: &Shared, conns: &mut Conns, node: usize, uid: &str) -> Result<()> {
    let all = conns.call(node, true, |k| k.list())?;
    for sb in all
        .iter()
        .filter(|sb| sb.metadata.as_ref().is_some_and(|m| m.uid == uid))
    {
        stop_remove(shared, conns, node, &sb.id)?;
        shared.stats.reconciled.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Deletes a running pod: the IP is given up as StopPodSandbox goes out.
fn stop(shared: &Shared, conns: &mut Conns, pod: &LivePod) -> Result<()> {
    shared.ledger.release(&pod.ip, &pod.sandbox_id);
    stop_remove(shared, conns, pod.node, &pod.sandbox_id)
        .map_err(|e| NodeError::Protocol(format!("delete {}: {e}", pod.key)))?;
    shared.stats.removed.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// StopPodSandbox until it succeeds, then RemovePodSandbox until it does.
fn stop_remove(shared: &Shared, conns: &mut Conns, node: usize, id: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..MAX_ATTEMPTS {
        match conns.call(node, true, |k| {
            k.cri
                .stop_pod_sandbox(id)
                .map_err(cri(format!("StopPodSandbox {id}")))
        }) {
            Ok(()) => {
                last = None;
                break;
            }
            Err(e) => {
                shared.stats.stop_failed.fetch_add(1, Ordering::Relaxed);
                if !plugin_killed(&e) {
                    shared.stats.sample(e.to_string());
                }
                last = Some(e);
            }
        }
    }
    if let Some(e) = last {
        return Err(e);
    }
    for _ in 0..MAX_ATTEMPTS {
        match conns.call(node, true, |k| {
            k.cri
                .remove_pod_sandbox(id)
                .map_err(cri(format!("RemovePodSandbox {id}")))
        }) {
            Ok(()) => return Ok(()),
            Err(e) => {
                shared.stats.remove_failed.fetch_add(1, Ordering::Relaxed);
                if !plugin_killed(&e) {
                    shared.stats.sample(e.to_string());
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| NodeError::Protocol(format!("RemovePodSandbox {id}"))))
}

/// The end of the soak: every sandbox any node still lists is stopped and
/// removed (the kubelet's reconcile of pods it no longer wants); returns
/// how many there were.
pub fn drain_all(shared: &Shared) -> Result<usize> {
    let mut conns = Conns::new(shared.nodes, shared.stats);
    let mut n = 0;
    for node in 0..shared.nodes.len() {
        for sb in conns.call(node, true, |k| k.list())? {
            stop_remove(shared, &mut conns, node, &sb.id)?;
            n += 1;
        }
    }
    Ok(n)
}

/// The sandboxes a node lists, with their state (for the restart check).
pub fn list_states(shared: &Shared, node: usize) -> Result<Vec<(String, i32)>> {
    let mut conns = Conns::new(shared.nodes, shared.stats);
    Ok(conns
        .call(node, true, |k| k.list())?
        .into_iter()
        .map(|sb| (sb.id, sb.state))
        .collect())
}

/// The IP `PodSandboxStatus` reports for a sandbox now.
pub fn status_ip(shared: &Shared, node: usize, id: &str) -> Result<String> {
    let mut conns = Conns::new(shared.nodes, shared.stats);
    conns.call(node, true, |k| k.pod_ip(id))
}
