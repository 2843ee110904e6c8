//! Unit tests of the skeleton through [`dispatch`](super::dispatch), with a
//! plugin that records its calls: the shared harness here, the cases in
//! `verbs` (commands, answers, errors) and `env` (validation).

mod env;
mod verbs;

use super::*;
use crate::error::{CniError, Result};
use crate::spec::{CniResult, Interface, IpConfig, NetConf, SUPPORTED_VERSIONS};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;

/// What the test plugin does on each verb.
#[derive(Clone)]
enum Behaviour {
    Ok,
    Fail(CniError),
    Panic,
}

struct TestPlugin {
    behaviour: Behaviour,
    result: CniResult,
    calls: RefCell<Vec<CmdArgs>>,
}

impl TestPlugin {
    fn new(behaviour: Behaviour) -> Self {
        TestPlugin {
            behaviour,
            result: sample_result(),
            calls: RefCell::new(Vec::new()),
        }
    }
    fn act(&self, a: &CmdArgs) -> Result<()> {
        self.calls.borrow_mut().push(a.clone());
        match &self.behaviour {
            Behaviour::Ok => Ok(()),
            Behaviour::Fail(e) => Err(e.clone()),
            Behaviour::Panic => panic!("boom in {}", a.command),
        }
    }
}

impl Plugin for TestPlugin {
    fn name(&self) -> &'static str {
        "testplug"
    }
    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        self.act(a).map(|()| self.result.clone())
    }
    fn del(&self, a: &CmdArgs) -> Result<()> {
        self.act(a)
    }
    fn check(&self, a: &CmdArgs) -> Result<()> {
        self.act(a)
    }
    fn gc(&self, a: &CmdArgs) -> Result<()> {
        self.act(a)
    }
    fn status(&self, a: &CmdArgs) -> Result<()> {
        self.act(a)
    }
}

fn sample_result() -> CniResult {
    CniResult {
        cni_version: "1.1.0".into(),
        interfaces: vec![Interface {
            name: "eth0".into(),
            mac: Some("aa:bb:cc:dd:ee:ff".into()),
            sandbox: Some("/run/netns/t".into()),
            ..Interface::default()
        }],
        ips: vec![IpConfig {
            address: "10.22.0.5/24".parse().unwrap(),
            gateway: Some("10.22.0.1".parse().unwrap()),
            interface: Some(0),
        }],
        ..CniResult::default()
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout not one JSON document ({e}): {:?}", self.stdout))
    }
    fn err(&self, code: u32) -> Value {
        assert_eq!(self.code, 1, "stdout: {}", self.stdout);
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(v["details"].is_string(), "{v}");
        assert!(v["cniVersion"].is_string(), "{v}");
        v
    }
}

fn env_for(cmd: &str) -> HashMap<String, String> {
    [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "ctr-1"),
        ("CNI_NETNS", "/run/netns/test-does-not-exist"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn conf(version: &str) -> Vec<u8> {
    format!(r#"{{"cniVersion":"{version}","name":"testnet","type":"testplug"}}"#).into_bytes()
}

fn call_with(p: &TestPlugin, env: &HashMap<String, String>, stdin: &mut dyn Read) -> Out {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let getenv = |k: &str| env.get(k).cloned();
    let code = dispatch(p, &getenv, stdin, &mut out, &mut err);
    Out {
        code,
        stdout: String::from_utf8(out).unwrap(),
        stderr: String::from_utf8(err).unwrap(),
    }
}

fn call(p: &TestPlugin, env: &HashMap<String, String>, stdin: &[u8]) -> Out {
    call_with(p, env, &mut &stdin[..])
}

/// A reader that fails the test if it is read at all.
struct Untouchable;
impl Read for Untouchable {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        panic!("stdin must not be read");
    }
}

struct FailingReader;
impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("broken pipe"))
    }
}
