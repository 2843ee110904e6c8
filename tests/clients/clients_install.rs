//! `scripts/install.sh` and `deploy/install-cni.sh` (the DaemonSet's init
//! container) installing into a `DESTDIR` temp dir: files, modes, no silent
//! overwrite of an operator's files, `--force`, podCIDR rendering, and that
//! the installed binaries + rendered conflist really set up a pod.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cni_test_support::clients::*;
use cni_test_support::common::*;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A conflist template like conf/10-bridge.conflist, made by the test so the
/// mechanics are tested whatever the shipped example holds.
fn template(dir: &Path) -> PathBuf {
    let path = dir.join("20-test.conflist");
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "installtest",
        "plugins": [
            {"type": "bridge", "bridge": "cni-inst0", "isGateway": true, "ipMasq": true,
             "ipam": {"type": "host-local", "subnet": "10.99.0.0/24",
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&conf).expect("json")).expect("write template");
    path
}

/// Runs a script with a clean env plus `env`; returns its output.
fn script(path: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join(path))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run script")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn no_temp_files(dir: &Path) {
    let stray: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        stray.is_empty(),
        "temp files left in {}: {stray:?}",
        dir.display()
    );
}

#[test]
fn install_sh_installs_into_destdir_and_never_overwrites_without_force() {
    let work = TempDir::new("install");
    let dest = work.path().join("root");
    let tpl = template(work.path());
    let bins = plugins_under_test();
    let env = [
        ("DESTDIR", dest.as_path()),
        ("CNI_RS_BUILD_DIR", bins.as_path()),
    ];
    let args = ["--no-build", "--conflist", tpl.to_str().expect("utf-8")];

    let first = script("scripts/install.sh", &args, &env);
    assert!(first.status.success(), "{}", text(&first));
    let bin_dir = dest.join("opt/cni/bin");
    let conf_dir = dest.join("etc/cni/net.d");
    for p in ["bridge", "host-local"] {
        let installed = bin_dir.join(p);
        assert_eq!(
            std::fs::read(&installed).expect("installed binary"),
            std::fs::read(bins.join(p)).expect("source binary"),
            "{p} is a copy of the build"
        );
        assert_eq!(mode(&installed), 0o755, "{p} mode");
    }
    let conf = conf_dir.join("20-test.conflist");
    assert_eq!(
        std::fs::read(&conf).expect("conflist"),
        std::fs::read(&tpl).expect("tpl")
    );
    assert_eq!(mode(&conf), 0o644);
    no_temp_files(&bin_dir);
    no_temp_files(&conf_dir);

    // Identical files: nothing to do, exit 0.
    let again = script("scripts/install.sh", &args, &env);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("unchanged"),
        "{}",
        text(&again)
    );

    // An operator's edits are left alone (exit 3) unless --force.
    std::fs::write(&conf, b"{\"operator\": true}").expect("edit conflist");
    std::fs::write(bin_dir.join("bridge"), b"#!/bin/sh\n").expect("replace bridge");
    let refused = script("scripts/install.sh", &args, &env);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert_eq!(
        std::fs::read(&conf).expect("conflist"),
        b"{\"operator\": true}"
    );
    assert_eq!(
        std::fs::read(bin_dir.join("bridge")).expect("bridge"),
        b"#!/bin/sh\n"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--force"),
        "{}",
        text(&refused)
    );

    let mut forced_args = args.to_vec();
    forced_args.push("--force");
    let forced = script("scripts/install.sh", &forced_args, &env);
    assert!(forced.status.success(), "{}", text(&forced));
    assert_eq!(
        std::fs::read(&conf).expect("conflist"),
        std::fs::read(&tpl).expect("tpl")
    );
    assert_eq!(
        std::fs::read(bin_dir.join("bridge")).expect("bridge"),
        std::fs::read(bins.join("bridge")).expect("source")
    );
    no_temp_files(&bin_dir);

    // PREFIX / CNI_CONF_DIR move the destinations; --no-conf skips the conflist.
    let other = work.path().join("other");
    let prefix = Path::new("/usr/libexec/cni");
    let out = script(
        "scripts/install.sh",
        &["--no-build", "--no-conf"],
        &[
            ("DESTDIR", other.as_path()),
            ("CNI_RS_BUILD_DIR", bins.as_path()),
            ("PREFIX", prefix),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(other.join("usr/libexec/cni/bridge").is_file());
    assert!(!other.join("etc").exists(), "--no-conf wrote a conflist");
}

/// A fake `target` dir for `CARGO_TARGET_DIR`: the musl release dir gets
/// tiny static-looking scripts, the glibc one copies of the real (dynamic)
/// test build, so the installed content shows which one was taken.
fn fake_target(root: &Path, musl: bool, glibc: bool) -> (PathBuf, PathBuf) {
    let musl_dir = root.join(format!(
        "{}-unknown-linux-musl/release",
        std::env::consts::ARCH
    ));
    let glibc_dir = root.join("release");
    let bins = plugins_under_test();
    for p in ["bridge", "host-local", "loopback", "portmap"] {
        if musl {
            std::fs::create_dir_all(&musl_dir).expect("mkdir musl");
            let f = musl_dir.join(p);
            std::fs::write(&f, format!("#!/bin/sh\necho musl {p}\n")).expect("write");
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        if glibc {
            std::fs::create_dir_all(&glibc_dir).expect("mkdir glibc");
            std::fs::copy(bins.join(p), glibc_dir.join(p)).expect("copy");
        }
    }
    (musl_dir, glibc_dir)
}

/// What install.sh says about a binary's linkage (the test binaries are
/// dynamic in the glibc pass of scripts/test.sh, static in the musl pass).
fn linkage_of(bin: &Path) -> &'static str {
    let bytes = std::fs::read(bin).expect("read binary");
    if bytes.windows(8).any(|w| w == b"ld-linux") {
        "dynamic"
    } else {
        "static"
    }
}

/// issue 16: the static musl build is installed by default when it is
/// there, the glibc build otherwise or on `--glibc`; the output says which.
#[test]
fn install_sh_prefers_the_static_musl_build_and_says_which() {
    let work = TempDir::new("install-flavor");
    let run = |target: &Path, dest: &str, extra: &[&str]| {
        let mut args = vec!["--no-build", "--no-conf"];
        args.extend_from_slice(extra);
        let dest = work.path().join(dest);
        let out = script(
            "scripts/install.sh",
            &args,
            &[("DESTDIR", dest.as_path()), ("CARGO_TARGET_DIR", target)],
        );
        (out, dest.join("opt/cni/bin/bridge"))
    };
    let both = work.path().join("both");
    let (musl_dir, glibc_dir) = fake_target(&both, true, true);

    let (out, installed) = run(&both, "auto", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(musl_dir.join("bridge")).unwrap()
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("the static musl build, static"),
        "{}",
        text(&out)
    );

    let (out, installed) = run(&both, "forced-glibc", &["--glibc"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(glibc_dir.join("bridge")).unwrap()
    );
    let said = String::from_utf8_lossy(&out.stdout);
    let linkage = linkage_of(&glibc_dir.join("bridge"));
    assert!(
        said.contains(&format!("the glibc build, {linkage}")),
        "{}",
        text(&out)
    );

    let only_glibc = work.path().join("glibc-only");
    let (_, glibc_dir) = fake_target(&only_glibc, false, true);
    let (out, installed) = run(&only_glibc, "fallback", &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(glibc_dir.join("bridge")).unwrap()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the glibc build"),
        "{}",
        text(&out)
    );

    let (out, installed) = run(&only_glibc, "musl-missing", &["--musl"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        !installed.exists(),
        "--musl installed something without a musl build"
    );

    // An explicit CNI_RS_BUILD_DIR wins and is named as such.
    let dest = work.path().join("explicit");
    let out = script(
        "scripts/install.sh",
        &["--no-build", "--no-conf"],
        &[
            ("DESTDIR", dest.as_path()),
            ("CARGO_TARGET_DIR", both.as_path()),
            ("CNI_RS_BUILD_DIR", glibc_dir.as_path()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let want = format!(
        "CNI_RS_BUILD_DIR, {}",
        linkage_of(&glibc_dir.join("bridge"))
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&want),
        "{}",
        text(&out)
    );
}

#[test]
fn install_sh_rejects_bad_usage() {
    let work = TempDir::new("install-bad");
    let empty = TempDir::new("install-empty");
    let dest = work.path().join("root");
    let unknown = script(
        "scripts/install.sh",
        &["--bogus"],
        &[("DESTDIR", dest.as_path())],
    );
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    let no_bins = script(
        "scripts/install.sh",
        &["--no-build"],
        &[
            ("DESTDIR", dest.as_path()),
            ("CNI_RS_BUILD_DIR", empty.path()),
        ],
    );
    assert_eq!(no_bins.status.code(), Some(2), "{}", text(&no_bins));
    let bins = plugins_under_test();
    let missing_conf = script(
        "scripts/install.sh",
        &["--no-build", "--conflist", "/nonexistent/x.conflist"],
        &[
            ("DESTDIR", dest.as_path()),
            ("CNI_RS_BUILD_DIR", bins.as_path()),
        ],
    );
    assert_eq!(
        missing_conf.status.code(),
        Some(2),
        "{}",
        text(&missing_conf)
    );
    assert!(!dest.exists(), "a failed install wrote files");
}

/// The shipped example conflist (conf/10-bridge.conflist, owned by the
/// harness) is what install.sh installs by default, and it is a conflist
/// chaining bridge with host-local.
#[test]
fn install_sh_installs_the_example_conflist_by_default() {
    let work = TempDir::new("install-default");
    let dest = work.path().join("root");
    let bins = plugins_under_test();
    let out = script(
        "scripts/install.sh",
        &["--no-build"],
        &[
            ("DESTDIR", dest.as_path()),
            ("CNI_RS_BUILD_DIR", bins.as_path()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let installed = dest.join("etc/cni/net.d/10-bridge.conflist");
    let conf: Value =
        serde_json::from_slice(&std::fs::read(&installed).expect("installed conflist"))
            .expect("JSON");
    assert!(
        conf["name"].as_str().is_some_and(|n| !n.is_empty()),
        "{conf}"
    );
    let plugins = conf["plugins"].as_array().expect("plugins");
    assert_eq!(plugins[0]["type"], "bridge", "{conf}");
    assert_eq!(plugins[0]["ipam"]["type"], "host-local", "{conf}");
}

/// `deploy/install-cni.sh` into `dest`, our plugins from `bins`, the
/// conflist from `tpl`, the pod CIDRs from `cidrs` (`NODE_JSON` or
/// `POD_CIDRS` and its value).
fn install_cni(dest: &Path, bins: &Path, tpl: &Path, cidrs: (&str, &Path)) -> Output {
    script(
        "deploy/install-cni.sh",
        &[],
        &[
            ("DESTDIR", dest),
            ("CNI_RS_BUILD_DIR", bins),
            ("CNI_CONF_TEMPLATE", tpl),
            cidrs,
        ],
    )
}

fn rendered(dest: &Path) -> Value {
    let p = dest.join("etc/cni/net.d/20-test.conflist");
    serde_json::from_slice(&std::fs::read(&p).expect("rendered conflist")).expect("JSON")
}

#[test]
fn install_cni_sh_renders_the_nodes_pod_cidrs() {
    let work = TempDir::new("install-cni");
    let tpl = template(work.path());
    let bins = plugins_under_test();
    // Dual stack from a Node object (what the API server returns).
    let node = work.path().join("node.json");
    std::fs::write(
        &node,
        json!({"kind": "Node", "metadata": {"name": "n1"},
               "spec": {"podCIDR": "10.244.7.0/24",
                        "podCIDRs": ["10.244.7.0/24", "fd10:244:7::/64"]}})
        .to_string(),
    )
    .expect("node.json");
    let dest = work.path().join("dual");
    let out = install_cni(&dest, &bins, &tpl, ("NODE_JSON", &node));
    assert!(out.status.success(), "{}", text(&out));
    let conf = rendered(&dest);
    let ipam = &conf["plugins"][0]["ipam"];
    assert_eq!(
        ipam["ranges"],
        json!([[{"subnet": "10.244.7.0/24"}], [{"subnet": "fd10:244:7::/64"}]]),
        "{conf}"
    );
    assert!(
        ipam.get("subnet").is_none(),
        "legacy subnet removed: {conf}"
    );
    assert_eq!(
        ipam["routes"],
        json!([{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]),
        "{conf}"
    );
    assert_eq!(
        conf["plugins"][1]["type"], "portmap",
        "other plugins untouched: {conf}"
    );
    assert!(dest.join("opt/cni/bin/bridge").is_file());

    // Single stack, old clusters: only spec.podCIDR; and POD_CIDRS overrides.
    std::fs::write(
        &node,
        json!({"spec": {"podCIDR": "10.244.8.0/24"}}).to_string(),
    )
    .expect("node");
    let dest4 = work.path().join("v4");
    let out = install_cni(&dest4, &bins, &tpl, ("NODE_JSON", &node));
    assert!(out.status.success(), "{}", text(&out));
    let conf = rendered(&dest4);
    assert_eq!(
        conf["plugins"][0]["ipam"]["ranges"],
        json!([[{"subnet": "10.244.8.0/24"}]])
    );
    assert_eq!(
        conf["plugins"][0]["ipam"]["routes"],
        json!([{"dst": "0.0.0.0/0"}])
    );

    // A node without a podCIDR: clear error, nothing installed.
    std::fs::write(&node, json!({"spec": {}}).to_string()).expect("node");
    let none = work.path().join("none");
    let out = install_cni(&none, &bins, &tpl, ("NODE_JSON", &node));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("podCIDR"),
        "{}",
        text(&out)
    );
    assert!(!none.exists(), "installed despite the error");
}

/// End to end: the binaries and the conflist rendered for this node, as
/// installed, give a pod an address from the node's podCIDR.
#[test]
fn installed_plugins_and_rendered_conflist_set_up_a_pod() {
    require_root!();
    let work = TempDir::new("install-e2e");
    let tpl = template(work.path());
    let dest = work.path().join("root");
    let bins = plugins_under_test();
    report(&format!("plugins: {}", describe_plugins(&bins)));
    let pod_cidrs = PathBuf::from("10.244.9.0/24");
    let out = install_cni(&dest, &bins, &tpl, ("POD_CIDRS", &pod_cidrs));
    assert!(out.status.success(), "{}", text(&out));
    let conf = rendered(&dest);
    let data = TempDir::new("install-e2e-data");
    let mut plugin = conf["plugins"][0].clone();
    plugin["cniVersion"] = conf["cniVersion"].clone();
    plugin["name"] = conf["name"].clone();
    plugin["ipam"]["dataDir"] = json!(data.path());

    let bin_dir = dest.join("opt/cni/bin");
    let _node = NodeNs::enter();
    let pod = PodNs::new();
    let pod_path = pod.path.display().to_string();
    let add =
        PluginCall::new("ADD", "inst1", &pod_path, "eth0", &bin_dir).stdin(plugin.to_string());
    let result = run_plugin(&bin_dir.join("bridge"), &add).expect_ok().json();
    let addr = result["ips"][0]["address"].as_str().expect("address");
    assert!(
        addr.starts_with("10.244.9."),
        "address from the node's podCIDR: {result}"
    );
    let del =
        PluginCall::new("DEL", "inst1", &pod_path, "eth0", &bin_dir).stdin(plugin.to_string());
    run_plugin(&bin_dir.join("bridge"), &del).expect_ok();
    assert_eq!(
        leases(&data.path().join("installtest")),
        Vec::<String>::new()
    );
}
