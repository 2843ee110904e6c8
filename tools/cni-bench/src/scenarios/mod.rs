//! The benchmark scenarios. Each runs both implementations on identical
//! configs, alternating which one goes first every iteration so that both
//! share the machine's noise, and times only the plugin exec.

mod bridge;
mod concurrent;
mod density;
mod dualstack;
mod floor;
mod hostlocal;
mod leases;
mod portmap;
mod rss;
mod version;

use crate::cli::Plan;
use crate::error::Result;
use crate::exec::{exec, Call, Outcome};
use crate::ns::{Node, Pod};
use crate::report::{Metric, ScenarioReport, Target, Unit};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The scenarios, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Version,
    HostLocal,
    Floor,
    Bridge,
    DualStack,
    Concurrent,
    Density,
    Leases,
    Rss,
    Portmap,
    Loopback,
}

impl Scenario {
    pub const ALL: [Scenario; 11] = [
        Scenario::Version,
        Scenario::HostLocal,
        Scenario::Floor,
        Scenario::Bridge,
        Scenario::DualStack,
        Scenario::Concurrent,
        Scenario::Density,
        Scenario::Leases,
        Scenario::Rss,
        Scenario::Portmap,
        Scenario::Loopback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Version => "version",
            Scenario::HostLocal => "hostlocal",
            Scenario::Floor => "floor",
            Scenario::Bridge => "bridge",
            Scenario::DualStack => "dualstack",
            Scenario::Concurrent => "concurrent",
            Scenario::Density => "density",
            Scenario::Leases => "leases",
            Scenario::Rss => "rss",
            Scenario::Portmap => "portmap",
            Scenario::Loopback => "loopback",
        }
    }

    pub fn from_name(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// Runs the scenario; an error ends only this scenario.
    pub fn run(self, ctx: &Ctx) -> ScenarioReport {
        let t0 = Instant::now();
        let mut out = Output::default();
        let res = match self {
            Scenario::Version => version::run(ctx, &mut out),
            Scenario::HostLocal => hostlocal::run(ctx, &mut out),
            Scenario::Floor => floor::run(ctx, &mut out),
            Scenario::Bridge => bridge::run(ctx, &mut out),
            Scenario::DualStack => dualstack::run(ctx, &mut out),
            Scenario::Concurrent => concurrent::run(ctx, &mut out),
            Scenario::Density => density::run(ctx, &mut out),
            Scenario::Leases => leases::run(ctx, &mut out),
            Scenario::Rss => rss::run(ctx, &mut out),
            Scenario::Portmap => portmap::run_portmap(ctx, &mut out),
            Scenario::Loopback => portmap::run_loopback(ctx, &mut out),
        };
        ScenarioReport {
            name: self.name().into(),
            metrics: out.metrics,
            notes: out.notes,
            error: res.err().map(|e| e.to_string()),
            seconds: t0.elapsed().as_secs_f64(),
        }
    }
}

/// Which implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Ours,
    Reference,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Ours => "ours",
            Side::Reference => "reference",
        }
    }

    /// 0 for ours, 1 for the reference: indexes per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Ours => 0,
            Side::Reference => 1,
        }
    }
}

/// One implementation: a directory holding `bridge`, `host-local`,
/// `portmap` and `loopback`.
#[derive(Debug, Clone)]
pub struct Impl {
    pub side: Side,
    pub dir: PathBuf,
}

impl Impl {
    pub fn bin(&self, plugin: &str) -> PathBuf {
        self.dir.join(plugin)
    }

    /// Runs `plugin` with `command` for `id` in `netns` and fails unless it
    /// exits 0.
    pub fn call(
        &self,
        plugin: &str,
        command: &'static str,
        id: &str,
        netns: &Path,
        stdin: &Value,
    ) -> Result<Outcome> {
        let call = Call::new(command, id, netns, &self.dir).stdin(stdin);
        exec(&self.bin(plugin), &call)?.ok(self.side.name(), &format!("{plugin} {command} {id}"))
    }
}

/// What every scenario gets.
pub struct Ctx {
    pub ours: Impl,
    pub reference: Impl,
    pub plan: Plan,
}

impl Ctx {
    /// Both implementations, ours first on even iterations and the
    /// reference first on odd ones.
    pub fn order(&self, i: usize) -> [&Impl; 2] {
        if i % 2 == 0 {
            [&self.ours, &self.reference]
        } else {
            [&self.reference, &self.ours]
        }
    }
}

