//! Runs the bad-input corpus (`tests/corpus/**`, see its README) against the
//! real binaries. Every case must fail with exit 1, exactly one JSON error
//! document on stdout with the case's code and a non-empty `msg`, and change
//! nothing: the temp root holding the dataDir (with a live lease in it) is
//! compared byte for byte, and for `bridge` the node's and pod's kernel state
//! too. All failures are collected and reported together.

use cni_test_support::common::*;
use cni_test_support::reliability::*;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the corpus lives.
fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// One corpus case, as read from its file.
#[derive(Debug)]
struct Case {
    /// `<dir>/<file stem>`, for messages.
    id: String,
    why: String,
    env: Map<String, Value>,
    patch: Option<Value>,
    stdin: Option<String>,
    stdin_hex: Option<String>,
    stdin_gen: Option<String>,
    expect_code: u64,
    /// What the reference plugin answers instead (0: it succeeds), when
    /// that differs from `expect_code` (see the corpus README).
    reference_code: Option<u64>,
    /// The plugins a `common/` case applies to (all when absent).
    only_for: Option<Vec<String>>,
}

impl Case {
    fn load(path: &Path) -> Case {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
        let o = v
            .as_object()
            .unwrap_or_else(|| panic!("{}: a case is an object", path.display()));
        let known = [
            "why",
            "env",
            "patch",
            "stdin",
            "stdin_hex",
            "stdin_gen",
            "expect_code",
            "reference_code",
            "only_for",
        ];
        for k in o.keys() {
            assert!(
                known.contains(&k.as_str()),
                "{}: unknown key {k:?}",
                path.display()
            );
        }
        let string = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
        let inputs = ["patch", "stdin", "stdin_hex", "stdin_gen"];
        assert!(
            inputs.iter().filter(|k| o.contains_key(**k)).count() <= 1,
            "{}: at most one of {inputs:?}",
            path.display()
        );
        let dir = path
            .parent()
            .and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Case {
            id: format!("{dir}/{stem}"),
            why: string("why").unwrap_or_else(|| panic!("{}: missing why", path.display())),
            env: o
                .get("env")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            patch: o.get("patch").cloned(),
            stdin: string("stdin"),
            stdin_hex: string("stdin_hex"),
            stdin_gen: string("stdin_gen"),
            expect_code: o
                .get("expect_code")
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("{}: missing expect_code", path.display())),
            reference_code: o.get("reference_code").map(|v| {
                v.as_u64()
                    .unwrap_or_else(|| panic!("{}: reference_code is a number", path.display()))
            }),
            only_for: o.get("only_for").map(|v| {
                serde_json::from_value(v.clone())
                    .unwrap_or_else(|e| panic!("{}: only_for: {e}", path.display()))
            }),
        }
    }
}

/// Every case file of a corpus directory (files starting with `_` are not cases).
fn cases_in(dir: &str) -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus_dir().join(dir))
        .unwrap_or_else(|e| panic!("read corpus dir {dir}: {e}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('_'))
        })
        .collect();
    paths.sort();
    paths.iter().map(|p| Case::load(p)).collect()
}

