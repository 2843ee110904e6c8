//! Density (issue 16): one node filled to `--density` pods (default 500)
//! with bridge + host-local, `ipMasq: true`, one pod after the other, then
//! drained oldest first; one implementation after the other, each on a
//! settled machine. Not pod by pod alternating as the other scenarios do:
//! work that a plugin leaves to the kernel after it returns (our bridge's
//! gratuitous ARP, flooded to every port) would land in the other side's
//! next ADD.
//! Whatever a call costs per pod already on the node (dumps of the nat
//! table, of all links, of the bridge's ports, ...) shows as growth: the
//! median of the last 20 ADDs (of the first 200, and of all) over the
//! median of the first 20, and the same for the DELs of the drain.
//!
//! The kernel's own share of that growth is measured on a third node in
//! the same run ([`kernel_fill`]): the same pod count, each pod's veth
//! pair made by this process over netlink as the bridge plugin makes it
//! (host end a port of a bridge with a gateway address, peer born in the
//! pod, `arp_notify`, an address, peer and `lo` up), no plugin and no
//! firewall.

use super::{bridge_conf, floor, leak_check, progress, with_prev_result, Ctx, Output, Samples};
use crate::error::{BenchError, Result};
use crate::ns::{Node, Pod};
use crate::report::{Target, Unit};
use crate::stats::Summary;
use crate::util::{settle, TempDir};
use cni::netlink::{Netlink, NetlinkError, VethSpec};
use cni::netns::NetNs;
use serde_json::{json, Value};
use std::time::Instant;

const NETWORK: &str = "bench-dn";
/// Pods per window compared.
const WINDOW: usize = 20;
/// The bound on last-window / first-window medians.
const GROWTH_TARGET: Target = Target::AtMost { max: 1.15 };

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<()> {
    let n = ctx.plan.density;
    progress(&format!(
        "density: fill one node to {n} pods (ipMasq=true) and drain it, one side after the other"
    ));
    // Per side: ADD and DEL times in fill order.
    let mut adds: [Vec<f64>; 2] = Default::default();
    let mut dels: [Vec<f64>; 2] = Default::default();
    for imp in [&ctx.ours, &ctx.reference] {
        let k = imp.side.index();
        settle_before(out, &format!("{}'s fill", imp.side.name()));
        let node = Node::new()?;
        let dir = TempDir::new(&format!("dn-{}", imp.side.name()))?;
        let conf = bridge_conf(
            NETWORK,
            "cnib0",
            true,
            json!([[{ "subnet": "10.245.0.0/16" }]]),
            json!([{ "dst": "0.0.0.0/0" }]),
            dir.path(),
        );
        let mut pods: Vec<(Pod, Value)> = Vec::with_capacity(n);
        for i in 0..n {
            let pod = Pod::new()?;
            let add =
                node.run(|| imp.call("bridge", "ADD", &format!("dn-{i}"), &pod.path, &conf))??;
            adds[k].push(add.elapsed_ms);
            let del_conf = with_prev_result(&conf, &add, imp)?;
            pods.push((pod, del_conf));
            if (i + 1) % 100 == 0 {
                progress(&format!("density: {}: {} pods", imp.side.name(), i + 1));
            }
        }
        for (i, (pod, del_conf)) in pods.iter().enumerate() {
            let del =
                node.run(|| imp.call("bridge", "DEL", &format!("dn-{i}"), &pod.path, del_conf))??;
            dels[k].push(del.elapsed_ms);
        }
        drop(pods);
        leak_check(out, imp, &dir.path().join(NETWORK), Some(&node))?;
    }
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
    progress(&format!(
        "density: kernel floor, {n} veth pairs on one bridge"
    ));
    settle_before(out, "the kernel floor");
    let floor = kernel_fill(n)?;
    for &end in &ends {
        if let Some((f, l)) = windows(&floor, end) {
            out.metrics.push(
                Samples {
                    ours: vec![l / f],
                    reference: Vec::new(),
                }
                .metric(
                    &format!("density.floor.growth_{end}"),
                    &format!("kernel floor at density: last {WINDOW} / first {WINDOW}, {end} pods"),
                    Unit::Ratio,
                    None,
                ),
            );
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
    }
    Ok(())
}

/// Lets the kernel finish tearing down earlier pods' namespaces before a
/// fill is timed (`util::settle`), and says how long that took.
fn settle_before(out: &mut Output, what: &str) {
    let (waited, settled) = settle(SETTLE_MAX);
    out.notes.push(format!(
        "waited {:.1} s for an idle machine before {what}{}",
        waited.as_secs_f64(),
        if settled { "" } else { " (it did not settle)" }
    ));
}

/// The longest wait for an idle machine.
const SETTLE_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Milliseconds per pod of the kernel's part of a bridge ADD, for `n` pods
/// kept on one node (see the module doc).
fn kernel_fill(n: usize) -> Result<Vec<f64>> {
    let nerr =
        |what: &str, e: NetlinkError| BenchError::Other(format!("density floor: {what}: {e}"));
    let node = Node::new()?;
    let bridge = node.run(|| -> Result<u32> {
        let mut nl = Netlink::open().map_err(|e| nerr("netlink", e))?;
        nl.create_bridge("cnib0", None, false)
            .map_err(|e| nerr("create bridge", e))?;
        let br = nl
            .link_by_name("cnib0")
            .map_err(|e| nerr("find bridge", e))?
            .ok_or_else(|| BenchError::Other("density floor: bridge missing".into()))?;
        nl.set_up(br.index).map_err(|e| nerr("bridge up", e))?;
        let gw = "10.246.0.1/16"
            .parse()
            .map_err(|_| BenchError::Other("gateway".into()))?;
        nl.add_address(br.index, gw)
            .map_err(|e| nerr("gateway address", e))?;
        Ok(br.index)
    })??;
    let mut pods = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let pod = Pod::new()?;
        let ms = node.run(|| kernel_pod(&pod, bridge, i))??;
        times.push(ms);
        pods.push(pod);
    }
    Ok(times)
}

