//! Concurrency, crash-safety and scale tests of the `host-local` binary.
//!
//! Crash points are injected with the test-only `CNI_RS_TEST_CRASH_POINT`
//! variable (see `cni::test_hooks`): the plugin SIGKILLs itself there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use cni_test_support::common;
use cni_test_support::common::TempDir;
use cni_test_support::host_local::*;
use serde_json::{json, Value};

use cni::test_hooks::CRASH_ENV as CRASH;

fn v4_conf(tmp: &TempDir, name: &str, subnet: &str) -> Value {
    conf("1.0.0", name, ipam(tmp.path(), &[&[subnet]]))
}

fn dual_conf(tmp: &TempDir, name: &str) -> Value {
    conf(
        "1.0.0",
        name,
        ipam(tmp.path(), &[&["10.90.0.0/24"], &["fd90::/64"]]),
    )
}

/// One concurrent call: binary, verb, container id, extra env.
type Job = (
    std::path::PathBuf,
    &'static str,
    String,
    Vec<(&'static str, String)>,
);

/// Runs `jobs` concurrently (each a binary, verb, id and extra env), released
/// together by a barrier; returns the runs in job order.
fn parallel(jobs: Vec<Job>, c: &Value) -> Vec<common::PluginRun> {
    let barrier = Arc::new(Barrier::new(jobs.len()));
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|(bin, verb, id, env)| {
            let (barrier, c) = (barrier.clone(), c.clone());
            std::thread::spawn(move || {
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                barrier.wait();
                run_env(&bin, verb, &id, "eth0", &c, &env)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("job thread"))
        .collect()
}

/// Asserts the store holds exactly one lease per (id, family) for `ids`, all distinct.
fn assert_exactly(dir: &Path, ids: &BTreeSet<String>, per_id: usize) {
    let l = leases(dir);
    assert_eq!(l.len(), ids.len() * per_id, "lease count: {l:#?}");
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for content in l.values() {
        let (id, ifname) = content
            .split_once("\r\n")
            .unwrap_or_else(|| panic!("bad lease {content:?}"));
        assert_eq!(ifname, "eth0");
        *owners.entry(id.to_string()).or_default() += 1;
    }
    assert_eq!(owners.keys().cloned().collect::<BTreeSet<_>>(), *ids);
    assert!(owners.values().all(|n| *n == per_id), "{owners:?}");
}

#[test]
fn fifty_concurrent_adds_get_fifty_distinct_addresses() {
    let tmp = TempDir::new("hl-conc");
    let c = v4_conf(&tmp, "conc", "10.91.0.0/24");
    let jobs = (0..50)
        .map(|i| (ours(), "ADD", format!("c{i}"), vec![]))
        .collect();
    let runs = parallel(jobs, &c);
    let mut ips = BTreeSet::new();
    for r in runs {
        let r = r.expect_ok();
        ips.insert(addresses(&r.json())[0].clone());
    }
    assert_eq!(ips.len(), 50);
    let ids: BTreeSet<String> = (0..50).map(|i| format!("c{i}")).collect();
    assert_exactly(&tmp.path().join("conc"), &ids, 1);
}

#[test]
fn concurrent_adds_mixed_with_the_reference_binary() {
    if !have_reference() {
        return;
    }
    let tmp = TempDir::new("hl-conc-ref");
    let c = dual_conf(&tmp, "mixed");
    let jobs = (0..40)
        .map(|i| {
            (
                if i % 2 == 0 { ours() } else { reference() },
                "ADD",
                format!("m{i}"),
                vec![],
            )
        })
        .collect();
    for r in parallel(jobs, &c) {
        r.expect_ok();
    }
    let ids: BTreeSet<String> = (0..40).map(|i| format!("m{i}")).collect();
    assert_exactly(&tmp.path().join("mixed"), &ids, 2);
}

#[test]
fn concurrent_add_del_churn() {
    let tmp = TempDir::new("hl-churn");
    let c = dual_conf(&tmp, "churn");
    let dir = tmp.path().join("churn");
    let mut live: BTreeSet<String> = BTreeSet::new();
    for i in 0..25 {
        add_ok(&ours(), &format!("r0-{i}"), &c);
        live.insert(format!("r0-{i}"));
    }
    for round in 1..=3 {
        // Delete every live container and add 25 new ones, all at once.
        let mut jobs: Vec<_> = live
            .iter()
            .map(|id| (ours(), "DEL", id.clone(), vec![]))
            .collect();
        let new: BTreeSet<String> = (0..25).map(|i| format!("r{round}-{i}")).collect();
        jobs.extend(new.iter().map(|id| (ours(), "ADD", id.clone(), vec![])));
        for r in parallel(jobs, &c) {
            r.expect_ok();
        }
        live = new;
        assert_exactly(&dir, &live, 2);
    }
}

#[test]
fn crash_after_lock_leaves_a_harmless_lock_file() {
    let tmp = TempDir::new("hl-crash-lock");
    let c = v4_conf(&tmp, "cl", "10.92.0.0/24");
    let r = run_env(&ours(), "ADD", "x", "eth0", &c, &[(CRASH, "after-lock")]);
    assert_eq!(r.code, None, "killed by SIGKILL: {r:#?}");
    let dir = tmp.path().join("cl");
    assert!(dir.join("lock").exists() && leases(&dir).is_empty());
    assert_eq!(addresses(&add_ok(&ours(), "y", &c)), vec!["10.92.0.2/24"]);
}

#[test]
fn crash_between_create_and_write_is_reclaimed() {
    // The runtime sees ADD fail and calls DEL: the empty lease file goes.
    let tmp = TempDir::new("hl-crash-create");
    let c = v4_conf(&tmp, "cc", "10.93.0.0/24");
    let dir = tmp.path().join("cc");
    let r = run_env(&ours(), "ADD", "x", "eth0", &c, &[(CRASH, "after-create")]);
    assert_eq!(r.code, None);
    assert_eq!(
        leases(&dir),
        [("10.93.0.2".to_string(), String::new())].into()
    );
    run(&ours(), "CHECK", "x", "eth0", &c).expect_err(999);
    run(&ours(), "DEL", "x", "eth0", &c).expect_ok();
    assert!(leases(&dir).is_empty());

    // Or the next ADD (for anyone) reclaims it and hands the address out once.
    let r = run_env(&ours(), "ADD", "x", "eth0", &c, &[(CRASH, "after-create")]);
    assert_eq!(r.code, None);
    assert_eq!(addresses(&add_ok(&ours(), "y", &c)), vec!["10.93.0.2/24"]);
    assert_eq!(
        leases(&dir),
        [("10.93.0.2".to_string(), lease_text("y", "eth0"))].into()
    );
    run(&ours(), "DEL", "x", "eth0", &c).expect_ok();
    assert_eq!(leases(&dir).len(), 1);

    // Or GC, which knows every valid attachment.
    let r = run_env(&ours(), "ADD", "z", "eth0", &c, &[(CRASH, "after-create")]);
    assert_eq!(r.code, None);
    let mut gc = c.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "y", "ifname": "eth0"}]);
    let mut call =
        common::PluginCall::new("GC", "", "", "", &common::our_cni_path()).stdin(gc.to_string());
    for k in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        call.env.remove(k);
    }
    common::run_plugin(&ours(), &call).expect_ok();
    assert_eq!(
        leases(&dir),
        [("10.93.0.2".to_string(), lease_text("y", "eth0"))].into()
    );
}