fn base_config(plugin: &str) -> Value {
    let p = corpus_dir().join(plugin).join("_base.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Objects merge recursively; `null` deletes; anything else replaces.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Paths substituted for the case placeholders.
struct Places {
    data_dir: PathBuf,
    netns: String,
    regular_file: PathBuf,
    dir: PathBuf,
    missing: PathBuf,
}

impl Places {
    fn substitute(&self, s: &str) -> String {
        s.replace("@DATADIR@", &self.data_dir.display().to_string())
            .replace("@NETNS@", &self.netns)
            .replace("@CNI_PATH@", &our_cni_path().display().to_string())
            .replace("@REGULAR_FILE@", &self.regular_file.display().to_string())
            .replace("@DIR@", &self.dir.display().to_string())
            .replace("@MISSING@", &self.missing.display().to_string())
    }
}

const MB: usize = 1 << 20;

/// Huge inputs are generated, not stored.
fn generate(kind: &str, base: &Value) -> Vec<u8> {
    match kind {
        "deep-nesting-10mb" => vec![b'['; 10 * MB],
        "whitespace-10mb" => vec![b' '; 10 * MB],
        "flood-17mb" => vec![b' '; 17 * MB],
        "garbage-10mb" => {
            // xorshift: deterministic, not valid JSON from the first byte on.
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut v: Vec<u8> = (0..10 * MB)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect();
            v[0] = b'#';
            v
        }
        "many-range-sets-overlap-at-end" => {
            // 65536 disjoint /30s, then the last one again.
            let mut sets: Vec<Value> = (0..65536u32)
                .map(|i| {
                    let a = std::net::Ipv4Addr::from(0x0a00_0000 + i * 4);
                    serde_json::json!([{ "subnet": format!("{a}/30") }])
                })
                .collect();
            sets.push(sets[sets.len() - 1].clone());
            let mut conf = base.clone();
            conf["ipam"]["ranges"] = Value::Array(sets);
            serde_json::to_vec(&conf).expect("serialize")
        }
        "vlan-trunk-100k-full-ranges" => {
            // 100 000 trunk entries each spanning all of 1..=4094 (2.9 MB).
            let mut conf = base.clone();
            let item = serde_json::json!({"minID": 1, "maxID": 4094});
            conf["vlanTrunk"] = Value::Array(vec![item; 100_000]);
            conf["ipam"]["type"] = Value::String("no-such-ipam".into());
            serde_json::to_vec(&conf).expect("serialize")
        }
        "name-10mb-slash" => {
            let mut conf = base.clone();
            let half = "a".repeat(5 * MB);
            conf["name"] = Value::String(format!("{half}/{half}"));
            serde_json::to_vec(&conf).expect("serialize")
        }
        other => panic!("unknown stdin_gen {other:?}"),
    }
}

fn hex_bytes(s: &str) -> Vec<u8> {
    cni::hex::decode(s).unwrap_or_else(|| panic!("bad hex {s:?}"))
}

fn build_call(case: &Case, base: &Value, places: &Places) -> PluginCall {
    let mut call = PluginCall::new(
        "ADD",
        "bad-input-1",
        "@NETNS@",
        "eth0",
        Path::new("@CNI_PATH@"),
    );
    for (k, v) in &case.env {
        match v {
            Value::Null => {
                call.env.remove(k);
            }
            Value::String(s) => {
                call.env.insert(k.clone(), s.clone());
            }
            other => panic!("{}: env {k} must be a string or null, got {other}", case.id),
        }
    }
    for v in call.env.values_mut() {
        *v = places.substitute(v);
    }
    let stdin = if let Some(s) = &case.stdin {
        places.substitute(s).into_bytes()
    } else if let Some(h) = &case.stdin_hex {
        hex_bytes(h)
    } else if let Some(g) = &case.stdin_gen {
        let mut conf = base.clone();
        if let Some(dd) = conf.pointer_mut("/ipam/dataDir") {
            *dd = Value::String(places.substitute(dd.as_str().unwrap_or_default()));
        }
        generate(g, &conf)
    } else {
        let mut conf = base.clone();
        if let Some(p) = &case.patch {
            merge(&mut conf, p);
        }
        places.substitute(&conf.to_string()).into_bytes()
    };
    call.stdin(stdin)
}

/// How long one case may run. Generous (debug builds, 10 MB inputs, a
/// loaded machine); a plugin still running then is killed and reported.
const CASE_DEADLINE: Duration = Duration::from_secs(60);

/// Address-space limit of a plugin run: 10 MB inputs need far less.
const CASE_MEMORY: u64 = 1 << 30;

/// Like `common::run_plugin`, but kills the plugin at `deadline` (a hang is
/// a failure to report, not a reason to hang the suite).
fn run_with_deadline(binary: &Path, call: &PluginCall, deadline: Duration) -> PluginRun {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(binary);
    // Cap the address space: an input that makes a plugin allocate without
    // bound must fail here (abort, reported) instead of exhausting the machine.
    // SAFETY: only async-signal-safe setrlimit(2) runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = nix::libc::rlimit {
                rlim_cur: CASE_MEMORY,
                rlim_max: CASE_MEMORY,
            };
            if nix::libc::setrlimit(nix::libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&call.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = call.stdin.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let mut hung = false;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if start.elapsed() > deadline {
            hung = true;
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    let stdout = out_reader.join().unwrap_or_default();
    let mut stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    if hung {
        stderr = format!("<HUNG: killed after {deadline:?}> {stderr}");
    }
    PluginRun {
        code: if hung { Some(-1) } else { status.code() },
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
        call: call.clone(),
        binary: binary.to_path_buf(),
    }
}

/// Checks exit status and the one error document; returns a problem, if any.
fn check_output(case: &Case, run: &PluginRun) -> Option<String> {
    if run.stderr.starts_with("<HUNG") {
        return Some(format!(
            "did not finish: {}",
            &run.stderr[..run.stderr.len().min(80)]
        ));
    }
    if run.code != Some(1) {
        return Some(format!("exit status {:?}, want 1", run.code));
    }
    let mut docs = serde_json::Deserializer::from_str(&run.stdout).into_iter::<Value>();
    let doc = match docs.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Some(format!("stdout is not JSON ({e}): {:?}", run.stdout)),
        None => return Some("empty stdout".into()),
    };
    if docs.next().is_some() {
        return Some(format!(
            "more than one document on stdout: {:?}",
            run.stdout
        ));
    }
    let code = doc["code"].as_u64();
    if code != Some(case.expect_code) {
        return Some(format!(
            "code {code:?}, want {} (msg {:?}, details {:?})",
            case.expect_code, doc["msg"], doc["details"]
        ));
    }
    if doc["msg"].as_str().is_none_or(|m| m.trim().is_empty()) {
        return Some(format!("no msg in {doc}"));
    }
    None
}

/// The state a case must not change.
struct World<'a> {
    root: &'a Path,
    pod: Option<&'a PodNs>,
    kernel: bool,
}

type Snapshot = (
    BTreeMap<String, (Vec<u8>, u32)>,
    BTreeMap<&'static str, String>,
    Option<String>,
);

impl World<'_> {
    fn snapshot(&self) -> Snapshot {
        let kernel = if self.kernel {
            kernel_snapshot()
        } else {
            BTreeMap::new()
        };
        let pod = self.pod.map(|p| {
            format!(
                "{}\n{}",
                p.ip_json(&["link", "show"]),
                p.ip_json(&["addr", "show"])
            )
        });
        (tree_snapshot(self.root), kernel, pod)
    }

    fn compare(&self, before: &Snapshot, after: &Snapshot) -> Option<String> {
        let mut out = String::new();
        if let Some(d) = tree_diff(&before.0, &after.0) {
            out.push_str(&format!("disk changed:\n{d}"));
        }
        if let Some(d) = snapshot_diff(&before.1, &after.1) {
            out.push_str(&format!("node kernel state changed:\n{d}"));
        }
        if before.2 != after.2 {
            out.push_str(&format!(
                "pod netns changed:\n  before {:?}\n  after  {:?}\n",
                before.2, after.2
            ));
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Runs `cases` against `plugin`; returns one line per failed case.
fn run_cases(plugin: &str, cases: &[Case], places: &Places, world: &World<'_>) -> Vec<String> {
    let base = base_config(plugin);
    let mut failures = Vec::new();
    let applies = |c: &&Case| {
        c.only_for
            .as_ref()
            .is_none_or(|p| p.iter().any(|x| x == plugin))
    };
    for case in cases.iter().filter(applies) {
        let call = build_call(case, &base, places);
        let before = world.snapshot();
        let run = run_with_deadline(&bin(plugin), &call, CASE_DEADLINE);
        let after = world.snapshot();
        let mut problems = Vec::new();
        if let Some(p) = check_output(case, &run) {
            problems.push(p);
        }
        if let Some(p) = world.compare(&before, &after) {
            problems.push(p);
        }
        if !problems.is_empty() {
            let stderr: String = run.stderr.chars().take(400).collect();
            failures.push(format!(
                "{plugin} {} ({}): {}\n  stderr: {stderr}",
                case.id,
                case.why,
                problems.join("; ")
            ));
        }
    }
    failures
}

fn places(root: &Path, netns: String) -> Places {
    let (regular_file, dir) = regular_file_and_dir(root);
    Places {
        data_dir: root.join("var/lib/cni/networks"),
        netns,
        regular_file,
        dir,
        missing: root.join("does-not-exist"),
    }
}

/// A successful ADD of a bystander container, so the store (and node) are
/// not empty: bad input must leave an existing lease and its files alone.
fn baseline_add(plugin: &str, places: &Places, netns: &str) {
    let base = base_config(plugin);
    let call = PluginCall::new("ADD", "baseline", netns, "eth0", &our_cni_path())
        .stdin(places.substitute(&base.to_string()));
    let run = run_plugin(&bin(plugin), &call);
    run.expect_ok();
    assert_eq!(
        leases(&places.data_dir, "badnet").len(),
        1,
        "baseline lease missing"
    );
}

fn baseline_del(plugin: &str, places: &Places, netns: &str) {
    let base = base_config(plugin);
    let call = PluginCall::new("DEL", "baseline", netns, "eth0", &our_cni_path())
        .stdin(places.substitute(&base.to_string()));
    run_plugin(&bin(plugin), &call).expect_ok();
}

/// The common cases plus `plugin`'s own, run against `plugin`; fails the
/// test with every case that went wrong.
fn run_corpus(plugin: &str, places: &Places, world: &World<'_>) {
    let mut cases = cases_in("common");
    cases.extend(cases_in(plugin));
    let failures = run_cases(plugin, &cases, places, world);
    report(failures, cases.len());
}

fn report(failures: Vec<String>, total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} bad-input cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The plugins with a case directory and a `_base.json`.
const PLUGIN_DIRS: [&str; 4] = ["host-local", "bridge", "loopback", "portmap"];

#[test]
fn corpus_has_at_least_100_cases() {
    let n: usize = PLUGIN_DIRS
        .iter()
        .chain(&["common"])
        .map(|d| cases_in(d).len())
        .sum();
    assert!(n >= 100, "only {n} corpus cases");
    // Every case file parses and uses only known fields (checked by load).
    for d in PLUGIN_DIRS {
        let base = base_config(d);
        assert!(base.is_object(), "{d}/_base.json");
    }
}

#[test]
fn host_local_rejects_every_bad_input_and_changes_nothing() {
    let tmp = TempDir::new("bad-input-hl");
    let p = places(
        tmp.path(),
        tmp.path().join("no-such-netns").display().to_string(),
    );
    baseline_add("host-local", &p, "/run/netns/cni-rs-bad-input-none");
    let world = World {
        root: tmp.path(),
        pod: None,
        kernel: false,
    };
    run_corpus("host-local", &p, &world);
    let l = leases(&p.data_dir, "badnet");
    assert_eq!(l.len(), 1, "only the baseline lease remains: {l:?}");
    baseline_del("host-local", &p, "/run/netns/cni-rs-bad-input-none");
    assert_no_leases(&p.data_dir, "badnet");
}

#[test]
fn bridge_rejects_every_bad_input_and_changes_nothing() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let tmp = TempDir::new("bad-input-br");
    let baseline_pod = PodNs::new();
    let pod = PodNs::new();
    let p = places(tmp.path(), pod.path.display().to_string());
    baseline_add("bridge", &p, &baseline_pod.path.display().to_string());
    let world = World {
        root: tmp.path(),
        pod: Some(&pod),
        kernel: true,
    };
    run_corpus("bridge", &p, &world);
    baseline_del("bridge", &p, &baseline_pod.path.display().to_string());
    assert_no_leaks(&LeakScope {
        data_dir: &p.data_dir,
        networks: &["badnet"],
        allowed_veths: &[],
    });
}

/// The same corpus on a pristine node (no bridge, no store yet): bad input
/// must not create the bridge, the store directory or anything else.
#[test]
fn bridge_bad_input_on_a_pristine_node_creates_nothing() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let tmp = TempDir::new("bad-input-br-pristine");
    let pod = PodNs::new();
    let p = places(tmp.path(), pod.path.display().to_string());
    let world = World {
        root: tmp.path(),
        pod: Some(&pod),
        kernel: true,
    };
    run_corpus("bridge", &p, &world);
    assert_no_leaks(&LeakScope {
        data_dir: &p.data_dir,
        networks: &["badnet"],
        allowed_veths: &[],
    });
}

/// loopback: bad input must not bring the pod's `lo` up (nor change
/// anything else in the pod or on the node).
#[test]
fn loopback_rejects_every_bad_input_and_changes_nothing() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let tmp = TempDir::new("bad-input-lo");
    let pod = PodNs::new();
    let p = places(tmp.path(), pod.path.display().to_string());
    let world = World {
        root: tmp.path(),
        pod: Some(&pod),
        kernel: true,
    };
    run_corpus("loopback", &p, &world);
}

