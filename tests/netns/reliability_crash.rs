//! Crash safety of the host-local store and the bridge plugin.
//!
//! - host-local killed with SIGKILL at every crash point of the store
//!   (test-only hook `CNI_RS_TEST_CRASH_POINT`, see `cni::test_hooks`) and at
//!   hundreds of random moments (timing-based), followed by DEL and/or GC:
//!   the store ends exactly as the live containers need it, no lease lost,
//!   none doubled, no debris.
//! - bridge ADD killed mid-way (alone, or with its IPAM child), then DEL:
//!   the node is clean (no veth, lease or masquerade rule).
//! - Corrupt, half-written and foreign files in the store, a stale or held
//!   `lock`, a full disk and a read-only dataDir: clear errors, and full
//!   recovery once the problem is fixed. Disk faults use a tmpfs or a
//!   read-only bind mount inside a private mount namespace of one test
//!   thread, so nothing the machine uses is ever mounted over.

use cni_test_support::common::*;
use cni_test_support::reliability::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NET: &str = "crashnet";
/// host-local's attachment index (a cache beside the network directories).
use cni::ipam::index::INDEX_DIR;
use cni::test_hooks::CRASH_ENV;
/// host-local never opens the netns; this path must just not be ours.
const NO_NETNS: &str = "/run/netns/cni-rs-crash-test-none";

/// Dual-stack: two range sets, so an ADD does two reservations and a kill
/// can land between them.
fn conf(data_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.1.0",
        "name": NET,
        "type": "host-local",
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "ranges": [[{"subnet": "10.78.0.0/24"}], [{"subnet": "fd10:78::/120"}]]
        }
    })
    .to_string()
}

fn call(cmd: &str, id: &str, data_dir: &Path) -> PluginCall {
    PluginCall::new(cmd, id, NO_NETNS, "eth0", &our_cni_path()).stdin(conf(data_dir))
}

fn gc_call(valid: &BTreeSet<String>, data_dir: &Path) -> PluginCall {
    let mut v: serde_json::Value = serde_json::from_str(&conf(data_dir)).expect("conf");
    v["cni.dev/valid-attachments"] = valid
        .iter()
        .map(|id| serde_json::json!({"containerID": id, "ifname": "eth0"}))
        .collect();
    PluginCall::new("GC", "", "", "", &our_cni_path()).stdin(v.to_string())
}

fn host_local(c: &PluginCall) -> PluginRun {
    run_plugin(&bin("host-local"), c)
}

/// Starts a plugin without waiting; stdin is written (and closed) at once.
/// `own_group` puts it in a new process group so its children can be
/// signalled with it.
fn spawn(binary: &Path, c: &PluginCall, own_group: bool) -> Child {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&c.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if own_group {
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().expect("spawn plugin");
    let mut stdin = child.stdin.take().expect("stdin");
    // A few hundred bytes: fits the pipe buffer, never blocks.
    let _ = stdin.write_all(&c.stdin);
    drop(stdin);
    child
}

/// xorshift64*: reproducible "random" delays and orders without a crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Every lease in the store, grouped by owner line (`id\r\nifname`).
fn owners(data_dir: &Path) -> BTreeMap<String, Vec<IpAddr>> {
    let mut m: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for (ip, content) in leases(data_dir, NET) {
        m.entry(content).or_default().push(ip);
    }
    m
}

/// The store holds exactly one IPv4 and one IPv6 lease per live container,
/// and nothing else but `lock` and `last_reserved_ip.<n>`. With `allow_tmp`,
/// a `last_reserved_ip.<n>.tmp` left by a kill between its write and rename
/// is tolerated: it is not a lease, and the next ADD renames it away.
fn check_store(data_dir: &Path, live: &BTreeSet<String>, when: &str, allow_tmp: bool) {
    let got = owners(data_dir);
    let want: BTreeSet<String> = live.iter().map(|id| format!("{id}\r\neth0")).collect();
    let have: BTreeSet<String> = got.keys().cloned().collect();
    assert_eq!(have, want, "{when}: lease owners differ");
    for (owner, ips) in &got {
        let v4 = ips.iter().filter(|ip| ip.is_ipv4()).count();
        let v6 = ips.len() - v4;
        assert_eq!((v4, v6), (1, 1), "{when}: {owner:?} holds {ips:?}");
    }
    let dir = data_dir.join(NET);
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let tmp = name.starts_with("last_reserved_ip.") && name.ends_with(".tmp");
            let ok = name == "lock"
                || name.parse::<IpAddr>().is_ok()
                || (name.starts_with("last_reserved_ip.") && !tmp)
                || (tmp && allow_tmp);
            assert!(ok, "{when}: debris {name:?} in the store");
        }
    }
}

