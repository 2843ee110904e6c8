//! The small libcni (`cni::runtime`) driven against fake plugins: shell
//! scripts that log their environment and stdin, so every byte the runtime
//! sends can be checked without touching the kernel.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cni::runtime::{
    base64, load_dir, Attachment, CniConfig, NetworkConfigList, RuntimeConf, RuntimeError,
};
use cni_test_support::common::TempDir;
use serde_json::{json, Value};

/// Logs one tab-separated line per call (command, plugin, container id,
/// ifname, args, netns, path, stdin) and answers like a plugin would:
/// ADD prints prevResult plus one interface named after the plugin (or a
/// fresh result for the first plugin); `fail-*` plugins return a CNI error.
const FAKE_PLUGIN: &str = r#"#!/bin/sh
dir=$(dirname "$0")
name=$(basename "$0")
input=$(cat)
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$CNI_COMMAND" "$name" "$CNI_CONTAINERID" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_NETNS" "$CNI_PATH" "$input" >> "$dir/calls.log"
case "$name" in
  fail-*) echo '{"code":7,"msg":"bad config","details":"field x"}'; exit 1 ;;
  status-*) if [ "$CNI_COMMAND" = STATUS ]; then echo '{"code":50,"msg":"no IPs left"}'; exit 1; fi ;;
  mute-*) echo "crashed hard" >&2; exit 2 ;;
esac
if [ "$CNI_COMMAND" = ADD ]; then
  echo "$input" | jq -c --arg n "$name" '(.prevResult // {"cniVersion": .cniVersion, "ips": [{"address": "10.9.0.5/24"}]}) | .interfaces = ((.interfaces // []) + [{"name": $n}])'
fi
if [ "$CNI_COMMAND" = VERSION ]; then
  echo '{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}'
fi
exit 0
"#;

/// A plugin dir with fake plugins, a cache dir and the call log.
struct Fake {
    dir: TempDir,
}

#[derive(Debug)]
struct Call {
    command: String,
    plugin: String,
    container_id: String,
    ifname: String,
    args: String,
    netns: String,
    path: String,
    stdin: Value,
}

