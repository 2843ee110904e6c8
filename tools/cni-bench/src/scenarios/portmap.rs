//! portmap ADD+DEL and loopback ADD+DEL, ours against the reference in the
//! same run. portmap runs chained as libcni runs it (prevResult of a pod
//! at 10.244.9.2/24, two mappings: tcp and udp), DEL with prevResult; the
//! shared `CNI-HOSTPORT-*` chains exist after warm-up, as on a busy node.
//! loopback gets a fresh pod netns each time (created untimed).

use super::{progress, Ctx, Output, Samples, CYCLE_TARGET};
use crate::error::Result;
use crate::ns::{Node, Pod};
use crate::report::Unit;
use serde_json::{json, Value};

fn portmap_conf() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "bench-pm",
        "type": "portmap",
        "snat": true,
        "runtimeConfig": {"portMappings": [
            {"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 15353, "containerPort": 53, "protocol": "udp"}
        ]},
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/bench"}],
            "ips": [{"address": "10.244.9.2/24", "gateway": "10.244.9.1", "interface": 0}]
        }
    })
}

pub fn run_portmap(ctx: &Ctx, out: &mut Output) -> Result<()> {
    let n = ctx.plan.bridge;
    progress(&format!("portmap: {n} ADD+DEL per side"));
    let nodes = [Node::new()?, Node::new()?];
    let conf = portmap_conf();
    let netns = std::path::Path::new("/var/run/netns/bench");
    let mut add = Samples::default();
    let mut del = Samples::default();
    let mut cycle = Samples::default();
    for i in 0..ctx.plan.warmup + n {
        for imp in ctx.order(i) {
            let node = &nodes[imp.side.index()];
            let id = format!("pm-{i}");
            let (a, d) = node.run(|| -> Result<_> {
                let a = imp.call("portmap", "ADD", &id, netns, &conf)?;
                let d = imp.call("portmap", "DEL", &id, netns, &conf)?;
                Ok((a, d))
            })??;
            if i >= ctx.plan.warmup {
                add.push(imp.side, a.elapsed_ms);
                del.push(imp.side, d.elapsed_ms);
                cycle.push(imp.side, a.elapsed_ms + d.elapsed_ms);
            }
        }
    }
    out.metrics.push(cycle.metric(
        "portmap.add_del",
        "portmap ADD+DEL (tcp+udp mapping)",
        Unit::Ms,
        Some(CYCLE_TARGET),
    ));
    out.metrics
        .push(add.metric("portmap.add", "portmap ADD", Unit::Ms, None));
    out.metrics
        .push(del.metric("portmap.del", "portmap DEL", Unit::Ms, None));
    for (k, imp) in [&ctx.ours, &ctx.reference].into_iter().enumerate() {
        let left = nodes[k].command_output(&["iptables-save", "-t", "nat"])?;
        if left.contains("CNI-DN-") {
            out.notes.push(format!(
                "{}: CNI-DN- chains left after DEL",
                imp.side.name()
            ));
        }
    }
    Ok(())
}

pub fn run_loopback(ctx: &Ctx, out: &mut Output) -> Result<()> {
    let n = ctx.plan.bridge;
    progress(&format!("loopback: {n} ADD+DEL per side"));
    let conf = json!({"cniVersion": "1.0.0", "name": "lo", "type": "loopback"});
    let mut cycle = Samples::default();
    for i in 0..ctx.plan.warmup + n {
        for imp in ctx.order(i) {
            let pod = Pod::new()?;
            let id = format!("lo-{i}");
            let a = imp.call("loopback", "ADD", &id, &pod.path, &conf)?;
            let d = imp.call("loopback", "DEL", &id, &pod.path, &conf)?;
            if i >= ctx.plan.warmup {
                cycle.push(imp.side, a.elapsed_ms + d.elapsed_ms);
            }
        }
    }
    out.metrics.push(cycle.metric(
        "loopback.add_del",
        "loopback ADD+DEL",
        Unit::Ms,
        Some(CYCLE_TARGET),
    ));
    Ok(())
}
