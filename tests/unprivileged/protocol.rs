//! CNI protocol behaviour that every one of our plugins must show, driven
//! through the real binaries (`bridge`, `host-local`) via env + stdin.
//!
//! Everything here is decided by `cni::skel` before a plugin's own code
//! runs, so it holds for every plugin binary. The tests at the end drive the
//! real `host-local` through ADD/DEL/GC/STATUS output.

use cni_test_support::common::*;
use serde_json::{json, Value};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PLUGINS: [&str; 2] = ["bridge", "host-local"];

fn conf(version: &str) -> String {
    format!(
        r#"{{"cniVersion":"{version}","name":"protonet","type":"host-local","ipam":{{"type":"host-local","subnet":"10.77.0.0/24"}}}}"#
    )
}

/// A call with valid env (the netns path need not exist: every test here
/// fails before a plugin would open it).
fn call(cmd: &str) -> PluginCall {
    PluginCall::new(
        cmd,
        "proto-test-1",
        "/run/netns/cni-rs-proto-test-does-not-exist",
        "eth0",
        &our_cni_path(),
    )
}

/// Asserts stdout is exactly one JSON document (plus whitespace).
fn one_document(run: &PluginRun) -> Value {
    let mut it = serde_json::Deserializer::from_str(&run.stdout).into_iter::<Value>();
    let first = it
        .next()
        .unwrap_or_else(|| panic!("empty stdout:\n{run:#?}"))
        .unwrap_or_else(|e| panic!("stdout not JSON ({e}):\n{run:#?}"));
    assert!(it.next().is_none(), "more than one document:\n{run:#?}");
    first
}

/// Runs the call on every plugin and checks the CNI error shape.
fn expect_error_everywhere(call: &PluginCall, code: u64) -> Vec<Value> {
    PLUGINS
        .iter()
        .map(|p| {
            let run = run_plugin(&bin(p), call);
            let v = run.expect_err(code);
            assert_eq!(one_document(&run), v);
            let obj = v.as_object().expect("error is an object");
            for key in ["cniVersion", "code", "msg", "details"] {
                assert!(obj.contains_key(key), "{p}: error lacks {key}: {v}");
            }
            assert!(v["cniVersion"].is_string() && v["details"].is_string());
            v
        })
        .collect()
}

