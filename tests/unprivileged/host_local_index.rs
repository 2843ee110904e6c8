//! The attachment index (`<dataDir>/.cni-rs-index/<network>/`): when it is
//! trusted, when it is rebuilt, and that a store changed behind its back
//! (reference binary, operator, crash) is detected and handled correctly.
//!
//! Which path a command took is read from the debug log (`CNI_RS_LOG`):
//! "index trusted" = no directory listing; "full scan (...)" = the whole
//! directory was read. No timing assertions.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use cni_test_support::common;
use cni_test_support::common::{PluginRun, TempDir};
use cni_test_support::host_local::*;
use serde_json::{json, Value};

use cni::test_hooks::CRASH_ENV as CRASH;

/// One run of `binary` with the debug log on; returns the run and its log.
fn logged(
    binary: &Path,
    cmd: &str,
    id: &str,
    c: &Value,
    env: &[(&str, &str)],
) -> (PluginRun, String) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let log = std::env::temp_dir().join(format!(
        "cni-rs-index-log-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_file(&log);
    let log_s = log.display().to_string();
    let mut all: Vec<(&str, &str)> = vec![("CNI_RS_LOG", &log_s)];
    all.extend_from_slice(env);
    let r = run_env(binary, cmd, id, "eth0", c, &all);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    (r, text)
}

/// Our command that must succeed and take the fast path.
fn fast_ok(cmd: &str, id: &str, c: &Value) -> PluginRun {
    let (r, log) = logged(&ours(), cmd, id, c, &[]);
    assert!(
        log.contains("index trusted") && !log.contains("full scan"),
        "{cmd} {id}: expected the fast path, log:\n{log}"
    );
    r.expect_ok()
}

/// Our command that must succeed and scan the whole directory.
fn scan_ok(cmd: &str, id: &str, c: &Value) -> PluginRun {
    let (r, log) = logged(&ours(), cmd, id, c, &[]);
    assert!(
        log.contains("full scan") && !log.contains("index trusted"),
        "{cmd} {id}: expected a full scan, log:\n{log}"
    );
    r.expect_ok()
}

fn v4(tmp: &Path, name: &str, subnet: &str) -> Value {
    conf("1.0.0", name, ipam(tmp, &[&[subnet]]))
}

fn ids_of(dir: &Path) -> BTreeSet<String> {
    leases(dir)
        .values()
        .map(|c| {
            c.split_once("\r\n")
                .map_or(c.as_str(), |(i, _)| i)
                .to_string()
        })
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn index_lives_outside_the_network_dir_and_is_private() {
    let tmp = TempDir::new("hl-idx-layout");
    let c = v4(tmp.path(), "lay", "10.60.0.0/24");
    scan_ok("ADD", "a", &c);
    let idx = tmp.path().join(INDEX_DIR);
    assert_eq!(mode(&idx), 0o700);
    assert_eq!(mode(&idx.join("lay")), 0o700);
    assert!(idx.join("lay/state").is_file());
    // The network dir holds only what the reference would write.
    let names: BTreeSet<String> = std::fs::read_dir(tmp.path().join("lay"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, set(&["10.60.0.2", "last_reserved_ip.0", "lock"]));
    // Subsequent commands trust it.
    fast_ok("ADD", "b", &c);
    fast_ok("CHECK", "a", &c);
    fast_ok("DEL", "a", &c);
    fast_ok("DEL", "a", &c); // idempotent, and writes nothing
    run(&ours(), "CHECK", "a", "eth0", &c).expect_err(999);
    assert_eq!(ids_of(&tmp.path().join("lay")), set(&["b"]));
}

#[test]
fn reference_changes_are_detected_and_the_index_rebuilt() {
    if !have_reference() {
        return;
    }
    let tmp = TempDir::new("hl-idx-ref");
    let c = conf(
        "1.0.0",
        "mix",
        ipam(tmp.path(), &[&["10.61.0.0/24"], &["fd61::/120"]]),
    );
    let dir = tmp.path().join("mix");
    scan_ok("ADD", "a", &c);
    fast_ok("ADD", "b", &c);
    // The reference adds a lease: the directory mtime moves off our sentinel.
    let r = add_ok(&reference(), "r", &c);
    assert_eq!(addresses(&r), vec!["10.61.0.4/24", "fd61::4/120"]);
    // Ours notices, rescans, and never hands out the reference's address.
    let r = scan_ok("ADD", "c", &c).json();
    assert_eq!(addresses(&r), vec!["10.61.0.5/24", "fd61::5/120"]);
    // The rebuilt index knows the reference's attachment: duplicate refused
    // on the fast path, and our DEL releases the reference's leases.
    let (dup, log) = logged(&ours(), "ADD", "r", &c, &[]);
    assert!(log.contains("index trusted"), "{log}");
    let e = dup.expect_err(999);
    assert!(
        e["msg"]
            .as_str()
            .expect("msg")
            .contains("10.61.0.4 has been allocated to r, duplicate allocation is not allowed"),
        "{e}"
    );
    fast_ok("DEL", "r", &c);
    assert!(!dir.join("10.61.0.4").exists() && !dir.join("fd61::4").exists());
    // The reference deletes one of ours: detected again.
    assert_eq!(run(&reference(), "DEL", "b", "eth0", &c).code, Some(0));
    let (chk, log) = logged(&ours(), "CHECK", "b", &c, &[]);
    assert!(log.contains("full scan"), "{log}");
    chk.expect_err(999);
    scan_ok("DEL", "b", &c);
    fast_ok("CHECK", "c", &c);
    // The reference's CHECK writes nothing, so the index stays trusted.
    assert_eq!(run(&reference(), "CHECK", "c", "eth0", &c).code, Some(0));
    fast_ok("CHECK", "a", &c);
    assert_eq!(ids_of(&dir), set(&["a", "c"]));
    assert_eq!(leases(&dir).len(), 4);
}

#[test]
fn operator_edits_are_detected() {
    let tmp = TempDir::new("hl-idx-manual");
    let c = v4(tmp.path(), "man", "10.62.0.0/24");
    let dir = tmp.path().join("man");
    scan_ok("ADD", "a", &c);
    fast_ok("ADD", "b", &c);
    // An operator deletes a's lease by hand: a may ADD again, no duplicate error.
    std::fs::remove_file(dir.join("10.62.0.2")).expect("rm");
    let r = scan_ok("ADD", "a", &c).json();
    assert_eq!(addresses(&r), vec!["10.62.0.4/24"]);
    // An operator writes a lease by hand: our DEL of that container finds it.
    std::fs::write(dir.join("10.62.0.9"), "m\r\neth0").expect("write");
    scan_ok("DEL", "m", &c);
    assert!(!dir.join("10.62.0.9").exists());
    fast_ok("ADD", "d", &c);
    // A lease rewritten in place (no directory change) is caught by the
    // fast path's content check, which falls back to a full scan.
    std::fs::write(dir.join("10.62.0.3"), "other\r\neth0").expect("rewrite");
    let (r, log) = logged(&ours(), "DEL", "b", &c, &[]);
    assert!(log.contains("index inconsistent"), "{log}");
    r.expect_ok();
    assert_eq!(leases(&dir)["10.62.0.3"], lease_text("other", "eth0"));
    fast_ok("DEL", "other", &c);
    assert_eq!(ids_of(&dir), set(&["a", "d"]));
    // Removing the index entirely just means one rebuild.
    std::fs::remove_dir_all(tmp.path().join(INDEX_DIR)).expect("rm index");
    scan_ok("CHECK", "a", &c);
    scan_ok("DEL", "a", &c);
    fast_ok("CHECK", "d", &c);
}

#[test]
fn irregular_stores_are_always_scanned_until_clean() {
    let tmp = TempDir::new("hl-idx-legacy");
    let c = v4(tmp.path(), "leg", "10.63.0.0/24");
    let dir = tmp.path().join("leg");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // A pre-2018 id-only lease: the index cannot express it.
    std::fs::write(dir.join("10.63.0.2"), "old").expect("legacy");
    scan_ok("ADD", "a", &c);
    scan_ok("ADD", "b", &c);
    // DEL old/eth0 falls back to the legacy lease; then the store is regular.
    scan_ok("DEL", "old", &c);
    fast_ok("ADD", "c", &c);
    assert_eq!(ids_of(&dir), set(&["a", "b", "c"]));
}

/// A lease another tool wrote under a non-canonical name (`::ffff:a.b.c.d`)
/// is invisible to the fast path's exclusive create on the canonical name,
/// so the index must never be trusted while one exists: every command
/// scans, the address stays taken (also when an empty canonical twin is
/// reclaimed), and the fast path only returns after a scan that finds the
/// name gone.
#[test]
fn non_canonical_names_keep_every_command_on_the_full_scan() {
    let tmp = TempDir::new("hl-idx-mapped");
    let c = v4(tmp.path(), "mapped", "10.66.0.0/24");
    let dir = tmp.path().join("mapped");
    scan_ok("ADD", "a", &c); // .2
    fast_ok("ADD", "b", &c); // .3
                             // Next in round-robin order would be .4: another tool holds it under a
                             // mapped name, and a half-written canonical twin sits next to it.
    std::fs::write(dir.join("::ffff:10.66.0.4"), "other\r\neth0").expect("mapped lease");
    std::fs::write(dir.join("10.66.0.4"), "").expect("empty twin");
    let r = scan_ok("ADD", "c", &c).json();
    assert_eq!(addresses(&r), vec!["10.66.0.5/24"], "{r}");
    assert!(!dir.join("10.66.0.4").exists(), "empty twin reclaimed");
    let r = scan_ok("ADD", "d", &c).json();
    assert_eq!(addresses(&r), vec!["10.66.0.6/24"], "{r}");
    scan_ok("CHECK", "other", &c);
    // DEL of the other tool's attachment removes the mapped name too.
    scan_ok("DEL", "other", &c);
    assert!(!dir.join("::ffff:10.66.0.4").exists());
    // That DEL listed the mapped name, so it did not rebuild; the next scan
    // finds a regular store and rebuilds, and then the fast path is back.
    scan_ok("ADD", "e", &c);
    fast_ok("ADD", "f", &c);
    assert_eq!(ids_of(&dir), set(&["a", "b", "c", "d", "e", "f"]));
}

/// Writes `n` leases of the /16 `10.<net>.0.0/16` like the reference would.
fn prefill(dir: &Path, second: u8, n: u32) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for i in 0..n {
        let host = i + 2;
        let ip = format!("10.{second}.{}.{}", host >> 8, host & 0xff);
        std::fs::write(dir.join(ip), format!("fill{i}\r\neth0")).expect("lease");
    }
}

#[test]
fn slash16_with_65000_leases_is_fast_after_one_rebuild() {
    let tmp = TempDir::on_tmpfs("hl-idx-65k");
    let c = conf("1.1.0", "big", ipam(&tmp.0, &[&["10.64.0.0/16"]]));
    let dir = tmp.0.join("big");
    let n = 65_000;
    prefill(&dir, 64, n);
    // First command: full scan and rebuild of the index for all 65 000.
    let (r, log) = logged(&ours(), "ADD", "new1", &c, &[]);
    assert!(log.contains("full scan"), "{log}");
    assert!(log.contains("index rebuilt (65001 attachments)"), "{log}");
    // Round-robin from the start: the first free address is after the fill.
    let first = r.expect_ok().json();
    assert_eq!(addresses(&first), vec!["10.64.253.234/16"]);
    // From now on: no directory listing.
    let r = fast_ok("ADD", "new2", &c).json();
    assert_eq!(addresses(&r), vec!["10.64.253.235/16"]);
    fast_ok("CHECK", "fill123", &c);
    let (dup, log) = logged(&ours(), "ADD", "fill7", &c, &[]);
    assert!(
        log.contains("index trusted") && !log.contains("full scan"),
        "{log}"
    );
    dup.expect_err(999);
    fast_ok("DEL", "fill7", &c);
    assert!(!dir.join("10.64.0.9").exists());
    fast_ok("DEL", "new1", &c);
    // Round-robin continues after new2, not at the freed addresses.
    let r = fast_ok("ADD", "new3", &c).json();
    assert_eq!(addresses(&r), vec!["10.64.253.236/16"]);
    // A requested address that is free / taken.
    let (r, log) = logged(
        &ours(),
        "ADD",
        "req",
        &c,
        &[("CNI_ARGS", "IgnoreUnknown=1;IP=10.64.0.9")],
    );
    assert!(log.contains("index trusted"), "{log}");
    assert_eq!(addresses(&r.expect_ok().json()), vec!["10.64.0.9/16"]);
    let mut call = common::PluginCall::new("STATUS", "", "", "", &common::our_cni_path())
        .stdin(c.to_string())
        .env(
            "CNI_RS_LOG",
            &std::env::temp_dir()
                .join(format!("cni-rs-idx-status-{}", std::process::id()))
                .display()
                .to_string(),
        );
    for k in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        call.env.remove(k);
    }
    common::run_plugin(&ours(), &call).expect_ok();
    let log_path = std::env::temp_dir().join(format!("cni-rs-idx-status-{}", std::process::id()));
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    assert!(log.contains("index trusted (status probe)"), "{log}");
    // Exactly the fill minus fill7, plus new2, new3 and req.
    assert_eq!(leases(&dir).len(), n as usize - 1 + 3);
}

/// A trusted store with `a`, then an ADD of `x` killed at `point`.
fn crash_fast_add(point: &str) -> (TempDir, Value) {
    let tmp = TempDir::new("hl-idx-crash");
    let c = conf(
        "1.0.0",
        "cr",
        ipam(tmp.path(), &[&["10.65.0.0/24"], &["fd65::/120"]]),
    );
    scan_ok("ADD", "a", &c);
    let (r, log) = logged(&ours(), "ADD", "x", &c, &[(CRASH, point)]);
    assert_eq!(r.code, None, "{point}: killed by SIGKILL: {r:#?}");
    assert!(log.contains("index trusted"), "{point}: {log}");
    (tmp, c)
}

#[test]
fn crash_during_a_fast_add_leaves_an_untrusted_index() {
    for point in ["index-after-seal", "index-after-marker"] {
        let (tmp, c) = crash_fast_add(point);
        let dir = tmp.path().join("cr");
        assert_eq!(ids_of(&dir), set(&["a", "x"]), "{point}");
        // The next command must not trust the index, and sees x's leases.
        let r = scan_ok("ADD", "y", &c).json();
        assert_eq!(
            addresses(&r),
            vec!["10.65.0.4/24", "fd65::4/120"],
            "{point}"
        );
        // The runtime DELs the failed ADD; the rebuilt index knows x.
        fast_ok("DEL", "x", &c);
        assert_eq!(ids_of(&dir), set(&["a", "y"]), "{point}");
        assert_eq!(leases(&dir).len(), 4, "{point}");
        fast_ok("ADD", "z", &c);
    }
}

#[test]
fn crash_during_a_fast_del_leaves_an_untrusted_index() {
    for point in ["index-after-seal", "index-after-marker"] {
        let tmp = TempDir::new("hl-idx-crash-del");
        let c = v4(tmp.path(), "cd", "10.66.0.0/24");
        let dir = tmp.path().join("cd");
        scan_ok("ADD", "a", &c);
        fast_ok("ADD", "x", &c);
        let (r, _) = logged(&ours(), "DEL", "x", &c, &[(CRASH, point)]);
        assert_eq!(r.code, None, "{point}");
        assert_eq!(ids_of(&dir), set(&["a"]), "{point}");
        let (chk, log) = logged(&ours(), "CHECK", "x", &c, &[]);
        assert!(log.contains("full scan"), "{point}: {log}");
        chk.expect_err(999);
        scan_ok("DEL", "x", &c);
        // x may come back, on the fast path, without a duplicate error.
        fast_ok("ADD", "x", &c);
        assert_eq!(ids_of(&dir), set(&["a", "x"]), "{point}");
    }
}

#[test]
fn crash_during_a_rebuild_leaves_an_untrusted_index() {
    for point in [
        "index-during-rebuild",
        "index-after-rebuild",
        "index-after-seal",
    ] {
        let tmp = TempDir::new("hl-idx-crash-rebuild");
        let c = v4(tmp.path(), "rb", "10.67.0.0/24");
        let dir = tmp.path().join("rb");
        scan_ok("ADD", "a", &c);
        fast_ok("ADD", "b", &c);
        // Someone else changes the directory: the next command rebuilds.
        std::fs::write(dir.join("10.67.0.20"), "m\r\neth0").expect("write");
        let (r, log) = logged(&ours(), "ADD", "x", &c, &[(CRASH, point)]);
        assert_eq!(r.code, None, "{point}: {log}");
        assert!(log.contains("full scan"), "{point}: {log}");
        // Killed after x's lease: the next command scans again.
        let r = scan_ok("ADD", "y", &c).json();
        assert_eq!(addresses(&r), vec!["10.67.0.5/24"], "{point}");
        fast_ok("DEL", "x", &c);
        fast_ok("DEL", "m", &c);
        fast_ok("CHECK", "b", &c);
        assert_eq!(ids_of(&dir), set(&["a", "b", "y"]), "{point}");
    }
}

#[test]
fn gc_rebuilds_the_index() {
    let tmp = TempDir::new("hl-idx-gc");
    let c = v4(tmp.path(), "gc", "10.68.0.0/24");
    let dir = tmp.path().join("gc");
    for id in ["a", "b", "c"] {
        add_ok(&ours(), id, &c);
    }
    fast_ok("CHECK", "b", &c);
    let mut g = c.clone();
    g["cniVersion"] = json!("1.1.0");
    g["cni.dev/valid-attachments"] = json!([{"containerID": "a", "ifname": "eth0"}]);
    let mut call =
        common::PluginCall::new("GC", "", "", "", &common::our_cni_path()).stdin(g.to_string());
    for k in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        call.env.remove(k);
    }
    common::run_plugin(&ours(), &call).expect_ok();
    assert_eq!(ids_of(&dir), set(&["a"]));
    // The index forgot b and c, and is trusted again.
    let (chk, log) = logged(&ours(), "CHECK", "b", &c, &[]);
    assert!(log.contains("index trusted"), "{log}");
    chk.expect_err(999);
    fast_ok("ADD", "b", &c);
    fast_ok("CHECK", "a", &c);
}

