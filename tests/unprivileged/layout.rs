//! The test layout itself: with `autotests = false`, Cargo silently ignores
//! a test file that no group declares (a new `tests/foo.rs`, or a file in a
//! group folder missing from its `main.rs`), so its tests would never run.

use std::collections::BTreeSet;
use std::path::Path;

/// The groups declared as `[[test]]` targets in the root Cargo.toml.
const GROUPS: [&str; 3] = ["unprivileged", "netns", "clients"];

fn rs_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter_map(|n| n.strip_suffix(".rs").map(str::to_string))
        .collect()
}

#[test]
fn no_test_file_outside_a_group() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let stray = rs_files(&tests);
    assert!(
        stray.is_empty(),
        "tests/{{{}}}.rs: Cargo does not run these; move each into tests/unprivileged, \
         tests/netns or tests/clients (by what it needs) and declare it in that main.rs",
        stray.into_iter().collect::<Vec<_>>().join(",")
    );
}

#[test]
fn every_file_of_a_group_is_declared_in_its_main() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    for group in GROUPS {
        let dir = tests.join(group);
        let main = std::fs::read_to_string(dir.join("main.rs"))
            .unwrap_or_else(|e| panic!("read tests/{group}/main.rs: {e}"));
        let declared: BTreeSet<String> = main
            .lines()
            .filter_map(|l| l.trim().strip_prefix("mod ")?.strip_suffix(';'))
            .map(str::to_string)
            .collect();
        let mut files = rs_files(&dir);
        files.remove("main");
        assert_eq!(
            files, declared,
            "tests/{group}: files vs `mod` lines of main.rs"
        );
    }
}
