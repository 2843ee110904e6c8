//! (5) peak RSS of one ADD — the plugin and every child it waited for
//! (host-local, iptables, ...), measured through GNU time (see
//! `rssprobe` for why not our own wait4) — and binary sizes.

use super::{bridge_conf, progress, with_prev_result, Ctx, Impl, Output, Samples};
use crate::error::{BenchError, Result};
use crate::exec::Call;
use crate::ns::{Node, Pod};
use crate::report::{Target, Unit};
use crate::rssprobe;
use crate::util::TempDir;
use serde_json::{json, Value};

const RSS_TARGET: Target = Target::Ratio { max: 0.25 };
const SIZE_TARGET: Target = Target::Ratio { max: 0.5 };

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<()> {
    let n = ctx.plan.rss;
    progress(&format!(
        "rss: {n} ADDs of each kind per side, binary sizes"
    ));
    let scratch = TempDir::new("rss-scratch")?;
    if let Some(floor) = rssprobe::floor_kib(&scratch)? {
        out.notes.push(format!(
            "peak RSS floor of the method (a no-op static binary under {}): {floor} KiB",
            rssprobe::TIME
        ));
    }
    let nodes = [Node::new()?, Node::new()?];
    let dirs = [TempDir::new("rss-ours")?, TempDir::new("rss-ref")?];
    let conf = |k: usize, masq: bool| {
        let (name, bridge, subnet) = if masq {
            ("bench-rss-masq", "cnib1", "10.244.5.0/24")
        } else {
            ("bench-rss", "cnib0", "10.244.4.0/24")
        };
        bridge_conf(
            name,
            bridge,
            masq,
            json!([[{ "subnet": subnet }]]),
            json!([{ "dst": "0.0.0.0/0" }]),
            dirs[k].path(),
        )
    };
    let pod = Pod::new()?;
    let mut bridge_plain = Samples::default();
    let mut bridge_masq = Samples::default();
    let mut hostlocal = Samples::default();
    let warmup = ctx.plan.warmup.min(1);
    for i in 0..warmup + n {
        for imp in ctx.order(i) {
            let k = imp.side.index();
            let plain = bridge_add_rss(
                imp,
                &nodes[k],
                &conf(k, false),
                &format!("rss-{i}"),
                &scratch,
            )?;
            let masq = bridge_add_rss(
                imp,
                &nodes[k],
                &conf(k, true),
                &format!("rss-m-{i}"),
                &scratch,
            )?;
            let hl_conf = conf(k, false);
            let id = format!("rss-hl-{i}");
            let call = Call::new("ADD", &id, &pod.path, &imp.dir).stdin(&hl_conf);
            let (o, hl) =
                rssprobe::measure(&imp.bin("host-local"), &call, &scratch, imp.side.name())?;
            o.ok(imp.side.name(), "host-local ADD under time")?;
            imp.call("host-local", "DEL", &id, &pod.path, &hl_conf)?;
            if i >= warmup {
                bridge_plain.push(imp.side, plain as f64);
                bridge_masq.push(imp.side, masq as f64);
                hostlocal.push(imp.side, hl as f64);
            }
        }
    }
    out.metrics.push(bridge_plain.metric(
        "rss.bridge_add",
        "peak RSS bridge ADD (tree), ipMasq=false",
        Unit::Kib,
        Some(RSS_TARGET),
    ));
    out.metrics.push(bridge_masq.metric(
        "rss.bridge_add_masq",
        "peak RSS bridge ADD (tree), ipMasq=true",
        Unit::Kib,
        Some(RSS_TARGET),
    ));
    out.metrics.push(hostlocal.metric(
        "rss.host_local_add",
        "peak RSS host-local ADD",
        Unit::Kib,
        Some(RSS_TARGET),
    ));
    for plugin in ["bridge", "host-local"] {
        let mut sizes = Samples::default();
        for imp in [&ctx.ours, &ctx.reference] {
            let path = imp.bin(plugin);
            let len = std::fs::metadata(&path)
                .map_err(|e| BenchError::io(&path, e))?
                .len();
            sizes.push(imp.side, len as f64);
        }
        out.metrics.push(sizes.metric(
            &format!("size.{}", plugin.replace('-', "_")),
            &format!("binary size {plugin}"),
            Unit::Bytes,
            Some(SIZE_TARGET),
        ));
    }
    Ok(())
}

/// Peak RSS (KiB) of one bridge ADD in a fresh pod; the pod is then
/// deleted (DEL with prevResult, not measured).
fn bridge_add_rss(
    imp: &Impl,
    node: &Node,
    conf: &Value,
    id: &str,
    scratch: &TempDir,
) -> Result<u64> {
    let pod = Pod::new()?;
    node.run(|| -> Result<u64> {
        let side = imp.side.name();
        let call = Call::new("ADD", id, &pod.path, &imp.dir).stdin(conf);
        let (add, kib) = rssprobe::measure(&imp.bin("bridge"), &call, scratch, side)?;
        let add = add.ok(side, &format!("bridge ADD {id} under time"))?;
        let del = with_prev_result(conf, &add, imp)?;
        imp.call("bridge", "DEL", id, &pod.path, &del)?;
        Ok(kib)
    })?
}
