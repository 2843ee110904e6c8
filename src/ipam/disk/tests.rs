//! On-disk store tests: exact bytes, names, modes, lock behaviour.

use super::*;
use crate::ipam::allocator::Allocator;
use crate::ipam::range::{Range, RangeSet};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

struct Tmp(PathBuf);
impl Tmp {
    fn new() -> Tmp {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "cni-rs-disk-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir");
        Tmp(p)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn reserve_writes_reference_format() {
    let t = Tmp::new();
    let mut s = DiskStore::open(&t.0, "net1").expect("open");
    let dir = t.0.join("net1");
    assert_eq!(mode(&dir), 0o755);
    assert!(s.reserve(ip("10.1.2.3"), "ctr1", "eth0").expect("reserve"));
    assert!(!s.reserve(ip("10.1.2.3"), "ctr2", "eth0").expect("taken"));
    let f = dir.join("10.1.2.3");
    assert_eq!(std::fs::read(&f).expect("read"), b"ctr1\r\neth0");
    assert_eq!(mode(&f), 0o600);
    assert!(s
        .reserve(ip("fd10:0:0:0:0:0:0:5"), "ctr1", "eth0")
        .expect("v6"));
    assert!(dir.join("fd10::5").exists());
    assert!(s
        .reserve(ip("::ffff:10.1.2.4"), "ctr1", "eth0")
        .expect("mapped"));
    assert!(dir.join("10.1.2.4").exists());
    assert!(dir.join(LOCK_FILE).exists());
}

#[test]
fn ip_text_matches_go() {
    // Go net.IP.String() outputs.
    let cases = [
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:DB8::FFFF", "2001:db8::ffff"),
        ("fd10:0:0:1:0:0:0:0", "fd10:0:0:1::"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("2001:db8:1:1:1:1:0:1", "2001:db8:1:1:1:1:0:1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("fd10::a:0:0:0", "fd10::a:0:0:0"),
        ("fd10:0:0:a:0:0:0:0", "fd10:0:0:a::"),
    ];
    for (input, go) in cases {
        assert_eq!(ip(input).to_canonical().to_string(), go, "{input}");
    }
}

#[test]
fn listing_ignores_non_leases() {
    let t = Tmp::new();
    let mut s = DiskStore::open(&t.0, "n").expect("open");
    let dir = t.0.join("n");
    std::fs::write(dir.join("10.1.2.3"), b"a\r\neth0").expect("w");
    std::fs::write(dir.join("10.1.2.4"), b"legacy").expect("w");
    std::fs::write(dir.join("10.1.2.5"), b"").expect("w");
    std::fs::write(dir.join("last_reserved_ip.0"), b"10.1.2.5").expect("w");
    std::fs::write(dir.join("last_reserved_ip.0.tmp"), b"10.1.2.4").expect("w");
    std::fs::write(dir.join("README"), b"a\r\neth0").expect("w");
    std::fs::create_dir(dir.join("10.9.9.9")).expect("mkdir");
    let mut leases = s.leases().expect("list");
    leases.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<&str> = leases.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(keys, vec!["10.1.2.3", "10.1.2.4", "10.1.2.5"]);
    assert_eq!(
        leases[1].owner,
        Owner::Legacy {
            id: "legacy".into()
        }
    );
    assert_eq!(leases[2].owner, Owner::Orphan);
}

#[test]
fn last_reserved_roundtrip_and_corruption() {
    let t = Tmp::new();
    let mut s = DiskStore::open(&t.0, "n").expect("open");
    let dir = t.0.join("n");
    assert_eq!(s.last_reserved(0), None);
    s.set_last_reserved(0, ip("fd10::2")).expect("set");
    assert_eq!(
        std::fs::read(dir.join("last_reserved_ip.0")).expect("read"),
        b"fd10::2"
    );
    assert_eq!(mode(&dir.join("last_reserved_ip.0")), 0o600);
    assert!(!dir.join("last_reserved_ip.0.tmp").exists());
    assert_eq!(s.last_reserved(0), Some(ip("fd10::2")));
    std::fs::write(dir.join("last_reserved_ip.1"), b"garbage\x00").expect("w");
    assert_eq!(s.last_reserved(1), None);
    std::fs::write(dir.join("last_reserved_ip.1"), b"10.1.2.9\n").expect("w");
    assert_eq!(s.last_reserved(1), Some(ip("10.1.2.9")));
}

#[test]
fn remove_is_idempotent_and_confined() {
    let t = Tmp::new();
    let mut s = DiskStore::open(&t.0, "n").expect("open");
    assert!(s.reserve(ip("10.1.2.3"), "a", "eth0").expect("reserve"));
    s.remove("10.1.2.3").expect("remove");
    s.remove("10.1.2.3").expect("again");
    assert!(s.remove("../n").is_err());
    assert!(s.remove("..").is_err());
}

#[test]
fn open_existing_creates_nothing() {
    let t = Tmp::new();
    assert!(DiskStore::open_existing(&t.0, "n").expect("open").is_none());
    assert!(!t.0.join("n").exists());
    std::fs::write(t.0.join("file"), b"").expect("w");
    assert_eq!(
        DiskStore::open_existing(&t.0, "file")
            .expect_err("not a dir")
            .code(),
        5
    );
    assert!(DiskStore::open(&t.0, "..").is_err());
    assert!(DiskStore::open(&t.0, "a/b").is_err());
}

#[test]
fn unwritable_data_dir_is_io_error() {
    let t = Tmp::new();
    let file = t.0.join("plain-file");
    std::fs::write(&file, b"").expect("w");
    let e = DiskStore::open(&file, "n").expect_err("data dir is a file");
    assert_eq!(e.code(), 5);
    assert!(
        e.to_string()
            .contains("failed to create the IPAM store directory"),
        "{e}"
    );
}

#[test]
fn lock_is_exclusive_and_stale_lock_file_is_harmless() {
    let t = Tmp::new();
    // A stale lock file from a dead process: just a file, no lock held.
    std::fs::create_dir_all(t.0.join("n")).expect("mkdir");
    std::fs::write(t.0.join("n").join(LOCK_FILE), b"").expect("w");
    let first = DiskStore::open(&t.0, "n").expect("open with stale lock file");
    let got = Arc::new(AtomicBool::new(false));
    let (got2, dir) = (got.clone(), t.0.clone());
    let h = std::thread::spawn(move || {
        let _second = DiskStore::open(&dir, "n").expect("second open");
        got2.store(true, Ordering::SeqCst);
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !got.load(Ordering::SeqCst),
        "second opener must wait for the lock"
    );
    drop(first);
    h.join().expect("join");
    assert!(got.load(Ordering::SeqCst));
}

#[test]
fn allocator_over_disk_store() {
    let t = Tmp::new();
    let set = RangeSet::new(vec![Range::new(
        "10.1.2.0/24".parse().expect("net"),
        None,
        None,
        None,
    )
    .expect("range")])
    .expect("set");
    let mut s = DiskStore::open(&t.0, "n").expect("open");
    let mut a = Allocator::new(&mut s).expect("alloc");
    let got = a
        .allocate(std::slice::from_ref(&set), "c1", "eth0", &[])
        .expect("allocate");
    assert_eq!(got[0].address.to_string(), "10.1.2.2/24");
    drop(a);
    assert_eq!(
        std::fs::read(t.0.join("n/last_reserved_ip.0")).expect("r"),
        b"10.1.2.2"
    );
    let mut a = Allocator::new(&mut s).expect("alloc");
    assert_eq!(
        a.release("c1", "eth0").expect("release"),
        vec![ip("10.1.2.2")]
    );
    drop(a);
    drop(s);
    let names: Vec<String> = std::fs::read_dir(t.0.join("n"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, vec!["last_reserved_ip.0", "lock"]);
}

fn one_set(subnet: &str) -> RangeSet {
    RangeSet::new(vec![Range::new(
        subnet.parse().expect("net"),
        None,
        None,
        None,
    )
    .expect("range")])
    .expect("set")
}

/// Runs a full-path ADD of `id` like `ops::add` does, rebuilding the index.
fn full_add(data: &Path, id: &str, set: &RangeSet) {
    let mut s = DiskStore::open(data, "n").expect("open");
    let mut a = Allocator::new(&mut s).expect("alloc");
    a.allocate(std::slice::from_ref(set), id, "eth0", &[])
        .expect("allocate");
    let (view, surprised) = a.into_parts();
    s.finish_full(&view, surprised);
}

#[test]
fn index_is_trusted_until_the_directory_changes() {
    let t = Tmp::new();
    let set = one_set("10.1.2.0/24");
    full_add(&t.0, "a", &set);
    let idx = t.0.join(".cni-rs-index/n");
    assert_eq!(mode(&t.0.join(".cni-rs-index")), 0o700);
    assert_eq!(
        std::fs::read(
            idx.join("by-id")
                .join(crate::ipam::index::marker_name("a", "eth0"))
        )
        .expect("marker"),
        b"a\neth0\n10.1.2.2\n"
    );
    let mut s = DiskStore::open(&t.0, "n").expect("open");
    assert!(s.index_trusted());
    let own = s.indexed_leases("a", "eth0").expect("trusted");
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].ip, ip("10.1.2.2"));
    assert_eq!(s.indexed_leases("b", "eth0").expect("trusted"), vec![]);
    // The sentinel is in the past, so any later change by the kernel differs.
    let m = std::fs::metadata(t.0.join("n")).expect("stat");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(std::os::unix::fs::MetadataExt::mtime(&m) <= now - 2);
    drop(s);
    // Someone creates and removes a file: no longer trusted.
    std::fs::write(t.0.join("n/x"), b"").expect("touch");
    std::fs::remove_file(t.0.join("n/x")).expect("rm");
    let mut s = DiskStore::open(&t.0, "n").expect("open");
    assert!(!s.index_trusted());
    assert!(s.indexed_leases("a", "eth0").is_none());
}

#[test]
fn fast_path_inconsistency_invalidates_the_index() {
    let t = Tmp::new();
    let set = one_set("10.1.3.0/24");
    full_add(&t.0, "a", &set);
    // Rewrite a's lease in place: no directory change, but the content check fails.
    std::fs::write(t.0.join("n/10.1.3.2"), b"b\r\neth0").expect("rewrite");
    let mut s = DiskStore::open(&t.0, "n").expect("open");
    assert!(s.index_trusted());
    assert!(s.indexed_leases("a", "eth0").is_none());
    assert!(!t.0.join(".cni-rs-index/n/state").exists());
    drop(s);
    assert!(!DiskStore::open(&t.0, "n").expect("open").index_trusted());
    // A full command rebuilds it with the new owner.
    full_add(&t.0, "c", &set);
    let mut s = DiskStore::open(&t.0, "n").expect("open");
    assert_eq!(s.indexed_leases("a", "eth0").expect("trusted"), vec![]);
    assert_eq!(s.indexed_leases("b", "eth0").expect("trusted").len(), 1);
}

#[test]
fn irregular_stores_are_not_indexed() {
    let t = Tmp::new();
    let set = one_set("10.1.4.0/24");
    std::fs::create_dir_all(t.0.join("n")).expect("mkdir");
    // Non-canonical name for an address: the fast path could not see it.
    std::fs::write(t.0.join("n/fd10:0::5"), b"x\r\neth0").expect("odd");
    full_add(&t.0, "a", &set);
    assert!(!DiskStore::open(&t.0, "n").expect("open").index_trusted());
    std::fs::remove_file(t.0.join("n/fd10:0::5")).expect("rm");
    full_add(&t.0, "b", &set);
    assert!(DiskStore::open(&t.0, "n").expect("open").index_trusted());
}