/// Samples of one metric for both sides.
#[derive(Default, Debug, Clone)]
pub struct Samples {
    pub ours: Vec<f64>,
    pub reference: Vec<f64>,
}

impl Samples {
    pub fn push(&mut self, side: Side, v: f64) {
        match side {
            Side::Ours => self.ours.push(v),
            Side::Reference => self.reference.push(v),
        }
    }

    pub fn metric(&self, key: &str, label: &str, unit: Unit, target: Option<Target>) -> Metric {
        Metric::new(key, label, unit, &self.ours, &self.reference, target)
    }
}

/// What a scenario accumulates (kept even if it fails half-way).
#[derive(Default)]
pub struct Output {
    pub metrics: Vec<Metric>,
    pub notes: Vec<String>,
}

/// The ADD+DEL target.
pub const CYCLE_TARGET: Target = Target::Ratio { max: 1.0 / 3.0 };

/// A bridge + host-local network config like a runtime's conflist entry
/// (cniVersion 1.0.0, isGateway, default route), with its own dataDir.
pub fn bridge_conf(
    name: &str,
    bridge: &str,
    ip_masq: bool,
    ranges: Value,
    routes: Value,
    data_dir: &Path,
) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "type": "bridge",
        "bridge": bridge,
        "isGateway": true,
        "ipMasq": ip_masq,
        "ipam": {
            "type": "host-local",
            "ranges": ranges,
            "routes": routes,
            "dataDir": data_dir,
        }
    })
}

/// The DEL stdin libcni sends: the config plus the ADD result as prevResult.
pub fn with_prev_result(conf: &Value, add: &Outcome, imp: &Impl) -> Result<Value> {
    let mut del = conf.clone();
    del["prevResult"] = expect_ips(add, imp, "ADD result")?;
    Ok(del)
}

/// Fails unless an ADD printed a result with at least one IP, so a no-op
/// or broken plugin cannot pass for a fast one. Not timed.
pub fn expect_ips(add: &Outcome, imp: &Impl, what: &str) -> Result<Value> {
    let v = add.json(imp.side.name(), what)?;
    let has_ip = v["ips"].as_array().is_some_and(|a| !a.is_empty())
        || v.get("ip4").is_some()
        || v.get("ip6").is_some();
    if has_ip {
        Ok(v)
    } else {
        Err(crate::error::BenchError::Output {
            side: imp.side.name().into(),
            what: what.into(),
            detail: format!("result without IPs: {v}"),
        })
    }
}

/// Timings of one pod's ADD and DEL.
pub struct PodCycle {
    pub add: Outcome,
    pub del: Outcome,
}

/// ADD then DEL (with prevResult) of one fresh pod through `imp`'s bridge
/// inside `node`. Pod netns creation and config building are not timed.
pub fn pod_cycle(imp: &Impl, node: &Node, conf: &Value, id: &str) -> Result<PodCycle> {
    let pod = Pod::new()?;
    node.run(|| -> Result<PodCycle> {
        let add = imp.call("bridge", "ADD", id, &pod.path, conf)?;
        let del_conf = with_prev_result(conf, &add, imp)?;
        let del = imp.call("bridge", "DEL", id, &pod.path, &del_conf)?;
        Ok(PodCycle { add, del })
    })?
}

/// Notes a leak if `net_dir` still holds leases or `node` still has veths.
pub fn leak_check(out: &mut Output, imp: &Impl, net_dir: &Path, node: Option<&Node>) -> Result<()> {
    let left = crate::store::leases(net_dir)?;
    if !left.is_empty() {
        out.notes.push(format!(
            "{}: {} lease(s) left in {} after DEL (e.g. {})",
            imp.side.name(),
            left.len(),
            net_dir.display(),
            left[0]
        ));
    }
    if let Some(node) = node {
        let veths = node.veth_count()?;
        if veths != 0 {
            out.notes.push(format!(
                "{}: {veths} veth(s) left in the node after DEL",
                imp.side.name()
            ));
        }
    }
    Ok(())
}

/// Prints a progress line on stderr (the table goes to stdout).
pub fn progress(msg: &str) {
    eprintln!("cni-bench: {msg}");
}