fn assert_store_exact(data_dir: &Path, live: &BTreeSet<String>, when: &str) {
    check_store(data_dir, live, when, false);
}

fn assert_store_exact_allow_tmp(data_dir: &Path, live: &BTreeSet<String>, when: &str) {
    check_store(data_dir, live, when, true);
}

/// After a failed command: the network directory (the reference-compatible
/// store) is byte-identical, and the attachment index gained nothing (it
/// may have been invalidated: it is a cache that is rebuilt on demand).
fn assert_store_unchanged(data_dir: &Path, before: &BTreeMap<String, (Vec<u8>, u32)>, when: &str) {
    let after = tree_snapshot(data_dir);
    let (store_before, index_before): (BTreeMap<_, _>, BTreeMap<_, _>) =
        before.iter().partition(|(k, _)| !k.starts_with(INDEX_DIR));
    let (store_after, index_after): (BTreeMap<_, _>, BTreeMap<_, _>) =
        after.iter().partition(|(k, _)| !k.starts_with(INDEX_DIR));
    assert_eq!(store_after, store_before, "{when}: the store changed");
    for (k, v) in &index_after {
        assert_eq!(
            index_before.get(k),
            Some(v),
            "{when}: index file {k} added or changed"
        );
    }
}

fn add_ok(id: &str, data_dir: &Path) -> serde_json::Value {
    host_local(&call("ADD", id, data_dir)).expect_ok().json()
}

#[test]
fn killed_at_every_store_crash_point_then_del_and_gc() {
    // (verb, crash point, drop the attachment index first so the command
    // takes the full path and rebuilds it).
    let cases = [
        ("ADD", "after-lock", false),
        ("ADD", "after-create", false),
        ("ADD", "after-write", false),
        ("ADD", "before-rename", false),
        ("ADD", "index-after-seal", false),
        ("ADD", "index-after-marker", false),
        ("ADD", "index-during-rebuild", true),
        ("ADD", "index-after-rebuild", true),
        ("DEL", "after-remove", false),
        ("DEL", "after-lock", false),
        ("DEL", "index-after-seal", false),
        ("DEL", "index-after-marker", false),
        ("DEL", "index-during-rebuild", true),
        ("GC", "after-remove", false),
        ("GC", "index-after-seal", false),
        ("GC", "index-during-rebuild", true),
    ];
    for (verb, point, drop_index) in cases {
        let tmp = TempDir::new("crash-point");
        let dd = tmp.path();
        let mut live: BTreeSet<String> = ["keep-1", "keep-2"].map(String::from).into();
        for id in &live {
            add_ok(id, dd);
        }
        let keepers = owners(dd);
        if verb != "ADD" {
            add_ok("victim", dd);
        }
        if drop_index {
            // Documented as always safe: forces one full scan and rebuild.
            std::fs::remove_dir_all(dd.join(INDEX_DIR).join(NET)).expect("drop index");
        }
        let c = match verb {
            "GC" => gc_call(&live, dd),
            _ => call(verb, "victim", dd),
        }
        .env(CRASH_ENV, point);
        let run = host_local(&c);
        assert_eq!(run.code, None, "{verb} {point}: not killed: {run:#?}");
        // The runtime's answer to a failed/killed ADD or DEL: DEL (again),
        // then GC with the containers it knows are alive.
        host_local(&call("DEL", "victim", dd)).expect_ok();
        host_local(&call("DEL", "victim", dd)).expect_ok();
        host_local(&gc_call(&live, dd)).expect_ok();
        assert_store_exact_allow_tmp(dd, &live, &format!("{verb} killed {point}"));
        assert_eq!(
            owners(dd),
            keepers,
            "{verb} {point}: bystander leases changed"
        );
        // And the store still works: a new container gets fresh addresses.
        let r = add_ok("after", dd);
        let ip = r["ips"][0]["address"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!ip.is_empty(), "{r}");
        live.insert("after".into());
        assert_store_exact(dd, &live, &format!("{verb} {point}: after recovery"));
        // The (possibly rebuilt) index must agree with the leases: CHECK
        // finds every live attachment, the victim is gone, each DEL frees
        // exactly its own leases.
        host_local(&call("CHECK", "victim", dd)).expect_err(999);
        for id in live.clone() {
            host_local(&call("CHECK", &id, dd)).expect_ok();
            host_local(&call("DEL", &id, dd)).expect_ok();
            live.remove(&id);
            assert_store_exact(dd, &live, &format!("{verb} {point}: DEL {id}"));
        }
    }
}