#[test]
fn crash_after_first_set_is_cleaned_by_del() {
    let tmp = TempDir::new("hl-crash-write");
    let c = dual_conf(&tmp, "cw");
    let dir = tmp.path().join("cw");
    let r = run_env(&ours(), "ADD", "x", "eth0", &c, &[(CRASH, "after-write")]);
    assert_eq!(r.code, None);
    assert_eq!(
        leases(&dir),
        [("10.90.0.2".to_string(), lease_text("x", "eth0"))].into()
    );
    assert!(!dir.join("last_reserved_ip.0").exists());
    // Another container is not affected.
    assert_eq!(
        addresses(&add_ok(&ours(), "y", &c)),
        vec!["10.90.0.3/24", "fd90::2/64"]
    );
    // A retried ADD without DEL is refused (the runtime must DEL first)...
    run(&ours(), "ADD", "x", "eth0", &c).expect_err(999);
    // ...and DEL releases the partial allocation.
    run(&ours(), "DEL", "x", "eth0", &c).expect_ok();
    assert_eq!(
        addresses(&add_ok(&ours(), "x", &c)),
        vec!["10.90.0.4/24", "fd90::3/64"]
    );
    assert_exactly(&dir, &["x".to_string(), "y".to_string()].into(), 2);
}

#[test]
fn crash_before_rename_never_corrupts_last_reserved_ip() {
    let tmp = TempDir::new("hl-crash-rename");
    let c = v4_conf(&tmp, "cr", "10.94.0.0/24");
    let dir = tmp.path().join("cr");
    add_ok(&ours(), "a", &c);
    let r = run_env(&ours(), "ADD", "x", "eth0", &c, &[(CRASH, "before-rename")]);
    assert_eq!(r.code, None);
    assert_eq!(
        std::fs::read_to_string(dir.join("last_reserved_ip.0")).expect("last"),
        "10.94.0.2"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("last_reserved_ip.0.tmp")).expect("tmp"),
        "10.94.0.3"
    );
    // The reference ignores the temp file too.
    if have_reference() {
        let r = run(&reference(), "CHECK", "x", "eth0", &c);
        assert_eq!(r.code, Some(0), "{r:#?}");
    }
    assert_eq!(addresses(&add_ok(&ours(), "y", &c)), vec!["10.94.0.4/24"]);
    assert!(
        !dir.join("last_reserved_ip.0.tmp").exists(),
        "the next ADD renames the temp file away"
    );
    run(&ours(), "DEL", "x", "eth0", &c).expect_ok();
    assert_exactly(&dir, &["a".to_string(), "y".to_string()].into(), 1);
}

