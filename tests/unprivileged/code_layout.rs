//! The plugins are linked with `plugins/hot-text.ld` (plugins/hot-text.rs):
//! the code their usual calls run sits at the front of the executable code,
//! which keeps a call's peak RSS low (docs/benchmarks.md, F19). Whether the
//! list still matches the code is measured by `cni-bench --only rss`; this
//! checks that every plugin build, with either linker (lld for the glibc
//! target, GNU ld for musl), takes the script and puts the region first.

use cni_test_support::common::bin;
use std::process::Command;

const PLUGINS: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];

/// `(name, address, size)` of every section, from `readelf -SW`.
fn sections(path: &std::path::Path) -> Vec<(String, u64, u64)> {
    let out = Command::new("readelf")
        .arg("-SW")
        .arg(path)
        .output()
        .expect("run readelf (binutils, which the Rust toolchain links with)");
    assert!(out.status.success(), "readelf -SW {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // "  [ 8] .text.hot  PROGBITS  000000000000b030 00b030 0837a2 00 AX 0 0 16"
            let rest = l.trim_start().strip_prefix('[')?.split_once(']')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let hex = |s: &str| u64::from_str_radix(s, 16).ok();
            Some((f.first()?.to_string(), hex(f.get(2)?)?, hex(f.get(4)?)?))
        })
        .collect()
}

#[test]
fn hot_code_comes_first_in_every_plugin() {
    for plugin in PLUGINS {
        let path = bin(plugin);
        let secs = sections(&path);
        let find = |name: &str| {
            secs.iter()
                .find(|s| s.0 == name)
                .unwrap_or_else(|| panic!("{plugin}: no {name} section in {}", path.display()))
        };
        let (hot, text) = (find(".text.hot"), find(".text"));
        assert!(
            hot.2 > 0,
            "{plugin}: .text.hot is empty: no pattern matched"
        );
        assert!(
            hot.1 + hot.2 <= text.1,
            "{plugin}: .text.hot {:#x}+{:#x} does not precede .text {:#x}",
            hot.1,
            hot.2,
            text.1
        );
    }
}

#[test]
fn the_script_is_the_generators_output() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/hot-text.ld");
    let text = std::fs::read_to_string(&script).expect("read plugins/hot-text.ld");
    assert!(text.starts_with("/* plugins/hot-text.ld — written by scripts/hot-text.sh"));
    assert!(text.trim_end().ends_with("INSERT BEFORE .text;"));
    // The bridge ADD's own code is listed, so the list was made from these
    // plugins and not left empty by a failed run.
    assert!(
        text.contains("_ZN6bridge3add"),
        "no bridge::add function listed"
    );
    assert!(text.contains("_ZN3cni4skel"), "no skel function listed");
}