/// A kill right after the exclusive create leaves an empty lease file: the
/// next ADD of *another* container must reclaim it (no DEL of the victim).
#[test]
fn orphaned_empty_lease_is_reclaimed_by_the_next_add() {
    let tmp = TempDir::new("crash-orphan");
    let dd = tmp.path();
    let run = host_local(&call("ADD", "victim", dd).env(CRASH_ENV, "after-create"));
    assert_eq!(run.code, None);
    let empty: Vec<IpAddr> = leases(dd, NET)
        .into_iter()
        .filter(|(_, c)| c.is_empty())
        .map(|(ip, _)| ip)
        .collect();
    assert_eq!(empty.len(), 1, "one half-written lease expected");
    add_ok("next", dd);
    let live: BTreeSet<String> = ["next".to_string()].into();
    assert_store_exact(dd, &live, "after reclaim");
}

/// A kill after the first range set's lease is complete: DEL alone must
/// remove it (the runtime always DELs after a failed ADD).
#[test]
fn killed_between_range_sets_then_del_only() {
    let tmp = TempDir::new("crash-between");
    let dd = tmp.path();
    let run = host_local(&call("ADD", "victim", dd).env(CRASH_ENV, "after-write"));
    assert_eq!(run.code, None);
    assert_eq!(owners(dd).len(), 1, "{:?}", owners(dd));
    host_local(&call("DEL", "victim", dd)).expect_ok();
    assert_no_leases(dd, NET);
}

/// Median-free upper bound of a normal ADD+DEL, to scale kill delays.
fn typical_add_duration(dd: &Path) -> Duration {
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let id = format!("probe-{i}");
        let t = Instant::now();
        host_local(&call("ADD", &id, dd)).expect_ok();
        worst = worst.max(t.elapsed());
        host_local(&call("DEL", &id, dd)).expect_ok();
    }
    worst
}