/// The network directory's mtime as `stat` reports it: the sentinel our
/// last write command set.
fn dir_mtime(dir: &Path) -> (i64, i64) {
    let m = std::fs::metadata(dir).expect("stat");
    (m.mtime(), m.mtime_nsec())
}

/// Sets `dir`'s mtime to `t` from this process, right after the change it
/// hides: what a clock stepped back (or a same-tick writer) leaves behind.
fn forge_mtime(dir: &Path, t: (i64, i64)) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    utimensat(
        nix::fcntl::AT_FDCWD,
        dir,
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::new(t.0, t.1),
        UtimensatFlags::FollowSymlink,
    )
    .expect("utimensat");
    assert_eq!(dir_mtime(dir), t);
}

/// Runs a coreutils command that must succeed (`touch -d`, `cp -a`, ...).
fn sh(argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .expect("spawn");
    assert!(out.status.success(), "{argv:?}: {out:?}");
}

/// A hand-written lease, as the reference would write it.
fn write_lease(dir: &Path, ip: &str, id: &str) {
    std::fs::write(dir.join(ip), lease_text(id, "eth0")).expect("lease");
}

/// A lease added behind the index's back and the directory mtime set back
/// to our sentinel at once, in the same clock tick where possible: a clock
/// step back makes the kernel stamp exactly that. DEL and CHECK must still
/// see the lease. Many rounds: each races our previous command's exit.
#[test]
fn foreign_write_with_the_mtime_stepped_back_is_detected() {
    let tmp = TempDir::new("hl-idx-clock");
    let c = v4(tmp.path(), "clk", "10.70.0.0/24");
    let dir = tmp.path().join("clk");
    scan_ok("ADD", "a", &c);
    for round in 0..40 {
        fast_ok("ADD", &format!("a{round}"), &c);
        let stamp = dir_mtime(&dir);
        let f = format!("f{round}");
        write_lease(&dir, &format!("10.70.0.{}", 200 + round), &f);
        forge_mtime(&dir, stamp);
        scan_ok("CHECK", &f, &c);
        scan_ok("DEL", &f, &c);
        assert!(!ids_of(&dir).contains(&f), "round {round}");
    }
    assert_eq!(leases(&dir).len(), 41);
}

