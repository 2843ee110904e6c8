//! (3) 50 pod ADDs released at once on one fresh node (no bridge yet, as
//! after a node reboot): wall time, and every IP handed out exactly once.

use super::{bridge_conf, leak_check, progress, with_prev_result, Ctx, Impl, Output, Samples};
use crate::error::{BenchError, Result};
use crate::exec::{exec, Call, Outcome};
use crate::ns::{Node, Pod};
use crate::report::{Target, Unit};
use crate::util::TempDir;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Barrier;
use std::time::Instant;

const PODS: usize = 50;
const NETWORK: &str = "bench-cc";

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<()> {
    let rounds = ctx.plan.concurrent_rounds;
    progress(&format!(
        "concurrent: {rounds} round(s) of {PODS} simultaneous pod ADDs per side, ipMasq=true"
    ));
    let mut wall = Samples::default();
    let mut each = Samples::default();
    let mut dups = Samples::default();
    let mut failures = Samples::default();
    for r in 0..rounds {
        for imp in ctx.order(r) {
            let b = burst(imp, r, out)?;
            wall.push(imp.side, b.wall_ms);
            for a in &b.adds {
                each.push(imp.side, *a);
            }
            dups.push(imp.side, b.duplicates as f64);
            failures.push(imp.side, b.failures as f64);
        }
    }
    out.metrics.push(wall.metric(
        "concurrent.wall",
        "50 concurrent pod ADDs, wall",
        Unit::Ms,
        Some(Target::Ratio { max: 1.0 / 3.0 }),
    ));
    out.metrics
        .push(each.metric("concurrent.add", "50 concurrent: each ADD", Unit::Ms, None));
    out.metrics.push(dups.metric(
        "concurrent.duplicate_ips",
        "50 concurrent: duplicate IPs",
        Unit::Count,
        Some(Target::Zero),
    ));
    out.metrics.push(failures.metric(
        "concurrent.failed_adds",
        "50 concurrent: failed ADDs",
        Unit::Count,
        Some(Target::Zero),
    ));
    Ok(())
}

struct Burst {
    wall_ms: f64,
    adds: Vec<f64>,
    duplicates: usize,
    failures: usize,
}

/// Runs `calls` (one per pod) from as many threads inside `node`, released
/// together by a barrier; returns the wall time from release to the last
/// exit, and every outcome.
fn simultaneous(node: &Node, imp: &Impl, calls: &[Call]) -> Result<(f64, Vec<Result<Outcome>>)> {
    node.run(|| {
        let barrier = Barrier::new(calls.len() + 1);
        std::thread::scope(|s| {
            let handles: Vec<_> = calls
                .iter()
                .map(|call| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        exec(&imp.bin("bridge"), call)
                    })
                })
                .collect();
            barrier.wait();
            let t0 = Instant::now();
            let results: Vec<Result<Outcome>> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(BenchError::Other("ADD thread panicked".into())))
                })
                .collect();
            (t0.elapsed().as_secs_f64() * 1e3, results)
        })
    })
}

fn burst(imp: &Impl, round: usize, out: &mut Output) -> Result<Burst> {
    let side = imp.side.name();
    let node = Node::new()?;
    let dir = TempDir::new(&format!("cc-{side}"))?;
    let conf = bridge_conf(
        NETWORK,
        "cnib0",
        true,
        json!([[{ "subnet": "10.244.2.0/24" }]]),
        json!([{ "dst": "0.0.0.0/0" }]),
        dir.path(),
    );
    let pods = Pod::many(PODS)?;
    let ids: Vec<String> = (0..PODS).map(|p| format!("cc-{round}-{p}")).collect();
    let adds: Vec<Call> = pods
        .iter()
        .zip(&ids)
        .map(|(pod, id)| Call::new("ADD", id, &pod.path, &imp.dir).stdin(&conf))
        .collect();
    let (wall_ms, results) = simultaneous(&node, imp, &adds)?;

    let mut ips: Vec<String> = Vec::new();
    let mut failures = 0;
    let mut times = Vec::new();
    let mut dels = Vec::new();
    for ((res, call), id) in results.into_iter().zip(&adds).zip(&ids) {
        let outcome = match res {
            Err(BenchError::Interrupted) => return Err(BenchError::Interrupted),
            Err(e) => return Err(e),
            Ok(o) => o,
        };
        times.push(outcome.elapsed_ms);
        let mut del = call.clone();
        del.command = "DEL";
        match outcome.ok(side, &format!("bridge ADD {id}")) {
            Ok(ok) => {
                let result = ok.json(side, "ADD result")?;
                ips.extend(result_ips(&result));
                del.stdin = with_prev_result(&conf, &ok, imp)?.to_string().into_bytes();
            }
            Err(e) => {
                if failures == 0 {
                    out.notes
                        .push(format!("round {round}: first failed ADD: {e}"));
                }
                failures += 1;
            }
        }
        dels.push(del);
    }
    let unique: HashSet<&String> = ips.iter().collect();
    let duplicates = ips.len() - unique.len();
    if duplicates > 0 {
        out.notes.push(format!(
            "{side}: round {round}: {duplicates} duplicate IP(s) among {} ADDs",
            ips.len()
        ));
    }

    // Tear down (not timed), concurrently too, then check for leaks.
    let (_, del_results) = simultaneous(&node, imp, &dels)?;
    for (res, id) in del_results.into_iter().zip(&ids) {
        if let Err(e) = res.and_then(|o| o.ok(side, &format!("bridge DEL {id}"))) {
            out.notes.push(format!("round {round}: {e}"));
        }
    }
    leak_check(out, imp, &dir.path().join(NETWORK), Some(&node))?;
    Ok(Burst {
        wall_ms,
        adds: times,
        duplicates,
        failures,
    })
}

/// The addresses (without prefix length) of a CNI 1.0 result.
fn result_ips(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str())
                .map(|a| a.split('/').next().unwrap_or(a).to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_result_ips() {
        let r = json!({"ips": [{"address": "10.244.2.5/24"}, {"address": "fd10::5/64"}]});
        assert_eq!(result_ips(&r), vec!["10.244.2.5", "fd10::5"]);
        assert!(result_ips(&json!({})).is_empty());
    }
}