/// Kills a host-local ADD (and sometimes a DEL) at random moments, many
/// times; after each round the runtime's recovery (DEL, or only GC) must
/// leave exactly the live containers' leases. Returns (ADDs killed while
/// running, ADDs that finished first, DELs killed while running).
fn random_kills(rounds: usize, seed: u64) -> (usize, usize, usize) {
    let tmp = TempDir::new("crash-random");
    let dd = tmp.path();
    let window = typical_add_duration(dd).as_micros() as u64 + 500;
    let mut rng = Rng(seed);
    let mut live: BTreeSet<String> = BTreeSet::new();
    let (mut killed, mut completed, mut del_killed) = (0, 0, 0);
    for round in 0..rounds {
        let id = format!("pod-{round}");
        let mut child = spawn(&bin("host-local"), &call("ADD", &id, dd), false);
        std::thread::sleep(Duration::from_micros(rng.below(window)));
        let _ = child.kill();
        let status = child.wait().expect("wait");
        if status.success() {
            completed += 1;
            live.insert(id.clone());
        } else {
            killed += 1;
            // Half the time the runtime DELs; otherwise only GC cleans up.
            if rng.below(2) == 0 {
                host_local(&call("DEL", &id, dd)).expect_ok();
            }
            host_local(&gc_call(&live, dd)).expect_ok();
        }
        // Sometimes delete a live pod, with its DEL killed at random too.
        if !live.is_empty() && rng.below(3) == 0 {
            let victim = live
                .iter()
                .nth(rng.below(live.len() as u64) as usize)
                .cloned();
            let victim = victim.expect("live pod");
            let mut child = spawn(&bin("host-local"), &call("DEL", &victim, dd), false);
            std::thread::sleep(Duration::from_micros(rng.below(window)));
            let _ = child.kill();
            if !child.wait().expect("wait").success() {
                del_killed += 1;
            }
            host_local(&call("DEL", &victim, dd)).expect_ok();
            live.remove(&victim);
        }
        assert_store_exact_allow_tmp(dd, &live, &format!("round {round} (seed {seed})"));
    }
    for id in std::mem::take(&mut live) {
        host_local(&call("DEL", &id, dd)).expect_ok();
    }
    host_local(&gc_call(&live, dd)).expect_ok();
    // One more ADD/DEL converges the round-robin files (renames any .tmp).
    add_ok("final", dd);
    host_local(&call("DEL", "final", dd)).expect_ok();
    assert_store_exact(dd, &live, "end of random kills");
    assert_no_leases(dd, NET);
    (killed, completed, del_killed)
}

#[test]
fn host_local_survives_hundreds_of_random_kills() {
    let (killed, completed, del_killed) = random_kills(300, 0x5eed_cafe);
    eprintln!(
        "random kills: {killed} ADDs killed mid-run, {completed} completed before the kill, \
         {del_killed} DELs killed mid-run"
    );
    assert!(
        killed >= 50,
        "too few kills landed ({killed}); delays are mis-scaled"
    );
}

/// Runs `f` on a fresh thread that has its own mount namespace in which
/// every mount is private: mounts made there never reach the machine, and
/// vanish with the thread. Plugins spawned from the thread see them.
fn in_private_mount_ns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            use nix::mount::{mount, MsFlags};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .expect("make / rprivate");
            f()
        })
        .join()
        .expect("mount-ns thread panicked")
    })
}

fn mount_tmpfs(dir: &Path, opts: &str) {
    use nix::mount::{mount, MsFlags};
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some(opts),
    )
    .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", dir.display()));
}

/// Fills the filesystem of `dir` with one file until ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).expect("create filler");
    let block = vec![0u8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
    p
}

#[test]
fn full_disk_is_a_clear_error_and_recovers() {
    require_root!();
    let tmp = TempDir::new("crash-full");
    let mnt = tmp.path().to_path_buf();
    in_private_mount_ns(|| {
        mount_tmpfs(&mnt, "size=256k,mode=0755");
        let dd = mnt.join("data");
        add_ok("early", &dd);
        let before = tree_snapshot(&dd);
        let filler = fill(&mnt);
        let run = host_local(&call("ADD", "late", &dd));
        let err = run.expect_err(5);
        let msg = err["msg"].as_str().unwrap_or_default();
        assert!(msg.contains("No space left"), "unclear error: {err}");
        assert_store_unchanged(&dd, &before, "failed ADD on a full disk");
        // DEL still works on a full disk (it only removes files).
        host_local(&call("DEL", "early", &dd)).expect_ok();
        std::fs::remove_file(&filler).expect("free space");
        add_ok("late", &dd);
        let live: BTreeSet<String> = ["late".to_string()].into();
        assert_store_exact(&dd, &live, "after freeing space");
    });
}

