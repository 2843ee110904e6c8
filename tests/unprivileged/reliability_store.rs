//! Store-format edge cases found by fuzzing `fuzz/fuzz_targets/store_reader.rs`,
//! replayed against the real `host-local` binary: whatever other tools left
//! in a lease directory, an address that a live lease file holds is never
//! handed out again.

use cni_test_support::common::*;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

const NET: &str = "storenet";

fn conf(data_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.1.0",
        "name": NET,
        "type": "host-local",
        "ipam": {
            "type": "host-local",
            "dataDir": data_dir,
            "ranges": [[{"subnet": "10.81.0.0/28"}]]
        }
    })
    .to_string()
}

fn add(id: &str, dd: &Path) -> PluginRun {
    let c = PluginCall::new(
        "ADD",
        id,
        "/run/netns/cni-rs-store-test-none",
        "eth0",
        &our_cni_path(),
    )
    .stdin(conf(dd));
    run_plugin(&bin("host-local"), &c)
}

/// Lease files grouped by the address their name denotes (any spelling),
/// with every non-empty owner line.
fn holders(dd: &Path) -> BTreeMap<IpAddr, Vec<(String, String)>> {
    let mut m: BTreeMap<IpAddr, Vec<(String, String)>> = BTreeMap::new();
    for e in std::fs::read_dir(dd.join(NET))
        .expect("read store")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(ip) = name.parse::<IpAddr>() else {
            continue;
        };
        let content = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap_or_default())
            .trim()
            .to_string();
        if !content.is_empty() {
            m.entry(ip.to_canonical())
                .or_default()
                .push((name, content));
        }
    }
    m
}

/// Fuzz finding (store_reader, crash-7d7325bd…): an empty (half-written)
/// lease under the canonical name `10.81.0.N` next to a live lease of the
/// same address under a non-canonical name `::ffff:10.81.0.N` (written by
/// another tool). Reclaiming the orphan must not make the address free:
/// the live lease still holds it.
#[test]
fn reclaimed_orphan_does_not_free_an_address_held_under_another_name() {
    let tmp = TempDir::new("store-mapped-orphan");
    let dd = tmp.path();
    let dir = dd.join(NET);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for n in 2..=14 {
        std::fs::write(dir.join(format!("10.81.0.{n}")), b"").expect("orphan");
        std::fs::write(
            dir.join(format!("::ffff:10.81.0.{n}")),
            format!("other-{n}\r\neth0"),
        )
        .expect("live lease");
    }
    let mut problems = Vec::new();
    for i in 0..13 {
        let id = format!("new-{i}");
        let run = add(&id, dd);
        if run.code == Some(0) {
            let v = run.json();
            problems.push(format!(
                "{id} got {} although every address is held",
                v["ips"]
            ));
        }
    }
    for (ip, owners) in holders(dd) {
        if owners.len() > 1 {
            problems.push(format!("{ip} held by {owners:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "double allocation:\n{}",
        problems.join("\n")
    );
}