/// An operator (or a restore tool) writes a lease and puts the directory's
/// mtime back with `touch -d`: the mtime matches the state, the ctime does not.
#[test]
fn mtime_restored_by_touch_after_a_foreign_write_is_detected() {
    let tmp = TempDir::new("hl-idx-touch");
    let c = v4(tmp.path(), "tch", "10.71.0.0/24");
    let dir = tmp.path().join("tch");
    scan_ok("ADD", "a", &c);
    fast_ok("ADD", "b", &c);
    let (sec, nsec) = dir_mtime(&dir);
    write_lease(&dir, "10.71.0.9", "m");
    std::fs::remove_file(dir.join("10.71.0.2")).expect("rm a's lease");
    sh(&[
        "touch",
        "-m",
        "-d",
        &format!("@{sec}.{nsec:09}"),
        &dir.display().to_string(),
    ]);
    assert_eq!(dir_mtime(&dir), (sec, nsec));
    scan_ok("CHECK", "m", &c);
    scan_ok("DEL", "m", &c);
    assert!(!dir.join("10.71.0.9").exists());
    // a's lease is gone: a may ADD again without a duplicate error.
    fast_ok("ADD", "a", &c);
    assert_eq!(ids_of(&dir), set(&["a", "b"]));
}

/// `cp -a` keeps the mtime, so a copied store (network directory and index
/// alike) looks sealed; its directory is another inode with a new ctime. A
/// copy is scanned once, then trusted; a copy changed by the reference and
/// re-stamped with the original's mtime (`touch -r`, as `rsync -t` does)
/// has its new lease found. Copying never disturbs the original's trust.
#[test]
fn a_copied_store_is_not_trusted_blindly() {
    let orig = TempDir::new("hl-idx-copy-orig");
    let c = v4(orig.path(), "cp", "10.72.0.0/24");
    let dir = orig.path().join("cp");
    scan_ok("ADD", "a", &c);
    fast_ok("ADD", "b", &c);
    for modify in [false, true] {
        let copy = TempDir::new("hl-idx-copy");
        sh(&[
            "cp",
            "-a",
            &format!("{}/.", orig.path().display()),
            &copy.path().display().to_string(),
        ]);
        let cc = v4(copy.path(), "cp", "10.72.0.0/24");
        let cdir = copy.path().join("cp");
        assert_eq!(dir_mtime(&cdir), dir_mtime(&dir), "cp -a keeps the mtime");
        assert!(copy.path().join(INDEX_DIR).join("cp/state").is_file());
        if modify {
            if have_reference() {
                let r = add_ok(&reference(), "r", &cc);
                assert_eq!(addresses(&r), vec!["10.72.0.4/24"]);
            } else {
                write_lease(&cdir, "10.72.0.4", "r");
            }
            sh(&[
                "touch",
                "-m",
                "-r",
                &dir.display().to_string(),
                &cdir.display().to_string(),
            ]);
            assert_eq!(dir_mtime(&cdir), dir_mtime(&dir));
            scan_ok("CHECK", "r", &cc);
            scan_ok("DEL", "r", &cc);
            assert!(!cdir.join("10.72.0.4").exists());
        } else {
            scan_ok("CHECK", "a", &cc);
            // A writing command rebuilds the copy's index; then it is trusted.
            scan_ok("ADD", "c", &cc);
        }
        fast_ok("CHECK", "b", &cc);
        fast_ok("CHECK", "b", &c);
    }
    assert_eq!(ids_of(&dir), set(&["a", "b"]));
}

