//! Density (issue 16): one node filled to `--density` pods (default 500)
//! with bridge + host-local, `ipMasq: true`, one pod after the other and
//! both implementations alternating pod by pod, then drained oldest first.
//! Whatever a call costs per pod already on the node (dumps of the nat
//! table, of all links, of the bridge's ports, ...) shows as growth: the
//! median of the last 20 ADDs (of the first 200, and of all) over the
//! median of the first 20, and the same for the DELs of the drain.

use super::{bridge_conf, floor, leak_check, progress, with_prev_result, Ctx, Output, Samples};
use crate::error::Result;
use crate::ns::{Node, Pod};
use crate::report::{Target, Unit};
use crate::stats::Summary;
use crate::util::TempDir;
use serde_json::{json, Value};

const NETWORK: &str = "bench-dn";
/// Pods per window compared.
const WINDOW: usize = 20;
/// The bound on last-window / first-window medians.
const GROWTH_TARGET: Target = Target::AtMost { max: 1.15 };

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<()> {
    let n = ctx.plan.density;
    progress(&format!(
        "density: fill one node per side to {n} pods (ipMasq=true), then drain"
    ));
    let nodes = [Node::new()?, Node::new()?];
    let dirs = [TempDir::new("dn-ours")?, TempDir::new("dn-ref")?];
    let conf_of = |d: &TempDir| {
        bridge_conf(
            NETWORK,
            "cnib0",
            true,
            json!([[{ "subnet": "10.245.0.0/16" }]]),
            json!([{ "dst": "0.0.0.0/0" }]),
            d.path(),
        )
    };
    let confs = [conf_of(&dirs[0]), conf_of(&dirs[1])];
    // Per side: ADD times in fill order, and what DEL needs.
    let mut adds: [Vec<f64>; 2] = Default::default();
    let mut dels: [Vec<f64>; 2] = Default::default();
    let mut pods: [Vec<(Pod, Value)>; 2] = Default::default();
    for i in 0..n {
        for imp in ctx.order(i) {
            let k = imp.side.index();
            let pod = Pod::new()?;
            let add = nodes[k]
                .run(|| imp.call("bridge", "ADD", &format!("dn-{i}"), &pod.path, &confs[k]))??;
            adds[k].push(add.elapsed_ms);
            let del_conf = with_prev_result(&confs[k], &add, imp)?;
            pods[k].push((pod, del_conf));
        }
        if (i + 1) % 100 == 0 {
            progress(&format!("density: {} pods per side", i + 1));
        }
    }
    for i in 0..n {
        for imp in ctx.order(i) {
            let k = imp.side.index();
            let (pod, del_conf) = &pods[k][i];
            let del = nodes[k]
                .run(|| imp.call("bridge", "DEL", &format!("dn-{i}"), &pod.path, del_conf))??;
            dels[k].push(del.elapsed_ms);
        }
    }
    drop(pods);
    let windows = |v: &[f64], end: usize| -> Option<(f64, f64)> {
        if end < 2 * WINDOW || v.len() < end {
            return None;
        }
        let first = Summary::of(&v[..WINDOW])?.median;
        let last = Summary::of(&v[end - WINDOW..end])?.median;
        Some((first, last))
    };
    let mut ends = vec![200.min(n)];
    if n > 200 {
        ends.push(n);
    }
    for (what, series) in [("ADD", &adds), ("DEL", &dels)] {
        let tag = what.to_lowercase();
        for &end in &ends {
            let mut first = Samples::default();
            let mut last = Samples::default();
            let mut growth = Samples::default();
            for imp in [&ctx.ours, &ctx.reference] {
                if let Some((f, l)) = windows(&series[imp.side.index()], end) {
                    first.push(imp.side, f);
                    last.push(imp.side, l);
                    growth.push(imp.side, l / f);
                }
            }
            let at = if what == "ADD" {
                format!("{end} pods")
            } else {
                format!("drain of {n}")
            };
            if end == ends[0] {
                out.metrics.push(
                    first
                        .metric(
                            &format!("density.{tag}.first{WINDOW}"),
                            &format!("density {what}, first {WINDOW} (ipMasq)"),
                            Unit::Ms,
                            None,
                        )
                        .with_floor(if what == "ADD" {
                            floor::CREATE
                        } else {
                            floor::UNLISTED
                        }),
                );
            }
            out.metrics.push(last.metric(
                &format!("density.{tag}.last{WINDOW}_of_{end}"),
                &format!("density {what}, last {WINDOW} of {at}"),
                Unit::Ms,
                None,
            ));
            out.metrics.push(growth.metric(
                &format!("density.{tag}.growth_{end}"),
                &format!("density {what}: last {WINDOW} / first {WINDOW}, {at}"),
                Unit::Ratio,
                (what == "ADD").then_some(GROWTH_TARGET),
            ));
            if what == "DEL" {
                break; // one drain: its first and last windows
            }
        }
    }
    for imp in [&ctx.ours, &ctx.reference] {
        let k = imp.side.index();
        let per100: Vec<String> = adds[k]
            .chunks(100)
            .filter_map(|c| Summary::of(c).map(|s| format!("{:.2}", s.median)))
            .collect();
        out.notes.push(format!(
            "{}: ADD median per 100 pods of the fill (ms): {}",
            imp.side.name(),
            per100.join(" ")
        ));
        leak_check(out, imp, &dirs[k].path().join(NETWORK), Some(&nodes[k]))?;
    }
    Ok(())
}
