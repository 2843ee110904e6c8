//! Validation of the environment, stdin, netns and attachments.

use super::*;

#[test]
fn missing_env_per_verb() {
    let p = TestPlugin::new(Behaviour::Ok);
    let cases: [(&str, &[&str], &str); 6] = [
        ("ADD", &["CNI_NETNS", "CNI_PATH"], "[CNI_NETNS,CNI_PATH]"),
        ("ADD", &["CNI_CONTAINERID"], "[CNI_CONTAINERID]"),
        ("CHECK", &["CNI_IFNAME"], "[CNI_IFNAME]"),
        (
            "DEL",
            &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            "[CNI_CONTAINERID,CNI_IFNAME,CNI_PATH]",
        ),
        ("GC", &["CNI_PATH"], "[CNI_PATH]"),
        ("STATUS", &["CNI_PATH"], "[CNI_PATH]"),
    ];
    for (cmd, remove, named) in cases {
        let mut env = env_for(cmd);
        for k in remove {
            env.remove(*k);
        }
        let out = call_with(&p, &env, &mut Untouchable);
        let v = out.err(4);
        assert_eq!(
            v["msg"],
            format!("required env variables {named} missing"),
            "{cmd}"
        );
    }
    // Empty counts as missing.
    let mut env = env_for("ADD");
    env.insert("CNI_IFNAME".into(), String::new());
    assert_eq!(
        call(&p, &env, &conf("1.0.0")).err(4)["msg"],
        "required env variables [CNI_IFNAME] missing"
    );
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn optional_env() {
    let p = TestPlugin::new(Behaviour::Ok);
    // DEL without netns.
    let mut env = env_for("DEL");
    env.remove("CNI_NETNS");
    assert_eq!(call(&p, &env, &conf("1.0.0")).code, 0);
    // GC and STATUS need only CNI_PATH.
    let env: HashMap<String, String> = [
        ("CNI_COMMAND".to_string(), "GC".to_string()),
        ("CNI_PATH".to_string(), "/opt/cni/bin".to_string()),
    ]
    .into();
    assert_eq!(call(&p, &env, &conf("1.1.0")).code, 0);
    let mut env = env;
    env.insert("CNI_COMMAND".into(), "STATUS".into());
    let out = call(&p, &env, &conf("1.1.0"));
    assert_eq!(out.code, 0);
    assert!(out.stdout.is_empty());
    let calls = p.calls.borrow();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].netns, None);
    assert_eq!(calls[1].command, Command::Gc);
    assert_eq!(calls[1].container_id, "");
    assert_eq!(calls[2].command, Command::Status);
}

#[test]
fn bad_json_and_names() {
    let p = TestPlugin::new(Behaviour::Ok);
    for stdin in [
        &b""[..],
        b"{",
        b"[1]",
        b"null",
        b"{\"name\":1}",
        b"{\"name\":\"n\"}garbage",
    ] {
        call(&p, &env_for("ADD"), stdin).err(6);
    }
    for stdin in [
        &br#"{"cniVersion":"1.0.0"}"#[..],
        br#"{"name":"../x"}"#,
        br#"{"name":"a/b"}"#,
    ] {
        call(&p, &env_for("DEL"), stdin).err(7);
    }
    assert!(p.calls.borrow().is_empty());
}

#[test]
fn container_id_validation() {
    let p = TestPlugin::new(Behaviour::Ok);
    for id in ["../x", "a/b", "-abc", "a b", ".", "x;y"] {
        let mut env = env_for("ADD");
        env.insert("CNI_CONTAINERID".into(), id.into());
        let v = call(&p, &env, &conf("1.0.0")).err(4);
        assert_eq!(v["msg"], "invalid characters in containerID", "{id}");
        assert_eq!(v["details"], id);
    }
    let mut env = env_for("DEL");
    env.insert("CNI_CONTAINERID".into(), "a".repeat(64) + "_x.y-z");
    assert_eq!(call(&p, &env, &conf("1.0.0")).code, 0);
    assert_eq!(validate_container_id("").unwrap_err().code(), 3);
}

