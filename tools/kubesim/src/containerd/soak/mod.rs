//! `kubesim soak --runtime containerd`: many pod sandboxes through a real
//! containerd over CRI while plugin processes are SIGKILLed at random
//! ([`killer`]) and containerd itself is killed and restarted once midway
//! (`daemon::restart`); the workers ([`worker`]) answer every failure as
//! the kubelet does. Throughout, no IP may be held by two live pods
//! ([`ledger`]); at the end, after the last sandbox is removed and a CNI GC
//! ran, no lease, veth, masquerade or hostPort rule, or cache entry may be
//! left ([`finish`]).

pub mod finish;
pub mod killer;
pub mod ledger;
pub mod rng;
pub mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::containerd::daemon;
use crate::containerd::error::{NodeError, Result};
use crate::containerd::node;
use crate::cri::api;
use crate::harness::cluster::UpOptions;
use crate::harness::nodeconf::DEFAULT_TEMPLATE;
use crate::harness::nsutil::Netns;
use crate::harness::state::State;
use crate::harness::{lookup, teardown, Harness, HarnessError};
use killer::KillReport;
use ledger::{Ledger, LedgerFigures};
use worker::{Shared, SoakNode, Stats};

/// Network name of the soak's conflist.
const NETWORK: &str = "cni-rs-soak";

/// What to soak.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// The cluster (nodes, plugins, conflist); its runtime is containerd.
    pub up: UpOptions,
    /// Pod sandboxes to run, in all.
    pub pods: usize,
    /// Concurrent workers (kubelet pod workers).
    pub workers: usize,
    /// Most sandboxes one worker keeps running at once.
    pub hold: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Share of plugin processes killed (0..=1).
    pub kill_rate: f64,
    /// Kill and restart node-1's containerd when half the pods ran.
    pub restart: bool,
}

/// The restart of node-1's containerd.
#[derive(Clone, Debug, Default)]
pub struct RestartFigures {
    /// Sandboxes that had reached Ready when it happened.
    pub after_ready: usize,
    /// From the SIGKILL until CRI answered again.
    pub downtime: Duration,
    /// The containerd that was killed, and the new daemon's `tini`.
    pub pids: (i32, i32),
    /// Pods live (holding their IP) on the node at the kill.
    pub live_before: usize,
    /// Of those, still Ready with the same IP afterwards.
    pub survived: usize,
    /// Of those, stopped by their worker meanwhile.
    pub stopped_meanwhile: usize,
    /// Of those, not Ready (or gone, or with another IP) although nobody
    /// stopped them.
    pub lost: Vec<String>,
}

/// Everything a soak measured.
#[derive(Clone, Debug, Default)]
pub struct SoakReport {
    /// Wall time of the soak proper (cluster up and teardown excluded).
    pub duration: Duration,
    /// Nodes and workers.
    pub nodes: usize,
    /// Workers.
    pub workers: usize,
    /// The options' seed and kill rate.
    pub seed: u64,
    /// The options' kill rate.
    pub kill_rate: f64,
    /// Pods asked for.
    pub pods: usize,
    /// Counters of the workers.
    pub ready: usize,
    /// Sandboxes removed after Ready.
    pub removed: usize,
    /// RunPodSandbox failures: plugin killed, runtime away, other.
    pub run_failed: (usize, usize, usize),
    /// StopPodSandbox and RemovePodSandbox failures (sent again).
    pub stop_failed: usize,
    /// RemovePodSandbox failures.
    pub remove_failed: usize,
    /// Sandboxes of failed attempts cleaned up by the workers.
    pub reconciled: usize,
    /// Sandboxes the final drain still found.
    pub drained: usize,
    /// Calls that waited for the runtime.
    pub waited_unavailable: usize,
    /// The killer's figures.
    pub kills: KillReport,
    /// The IP ledger's figures.
    pub ips: LedgerFigures,
    /// The containerd restart, if one was asked for.
    pub restart: Option<RestartFigures>,
    /// Per node: leftovers before GC, GC lines, leftovers after GC.
    pub cleanup: Vec<String>,
    /// A few distinct failure messages.
    pub samples: Vec<String>,
    /// Everything that makes the soak fail.
    pub failures: Vec<String>,
}