#[test]
fn crash_during_del_is_finished_by_the_next_del() {
    let tmp = TempDir::new("hl-crash-del");
    let c = dual_conf(&tmp, "cd");
    let dir = tmp.path().join("cd");
    add_ok(&ours(), "x", &c);
    let r = run_env(&ours(), "DEL", "x", "eth0", &c, &[(CRASH, "after-remove")]);
    assert_eq!(r.code, None);
    assert_eq!(leases(&dir).len(), 1, "one of two leases removed");
    run(&ours(), "CHECK", "x", "eth0", &c).expect_ok();
    run(&ours(), "DEL", "x", "eth0", &c).expect_ok();
    assert!(leases(&dir).is_empty());
}

#[test]
fn crashes_at_random_points_under_concurrency_leave_a_consistent_store() {
    let tmp = TempDir::new("hl-crash-many");
    let c = dual_conf(&tmp, "cm");
    let dir = tmp.path().join("cm");
    let points = ["after-lock", "after-create", "after-write", "before-rename"];
    let jobs = (0..32)
        .map(|i| {
            let env = if i % 2 == 1 {
                vec![(CRASH, points[(i / 2) % points.len()].to_string())]
            } else {
                vec![]
            };
            (ours(), "ADD", format!("k{i}"), env)
        })
        .collect();
    let runs = parallel(jobs, &c);
    let mut ok = BTreeSet::new();
    let mut crashed = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        match r.code {
            Some(0) => {
                ok.insert(format!("k{i}"));
            }
            None => crashed.push(format!("k{i}")),
            _ => panic!("unexpected failure: {r:#?}"),
        }
    }
    assert_eq!(ok.len(), 16);
    // The runtime DELs every failed ADD: afterwards exactly the successful ones remain.
    for id in &crashed {
        run(&ours(), "DEL", id, "eth0", &c).expect_ok();
    }
    assert_exactly(&dir, &ok, 2);
    // Every successful container's addresses are the ones it was told.
    for (i, r) in runs.iter().enumerate() {
        if r.code == Some(0) {
            for a in addresses(&r.json()) {
                let ip = a.split('/').next().expect("ip");
                assert_eq!(leases(&dir)[ip], lease_text(&format!("k{i}"), "eth0"));
            }
        }
    }
    // New ADDs still work and never collide.
    for i in 0..5 {
        add_ok(&ours(), &format!("n{i}"), &c);
    }
    let mut all = ok.clone();
    all.extend((0..5).map(|i| format!("n{i}")));
    assert_exactly(&dir, &all, 2);
}

/// Fills a /16 to 99% (free addresses all near the end of the walk), then
/// times one ADD and one DEL. Correctness is asserted; timings are printed.
#[test]
fn nearly_full_slash16_allocates_quickly() {
    let tmp = TempDir::on_tmpfs("hl-big");
    let c = conf("1.0.0", "big", ipam(&tmp.0, &[&["10.95.0.0/16"]]));
    let dir = tmp.0.join("big");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // Usable: 10.95.0.2 .. 10.95.255.254 = 65533 addresses; leave the last 1% free.
    let usable: Vec<String> = (2u32..=65534)
        .map(|n| format!("10.95.{}.{}", n >> 8, n & 0xff))
        .collect();
    let leased = usable.len() * 99 / 100;
    for (i, ip) in usable[..leased].iter().enumerate() {
        std::fs::write(dir.join(ip), format!("fill{i}\r\neth0")).expect("write lease");
    }
    std::fs::write(dir.join("last_reserved_ip.0"), "10.95.0.1").expect("last");
    let start = Instant::now();
    let r = add_ok(&ours(), "new", &c);
    let add_ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(addresses(&r), vec![format!("{}/16", usable[leased])]);
    let start = Instant::now();
    run(&ours(), "DEL", "new", "eth0", &c).expect_ok();
    let del_ms = start.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(leases(&dir).len(), leased);
    let mut line = format!(
        "host-local /16 99% full ({leased} leases): ours ADD {add_ms:.1} ms, DEL {del_ms:.1} ms"
    );
    if reference().is_file() {
        std::fs::write(dir.join("last_reserved_ip.0"), "10.95.0.1").expect("last");
        let start = Instant::now();
        let r = add_ok(&reference(), "refnew", &c);
        let ref_ms = start.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(addresses(&r), vec![format!("{}/16", usable[leased])]);
        line.push_str(&format!("; reference ADD {ref_ms:.1} ms"));
    }
    eprintln!("{line}");
}
