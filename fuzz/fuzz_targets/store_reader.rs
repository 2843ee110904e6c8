//! The host-local store reader: a lease directory with arbitrary file names
//! and contents (corrupt, half-written, foreign, non-canonical names) is read
//! by `DiskStore`, then ADD / DEL / GC run on it. Must never panic, never
//! hand out an address another lease file holds, and DEL / GC must remove
//! exactly what they claim.
#![no_main]

use std::net::IpAddr;
use std::path::PathBuf;

use cni::ipam::allocator::Allocator;
use cni::ipam::disk::DiskStore;
use cni::ipam::range::{Range, RangeSet};
use cni::ipam::store::{Owner, Store};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Name {
    V4(u8),
    V6(u8),
    Mapped(u8),
    LastReserved(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    files: Vec<(Name, Vec<u8>)>,
    requested: Option<u8>,
    gc_keep_self: bool,
}

const NET: &str = "fuzznet";

impl Name {
    fn file_name(&self) -> Option<String> {
        let s = match self {
            Name::V4(b) => format!("10.77.0.{}", b % 16),
            Name::V6(b) => format!("fd10:77::{:x}", b % 16),
            Name::Mapped(b) => format!("::ffff:10.77.0.{}", b % 16),
            Name::LastReserved(b) => format!("last_reserved_ip.{}", b % 3),
            Name::Other(s) => s.clone(),
        };
        let ok = !s.is_empty()
            && s != "."
            && s != ".."
            && s != "lock"
            && !s.contains('/')
            && !s.contains('\0')
            && s.len() < 200;
        ok.then_some(s)
    }
}

fn sets() -> Vec<RangeSet> {
    let v4 = Range::new("10.77.0.0/28".parse().unwrap(), None, None, None).unwrap();
    let v6 = Range::new("fd10:77::/124".parse().unwrap(), None, None, None).unwrap();
    vec![
        RangeSet::new(vec![v4]).unwrap(),
        RangeSet::new(vec![v6]).unwrap(),
    ]
}

/// Address-named regular files with a non-empty owner line: (name, address).
fn live_files(dir: &std::path::Path) -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(ip) = name.parse::<IpAddr>() else {
            continue;
        };
        if !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let content = std::fs::read(e.path()).unwrap_or_default();
        if !String::from_utf8_lossy(&content).trim().is_empty() {
            out.push((name, ip.to_canonical()));
        }
    }
    out
}

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("cni-rs-fuzz-store-{}", std::process::id()))
}

fuzz_target!(|input: Input| {
    let root = scratch();
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join(NET);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, content) in &input.files {
        let _ = Owner::parse(content);
        if let Some(n) = name.file_name() {
            let _ = std::fs::write(dir.join(n), content);
        }
    }
    let sets = sets();
    let requested: Vec<IpAddr> = input
        .requested
        .map(|b| format!("10.77.0.{}", b % 16).parse().unwrap())
        .into_iter()
        .collect();

    let mut store = DiskStore::open(&root, NET).expect("open store");
    let _ = store.leases().expect("list leases");
    for set in 0..3 {
        let _ = store.last_reserved(set);
    }
    // Files holding an owner line before anything runs: (name, address).
    let live_before = live_files(&dir);
    let mut alloc = Allocator::new(&mut store).expect("index");
    let _ = alloc.reclaim_orphans().expect("reclaim");
    for (name, _) in &live_before {
        assert!(
            dir.join(name).exists(),
            "reclaim removed the live lease {name:?}"
        );
    }
    if let Ok(got) = alloc.allocate(&sets, "fuzz-id", "eth0", &requested) {
        assert_eq!(got.len(), sets.len());
        for a in &got {
            let ip = a.address.addr();
            for (name, held) in &live_before {
                assert!(
                    *held != ip,
                    "handed out {ip}, held by the live lease {name:?}"
                );
            }
            let content = std::fs::read(dir.join(ip.to_string())).expect("lease file");
            assert_eq!(content, b"fuzz-id\r\neth0");
        }
        let released = alloc.release("fuzz-id", "eth0").expect("release");
        assert_eq!(released.len(), got.len());
        for a in &got {
            assert!(!dir.join(a.address.addr().to_string()).exists());
        }
    }
    let keep = if input.gc_keep_self {
        vec![("fuzz-id".to_string(), "eth0".to_string())]
    } else {
        Vec::new()
    };
    let _ = alloc.gc(&keep);
    drop(alloc);
    drop(store);
    let _ = std::fs::remove_dir_all(&root);
});
