//! Commands, answers and errors.

use super::*;

#[test]
fn version_ignores_env_and_stdin() {
    let p = TestPlugin::new(Behaviour::Ok);
    // podman: dummy values and an empty container id.
    let mut env = env_for("VERSION");
    env.insert("CNI_NETNS".into(), "dummy".into());
    env.insert("CNI_PATH".into(), "dummy".into());
    env.insert("CNI_IFNAME".into(), "dummy".into());
    env.insert("CNI_CONTAINERID".into(), String::new());
    env.insert("CNI_ARGS".into(), "not a pair".into());
    let out = call_with(&p, &env, &mut Untouchable);
    assert_eq!(out.code, 0);
    assert_eq!(
        out.json(),
        json!({"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})
    );
    let only_cmd: HashMap<String, String> =
        [("CNI_COMMAND".to_string(), "VERSION".to_string())].into();
    assert_eq!(call_with(&p, &only_cmd, &mut Untouchable).code, 0);
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn no_command_prints_about() {
    let p = TestPlugin::new(Behaviour::Ok);
    let out = call_with(&p, &HashMap::new(), &mut Untouchable);
    assert_eq!(out.code, 0);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.starts_with("CNI testplug plugin v"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(
        "CNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
    ));
}

#[test]
fn unknown_command() {
    let p = TestPlugin::new(Behaviour::Ok);
    let out = call(&p, &env_for("add"), &conf("1.0.0"));
    let v = out.err(4);
    assert_eq!(v["msg"], "unknown CNI_COMMAND: add");
}

#[test]
fn cmd_args_are_filled() {
    let p = TestPlugin::new(Behaviour::Ok);
    let mut env = env_for("ADD");
    env.insert("CNI_ARGS".into(), "IgnoreUnknown=1;K8S_POD_NAME=web".into());
    env.insert("CNI_PATH".into(), "/a::/b".into());
    let stdin = br#"{"cniVersion":"1.0.0","name":"testnet","type":"testplug","x":1}"#;
    let out = call(&p, &env, stdin);
    assert_eq!(out.code, 0, "{}", out.stdout);
    let calls = p.calls.borrow();
    let a = &calls[0];
    assert_eq!(a.command, Command::Add);
    assert_eq!(a.container_id, "ctr-1");
    assert_eq!(
        a.netns,
        Some(PathBuf::from("/run/netns/test-does-not-exist"))
    );
    assert_eq!(a.ifname, "eth0");
    assert_eq!(a.args.get("K8S_POD_NAME"), Some("web"));
    assert_eq!(a.path, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
    assert_eq!(a.stdin, stdin.to_vec());
    assert_eq!(a.conf.name, "testnet");
    assert_eq!(a.conf.raw["x"], 1);
}

#[test]
fn add_prints_result_in_config_version() {
    let p = TestPlugin::new(Behaviour::Ok);
    for v in SUPPORTED_VERSIONS {
        let out = call(&p, &env_for("ADD"), &conf(v));
        assert_eq!(out.code, 0, "{v}: {}", out.stdout);
        assert_eq!(out.json(), p.result.to_json_version(v).unwrap(), "{v}");
        assert!(out.stderr.is_empty());
    }
    let out = call(&p, &env_for("ADD"), &conf("0.2.0"));
    assert_eq!(out.json()["ip4"]["ip"], "10.22.0.5/24");
    let out = call(&p, &env_for("ADD"), &conf("0.3.1"));
    assert_eq!(out.json()["ips"][0]["version"], "4");
}

#[test]
fn missing_config_version_means_0_1_0() {
    let p = TestPlugin::new(Behaviour::Ok);
    let out = call(&p, &env_for("ADD"), br#"{"name":"testnet","type":"t"}"#);
    assert_eq!(out.code, 0);
    assert_eq!(out.json()["cniVersion"], "0.1.0");
    assert!(out.json().get("ip4").is_some());
}

#[test]
fn add_unconvertible_result() {
    let mut p = TestPlugin::new(Behaviour::Ok);
    p.result.ips.clear();
    let v = call(&p, &env_for("ADD"), &conf("0.2.0")).err(999);
    assert_eq!(v["msg"], "cannot convert: no valid IP addresses");
    assert_eq!(v["cniVersion"], "0.2.0");
}

#[test]
fn unsupported_version() {
    let p = TestPlugin::new(Behaviour::Ok);
    for cmd in ["ADD", "DEL", "CHECK", "GC", "STATUS"] {
        let v = call(&p, &env_for(cmd), &conf("0.5.0")).err(1);
        assert_eq!(v["msg"], "incompatible CNI versions", "{cmd}");
        assert_eq!(
            v["details"],
            r#"config is "0.5.0", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#
        );
        assert_eq!(v["cniVersion"], "1.1.0");
    }
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn version_gates() {
    let p = TestPlugin::new(Behaviour::Ok);
    for (cmd, v) in [
        ("CHECK", "0.1.0"),
        ("CHECK", "0.3.1"),
        ("GC", "1.0.0"),
        ("GC", "0.4.0"),
        ("STATUS", "1.0.0"),
    ] {
        let e = call(&p, &env_for(cmd), &conf(v)).err(1);
        assert_eq!(e["msg"], format!("config version does not allow {cmd}"));
        assert_eq!(e["cniVersion"], v);
    }
    assert!(p.calls.borrow().is_empty());
    for (cmd, v) in [
        ("CHECK", "0.4.0"),
        ("CHECK", "1.1.0"),
        ("GC", "1.1.0"),
        ("STATUS", "1.1.0"),
    ] {
        let out = call(&p, &env_for(cmd), &conf(v));
        assert_eq!(out.code, 0, "{cmd} {v}: {}", out.stdout);
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn plugin_error_is_passed_through() {
    let e = CniError::new(11, "store busy").with_details("lock held");
    let p = TestPlugin::new(Behaviour::Fail(e));
    let out = call(&p, &env_for("ADD"), &conf("0.4.0"));
    assert_eq!(
        out.err(11),
        json!({"cniVersion":"0.4.0","code":11,"msg":"store busy","details":"lock held"})
    );
    let out = call(&p, &env_for("DEL"), &conf("1.1.0"));
    assert_eq!(out.err(11)["cniVersion"], "1.1.0");
}

#[test]
fn panic_becomes_code_999() {
    let p = TestPlugin::new(Behaviour::Panic);
    let out = call(&p, &env_for("ADD"), &conf("1.0.0"));
    let v = out.err(999);
    assert_eq!(v["msg"], "plugin panicked: boom in ADD");
}

#[test]
fn ten_megabyte_config_works() {
    let p = TestPlugin::new(Behaviour::Ok);
    let pad = "x".repeat(10 * 1024 * 1024);
    let stdin = format!(r#"{{"cniVersion":"1.0.0","name":"testnet","type":"t","pad":"{pad}"}}"#);
    let out = call(&p, &env_for("ADD"), stdin.as_bytes());
    assert_eq!(out.code, 0);
    assert_eq!(p.calls.borrow()[0].stdin.len(), stdin.len());
}

#[test]
fn stdout_write_failure() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("closed"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let p = TestPlugin::new(Behaviour::Ok);
    let env = env_for("ADD");
    let getenv = |k: &str| env.get(k).cloned();
    let mut err = Vec::new();
    let code = dispatch(&p, &getenv, &mut &conf("1.0.0")[..], &mut Broken, &mut err);
    assert_eq!(code, 1);
    assert!(String::from_utf8_lossy(&err).contains("failed to write result"));
}

#[test]
fn error_output_is_one_pretty_document() {
    let p = TestPlugin::new(Behaviour::Ok);
    let out = call(&p, &env_for("ADD"), b"{");
    assert!(out.stdout.starts_with("{\n    \""), "{}", out.stdout);
    assert!(out.stdout.ends_with("}\n"));
    let mut de = serde_json::Deserializer::from_str(&out.stdout).into_iter::<Value>();
    assert!(de.next().unwrap().is_ok());
    assert!(de.next().is_none());
}

#[test]
fn texts() {
    let v = version_text("bridge");
    assert!(v.starts_with(&format!("bridge {} (cni-rs)\n", env!("CARGO_PKG_VERSION"))));
    assert!(v.contains(
        "CNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
    ));
    let h = help_text("host-local");
    for var in [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
        "CNI_RS_LOG",
    ] {
        assert!(h.contains(var), "{var}");
    }
}

#[test]
fn command_names() {
    for c in [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Gc,
        Command::Status,
        Command::Version,
    ] {
        assert_eq!(Command::parse(c.as_str()), Some(c));
        assert_eq!(c.to_string(), c.as_str());
    }
    assert_eq!(Command::parse("add"), None);
}