impl SoakReport {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// The summary lines.
    pub fn lines(&self) -> Vec<String> {
        let (killed, away, other) = self.run_failed;
        let per = |m: &std::collections::BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = vec![
            format!(
                "sandboxes: {} ready and removed of {} asked ({} nodes, {} workers, seed {}, kill rate {})",
                self.removed, self.pods, self.nodes, self.workers, self.seed, self.kill_rate
            ),
            format!(
                "plugin processes seen: {} ({})",
                self.kills.seen_total(),
                per(&self.kills.seen)
            ),
            format!(
                "kills that landed: {} ({}); {} chosen victims had already exited",
                self.kills.landed_total(),
                per(&self.kills.landed),
                self.kills.missed
            ),
            format!(
                "RunPodSandbox failed and retried: {} ({killed} plugin killed, {away} runtime away, {other} other); \
                 StopPodSandbox failed and retried: {}; RemovePodSandbox: {}",
                killed + away + other,
                self.stop_failed,
                self.remove_failed
            ),
            format!(
                "sandboxes of failed attempts cleaned up (ListPodSandbox + Stop/Remove): {}; left for the final drain: {}; calls that waited for the runtime: {}",
                self.reconciled, self.drained, self.waited_unavailable
            ),
            format!(
                "pod IPs: {} handed out, {} distinct, at most {} live at once, {} held by two live pods",
                self.ips.acquired,
                self.ips.distinct,
                self.ips.max_live,
                self.ips.doubles.len()
            ),
        ];
        if let Some(r) = &self.restart {
            out.push(format!(
                "containerd restart after {} sandboxes (pid {} SIGKILLed, new tini {}): back in {:.1} s; {} live pods on the node, {} still Ready with the same IP, {} stopped by their worker meanwhile, {} lost",
                r.after_ready,
                r.pids.0,
                r.pids.1,
                r.downtime.as_secs_f64(),
                r.live_before,
                r.survived,
                r.stopped_meanwhile,
                r.lost.len()
            ));
        }
        out.extend(self.cleanup.iter().cloned());
        out.push(format!("duration: {:.1} s", self.duration.as_secs_f64()));
        out
    }
}

/// The soak's conflist: the default bridge + portmap chain with ipMasq on,
/// so masquerade rules are made (and must go) too.
fn soak_conflist() -> Result<String> {
    let mut v: Value = serde_json::from_str(DEFAULT_TEMPLATE)
        .map_err(|e| NodeError::Protocol(format!("default conflist: {e}")))?;
    v["name"] = NETWORK.into();
    if let Some(bridge) = v
        .get_mut("plugins")
        .and_then(Value::as_array_mut)
        .and_then(|p| p.iter_mut().find(|p| p["type"] == "bridge"))
    {
        bridge["ipMasq"] = true.into();
    }
    serde_json::to_string_pretty(&v).map_err(|e| NodeError::Protocol(e.to_string()))
}

/// Runs a soak on a fresh cluster in `h`'s state dir and tears it down.
pub fn run(h: &Harness, opts: &SoakOptions) -> std::result::Result<SoakReport, HarnessError> {
    if h.dir.load()?.is_some() {
        h.say("cleaning up a previous run in the same state dir");
        teardown::down(h)?;
        std::fs::create_dir_all(h.dir.logs()).map_err(HarnessError::io("recreate state dir"))?;
    }
    let mut up = opts.up.clone();
    if up.conflist.is_none() {
        let path = h.dir.root.join("soak.conflist");
        std::fs::write(&path, soak_conflist()?).map_err(HarnessError::io("write soak conflist"))?;
        up.conflist = Some(path);
    }
    h.say(&format!(
        "== a {}-node cluster, one containerd per node",
        up.nodes
    ));
    drop(crate::containerd::demo::up(h, &up)?);
    let state = lookup::require_state(h)?;
    let outcome = soak(h, &state, opts);
    h.say("== tearing down (containerd, shims and pods by PID, then the netns)");
    let down = teardown::down(h);
    let mut report = outcome?;
    match down {
        Ok(d) => report
            .failures
            .extend(d.warnings.into_iter().map(|w| format!("teardown: {w}"))),
        Err(e) => report.failures.push(format!("teardown: {e}")),
    }
    Ok(report)
}

