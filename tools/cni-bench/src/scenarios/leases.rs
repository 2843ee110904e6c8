//! (4) host-local ADD on a /16 that already holds 65 000 leases: the store
//! is written once in the reference's format and copied for the other side.
//! Before every ADD `last_reserved_ip.0` is reset to the last lease, so each
//! ADD finds a free address right after it (as on a node that filled the
//! range in order); the DEL after it restores the 65 000.

use super::{bridge_conf, expect_ips, progress, Ctx, Output, Samples};
use crate::error::Result;
use crate::ns::Pod;
use crate::report::{Target, Unit};
use crate::store;
use crate::util::TempDir;
use serde_json::json;
use std::net::Ipv4Addr;

const NETWORK: &str = "bench-leases";
pub const LEASES: u32 = 65_000;

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<()> {
    let n = ctx.plan.leases;
    progress(&format!(
        "leases: writing {LEASES} leases, then {n} ADDs per side"
    ));
    let t0 = std::time::Instant::now();
    let dirs = [TempDir::new("leases-ours")?, TempDir::new("leases-ref")?];
    let last = store::prefill(
        &dirs[0].path().join(NETWORK),
        Ipv4Addr::new(10, 250, 0, 2),
        LEASES,
    )?;
    store::copy_flat(&dirs[0].path().join(NETWORK), &dirs[1].path().join(NETWORK))?;
    progress(&format!(
        "leases: stores ready after {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    let confs = dirs.each_ref().map(|d| {
        bridge_conf(
            NETWORK,
            "cnib0",
            false,
            json!([[{ "subnet": "10.250.0.0/16" }]]),
            json!([{ "dst": "0.0.0.0/0" }]),
            d.path(),
        )
    });
    let pod = Pod::new()?;
    let mut add = Samples::default();
    let mut del = Samples::default();
    let warmup = ctx.plan.warmup.min(1);
    for i in 0..warmup + n {
        for imp in ctx.order(i) {
            let k = imp.side.index();
            let net_dir = dirs[k].path().join(NETWORK);
            store::set_last_reserved(&net_dir, last)?;
            let id = format!("leases-{i}");
            let a = imp.call("host-local", "ADD", &id, &pod.path, &confs[k])?;
            expect_ips(&a, imp, "host-local ADD result")?;
            let d = imp.call("host-local", "DEL", &id, &pod.path, &confs[k])?;
            if i >= warmup {
                add.push(imp.side, a.elapsed_ms);
                del.push(imp.side, d.elapsed_ms);
            }
        }
    }
    out.metrics.push(add.metric(
        "leases.add",
        "host-local ADD, 65k leases",
        Unit::Ms,
        Some(Target::RatioAndAbs {
            max_ratio: 1.0 / 20.0,
            max_abs: 5.0,
        }),
    ));
    out.metrics
        .push(del.metric("leases.del", "host-local DEL, 65k leases", Unit::Ms, None));
    for imp in [&ctx.ours, &ctx.reference] {
        let left = store::leases(&dirs[imp.side.index()].path().join(NETWORK))?.len();
        if left != LEASES as usize {
            out.notes.push(format!(
                "{}: {left} leases after the run, expected {LEASES}",
                imp.side.name()
            ));
        }
    }
    Ok(())
}