#[test]
fn inode_exhaustion_is_a_clear_error_and_recovers() {
    require_root!();
    let tmp = TempDir::new("crash-inodes");
    let mnt = tmp.path().to_path_buf();
    in_private_mount_ns(|| {
        mount_tmpfs(&mnt, "size=1m,nr_inodes=64,mode=0755");
        let dd = mnt.join("data");
        add_ok("early", &dd);
        let before = tree_snapshot(&dd);
        let mut fillers = Vec::new();
        for i in 0.. {
            let p = mnt.join(format!("f{i}"));
            match std::fs::File::create(&p) {
                Ok(_) => fillers.push(p),
                Err(_) => break,
            }
        }
        let err = host_local(&call("ADD", "late", &dd)).expect_err(5);
        assert!(
            err["msg"]
                .as_str()
                .unwrap_or_default()
                .contains("No space left"),
            "unclear error: {err}"
        );
        assert_store_unchanged(&dd, &before, "failed ADD without inodes");
        for p in fillers {
            std::fs::remove_file(p).expect("remove filler");
        }
        add_ok("late", &dd);
        let live: BTreeSet<String> = ["early", "late"].map(String::from).into();
        assert_store_exact(&dd, &live, "after freeing inodes");
    });
}

#[test]
fn read_only_data_dir_is_a_clear_error_and_recovers() {
    require_root!();
    let tmp = TempDir::new("crash-ro");
    let dd = tmp.path().join("data");
    std::fs::create_dir_all(&dd).expect("mkdir");
    in_private_mount_ns(|| {
        use nix::mount::{mount, MsFlags};
        add_ok("early", &dd);
        let before = tree_snapshot(&dd);
        // A read-only bind mount of the dataDir onto itself (root ignores
        // permission bits, not MS_RDONLY).
        mount(Some(&dd), &dd, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind");
        let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, &dd, None::<&str>, ro, None::<&str>).expect("remount ro");
        for (verb, id) in [("ADD", "late"), ("DEL", "early")] {
            let err = host_local(&call(verb, id, &dd)).expect_err(5);
            assert!(
                err["msg"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Read-only"),
                "{verb}: unclear error: {err}"
            );
            assert_eq!(
                tree_snapshot(&dd),
                before,
                "{verb} on a read-only store changed it"
            );
        }
        let live: BTreeSet<String> = ["early".to_string()].into();
        let err = host_local(&gc_call(&BTreeSet::new(), &dd)).expect_err(5);
        assert!(
            err["msg"]
                .as_str()
                .unwrap_or_default()
                .contains("Read-only"),
            "{err}"
        );
        assert_store_exact(&dd, &live, "read-only");
        // Fixed: remount read-write; everything works again.
        let rw = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
        mount(None::<&str>, &dd, None::<&str>, rw, None::<&str>).expect("remount rw");
        add_ok("late", &dd);
        host_local(&call("DEL", "early", &dd)).expect_ok();
        let live: BTreeSet<String> = ["late".to_string()].into();
        assert_store_exact(&dd, &live, "after remount rw");
    });
}

#[test]
fn corrupt_and_foreign_files_in_the_store() {
    let tmp = TempDir::new("crash-corrupt");
    let dd = tmp.path();
    add_ok("early", dd);
    let dir = dd.join(NET);
    // Binary garbage in a lease, a lease that is a directory, a corrupt
    // round-robin file, a stray temp file and an unrelated file.
    std::fs::write(dir.join("10.78.0.10"), [0xff, 0xfe, 0x00, 0x01]).expect("write");
    std::fs::create_dir(dir.join("10.78.0.11")).expect("mkdir");
    std::fs::write(dir.join("last_reserved_ip.0"), b"\x00garbage\xff").expect("write");
    std::fs::write(dir.join("last_reserved_ip.1"), b"not-an-ip").expect("write");
    std::fs::write(dir.join("notes.txt"), b"operator was here").expect("write");
    let mut got = BTreeSet::new();
    for i in 0..20 {
        let r = add_ok(&format!("pod-{i}"), dd);
        for ip in r["ips"].as_array().into_iter().flatten() {
            let a = ip["address"].as_str().unwrap_or_default();
            let addr = a.split('/').next().unwrap_or_default().to_string();
            assert!(
                addr != "10.78.0.10" && addr != "10.78.0.11",
                "handed out {addr}"
            );
            assert!(got.insert(addr.clone()), "{addr} handed out twice");
        }
    }
    // GC knows every valid attachment: the unreadable lease goes, the
    // directory and unrelated files stay (not ours to delete).
    let mut live: BTreeSet<String> = (0..20).map(|i| format!("pod-{i}")).collect();
    live.insert("early".into());
    host_local(&gc_call(&live, dd)).expect_ok();
    assert!(
        !dir.join("10.78.0.10").exists(),
        "GC kept an unreadable lease"
    );
    assert!(dir.join("notes.txt").exists(), "GC removed a foreign file");
    for id in &live {
        host_local(&call("DEL", id, dd)).expect_ok();
    }
    assert_no_leases(dd, NET);
}

#[test]
fn stale_lock_file_is_harmless() {
    let tmp = TempDir::new("crash-stale-lock");
    let dd = tmp.path();
    let dir = dd.join(NET);
    std::fs::create_dir_all(&dir).expect("mkdir");
    // A lock file left by a killed process (with junk in it): flock state
    // dies with its holder, so it must not block anything.
    std::fs::write(dir.join("lock"), b"12345\n").expect("write lock");
    add_ok("a", dd);
    host_local(&call("DEL", "a", dd)).expect_ok();
    assert_no_leases(dd, NET);
}

#[test]
fn held_lock_blocks_until_released() {
    let tmp = TempDir::new("crash-held-lock");
    let dd = tmp.path();
    add_ok("first", dd);
    let lock_path = dd.join(NET).join("lock");
    let f = std::fs::File::open(&lock_path).expect("open lock");
    let held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock");
    let mut child = spawn(&bin("host-local"), &call("ADD", "second", dd), false);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "ADD finished while another process held the store lock"
    );
    assert_eq!(owners(dd).len(), 1, "ADD wrote a lease without the lock");
    drop(held);
    assert!(child.wait().expect("wait").success());
    let live: BTreeSet<String> = ["first", "second"].map(String::from).into();
    assert_store_exact(dd, &live, "after the lock was released");
}