/// The `CNI-DN-` chains and nftables rules of container `id`.
fn portmap_rules_of(id: &str) -> Vec<String> {
    let k = kernel_snapshot();
    let chain = format!("id: \\\"{id}\\\"");
    let comment = format!("comment \"{id}\"");
    k.values()
        .flat_map(|v| v.lines())
        .filter(|l| l.contains(&chain) || l.contains(&comment))
        .map(str::to_string)
        .collect()
}

/// A bystander attachment with its own host port, so the shared chains
/// and another attachment's rules exist while the cases run.
fn portmap_baseline(places: &Places, cmd: &str) {
    let mut conf = base_config("portmap");
    conf["runtimeConfig"]["portMappings"] =
        serde_json::json!([{"hostPort": 9180, "containerPort": 80, "protocol": "udp"}]);
    let call = PluginCall::new(cmd, "baseline", &places.netns, "eth0", &our_cni_path())
        .stdin(places.substitute(&conf.to_string()));
    run_plugin(&bin("portmap"), &call).expect_ok();
}

fn portmap_corpus(populated: bool) {
    let node = NodeNs::enter();
    node.assert_inside();
    let tmp = TempDir::new("bad-input-pm");
    let pod = PodNs::new();
    let p = places(tmp.path(), pod.path.display().to_string());
    if populated {
        portmap_baseline(&p, "ADD");
        assert!(!portmap_rules_of("baseline").is_empty(), "baseline rules");
    }
    let world = World {
        root: tmp.path(),
        pod: Some(&pod),
        kernel: true,
    };
    run_corpus("portmap", &p, &world);
    if populated {
        portmap_baseline(&p, "DEL");
        let left = portmap_rules_of("baseline");
        assert!(left.is_empty(), "baseline rules left: {left:?}");
    } else {
        let k = kernel_snapshot();
        for (what, dump) in &k {
            assert!(
                !dump.contains("CNI-HOSTPORT") && !dump.contains("cni_hostport"),
                "bad input created portmap state ({what}):\n{dump}"
            );
        }
    }
}

