//! (1) host-local alone: ADD+DEL cycle latency on a small temp store.

use super::{bridge_conf, expect_ips, leak_check, progress, Ctx, Output, Samples, CYCLE_TARGET};
use crate::error::Result;
use crate::ns::Pod;
use crate::report::Unit;
use crate::util::TempDir;
use serde_json::json;

const NETWORK: &str = "bench-hl";

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<()> {
    let n = ctx.plan.hostlocal;
    progress(&format!("hostlocal: {n} ADD+DEL cycles per side"));
    // host-local does not touch the netns, but the reference requires
    // CNI_NETNS on ADD: give it a real (unused) pod netns.
    let pod = Pod::new()?;
    let dirs = [TempDir::new("hl-ours")?, TempDir::new("hl-ref")?];
    let conf_of = |d: &TempDir| {
        bridge_conf(
            NETWORK,
            "cnib0",
            false,
            json!([[{ "subnet": "10.244.0.0/24" }]]),
            json!([{ "dst": "0.0.0.0/0" }]),
            d.path(),
        )
    };
    let confs = [conf_of(&dirs[0]), conf_of(&dirs[1])];
    let mut cycle = Samples::default();
    let mut add = Samples::default();
    let mut del = Samples::default();
    for i in 0..ctx.plan.warmup + n {
        for imp in ctx.order(i) {
            let conf = &confs[imp.side.index()];
            let id = format!("hl-{i}");
            let a = imp.call("host-local", "ADD", &id, &pod.path, conf)?;
            expect_ips(&a, imp, "host-local ADD result")?;
            let d = imp.call("host-local", "DEL", &id, &pod.path, conf)?;
            if i >= ctx.plan.warmup {
                add.push(imp.side, a.elapsed_ms);
                del.push(imp.side, d.elapsed_ms);
                cycle.push(imp.side, a.elapsed_ms + d.elapsed_ms);
            }
        }
    }
    out.metrics.push(cycle.metric(
        "hostlocal.add_del",
        "host-local ADD+DEL cycle",
        Unit::Ms,
        Some(CYCLE_TARGET),
    ));
    out.metrics
        .push(add.metric("hostlocal.add", "host-local ADD", Unit::Ms, None));
    out.metrics
        .push(del.metric("hostlocal.del", "host-local DEL", Unit::Ms, None));
    for (imp, d) in [(&ctx.ours, &dirs[0]), (&ctx.reference, &dirs[1])] {
        leak_check(out, imp, &d.path().join(NETWORK), None)?;
    }
    Ok(())
}