impl Fake {
    fn new(plugins: &[&str]) -> Fake {
        let dir = TempDir::new("runtime");
        std::fs::create_dir_all(dir.path().join("bin")).expect("bin dir");
        for p in plugins {
            let path = dir.path().join("bin").join(p);
            std::fs::write(&path, FAKE_PLUGIN).expect("write fake plugin");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        Fake { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn runtime(&self) -> CniConfig {
        CniConfig::new(vec![self.bin()], self.cache())
    }

    fn calls(&self) -> Vec<Call> {
        let text = std::fs::read_to_string(self.bin().join("calls.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let f: Vec<&str> = l.splitn(8, '\t').collect();
                Call {
                    command: f[0].into(),
                    plugin: f[1].into(),
                    container_id: f[2].into(),
                    ifname: f[3].into(),
                    args: f[4].into(),
                    netns: f[5].into(),
                    path: f[6].into(),
                    stdin: serde_json::from_str(f[7]).unwrap_or(Value::Null),
                }
            })
            .collect()
    }

    fn clear_calls(&self) {
        let _ = std::fs::remove_file(self.bin().join("calls.log"));
    }
}

fn list(version: &str, plugins: Value) -> NetworkConfigList {
    let bytes =
        serde_json::to_vec(&json!({"cniVersion": version, "name": "testnet", "plugins": plugins}))
            .expect("json");
    NetworkConfigList::from_bytes(&bytes).expect("valid list")
}

fn rt(id: &str) -> RuntimeConf {
    RuntimeConf {
        container_id: id.into(),
        netns: "/proc/1/ns/net".into(),
        ifname: "eth0".into(),
        args: RuntimeConf::kubernetes_args("default", "web", id, "uid-1"),
        capability_args: json!({"portMappings": [{"hostPort": 8080, "containerPort": 80}], "mac": "aa:bb:cc:dd:ee:ff"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

/// A result as JSON in its own version (what the runtime caches and chains).
fn json_of(result: &cni::spec::CniResult) -> Value {
    result
        .to_json_version(&result.cni_version)
        .expect("result converts")
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write conf");
}

#[test]
fn conflist_loading_takes_first_valid_file_in_lexical_order() {
    let d = TempDir::new("confdir");
    write(d.path(), "05-broken.conflist", "{not json");
    write(
        d.path(),
        "10-noplugins.conflist",
        r#"{"cniVersion":"1.0.0","name":"x","plugins":[]}"#,
    );
    write(
        d.path(),
        "15-ignored.txt",
        r#"{"cniVersion":"1.0.0","name":"txt","type":"bridge"}"#,
    );
    write(
        d.path(),
        "30-second.conflist",
        r#"{"cniVersion":"1.0.0","name":"second","plugins":[{"type":"bridge"}]}"#,
    );
    write(
        d.path(),
        "20-single.conf",
        r#"{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"br9"}"#,
    );
    let l = load_dir(d.path()).expect("a valid config");
    assert_eq!(l.name, "single");
    assert_eq!(l.cni_version, "0.4.0");
    assert_eq!(l.plugins.len(), 1);
    assert_eq!(l.plugins[0]["bridge"], "br9");
    assert_eq!(
        l.source.as_deref(),
        Some(d.path().join("20-single.conf").as_path())
    );
    // The converted .conf is itself a valid conflist (what gets cached).
    let again = NetworkConfigList::from_bytes(&l.bytes).expect("converted list parses");
    assert_eq!(again.name, "single");
}

#[test]
fn cni_versions_list_picks_the_highest_known() {
    let l = NetworkConfigList::from_bytes(
        br#"{"cniVersion":"0.4.0","cniVersions":["1.0.0","1.1.0","7.0.0"],"name":"n","plugins":[{"type":"x"}],"disableCheck":"true"}"#,
    )
    .expect("valid");
    assert_eq!(l.cni_version, "1.1.0");
    assert!(l.disable_check, "string booleans are accepted like libcni");
}

#[test]
fn no_valid_config_explains_every_file() {
    let d = TempDir::new("badconf");
    write(
        d.path(),
        "10-a.conflist",
        r#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}"#,
    );
    write(
        d.path(),
        "20-b.conf",
        r#"{"cniVersion":"1.0.0","name":"b"}"#,
    );
    write(
        d.path(),
        "30-c.json",
        r#"{"cniVersion":"9.9.9","name":"c","type":"bridge"}"#,
    );
    let err = load_dir(d.path()).expect_err("nothing valid");
    let text = err.to_string();
    assert!(
        matches!(err, RuntimeError::NoConfig { ref rejected, .. } if rejected.len() == 3),
        "{text}"
    );
    assert!(
        text.contains("10-a.conflist: missing network \"name\""),
        "{text}"
    );
    assert!(
        text.contains("20-b.conf: plugin 0 has no \"type\""),
        "{text}"
    );
    assert!(text.contains("unsupported cniVersion \"9.9.9\""), "{text}");

    let empty = TempDir::new("emptyconf");
    let text = load_dir(empty.path()).expect_err("empty").to_string();
    assert!(
        text.contains("no *.conf, *.conflist or *.json files"),
        "{text}"
    );
    let missing = load_dir(&empty.path().join("nope"))
        .expect_err("missing dir")
        .to_string();
    assert!(missing.contains("read config dir"), "{missing}");
}

#[test]
fn add_injects_name_version_runtime_config_and_chains_prev_result() {
    let f = Fake::new(&["plug-a", "plug-b"]);
    let l = list(
        "1.0.0",
        json!([
            {"type": "plug-a", "name": "ignored", "capabilities": {"mac": true, "ips": true}},
            {"type": "plug-b", "capabilities": {"portMappings": true}, "custom": {"x": 1}}
        ]),
    );
    let result = f.runtime().add_network_list(&l, &rt("c1")).expect("ADD");
    assert_eq!(
        json_of(&result)["interfaces"],
        json!([{"name": "plug-a"}, {"name": "plug-b"}])
    );
    let calls = f.calls();
    assert_eq!(calls.len(), 2);
    let (a, b) = (&calls[0], &calls[1]);
    assert_eq!(
        (a.command.as_str(), a.plugin.as_str(), b.plugin.as_str()),
        ("ADD", "plug-a", "plug-b")
    );
    assert_eq!(a.container_id, "c1");
    assert_eq!(a.ifname, "eth0");
    assert_eq!(a.netns, "/proc/1/ns/net");
    assert_eq!(a.path, f.bin().display().to_string());
    assert_eq!(
        a.args,
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=uid-1"
    );
    assert_eq!(a.stdin["name"], "testnet");
    assert_eq!(a.stdin["cniVersion"], "1.0.0");
    assert_eq!(
        a.stdin["runtimeConfig"],
        json!({"mac": "aa:bb:cc:dd:ee:ff"})
    );
    assert!(
        a.stdin.get("prevResult").is_none(),
        "first plugin gets no prevResult"
    );
    assert_eq!(
        b.stdin["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    );
    assert_eq!(
        b.stdin["custom"],
        json!({"x": 1}),
        "unknown keys pass through"
    );
    assert_eq!(
        b.stdin["prevResult"]["interfaces"],
        json!([{"name": "plug-a"}])
    );
}

#[test]
fn cache_entry_has_libcni_path_modes_and_format() {
    use std::os::unix::fs::MetadataExt;
    let f = Fake::new(&["plug-a"]);
    let l = list("1.0.0", json!([{"type": "plug-a"}]));
    let r = rt("c1");
    let result = f.runtime().add_network_list(&l, &r).expect("ADD");
    let path = f.cache().join("results").join("testnet-c1-eth0");
    let meta = std::fs::metadata(&path).expect("cache file");
    assert_eq!(meta.mode() & 0o777, 0o600);
    let dir_meta = std::fs::metadata(f.cache().join("results")).expect("cache dir");
    assert_eq!(dir_meta.mode() & 0o777, 0o700);
    let text = std::fs::read_to_string(&path).expect("read cache");
    let keys: Vec<usize> = [
        "\"kind\"",
        "\"containerId\"",
        "\"config\"",
        "\"ifName\"",
        "\"networkName\"",
        "\"netns\"",
        "\"cniArgs\"",
        "\"capabilityArgs\"",
        "\"result\"",
    ]
    .iter()
    .map(|k| {
        text.find(k)
            .unwrap_or_else(|| panic!("{k} missing in {text}"))
    })
    .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "libcni field order: {text}"
    );
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["kind"], "cniCacheV1");
    assert_eq!(v["containerId"], "c1");
    assert_eq!(v["ifName"], "eth0");
    assert_eq!(v["networkName"], "testnet");
    assert_eq!(v["netns"], "/proc/1/ns/net");
    assert_eq!(v["cniArgs"][0], json!(["IgnoreUnknown", "1"]));
    assert_eq!(v["cniArgs"][3], json!(["K8S_POD_INFRA_CONTAINER_ID", "c1"]));
    assert_eq!(v["capabilityArgs"]["mac"], "aa:bb:cc:dd:ee:ff");
    assert_eq!(v["result"], json_of(&result));
    let config = base64::decode(v["config"].as_str().expect("config string")).expect("base64");
    assert_eq!(config, l.bytes);
}

#[test]
fn del_runs_in_reverse_with_cached_result_and_is_repeatable() {
    let f = Fake::new(&["plug-a", "plug-b", "plug-c"]);
    let l = list(
        "1.0.0",
        json!([{"type": "plug-a"}, {"type": "plug-b"}, {"type": "plug-c"}]),
    );
    let runtime = f.runtime();
    let result = runtime.add_network_list(&l, &rt("c1")).expect("ADD");
    f.clear_calls();
    runtime.del_network_list(&l, &rt("c1")).expect("DEL");
    let calls = f.calls();
    let order: Vec<&str> = calls.iter().map(|c| c.plugin.as_str()).collect();
    assert_eq!(order, ["plug-c", "plug-b", "plug-a"]);
    for c in &calls {
        assert_eq!(c.command, "DEL");
        assert_eq!(
            c.stdin["prevResult"],
            json_of(&result),
            "every DEL gets the final ADD result"
        );
    }
    assert!(
        !f.cache().join("results/testnet-c1-eth0").exists(),
        "cache entry removed"
    );
    // A second DEL (no cache any more) succeeds and sends no prevResult.
    f.clear_calls();
    runtime.del_network_list(&l, &rt("c1")).expect("second DEL");
    assert!(f
        .calls()
        .iter()
        .all(|c| c.stdin.get("prevResult").is_none()));
}

#[test]
fn check_uses_cached_result_and_respects_version_and_disable_check() {
    let f = Fake::new(&["plug-a"]);
    let runtime = f.runtime();
    let l = list("1.0.0", json!([{"type": "plug-a"}]));
    let result = runtime.add_network_list(&l, &rt("c1")).expect("ADD");
    f.clear_calls();
    runtime.check_network_list(&l, &rt("c1")).expect("CHECK");
    let calls = f.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].command, "CHECK");
    assert_eq!(calls[0].stdin["prevResult"], json_of(&result));

    let old = list("0.3.1", json!([{"type": "plug-a"}]));
    let err = runtime
        .check_network_list(&old, &rt("c1"))
        .expect_err("0.3.1 has no CHECK");
    assert!(
        err.to_string()
            .contains("does not support the CHECK command"),
        "{err}"
    );

    let bytes = br#"{"cniVersion":"1.0.0","name":"testnet","disableCheck":true,"plugins":[{"type":"plug-a"}]}"#;
    let disabled = NetworkConfigList::from_bytes(bytes).expect("list");
    f.clear_calls();
    runtime
        .check_network_list(&disabled, &rt("c1"))
        .expect("disabled CHECK");
    assert!(f.calls().is_empty());
}

#[test]
fn gc_deletes_stale_attachments_then_sends_both_keys() {
    let f = Fake::new(&["plug-a", "plug-b"]);
    let runtime = f.runtime();
    let l = list("1.1.0", json!([{"type": "plug-a"}, {"type": "plug-b"}]));
    runtime.add_network_list(&l, &rt("keep")).expect("ADD keep");
    runtime
        .add_network_list(&l, &rt("stale"))
        .expect("ADD stale");
    f.clear_calls();
    let valid = [Attachment {
        container_id: "keep".into(),
        ifname: "eth0".into(),
    }];
    let report = runtime.gc_network_list(&l, Some(&valid)).expect("GC");
    assert_eq!(
        report.stale_deleted,
        vec![Attachment {
            container_id: "stale".into(),
            ifname: "eth0".into()
        }]
    );
    assert_eq!(report.plugins_collected, 2);
    let calls = f.calls();
    let summary: Vec<(String, String, String)> = calls
        .iter()
        .map(|c| (c.command.clone(), c.plugin.clone(), c.container_id.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("DEL".into(), "plug-b".into(), "stale".into()),
            ("DEL".into(), "plug-a".into(), "stale".into()),
            ("GC".into(), "plug-a".into(), String::new()),
            ("GC".into(), "plug-b".into(), String::new()),
        ]
    );
    // The stale DEL reuses the cached netns and CNI_ARGS.
    assert_eq!(calls[0].netns, "/proc/1/ns/net");
    assert!(calls[0].args.contains("K8S_POD_INFRA_CONTAINER_ID=stale"));
    let gc = &calls[2].stdin;
    let want = json!([{"containerID": "keep", "ifname": "eth0"}]);
    assert_eq!(gc["cni.dev/valid-attachments"], want);
    assert_eq!(gc["cni.dev/attachments"], want);
    assert_eq!(gc["name"], "testnet");
    assert_eq!(gc["cniVersion"], "1.1.0");
    assert!(f.cache().join("results/testnet-keep-eth0").exists());
    assert!(!f.cache().join("results/testnet-stale-eth0").exists());

    // Before 1.1.0 only the stale DELs happen; with an empty list, all go.
    let old = list("1.0.0", json!([{"type": "plug-a"}, {"type": "plug-b"}]));
    f.clear_calls();
    let report = runtime.gc_network_list(&old, Some(&[])).expect("GC 1.0.0");
    assert_eq!(report.stale_deleted.len(), 1);
    assert_eq!(report.plugins_collected, 0);
    assert!(f.calls().iter().all(|c| c.command == "DEL"));
}

#[test]
fn gc_is_skipped_when_disabled() {
    let f = Fake::new(&["plug-a"]);
    let bytes = br#"{"cniVersion":"1.1.0","name":"testnet","disableGC":true,"plugins":[{"type":"plug-a"}]}"#;
    let l = NetworkConfigList::from_bytes(bytes).expect("list");
    f.runtime().add_network_list(&l, &rt("c1")).expect("ADD");
    f.clear_calls();
    let report = f.runtime().gc_network_list(&l, Some(&[])).expect("GC");
    assert_eq!(report.plugins_collected, 0);
    assert!(f.calls().is_empty());
}

#[test]
fn status_sends_only_command_and_path_and_stops_at_first_error() {
    let f = Fake::new(&["plug-a", "status-b", "plug-c"]);
    let l = list(
        "1.1.0",
        json!([{"type": "plug-a"}, {"type": "status-b"}, {"type": "plug-c"}]),
    );
    let err = f
        .runtime()
        .status_network_list(&l)
        .expect_err("status-b reports 50");
    assert_eq!(err.plugin_code(), Some(50), "{err}");
    let calls = f.calls();
    assert_eq!(calls.len(), 2, "stops after the failing plugin");
    assert_eq!(calls[0].command, "STATUS");
    assert_eq!(calls[0].container_id, "");
    assert_eq!(calls[0].stdin["name"], "testnet");
    // Older configs: STATUS is a no-op.
    f.clear_calls();
    f.runtime()
        .status_network_list(&list("1.0.0", json!([{"type": "status-b"}])))
        .expect("1.0.0 STATUS no-op");
    assert!(f.calls().is_empty());
}

#[test]
fn plugin_errors_are_typed_and_leave_no_cache() {
    let f = Fake::new(&["plug-a", "fail-b", "mute-c"]);
    let runtime = f.runtime();
    let err = runtime
        .add_network_list(
            &list("1.0.0", json!([{"type": "plug-a"}, {"type": "fail-b"}])),
            &rt("c1"),
        )
        .expect_err("fail-b fails");
    match &err {
        RuntimeError::Plugin {
            plugin,
            command,
            code,
            msg,
            details,
        } => {
            assert_eq!(
                (plugin.as_str(), command.as_str(), *code),
                ("fail-b", "ADD", 7)
            );
            assert_eq!((msg.as_str(), details.as_str()), ("bad config", "field x"));
        }
        other => panic!("expected a plugin error, got {other:?}"),
    }
    assert!(!f.cache().join("results/testnet-c1-eth0").exists());

    let err = runtime
        .add_network_list(&list("1.0.0", json!([{"type": "mute-c"}])), &rt("c2"))
        .expect_err("mute-c crashes");
    assert!(
        matches!(&err, RuntimeError::PluginFailed { stderr, .. } if stderr.contains("crashed hard")),
        "{err:?}"
    );
}

#[test]
fn missing_plugin_is_reported_with_the_search_path() {
    let f = Fake::new(&["plug-a"]);
    let err = f
        .runtime()
        .add_network_list(
            &list("1.0.0", json!([{"type": "plug-a"}, {"type": "nosuch"}])),
            &rt("c1"),
        )
        .expect_err("nosuch is missing");
    assert!(
        matches!(&err, RuntimeError::PluginNotFound { plugin, .. } if plugin == "nosuch"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&f.bin().display().to_string()),
        "{err}"
    );
    assert!(!f.cache().join("results").join("testnet-c1-eth0").exists());
}

#[test]
fn invalid_runtime_arguments_are_rejected_before_exec() {
    let f = Fake::new(&["plug-a"]);
    let l = list("1.0.0", json!([{"type": "plug-a"}]));
    for (id, ifname) in [
        ("bad id", "eth0"),
        ("c1", ""),
        ("c1", "a/b"),
        ("c1", "0123456789abcdef"),
    ] {
        let mut r = rt(id);
        r.ifname = ifname.into();
        let err = f.runtime().add_network_list(&l, &r).expect_err("invalid");
        assert!(
            matches!(err, RuntimeError::InvalidArgument(_)),
            "{id:?}/{ifname:?}: {err:?}"
        );
    }
    assert!(f.calls().is_empty());
}

#[test]
fn version_probe_validates_the_list() {
    let f = Fake::new(&["plug-a"]);
    let runtime = f.runtime();
    assert_eq!(
        runtime.plugin_versions("plug-a").expect("VERSION"),
        ["0.4.0", "1.0.0", "1.1.0"]
    );
    runtime
        .validate_network_list(&list("1.1.0", json!([{"type": "plug-a"}])))
        .expect("supported");
    let err = runtime
        .validate_network_list(&list("0.3.1", json!([{"type": "plug-a"}])))
        .expect_err("0.3.1 unsupported by the fake");
    assert!(
        err.to_string()
            .contains("does not support config version \"0.3.1\""),
        "{err}"
    );
}

#[test]
fn cached_result_is_converted_to_the_config_version() {
    let f = Fake::new(&["plug-a"]);
    let runtime = f.runtime();
    runtime
        .add_network_list(&list("1.1.0", json!([{"type": "plug-a"}])), &rt("c1"))
        .expect("ADD 1.1.0");
    f.clear_calls();
    // The config was changed to 0.4.0 while the container ran (libcni converts).
    runtime
        .del_network_list(&list("0.4.0", json!([{"type": "plug-a"}])), &rt("c1"))
        .expect("DEL 0.4.0");
    let prev = &f.calls()[0].stdin["prevResult"];
    assert_eq!(prev["cniVersion"], "0.4.0");
    assert_eq!(
        prev["ips"][0]["version"], "4",
        "0.4.0 results carry ips[].version"
    );
}