fn soak(h: &Harness, state: &State, opts: &SoakOptions) -> Result<SoakReport> {
    let nodes: Vec<SoakNode> = state
        .nodes
        .iter()
        .map(|n| {
            Ok(SoakNode {
                name: n.name.clone(),
                dirs: node::dirs(h, n),
                cidr: n.pod_cidrs[0]
                    .parse()
                    .map_err(|e| NodeError::Protocol(format!("pod CIDR of {}: {e}", n.name)))?,
            })
        })
        .collect::<Result<_>>()?;
    let ledger = Ledger::default();
    let stats = Stats::default();
    let shared = Shared {
        nodes: &nodes,
        ledger: &ledger,
        stats: &stats,
        next: AtomicUsize::new(0),
        total: opts.pods,
        hold: opts.hold,
        seed: opts.seed,
    };
    let targets: Vec<killer::Target> = nodes
        .iter()
        .map(|n| killer::Target {
            dirs: n.dirs.clone(),
        })
        .collect();
    h.say(&format!(
        "== {} pod sandboxes through CRI, {} workers, killing {:.0}% of plugin runs{}",
        opts.pods,
        opts.workers,
        opts.kill_rate * 100.0,
        if opts.restart {
            format!(", containerd of {} restarted midway", nodes[0].name)
        } else {
            String::new()
        }
    ));
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let running = AtomicUsize::new(opts.workers);
    let (errors, kills, restart) = std::thread::scope(|s| {
        let killer = s.spawn(|| killer::run(&targets, opts.kill_rate, opts.seed, &stop));
        let workers: Vec<_> = (0..opts.workers)
            .map(|i| {
                let (shared, running) = (&shared, &running);
                s.spawn(move || {
                    let r = worker::run(shared, i);
                    running.fetch_sub(1, Ordering::Relaxed);
                    r
                })
            })
            .collect();
        let restart = control(h, state, &shared, opts, &running);
        if restart.is_err() {
            stats.abort.store(true, Ordering::Relaxed);
        }
        let errors: Vec<String> = workers
            .into_iter()
            .filter_map(|w| match w.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("a worker panicked".into()),
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        let kills = killer.join().unwrap_or_default();
        (errors, kills, restart)
    });
    let mut report = SoakReport {
        nodes: nodes.len(),
        workers: opts.workers,
        seed: opts.seed,
        kill_rate: opts.kill_rate,
        pods: opts.pods,
        ..SoakReport::default()
    };
    report.failures.extend(errors);
    report.kills = kills;
    match restart {
        Ok(r) => report.restart = r,
        Err(e) => report.failures.push(format!("containerd restart: {e}")),
    }
    h.say("== draining what the runtime still lists, GC, and the leftover check");
    match worker::drain_all(&shared) {
        Ok(n) => report.drained = n,
        Err(e) => report.failures.push(format!("final drain: {e}")),
    }
    report.duration = started.elapsed();
    check_clean(h, state, &shared, &mut report);
    fill(&mut report, &stats, &ledger, opts);
    Ok(report)
}

/// The main thread while the workers run: progress lines, and the restart
/// of node-1's containerd once half the pods reached Ready.
fn control(
    h: &Harness,
    state: &State,
    shared: &Shared,
    opts: &SoakOptions,
    running: &AtomicUsize,
) -> Result<Option<RestartFigures>> {
    let mut restart = None;
    let mut restarted = !opts.restart;
    let step = (opts.pods / 10).max(1);
    let mut next_say = step;
    while running.load(Ordering::Relaxed) > 0 {
        let ready = shared.stats.ready.load(Ordering::Relaxed);
        if ready >= next_say {
            h.say(&format!(
                "  {ready}/{} sandboxes ready, {} RunPodSandbox failures retried, {} StopPodSandbox failures retried",
                opts.pods,
                shared.stats.run_failed(),
                shared.stats.stop_failed.load(Ordering::Relaxed)
            ));
            next_say = ready + step;
        }
        if !restarted && ready >= opts.pods / 2 {
            restarted = true;
            restart = Some(restart_node(h, state, shared, ready)?);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(restart)
}

/// Kills and restarts node-1's containerd; then every pod that held its IP
/// at the kill and was not stopped since must still be Ready, same IP.
fn restart_node(
    h: &Harness,
    state: &State,
    shared: &Shared,
    ready: usize,
) -> Result<RestartFigures> {
    let n = &state.nodes[0];
    let cidr = shared.nodes[0].cidr;
    let before: HashMap<String, String> = shared
        .ledger
        .live()
        .into_iter()
        .filter(|(_, ip)| {
            ip.parse::<std::net::IpAddr>()
                .is_ok_and(|a| cidr.contains(&a))
        })
        .collect();
    let ns = Netns::of_pid(n.holder.pid)?;
    let r = h.step(
        &format!(
            "SIGKILL to containerd of {} and a restart on the same dirs",
            n.name
        ),
        || daemon::restart(&n.name, &ns, &node::dirs(h, n)).map_err(Into::into),
    )?;
    let after: HashMap<String, i32> = worker::list_states(shared, 0)?.into_iter().collect();
    let mut fig = RestartFigures {
        after_ready: ready,
        downtime: r.downtime,
        pids: (r.killed_pid, r.record.pid),
        live_before: before.len(),
        ..RestartFigures::default()
    };
    for (id, ip) in &before {
        let ready_now = after.get(id) == Some(&(api::PodSandboxState::SandboxReady as i32));
        if ready_now && worker::status_ip(shared, 0, id).is_ok_and(|now| now == *ip) {
            fig.survived += 1;
        } else if shared.ledger.holds(id) {
            fig.lost.push(format!("{} ({ip})", &id[..12.min(id.len())]));
        } else {
            fig.stopped_meanwhile += 1;
        }
    }
    Ok(fig)
}

/// After the drain: nothing listed, a GC per node, nothing left.
fn check_clean(h: &Harness, state: &State, shared: &Shared, report: &mut SoakReport) {
    for (i, n) in state.nodes.iter().enumerate() {
        let listed = match worker::list_states(shared, i) {
            Ok(l) => l,
            Err(e) => {
                report
                    .failures
                    .push(format!("{}: ListPodSandbox: {e}", n.name));
                continue;
            }
        };
        if !listed.is_empty() {
            report.failures.push(format!(
                "{}: {} sandboxes still listed after the drain",
                n.name,
                listed.len()
            ));
        }
        let ready: Vec<String> = listed
            .into_iter()
            .filter(|(_, s)| *s == api::PodSandboxState::SandboxReady as i32)
            .map(|(id, _)| id)
            .collect();
        let before = finish::leftovers(h, n);
        let gc = finish::gc(h, n, &ready);
        let after = finish::leftovers(h, n);
        match (before, gc, after) {
            (Ok(before), Ok(gc), Ok(after)) => {
                let gc_line: Vec<String> = gc
                    .iter()
                    .map(|g| {
                        format!(
                            "{} {} valid, {} stale deleted, GC sent to {} plugins",
                            g.network,
                            g.valid,
                            g.report.stale_deleted.len(),
                            g.report.plugins_collected
                        )
                    })
                    .collect();
                report.cleanup.push(format!(
                    "{}: before GC {}; GC: {}; after GC {}",
                    n.name,
                    before.summary(),
                    gc_line.join("; "),
                    after.summary()
                ));
                if !after.is_clean() {
                    report
                        .failures
                        .push(format!("{}: left after GC: {after:?}", n.name));
                }
            }
            (b, g, a) => {
                for e in [b.err(), g.err(), a.err()].into_iter().flatten() {
                    report.failures.push(format!("{}: {e}", n.name));
                }
            }
        }
    }
}

/// Copies the counters into the report and adds the invariant failures.
fn fill(report: &mut SoakReport, stats: &Stats, ledger: &Ledger, opts: &SoakOptions) {
    let get = |a: &AtomicUsize| a.load(Ordering::Relaxed);
    report.ready = get(&stats.ready);
    report.removed = get(&stats.removed);
    report.run_failed = (
        get(&stats.run_failed_killed),
        get(&stats.run_failed_unavailable),
        get(&stats.run_failed_other),
    );
    report.stop_failed = get(&stats.stop_failed);
    report.remove_failed = get(&stats.remove_failed);
    report.reconciled = get(&stats.reconciled);
    report.waited_unavailable = get(&stats.waited_unavailable);
    report.samples = stats.samples.lock().map(|s| s.clone()).unwrap_or_default();
    report.ips = ledger.figures();
    let f = &mut report.failures;
    if report.ready != opts.pods || report.removed != opts.pods {
        f.push(format!(
            "{} of {} pods reached Ready, {} were removed",
            report.ready, opts.pods, report.removed
        ));
    }
    for d in &report.ips.doubles {
        f.push(format!("double allocation: {d}"));
    }
    if report.ips.still_live != 0 {
        f.push(format!(
            "{} IPs still held after the drain",
            report.ips.still_live
        ));
    }
    let outside = get(&stats.outside_cidr);
    if outside > 0 {
        f.push(format!("{outside} pod IPs outside the node's pod CIDR"));
    }
    f.extend(report.kills.errors.iter().map(|e| format!("killer: {e}")));
    if let Some(r) = &report.restart {
        if !r.lost.is_empty() {
            f.push(format!(
                "live sandboxes not Ready with their IP after the containerd restart: {}",
                r.lost.join(", ")
            ));
        }
    }
}
