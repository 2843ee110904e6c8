//! The kernel floor (issue 16): a veth pair created and deleted over
//! netlink by this process, no plugin and no exec, in the same run as the
//! plugins. The pair is made the way the bridge plugin makes it (host end
//! in the node, peer born inside a fresh pod netns, one request); the
//! delete is timed twice: until both ends are unlisted (what a DEL must
//! wait for before callers can no longer observe the interface) and until
//! the kernel acknowledges it (after its `rcu_barrier()`, what a DEL that
//! waits for the request pays). The bridge rows divide by these medians in
//! the table's "ours/floor" column.

use super::{progress, Ctx, Output, Samples};
use crate::error::{BenchError, Result};
use crate::ns::{Node, Pod};
use crate::report::Unit;
use cni::netlink::{Netlink, VethSpec};
use cni::netns::NetNs;
use std::time::{Duration, Instant};

/// Metric keys the bridge and density rows refer to.
pub const CREATE: &str = "floor.create";
pub const UNLISTED: &str = "floor.del_unlisted";
pub const CYCLE: &str = "floor.create_del_unlisted";
pub const ACKED: &str = "floor.del_acked";

/// Gives up on one delete after this long (never reached when healthy).
const BOUND: Duration = Duration::from_secs(5);

pub fn run(ctx: &Ctx, out: &mut Output) -> Result<()> {
    let n = ctx.plan.bridge;
    progress(&format!(
        "floor: {n} veth pairs created and deleted over netlink"
    ));
    let node = Node::new()?;
    let mut create = Samples::default();
    let mut unlisted = Samples::default();
    let mut cycle = Samples::default();
    let mut acked = Samples::default();
    for i in 0..ctx.plan.warmup + n {
        let pod = Pod::new()?;
        let t = node.run(|| one_pair(&pod, i))??;
        if i >= ctx.plan.warmup {
            create.ours.push(t.create);
            unlisted.ours.push(t.unlisted);
            cycle.ours.push(t.create + t.unlisted);
            acked.ours.push(t.acked);
        }
    }
    for (s, key, label) in [
        (&create, CREATE, "kernel floor: veth pair create"),
        (
            &unlisted,
            UNLISTED,
            "kernel floor: veth delete, until unlisted",
        ),
        (
            &cycle,
            CYCLE,
            "kernel floor: create + delete until unlisted",
        ),
        (&acked, ACKED, "kernel floor: veth delete, until acked"),
    ] {
        out.metrics.push(s.metric(key, label, Unit::Ms, None));
    }
    Ok(())
}

/// Milliseconds of one pair's life.
struct PairTimes {
    create: f64,
    unlisted: f64,
    acked: f64,
}

/// Creates and deletes one pair; runs on a thread inside the node.
fn one_pair(pod: &Pod, i: usize) -> Result<PairTimes> {
    let nerr = |what: &str, e: cni::netlink::NetlinkError| {
        BenchError::Other(format!("floor: {what}: {e}"))
    };
    let pod_ns = NetNs::open(&pod.path).map_err(|e| BenchError::Netns(format!("floor: {e}")))?;
    let mut host = Netlink::open().map_err(|e| nerr("netlink in the node", e))?;
    let mut inside = Netlink::open_in(&pod_ns).map_err(|e| nerr("netlink in the pod", e))?;
    let host_name = format!("vethfl{i:08x}");
    let spec = VethSpec {
        host_name: &host_name,
        peer_name: "eth0",
        peer_netns: &pod_ns,
        mtu: None,
        peer_mac: None,
        master: None,
        host_up: true,
    };
    let t0 = Instant::now();
    host.create_veth(&spec)
        .map_err(|e| nerr("create veth", e))?;
    let create = ms(t0.elapsed());
    let host_idx = host
        .link_by_name(&host_name)
        .map_err(|e| nerr("find host end", e))?
        .ok_or_else(|| BenchError::Other("floor: host end missing".into()))?
        .index;
    let peer_idx = inside
        .link_by_name("eth0")
        .map_err(|e| nerr("find pod end", e))?
        .ok_or_else(|| BenchError::Other("floor: pod end missing".into()))?
        .index;
    let mut deleter = Netlink::open_in(&pod_ns).map_err(|e| nerr("netlink in the pod", e))?;
    std::thread::scope(|s| {
        let t0 = Instant::now();
        let del = s.spawn(move || deleter.del_link(peer_idx).map(|_| ms(t0.elapsed())));
        let unlisted = loop {
            let gone = |nl: &mut Netlink, idx| matches!(nl.link_by_index(idx), Ok(None));
            if gone(&mut inside, peer_idx) && gone(&mut host, host_idx) {
                break Ok(ms(t0.elapsed()));
            }
            if t0.elapsed() > BOUND {
                break Err(BenchError::Other(
                    "floor: veth still listed after 5 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_micros(50));
        };
        let acked = del
            .join()
            .map_err(|_| BenchError::Other("floor: delete thread panicked".into()))?
            .map_err(|e| nerr("delete veth", e))?;
        Ok(PairTimes {
            create,
            unlisted: unlisted?,
            acked,
        })
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