#[test]
fn version_with_podman_dummy_env() {
    // podman 4.3: dummy netns/path/ifname, empty container id, 1.0.0 stdin.
    let call = PluginCall::new(
        "VERSION",
        "",
        "dummy",
        "dummy",
        std::path::Path::new("dummy"),
    )
    .env("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web")
    .stdin(r#"{"cniVersion":"1.0.0"}"#);
    for p in PLUGINS {
        let run = run_plugin(&bin(p), &call).expect_ok();
        assert_eq!(
            one_document(&run),
            json!({"cniVersion":"1.1.0","supportedVersions":ALL_VERSIONS}),
            "{p}"
        );
    }
}

#[test]
fn version_ignores_stdin_content() {
    let mut c = PluginCall::default().env("CNI_COMMAND", "VERSION");
    for stdin in ["", "garbage", r#"{"cniVersion":"9.9.9"}"#] {
        c = c.stdin(stdin);
        for p in PLUGINS {
            let run = run_plugin(&bin(p), &c).expect_ok();
            assert_eq!(one_document(&run)["cniVersion"], "1.1.0");
        }
    }
}

#[test]
fn bad_json_is_code_6() {
    for stdin in [
        "",
        "{",
        "[]",
        r#"{"name":"n","cniVersion":1}"#,
        "{\"name\":\"n\"} trailing",
    ] {
        expect_error_everywhere(&call("ADD").stdin(stdin), 6);
    }
}

#[test]
fn bad_network_name_is_code_7() {
    for name in ["", "../escape", "a/b", ".."] {
        let stdin = format!(r#"{{"cniVersion":"1.0.0","name":"{name}","type":"x"}}"#);
        expect_error_everywhere(&call("DEL").stdin(stdin), 7);
    }
}

#[test]
fn unsupported_version_is_code_1() {
    for v in ["0.5.0", "2.0.0", "1.1", "abc"] {
        for e in expect_error_everywhere(&call("ADD").stdin(conf(v)), 1) {
            assert_eq!(e["msg"], "incompatible CNI versions");
            assert!(e["details"]
                .as_str()
                .unwrap()
                .contains(&format!("config is {v:?}")));
        }
    }
}

#[test]
fn missing_env_is_code_4() {
    let mut c = call("ADD").stdin(conf("1.0.0"));
    c.env.remove("CNI_NETNS");
    c.env.remove("CNI_IFNAME");
    for e in expect_error_everywhere(&c, 4) {
        assert_eq!(
            e["msg"],
            "required env variables [CNI_NETNS,CNI_IFNAME] missing"
        );
    }
    let mut c = call("DEL").stdin(conf("1.0.0"));
    c.env.remove("CNI_CONTAINERID");
    for e in expect_error_everywhere(&c, 4) {
        assert_eq!(e["msg"], "required env variables [CNI_CONTAINERID] missing");
    }
}

#[test]
fn unknown_command_is_code_4() {
    for cmd in ["add", "FOO"] {
        for e in expect_error_everywhere(&call(cmd).stdin(conf("1.0.0")), 4) {
            assert_eq!(e["msg"], format!("unknown CNI_COMMAND: {cmd}"));
        }
    }
}

#[test]
fn bad_container_id_is_code_4() {
    for id in ["../../etc", "a/b", "-x", "has space"] {
        let c = call("ADD").env("CNI_CONTAINERID", id).stdin(conf("1.0.0"));
        for e in expect_error_everywhere(&c, 4) {
            assert_eq!(e["msg"], "invalid characters in containerID");
        }
    }
}

#[test]
fn bad_ifname_is_code_4() {
    for name in ["eth0123456789abc", ".", "..", "a/b", "a:b", "a b"] {
        let c = call("ADD").env("CNI_IFNAME", name).stdin(conf("1.0.0"));
        expect_error_everywhere(&c, 4);
    }
}

#[test]
fn bad_cni_args_is_code_4() {
    let c = call("ADD")
        .env("CNI_ARGS", "IgnoreUnknown=1;")
        .stdin(conf("1.0.0"));
    for e in expect_error_everywhere(&c, 4) {
        assert_eq!(e["msg"], "invalid CNI_ARGS");
    }
}

#[test]
fn check_needs_0_4_0() {
    for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1"] {
        for e in expect_error_everywhere(&call("CHECK").stdin(conf(v)), 1) {
            assert_eq!(e["msg"], "config version does not allow CHECK");
            assert_eq!(e["cniVersion"], v);
        }
    }
}

#[test]
fn gc_and_status_need_1_1_0() {
    for cmd in ["GC", "STATUS"] {
        for v in ["0.4.0", "1.0.0"] {
            for e in expect_error_everywhere(&call(cmd).stdin(conf(v)), 1) {
                assert_eq!(e["msg"], format!("config version does not allow {cmd}"));
            }
        }
    }
}

/// bridge refuses to configure its own netns; host-local never enters the
/// netns, so it does not pay for the check (`Plugin::configures_netns`).
#[test]
fn own_netns_is_code_8_for_bridge() {
    let c = call("ADD")
        .env("CNI_NETNS", "/proc/self/ns/net")
        .stdin(conf("1.0.0"));
    let run = run_plugin(&bin("bridge"), &c);
    let v = run.expect_err(8);
    assert!(
        v["msg"].as_str().unwrap().contains("own network namespace"),
        "{v}"
    );
}

#[test]
fn stdin_flood_is_refused() {
    let c = call("ADD").stdin(vec![b' '; 17 << 20]);
    for e in expect_error_everywhere(&c, 5) {
        assert!(e["msg"].as_str().unwrap().contains("exceeds"), "{e}");
    }
}

/// Runs a binary with a clean env and `args`, stdin from `stdin`.
fn run_bare(p: &str, args: &[&str], stdin: Stdio) -> (Option<i32>, String, String) {
    let mut child = Command::new(bin(p))
        .args(args)
        .env_clear()
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    // Never hang the suite: a plugin blocking on stdin is a failure.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{p} {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), out, err)
}

#[test]
fn version_flag() {
    for p in PLUGINS {
        let (code, out, err) = run_bare(p, &["--version"], Stdio::null());
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(
            out,
            format!(
                "{p} {} (cni-rs)\nCNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}

#[test]
fn help_flag() {
    for p in PLUGINS {
        for flag in ["--help", "-h"] {
            let (code, out, _) = run_bare(p, &[flag], Stdio::null());
            assert_eq!(code, Some(0));
            for var in [
                "CNI_COMMAND",
                "CNI_CONTAINERID",
                "CNI_NETNS",
                "CNI_IFNAME",
                "CNI_PATH",
            ] {
                assert!(out.contains(var), "{p} {flag}: {var} not in help:\n{out}");
            }
        }
    }
}

#[test]
fn no_command_with_pipe_prints_about_like_go() {
    for p in PLUGINS {
        let (code, out, err) = run_bare(p, &[], Stdio::piped());
        assert_eq!(code, Some(0));
        assert!(out.is_empty(), "stdout must stay empty: {out}");
        assert!(err.starts_with(&format!("CNI {p} plugin v")), "{err}");
        assert!(
            err.contains("CNI protocol versions supported: 0.1.0,"),
            "{err}"
        );
    }
}

#[test]
fn no_command_with_terminal_prints_help_and_exits() {
    for p in PLUGINS {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let (code, out, err) = run_bare(p, &[], Stdio::from(pty.slave));
        assert_eq!(code, Some(0));
        assert!(out.is_empty(), "stdout must stay empty: {out}");
        assert!(
            err.contains("CNI_COMMAND"),
            "help expected on stderr: {err}"
        );
        drop(pty.master);
    }
}

#[test]
fn debug_log_goes_to_file_never_stdout() {
    let dir = TempDir::new("proto-log");
    let log = dir.path().join("debug.log");
    for p in PLUGINS {
        let c = call("ADD")
            .env("CNI_RS_LOG", &log.display().to_string())
            .stdin("{");
        let run = run_plugin(&bin(p), &c);
        let v = run.expect_err(6);
        assert_eq!(one_document(&run), v);
    }
    let text = std::fs::read_to_string(&log).expect("log file written");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for (line, p) in lines.iter().zip(PLUGINS) {
        assert!(line.contains(" pid="), "{line}");
        assert!(line.contains(&format!("{p} ADD failed: code 6")), "{line}");
    }
}

// ---- tests that need the real host-local (not the placeholder) ----------

/// A host-local config with a private dataDir.
fn host_local_conf(version: &str, data_dir: &std::path::Path) -> String {
    format!(
        r#"{{"cniVersion":"{version}","name":"protonet","type":"bridge","ipam":{{"type":"host-local","subnet":"10.77.0.0/24","dataDir":"{}"}}}}"#,
        data_dir.display()
    )
}

#[test]
fn host_local_add_prints_one_result_in_each_version() {
    let dir = TempDir::new("proto-hl");
    for (i, v) in ALL_VERSIONS.iter().enumerate() {
        let id = format!("proto-{i}");
        let c = PluginCall::new("ADD", &id, "/run/netns/none", "eth0", &our_cni_path())
            .stdin(host_local_conf(v, dir.path()));
        let run = run_plugin(&bin("host-local"), &c).expect_ok();
        let r = one_document(&run);
        assert_eq!(r["cniVersion"], *v);
        match *v {
            "0.1.0" | "0.2.0" => {
                assert!(r["ip4"]["ip"].as_str().unwrap().starts_with("10.77.0."));
                assert_eq!(r["dns"], json!({}));
            }
            "0.3.0" | "0.3.1" | "0.4.0" => {
                assert_eq!(r["ips"][0]["version"], "4");
                assert_eq!(r["dns"], json!({}));
            }
            _ => {
                assert!(r["ips"][0].get("version").is_none());
                assert_eq!(r["dns"], json!({}), "1.x prints an empty dns too: {r}");
            }
        }
        let del = PluginCall {
            env: c.env.clone(),
            stdin: c.stdin.clone(),
        }
        .env("CNI_COMMAND", "DEL");
        for _ in 0..2 {
            let run = run_plugin(&bin("host-local"), &del).expect_ok();
            assert!(run.stdout.trim().is_empty(), "DEL prints nothing: {run:#?}");
        }
    }
}

#[test]
fn host_local_gc_and_status_print_nothing() {
    let dir = TempDir::new("proto-hl-gc");
    let mut conf: Value = serde_json::from_str(&host_local_conf("1.1.0", dir.path())).unwrap();
    conf["cni.dev/valid-attachments"] = json!([]);
    for cmd in ["GC", "STATUS"] {
        let c = PluginCall::default()
            .env("CNI_COMMAND", cmd)
            .env("CNI_PATH", &our_cni_path().display().to_string())
            .stdin(conf.to_string());
        let run = run_plugin(&bin("host-local"), &c).expect_ok();
        assert!(run.stdout.trim().is_empty(), "{cmd}: {run:#?}");
    }
}

/// A helper thread that panics while the main thread prints its answer
/// must not add a second document: stdout is exactly one JSON document
/// (the panic's code-999 error, or the answer the panic hook let finish)
/// and the exit status is 1. Two hook points (`CNI_RS_TEST_CRASH_POINT`)
/// take the race every time: `helper-panic-before-write` lets the hook
/// start its error document before the answer is written,
/// `helper-panic-mid-write` panics after half the answer is out. Both the
/// success path (VERSION reply) and the error path (bad stdin) are raced,
/// on both plugins.
#[test]
fn helper_panic_while_answering_gives_one_document() {
    let cases = [
        ("VERSION", String::new(), None),
        ("ADD", "{".to_string(), Some(6)),
    ];
    for plugin in PLUGINS {
        for point in ["helper-panic-before-write", "helper-panic-mid-write"] {
            for (cmd, stdin, answer_code) in &cases {
                for round in 0..10 {
                    let c = call(cmd)
                        .env(cni::test_hooks::CRASH_ENV, point)
                        .stdin(stdin.as_bytes());
                    let run = run_plugin(&bin(plugin), &c);
                    let what = format!("{plugin} {point} {cmd} round {round}");
                    let v = one_document(&run);
                    assert_eq!(run.code, Some(1), "{what}:\n{run:#?}");
                    let code = v["code"].as_u64();
                    let answered = match answer_code {
                        None => v.get("supportedVersions").is_some(),
                        Some(c) => code == Some(*c),
                    };
                    assert!(
                        answered || code == Some(999),
                        "{what}: neither the answer nor the panic error: {v}"
                    );
                    if point == "helper-panic-before-write" {
                        assert_eq!(code, Some(999), "{what}: the hook claimed first: {v}");
                    } else {
                        assert!(answered, "{what}: the answer was claimed first: {v}");
                    }
                }
            }
        }
    }
}
