//! VERSION latency: pure process start-up plus argument handling, the
//! floor under every other call.

use super::{progress, Ctx, Output, Samples};
use crate::error::Result;
use crate::exec::{exec, Call};
use crate::report::Unit;
use crate::rssprobe;
use crate::stats::Summary;
use crate::util::TempDir;
use std::path::Path;

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<()> {
    let n = ctx.plan.version;
    progress(&format!(
        "version: {n} x VERSION of bridge and host-local per side"
    ));
    let stdin = serde_json::json!({ "cniVersion": "1.0.0" });
    let mut bridge = Samples::default();
    let mut hostlocal = Samples::default();
    let scratch = TempDir::new("version")?;
    let noop = rssprobe::write_noop(scratch.path())?;
    let mut floor = Vec::new();
    for i in 0..ctx.plan.warmup + n {
        if let Some(noop) = &noop {
            let mut call = Call::new("VERSION", "", Path::new(""), scratch.path());
            call.netns = None;
            let o = exec(noop, &call)?.ok("floor", "no-op")?;
            if i >= ctx.plan.warmup {
                floor.push(o.elapsed_ms);
            }
        }
        for imp in ctx.order(i) {
            for (plugin, samples) in [("bridge", &mut bridge), ("host-local", &mut hostlocal)] {
                let mut call =
                    Call::new("VERSION", "", std::path::Path::new(""), &imp.dir).stdin(&stdin);
                call.netns = None;
                let o = exec(&imp.bin(plugin), &call)?.ok(imp.side.name(), "VERSION")?;
                if i >= ctx.plan.warmup {
                    samples.push(imp.side, o.elapsed_ms);
                }
            }
        }
    }
    if let Some(f) = Summary::of(&floor) {
        out.notes.push(format!(
            "spawn+wait floor (129-byte static no-op): median {:.2} ms, p95 {:.2} ms",
            f.median, f.p95
        ));
    }
    out.metrics
        .push(bridge.metric("version.bridge", "VERSION bridge", Unit::Ms, None));
    out.metrics
        .push(hostlocal.metric("version.host_local", "VERSION host-local", Unit::Ms, None));
    Ok(())
}