#[test]
fn lock_path_that_is_a_directory_is_a_clear_error() {
    let tmp = TempDir::new("crash-lock-dir");
    let dd = tmp.path();
    add_ok("first", dd);
    let lock = dd.join(NET).join("lock");
    std::fs::remove_file(&lock).expect("rm lock");
    std::fs::create_dir(&lock).expect("mkdir lock");
    let err = host_local(&call("ADD", "second", dd)).expect_err(5);
    assert!(
        err["msg"].as_str().unwrap_or_default().contains("lock"),
        "{err}"
    );
    std::fs::remove_dir(&lock).expect("rmdir lock");
    add_ok("second", dd);
    let live: BTreeSet<String> = ["first", "second"].map(String::from).into();
    assert_store_exact(dd, &live, "after fixing the lock");
}

// ---------------------------------------------------------------- bridge

fn bridge_conf(data_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.1.0",
        "name": NET,
        "type": "bridge",
        "bridge": "cni-crash0",
        "isGateway": true,
        "ipMasq": true,
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "ranges": [[{"subnet": "10.78.0.0/24"}], [{"subnet": "fd10:78::/120"}]]
        }
    })
    .to_string()
}

fn bridge_call(cmd: &str, id: &str, netns: &Path, data_dir: &Path) -> PluginCall {
    PluginCall::new(
        cmd,
        id,
        &netns.display().to_string(),
        "eth0",
        &our_cni_path(),
    )
    .stdin(bridge_conf(data_dir))
}

/// Processes (not zombies) still in process group `pgid`.
fn group_alive(pgid: u32) -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return false;
    };
    rd.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.len() > 2 && f[0] != "Z" && f[2] == pgid.to_string()
    })
}

fn wait_group_gone(pgid: u32) {
    let t = Instant::now();
    while group_alive(pgid) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "process group {pgid} never ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_pod_clean(pod: &PodNs) {
    let links = pod.ip_json(&["link", "show"]);
    let names: Vec<&str> = links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str())
        .collect();
    assert_eq!(names, ["lo"], "pod netns not clean");
}