/// portmap on a node with another attachment's mapping in place.
#[test]
fn portmap_rejects_every_bad_input_and_changes_nothing() {
    require_root!();
    portmap_corpus(true);
}

/// portmap on a pristine node: no shared chain or table may appear.
#[test]
fn portmap_bad_input_on_a_pristine_node_creates_nothing() {
    require_root!();
    portmap_corpus(false);
}

/// The reference binaries (1.1.1) predate CNI 1.1.0: they get the case
/// with `cniVersion` 1.1.0 (config and `prevResult`) lowered to 1.0.0.
fn lowered_for_reference(stdin: &[u8]) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<Value>(stdin) else {
        return stdin.to_vec();
    };
    for ptr in ["/cniVersion", "/prevResult/cniVersion"] {
        if let Some(x) = v.pointer_mut(ptr) {
            if x == "1.1.0" {
                *x = Value::String("1.0.0".into());
            }
        }
    }
    serde_json::to_vec(&v).expect("serialize")
}

/// The reference's answer to each plugin-specific case is what the case
/// records (`reference_code`, else `expect_code`): keeps the documented
/// differences honest. Kernel state is not compared (the reference leaves
/// empty chains on some failures); each case gets a fresh pod and runs in
/// a throwaway node.
fn reference_agrees(plugin: &str) {
    let node = NodeNs::enter();
    node.assert_inside();
    let tmp = TempDir::new("bad-input-ref");
    let base = base_config(plugin);
    let binary = Path::new(REFERENCE_CNI_PATH).join(plugin);
    let cases = cases_in(plugin);
    let mut failures = Vec::new();
    for case in &cases {
        let pod = PodNs::new();
        let p = places(tmp.path(), pod.path.display().to_string());
        let mut call = build_call(case, &base, &p);
        call.stdin = lowered_for_reference(&call.stdin);
        let run = run_with_deadline(&binary, &call, CASE_DEADLINE);
        let want = case.reference_code.unwrap_or(case.expect_code);
        let doc: Value = serde_json::from_str(run.stdout.trim()).unwrap_or(Value::Null);
        let got = match run.code {
            Some(0) => Some(0),
            Some(1) => doc["code"].as_u64(),
            _ => None,
        };
        if got != Some(want) {
            failures.push(format!(
                "{} ({}): reference answered {got:?} (exit {:?}), the case records {want}; msg {}",
                case.id, case.why, run.code, doc["msg"]
            ));
        }
    }
    report(failures, cases.len());
}

#[test]
fn reference_loopback_answers_what_the_corpus_records() {
    require_root!();
    reference_agrees("loopback");
}

#[test]
fn reference_portmap_answers_what_the_corpus_records() {
    require_root!();
    reference_agrees("portmap");
}