/// One pod's veth pair and container-side set-up, timed.
fn kernel_pod(pod: &Pod, bridge: u32, i: usize) -> Result<f64> {
    let nerr =
        |what: &str, e: NetlinkError| BenchError::Other(format!("density floor: {what}: {e}"));
    let ns =
        NetNs::open(&pod.path).map_err(|e| BenchError::Netns(format!("density floor: {e}")))?;
    let mut host = Netlink::open().map_err(|e| nerr("netlink", e))?;
    let mut inside = Netlink::open_in(&ns).map_err(|e| nerr("netlink in the pod", e))?;
    let host_name = format!("vethdn{i:08x}");
    let addr = format!("10.246.{}.{}/16", (i + 2) / 256, (i + 2) % 256)
        .parse()
        .map_err(|_| BenchError::Other("pod address".into()))?;
    let t0 = Instant::now();
    host.create_veth(&VethSpec {
        host_name: &host_name,
        peer_name: "eth0",
        peer_netns: &ns,
        mtu: None,
        peer_mac: None,
        master: Some(bridge),
        host_up: true,
    })
    .map_err(|e| nerr("create veth", e))?;
    ns.run(|| std::fs::write("/proc/sys/net/ipv4/conf/eth0/arp_notify", "1"))
        .map_err(|e| BenchError::Netns(format!("density floor: {e}")))?
        .map_err(|e| BenchError::io("/proc/sys/net/ipv4/conf/eth0/arp_notify", e))?;
    let eth0 = inside
        .link_by_name("eth0")
        .map_err(|e| nerr("find eth0", e))?
        .ok_or_else(|| BenchError::Other("density floor: eth0 missing".into()))?
        .index;
    inside
        .add_address(eth0, addr)
        .map_err(|e| nerr("address", e))?;
    inside.set_up(eth0).map_err(|e| nerr("eth0 up", e))?;
    inside.set_up(1).map_err(|e| nerr("lo up", e))?;
    Ok(t0.elapsed().as_secs_f64() * 1000.0)
}
