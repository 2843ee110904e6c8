//! (6) dual-stack bridge ADD: IPv4 + IPv6 ranges with isGateway, where the
//! reference waits for the container's IPv6 addresses to leave DAD.

use super::{bridge_conf, leak_check, pod_cycle, progress, Ctx, Output, Samples};
use crate::error::Result;
use crate::ns::Node;
use crate::report::{Target, Unit};
use crate::util::TempDir;
use serde_json::json;

const NETWORK: &str = "bench-ds";

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<()> {
    let n = ctx.plan.dualstack;
    progress(&format!("dualstack: {n} pods per side (IPv4 + IPv6)"));
    let nodes = [Node::new()?, Node::new()?];
    let dirs = [TempDir::new("ds-ours")?, TempDir::new("ds-ref")?];
    let conf_of = |d: &TempDir| {
        bridge_conf(
            NETWORK,
            "cnib0",
            false,
            json!([[{ "subnet": "10.244.3.0/24" }], [{ "subnet": "fd10:244:3::/64" }]]),
            json!([{ "dst": "0.0.0.0/0" }, { "dst": "::/0" }]),
            d.path(),
        )
    };
    let confs = [conf_of(&dirs[0]), conf_of(&dirs[1])];
    let mut add = Samples::default();
    let mut del = Samples::default();
    // One warm-up pod creates the bridge; DAD stalls make more too costly.
    let warmup = ctx.plan.warmup.min(1);
    for i in 0..warmup + n {
        for imp in ctx.order(i) {
            let k = imp.side.index();
            let c = pod_cycle(imp, &nodes[k], &confs[k], &format!("ds-{i}"))?;
            if i >= warmup {
                add.push(imp.side, c.add.elapsed_ms);
                del.push(imp.side, c.del.elapsed_ms);
            }
        }
    }
    out.metrics.push(add.metric(
        "dualstack.add",
        "dual-stack bridge ADD",
        Unit::Ms,
        Some(Target::Below { max: 50.0 }),
    ));
    out.metrics
        .push(del.metric("dualstack.del", "dual-stack bridge DEL", Unit::Ms, None));
    for imp in [&ctx.ours, &ctx.reference] {
        let k = imp.side.index();
        leak_check(out, imp, &dirs[k].path().join(NETWORK), Some(&nodes[k]))?;
    }
    Ok(())
}
