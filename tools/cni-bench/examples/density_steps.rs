//! Where the kernel's part of a pod ADD grows with the pods on a node
//! (docs/benchmarks.md F16): fills one bridge with `N` pods (default 500)
//! the way the bridge plugin builds them, over netlink and without any
//! plugin, and prints every 20 pods the median of the last 20 pods' steps
//! (veth pair as a bridge port, `arp_notify`, address, `eth0` up, `lo` up)
//! plus the neighbour table's size. Environment switches, one kernel
//! feature at a time:
//!
//! - `NOARP=1`: no `arp_notify` (no gratuitous ARP at `eth0` up);
//! - `ARPSEND=1`: the ARP sent after the ADD from another thread, as the
//!   bridge plugin's `announce` helper does;
//! - `NOV6=1`: IPv6 off in the pods; `HOSTNOV6=1`: off on the node (the
//!   host veth ends);
//! - `GAP=MS`: idle time between pods (default 2).
//!
//! Run as root: `cargo run --release -p cni-bench --example density_steps`.
//! It first moves itself into a fresh network namespace (the node) and
//! refuses to run if that fails; every pod is a namespace held by an open
//! descriptor, so all of it vanishes when the process exits.

use std::io::{Read, Seek};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use cni::netlink::{Netlink, VethSpec};
use cni::netns::NetNs;
use nix::sched::{setns, unshare, CloneFlags};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn switch(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

fn number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fresh pod netns, optionally with IPv6 off for interfaces made in it.
fn new_pod(no_v6: bool) -> Res<NetNs> {
    std::thread::spawn(move || -> Result<NetNs, String> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
        if no_v6 {
            std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")
                .map_err(|e| e.to_string())?;
        }
        NetNs::open("/proc/thread-self/ns/net").map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "pod thread panicked")?
    .map_err(Into::into)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Entries of a global neighbour table (first field of the second line of
/// `/proc/net/stat/{arp,ndisc}_cache`, hex), read from a file opened in
/// the machine's namespace (the table is shared by every namespace).
fn table_entries(file: &mut std::fs::File) -> u64 {
    let mut text = String::new();
    if file.rewind().is_err() || file.read_to_string(&mut text).is_err() {
        return 0;
    }
    text.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

fn main() -> Res<()> {
    let n = number("N", 500) as usize;
    let gap = Duration::from_millis(number("GAP", 2));
    let mut ndisc = std::fs::File::open("/proc/net/stat/ndisc_cache")?;
    let machine = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
    unshare(CloneFlags::CLONE_NEWNET)?;
    if std::fs::metadata("/proc/thread-self/ns/net")?.ino() == machine {
        return Err("still in the machine's network namespace".into());
    }
    let mut nl = Netlink::open()?;
    nl.set_up(1)?;
    if switch("HOSTNOV6") {
        std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")?;
    }
    nl.create_bridge("br0", None, false)?;
    let br = nl.link_by_name("br0")?.ok_or("bridge missing")?.index;
    nl.set_up(br)?;
    nl.add_address(br, "10.246.0.1/16".parse()?)?;
    let (no_v6, no_arp, arp_send) = (switch("NOV6"), switch("NOARP"), switch("ARPSEND"));
    let steps = ["veth", "arp_notify", "addr", "eth0up", "loup", "total"];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); steps.len()];
    let mut pods = Vec::with_capacity(n);
    let fill = Instant::now();
    for i in 0..n {
        let ns = new_pod(no_v6)?;
        let mut inside = Netlink::open_in(&ns)?;
        let host = format!("vethx{i:08x}");
        let ip = Ipv4Addr::new(10, 246, ((i + 2) / 256) as u8, ((i + 2) % 256) as u8);
        let mut marks = Vec::with_capacity(steps.len());
        let t0 = Instant::now();
        nl.create_veth(&VethSpec {
            host_name: &host,
            peer_name: "eth0",
            peer_netns: &ns,
            mtu: None,
            peer_mac: None,
            master: Some(br),
            host_up: true,
        })?;
        marks.push(t0.elapsed());
        let eth0 = inside.link_by_name("eth0")?.ok_or("eth0 missing")?;
        if !no_arp && !arp_send {
            inside.set_arp_notify(eth0.index)?;
        }
        marks.push(t0.elapsed());
        inside.add_address(eth0.index, format!("{ip}/16").parse()?)?;
        marks.push(t0.elapsed());
        inside.set_up(eth0.index)?;
        marks.push(t0.elapsed());
        inside.set_up(1)?;
        marks.push(t0.elapsed());
        if arp_send {
            let mac: [u8; 6] = eth0.mac.as_deref().ok_or("no MAC")?.try_into()?;
            let pod = std::fs::File::open(ns.path())?;
            std::thread::spawn(move || {
                if setns(&pod, CloneFlags::CLONE_NEWNET).is_ok() {
                    let _ = cni::arp::announce(eth0.index, mac, &[ip]);
                }
            });
        }
        let mut prev = 0.0;
        for (k, d) in marks.iter().enumerate() {
            let ms = d.as_secs_f64() * 1000.0;
            times[k].push(ms - prev);
            prev = ms;
        }
        times[steps.len() - 1].push(prev);
        pods.push(ns);
        if (i + 1) % 20 == 0 {
            let mut line = format!("{:4}", i + 1);
            for (name, t) in steps.iter().zip(&times) {
                let last: Vec<f64> = t.iter().rev().take(20).copied().collect();
                line += &format!(" {name}={:.3}", median(last));
            }
            println!("{line} ndisc={}", table_entries(&mut ndisc));
        }
        std::thread::sleep(gap);
    }
    println!("fill wall {:.0} ms", fill.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}