#[test]
fn ifname_validation() {
    let p = TestPlugin::new(Behaviour::Ok);
    for name in [
        "0123456789abcdef",
        ".",
        "..",
        "a/b",
        "a:b",
        "a b",
        "a\tb",
        "ab\u{a0}",
    ] {
        let mut env = env_for("CHECK");
        env.insert("CNI_IFNAME".into(), name.into());
        call(&p, &env, &conf("1.0.0")).err(4);
    }
    validate_ifname("0123456789abcde").unwrap();
    assert_eq!(
        validate_ifname("0123456789abcdef").unwrap_err().msg(),
        "interface name is too long"
    );
    assert_eq!(validate_ifname("").unwrap_err().code(), 4);
    // 15 bytes, but multi-byte: the kernel counts bytes.
    assert!(validate_ifname("ééééééééé").is_err());
}

#[test]
fn stdin_failures() {
    let p = TestPlugin::new(Behaviour::Ok);
    let v = call_with(&p, &env_for("ADD"), &mut FailingReader).err(5);
    assert!(v["msg"]
        .as_str()
        .unwrap()
        .contains("error reading from stdin"));
    let mut huge = std::io::repeat(b' ').take(MAX_STDIN + 10);
    let v = call_with(&p, &env_for("ADD"), &mut huge).err(5);
    assert!(v["msg"].as_str().unwrap().contains("exceeds"), "{v}");
}

#[test]
fn bad_cni_args() {
    let p = TestPlugin::new(Behaviour::Ok);
    let mut env = env_for("ADD");
    env.insert("CNI_ARGS".into(), "a=b;".into());
    let v = call(&p, &env, &conf("1.0.0")).err(4);
    assert_eq!(v["msg"], "invalid CNI_ARGS");
}

#[test]
fn own_netns_is_refused() {
    let p = TestPlugin::new(Behaviour::Ok);
    let mut env = env_for("ADD");
    env.insert("CNI_NETNS".into(), "/proc/thread-self/ns/net".into());
    let v = call(&p, &env, &conf("1.0.0")).err(8);
    assert!(v["msg"].as_str().unwrap().contains("own network namespace"));
    assert!(p.calls.borrow().is_empty());
    env.insert("CNI_NETNS_OVERRIDE".into(), "true".into());
    assert_eq!(call(&p, &env, &conf("1.0.0")).code, 0);
}

fn netconf(v: Value) -> NetConf {
    NetConf::from_value(v).unwrap()
}

#[test]
fn attachments() {
    let base = json!({"cniVersion":"1.1.0","name":"n"});
    assert_eq!(valid_attachments(&netconf(base.clone())).unwrap(), None);
    let mut c = base.clone();
    c["cni.dev/valid-attachments"] = json!([{"containerID":"a","ifname":"eth0"}]);
    c["cni.dev/attachments"] = json!([{"containerID":"old","ifname":"eth0"}]);
    let list = valid_attachments(&netconf(c)).unwrap().unwrap();
    assert_eq!(
        list,
        vec![Attachment {
            container_id: "a".into(),
            ifname: "eth0".into()
        }]
    );
    let mut c = base.clone();
    c["cni.dev/attachments"] = json!([{"containerID":"old","ifname":"net1"}, {"containerId":"x"}]);
    let list = valid_attachments(&netconf(c)).unwrap().unwrap();
    assert_eq!(list[0].container_id, "old");
    assert_eq!(list[1].container_id, "x");
    assert_eq!(list[1].ifname, "");
    let mut c = base.clone();
    c["cni.dev/valid-attachments"] = json!([]);
    assert_eq!(valid_attachments(&netconf(c)).unwrap(), Some(vec![]));
    let mut c = base.clone();
    c["cni.dev/valid-attachments"] = json!(null);
    assert_eq!(valid_attachments(&netconf(c)).unwrap(), None);
    for bad in [
        json!({}),
        json!("x"),
        json!([1]),
        json!([{"containerID": 5}]),
    ] {
        let mut c = base.clone();
        c["cni.dev/valid-attachments"] = bad;
        assert_eq!(valid_attachments(&netconf(c)).unwrap_err().code(), 6);
    }
}