#[test]
fn bridge_add_killed_midway_then_del_leaves_a_clean_node() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let tmp = TempDir::new("crash-bridge");
    let dd = tmp.path();
    // Scale delays to a normal ADD: the median of five, after a warm-up
    // that creates the bridge and the node's first nat table (several times
    // a normal ADD). Not the maximum: one ADD slowed by a loaded machine
    // would stretch the window until most kills land after the ADD is done.
    let mut times = Vec::new();
    for i in 0..6 {
        let pod = PodNs::new();
        let t = Instant::now();
        let id = format!("probe-{i}");
        run_plugin(&bin("bridge"), &bridge_call("ADD", &id, &pod.path, dd)).expect_ok();
        if i > 0 {
            times.push(t.elapsed());
        }
        run_plugin(&bin("bridge"), &bridge_call("DEL", &id, &pod.path, dd)).expect_ok();
    }
    times.sort();
    // The window then follows the machine: an ADD that finished before its
    // kill shrinks it, a kill that landed widens it again. Under the whole
    // suite's parallel load ADDs run at another speed than the probes did.
    let mut window = times[times.len() / 2].as_micros() as u64;
    let mut rng = Rng(0xb1d9e);
    let (mut killed, mut rounds) = (0, 0);
    for round in 0..60 {
        let pod = PodNs::new();
        let id = format!("kill-{round}");
        let c = bridge_call("ADD", &id, &pod.path, dd);
        let mut child = spawn(&bin("bridge"), &c, true);
        let pgid = child.id();
        std::thread::sleep(Duration::from_micros(rng.below(window)));
        // Even rounds: kill the whole group (plugin + IPAM child), as a
        // cgroup kill does. Odd rounds: only the plugin, as a runtime
        // timeout does; its IPAM child runs on and must finish first.
        if round % 2 == 0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        } else {
            let _ = child.kill();
        }
        let status = child.wait().expect("wait bridge");
        wait_group_gone(pgid);
        if status.success() {
            window = (window * 3 / 4).max(200);
        } else {
            killed += 1;
            window = window * 9 / 8;
        }
        rounds += 1;
        run_plugin(&bin("bridge"), &bridge_call("DEL", &id, &pod.path, dd)).expect_ok();
        assert_pod_clean(&pod);
        assert_no_leaks(&LeakScope {
            data_dir: dd,
            networks: &[NET],
            allowed_veths: &[],
        });
    }
    eprintln!("bridge: {killed} of {rounds} ADDs killed mid-way, all cleaned by DEL");
    assert!(killed >= 10, "too few kills landed ({killed})");
}

/// The IPAM child killed at each store crash point inside a bridge ADD:
/// the ADD fails with an error, its own rollback cleans up, DEL is a no-op.
#[test]
fn bridge_with_ipam_killed_at_crash_points() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let tmp = TempDir::new("crash-bridge-points");
    let dd = tmp.path();
    for point in ["after-lock", "after-create", "after-write", "before-rename"] {
        let pod = PodNs::new();
        let c = bridge_call("ADD", "victim", &pod.path, dd).env(CRASH_ENV, point);
        let run = run_plugin(&bin("bridge"), &c);
        assert_eq!(run.code, Some(1), "{point}: {run:#?}");
        let v = run.json();
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{point}: {v}"
        );
        run_plugin(&bin("bridge"), &bridge_call("DEL", "victim", &pod.path, dd)).expect_ok();
        assert_pod_clean(&pod);
        assert_no_leaks(&LeakScope {
            data_dir: dd,
            networks: &[NET],
            allowed_veths: &[],
        });
        let run = run_plugin(&bin("bridge"), &bridge_call("ADD", "after", &pod.path, dd));
        run.expect_ok();
        run_plugin(&bin("bridge"), &bridge_call("DEL", "after", &pod.path, dd)).expect_ok();
    }
}