/// The reference host-local (which does not know the index) adds a lease
/// right after our command; setting the mtime back to our sentinel makes
/// it look as if it had written within our clock tick. Many rounds.
#[test]
fn reference_write_in_the_same_tick_is_detected() {
    if !have_reference() {
        return;
    }
    let tmp = TempDir::new("hl-idx-ref-tick");
    let c = v4(tmp.path(), "tick", "10.73.0.0/24");
    let dir = tmp.path().join("tick");
    scan_ok("ADD", "a", &c);
    for round in 0..15 {
        fast_ok("ADD", &format!("a{round}"), &c);
        let stamp = dir_mtime(&dir);
        let r = format!("r{round}");
        add_ok(&reference(), &r, &c);
        forge_mtime(&dir, stamp);
        scan_ok("CHECK", &r, &c);
        scan_ok("DEL", &r, &c);
        assert!(!ids_of(&dir).contains(&r), "round {round}");
    }
    assert_eq!(leases(&dir).len(), 16);
}

/// A state file of the first index format (mtime only) is never read as
/// the current one: the index is rebuilt.
#[test]
fn a_v1_state_file_is_rebuilt() {
    let tmp = TempDir::new("hl-idx-v1");
    let c = v4(tmp.path(), "old", "10.74.0.0/24");
    let dir = tmp.path().join("old");
    scan_ok("ADD", "a", &c);
    let (sec, nsec) = dir_mtime(&dir);
    let state = tmp.path().join(INDEX_DIR).join("old/state");
    std::fs::write(
        &state,
        format!("cni-rs host-local index v1\n{sec} {nsec}\n"),
    )
    .expect("v1");
    scan_ok("CHECK", "a", &c);
    scan_ok("ADD", "b", &c);
    let text = std::fs::read_to_string(&state).expect("state");
    assert!(text.starts_with("cni-rs host-local index v2\n"), "{text}");
    fast_ok("CHECK", "a", &c);
}
