//! Differential runs: the same CNI call sequences through the reference
//! plugins (Debian's `containernetworking-plugins` in /usr/lib/cni) and the
//! plugins under test, each in its own fresh node netns, compared:
//! - the stdout of every call (results modulo random MACs, host veth names and
//!   netns paths; errors by exit status and CNI code), and
//! - the kernel state after every step: `ip -j` links/addresses/routes in the
//!   node and in each pod (normalised the same way), `ip_forward`, which pod IPs
//!   are masqueraded, and the host-local store (file names and contents).
//!
//! Mixed runs (ADD by one implementation, CHECK/DEL by the other) must leave
//! a clean node: no lease, no veth, no pod iface, no nat rule of the network.
//!
//! Plugins under test: ours, or `$CNI_RS_CLIENT_PLUGINS`. Everything stays in
//! namespaces the test creates; the node thread is a fresh thread per run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cni_test_support::clients::*;
use cni_test_support::common::*;
use serde_json::{json, Map, Value};

const NET: &str = "clidiff";
const BRIDGE: &str = "cni-diff0";

/// Prints (once per test binary) which plugins are compared.
fn announce() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        report(&format!(
            "reference: {}",
            describe_plugins(&reference_dir())
        ));
        report(&format!(
            "under test: {}",
            describe_plugins(&plugins_under_test())
        ));
    });
}

fn reference_dir() -> PathBuf {
    PathBuf::from(REFERENCE_CNI_PATH)
}

/// A network config variant (the plugin object libcni would send, minus
/// `cniVersion`, `name` and `dataDir`, which the run fills in).
#[derive(Clone, Copy)]
enum Variant {
    /// isGateway + ipMasq, IPv4, default route: the usual Kubernetes setup.
    GatewayMasq,
    /// Dual stack: one range set per family, default routes for both.
    DualStack,
    /// isDefaultGateway (implies isGateway), hairpin, no masquerade.
    DefaultGatewayHairpin,
}

impl Variant {
    fn plugin_conf(self, version: &str, data: &Path) -> Value {
        let mut conf = match self {
            Variant::GatewayMasq => json!({
                "type": "bridge", "bridge": BRIDGE, "isGateway": true, "ipMasq": true,
                "ipam": {"type": "host-local",
                         "ranges": [[{"subnet": "10.244.63.0/24"}]],
                         "routes": [{"dst": "0.0.0.0/0"}]}
            }),
            Variant::DualStack => json!({
                "type": "bridge", "bridge": BRIDGE, "isGateway": true, "ipMasq": true,
                "ipam": {"type": "host-local",
                         "ranges": [[{"subnet": "10.244.64.0/24"}],
                                    [{"subnet": "fd10:244:64::/64"}]],
                         "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}
            }),
            Variant::DefaultGatewayHairpin => json!({
                "type": "bridge", "bridge": BRIDGE, "isDefaultGateway": true,
                "hairpinMode": true,
                "ipam": {"type": "host-local",
                         "ranges": [[{"subnet": "10.244.65.0/24",
                                      "rangeStart": "10.244.65.10",
                                      "rangeEnd": "10.244.65.20"}]]}
            }),
        };
        let obj = conf.as_object_mut().expect("object");
        obj.insert("cniVersion".into(), version.into());
        obj.insert("name".into(), NET.into());
        obj["ipam"]
            .as_object_mut()
            .expect("ipam")
            .insert("dataDir".into(), json!(data));
        conf
    }
}

/// One node (this thread's netns), its pods and its host-local store.
struct Node {
    _ns: NodeNs,
    pods: Vec<PodNs>,
    data: TempDir,
    variant: Variant,
    version: String,
    /// Last ADD result per pod (stdout JSON), fed back as prevResult.
    results: BTreeMap<usize, Value>,
}

impl Node {
    fn new(variant: Variant, version: &str, pods: usize) -> Node {
        let ns = NodeNs::enter();
        ns.assert_inside();
        Node {
            _ns: ns,
            pods: (0..pods).map(|_| PodNs::new()).collect(),
            data: TempDir::new("diff-data"),
            variant,
            version: version.to_string(),
            results: BTreeMap::new(),
        }
    }

    fn container_id(pod: usize) -> String {
        format!("diffpod{pod}")
    }

    /// Runs `bridge` from `dir` for `command` on pod `pod`. `netns` false sends
    /// `CNI_NETNS=""` (containerd's DEL); `prev` adds the last ADD result.
    fn call(
        &mut self,
        dir: &Path,
        command: &str,
        pod: usize,
        netns: bool,
        prev: bool,
    ) -> PluginRun {
        let mut conf = self.variant.plugin_conf(&self.version, self.data.path());
        if prev {
            let r = self
                .results
                .get(&pod)
                .cloned()
                .expect("prevResult of an earlier ADD");
            conf["prevResult"] = r;
        }
        let path = if netns {
            self.pods[pod].path.display().to_string()
        } else {
            String::new()
        };
        let call = PluginCall::new(command, &Node::container_id(pod), &path, "eth0", dir)
            .stdin(conf.to_string());
        let run = run_plugin(&dir.join("bridge"), &call);
        if command == "ADD" && run.code == Some(0) {
            self.results.insert(pod, run.json());
        }
        run
    }

    fn store(&self) -> PathBuf {
        self.data.path().join(NET)
    }

    /// Normalised kernel + store state of the node and its pods.
    fn state(&self) -> Value {
        let mut pods = Vec::new();
        for pod in &self.pods {
            pods.push(json!({
                "links": norm_links(&pod.ip_json(&["-d", "link", "show"])),
                "addrs": norm_addrs(&pod.ip_json(&["addr", "show"])),
                "routes4": norm_routes(&pod.ip_json(&["-4", "route", "show", "table", "main"])),
                "routes6": norm_routes(&pod.ip_json(&["-6", "route", "show", "table", "main"])),
            }));
        }
        let store: BTreeMap<String, String> = tree_snapshot(&self.store())
            .into_iter()
            .filter(|(name, _)| !name.ends_with('/'))
            .map(|(name, (bytes, _mode))| (name, String::from_utf8_lossy(&bytes).into_owned()))
            .collect();
        json!({
            "node": {
                "links": norm_links(&ip_json(&["-d", "link", "show"])),
                "addrs": norm_addrs(&ip_json(&["addr", "show"])),
                "routes4": norm_routes(&ip_json(&["-4", "route", "show", "table", "main"])),
                "routes6": norm_routes(&ip_json(&["-6", "route", "show", "table", "main"])),
                "ip_forward": std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                    .unwrap_or_default().trim().to_string(),
                "masqueraded": masqueraded_ips(&self.store()),
            },
            "pods": pods,
            "store": store,
        })
    }

    /// Nothing of the network left: no lease, veth, pod iface or nat rule.
    fn assert_clean(&self, what: &str) {
        assert_eq!(
            leases(&self.store()),
            Vec::<String>::new(),
            "{what}: leases left"
        );
        assert_no_veths_left(what);
        for (i, pod) in self.pods.iter().enumerate() {
            let out = pod.exec(&["ip", "link", "show", "dev", "eth0"]);
            assert!(!out.status.success(), "{what}: eth0 left in pod {i}");
        }
        let rules = firewall_lines_with(NET);
        assert!(
            rules.is_empty(),
            "{what}: firewall rules of {NET} left: {rules:#?}"
        );
        for pod in 0..self.pods.len() {
            let id = Node::container_id(pod);
            let rules = firewall_lines_with(&id);
            assert!(
                rules.is_empty(),
                "{what}: firewall rules of {id} left: {rules:#?}"
            );
        }
    }
}

/// Replaces host veth names (random) with "VETH".
fn norm_name(name: &str) -> String {
    if name.starts_with("veth") {
        "VETH".to_string()
    } else {
        name.to_string()
    }
}

/// Links without MACs, ifindexes, counters or racy state (carrier, operstate,
/// port STP state): name, kind, flags an admin sets, mtu, master, bridge knobs.
fn norm_links(links: &Value) -> Value {
    let mut out: Vec<Value> = links
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let info = &l["linkinfo"];
            let flags: BTreeSet<&str> = l["flags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|f| matches!(*f, "UP" | "NOARP" | "PROMISC" | "LOOPBACK"))
                .collect();
            let mut m = Map::new();
            m.insert(
                "name".into(),
                norm_name(l["ifname"].as_str().unwrap_or("")).into(),
            );
            m.insert("kind".into(), info["info_kind"].clone());
            m.insert("flags".into(), json!(flags));
            m.insert("mtu".into(), l["mtu"].clone());
            m.insert("master".into(), json!(l["master"].as_str().map(norm_name)));
            if info["info_kind"] == "bridge" {
                let d = &info["info_data"];
                m.insert("stp_state".into(), d["stp_state"].clone());
                m.insert("vlan_filtering".into(), d["vlan_filtering"].clone());
                m.insert("promiscuity".into(), l["promiscuity"].clone());
            }
            if info["info_slave_kind"] == "bridge" {
                m.insert("hairpin".into(), info["info_slave_data"]["hairpin"].clone());
            }
            Value::Object(m)
        })
        .collect();
    out.sort_by_key(|v| (v["name"].to_string(), v.to_string()));
    Value::Array(out)
}

/// Addresses per (normalised) link, without IPv6 link-local ones (derived
/// from random MACs) and without flags/lifetimes (DAD state is racy).
fn norm_addrs(links: &Value) -> Value {
    let mut out: Vec<String> = Vec::new();
    for l in links.as_array().into_iter().flatten() {
        let name = norm_name(l["ifname"].as_str().unwrap_or(""));
        for a in l["addr_info"].as_array().into_iter().flatten() {
            let local = a["local"].as_str().unwrap_or("");
            if local.starts_with("fe80:") {
                continue;
            }
            out.push(format!(
                "{name} {} {local}/{} scope {} brd {}",
                a["family"].as_str().unwrap_or(""),
                a["prefixlen"],
                a["scope"].as_str().unwrap_or(""),
                a["broadcast"].as_str().unwrap_or("-")
            ));
        }
    }
    out.sort();
    json!(out)
}

/// Routes of the main table without link-local ones, devices normalised.
fn norm_routes(routes: &Value) -> Value {
    let mut out: Vec<String> = routes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| !r["dst"].as_str().unwrap_or("").starts_with("fe80:"))
        .map(|r| {
            format!(
                "{} via {} dev {} proto {} scope {} metric {} src {}",
                r["dst"].as_str().unwrap_or(""),
                r["gateway"].as_str().unwrap_or("-"),
                norm_name(r["dev"].as_str().unwrap_or("")),
                r["protocol"].as_str().unwrap_or("-"),
                r["scope"].as_str().unwrap_or("-"),
                r["metric"],
                r["prefsrc"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    out.sort();
    json!(out)
}

/// Leased IPs (from the store) that some masquerade rule names, in either
/// backend: the reference uses iptables chains per container, ours may use
/// nftables; what must agree is *which pods* are masqueraded.
fn masqueraded_ips(store: &Path) -> Vec<String> {
    let dump = firewall_dump();
    leases(store)
        .into_iter()
        .filter(|ip| {
            dump.lines().any(|l| {
                (l.contains(&format!(" {ip} ")) || l.contains(&format!(" {ip}/")))
                    && (l.contains("MASQUERADE")
                        || l.contains("masquerade")
                        || l.contains("-j CNI-"))
            })
        })
        .collect()
}

/// Normalises a plugin's stdout: results without MACs, host veth names and
/// netns paths (pod index instead); errors as their code only.
fn norm_output(run: &PluginRun, pods: &[PodNs]) -> Value {
    if run.code != Some(0) {
        let code = serde_json::from_str::<Value>(&run.stdout)
            .ok()
            .and_then(|v| v["code"].as_u64());
        return json!({"exit": run.code, "code": code});
    }
    if run.stdout.trim().is_empty() {
        return json!({"exit": 0});
    }
    let mut v = run.json();
    if let Some(ifaces) = v["interfaces"].as_array_mut() {
        for i in ifaces {
            if i.get("mac").is_some() {
                i["mac"] = json!("MAC");
            }
            if let Some(n) = i["name"].as_str() {
                i["name"] = json!(norm_name(n));
            }
            if let Some(s) = i["sandbox"].as_str() {
                let idx = pods.iter().position(|p| p.path.display().to_string() == s);
                i["sandbox"] = json!(format!("POD{}", idx.map_or(-1, |i| i as i64)));
            }
        }
    }
    json!({"exit": 0, "result": v})
}

/// What a run did: every call's normalised output and the state after it.
type Transcript = Vec<(String, Value)>;

/// One step of a sequence.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// ADD pod i.
    Add(usize),
    /// CHECK pod i with prevResult.
    Check(usize),
    /// CHECK pod i with another pod's prevResult (must fail).
    CheckWrong(usize, usize),
    /// DEL pod i with netns + prevResult (libcni's first DEL).
    Del(usize),
    /// DEL pod i with netns, no prevResult (a repeated DEL).
    DelAgain(usize),
    /// DEL pod i with CNI_NETNS="" and no prevResult (containerd).
    DelNoNetns(usize),
}

/// Runs `steps` with `dir`'s plugins on a fresh node (in a fresh thread).
fn run_sequence(
    dir: PathBuf,
    variant: Variant,
    version: &str,
    pods: usize,
    steps: Vec<Step>,
) -> Transcript {
    let version = version.to_string();
    std::thread::spawn(move || {
        let mut node = Node::new(variant, &version, pods);
        let mut out = Transcript::new();
        for step in steps {
            let run = match step {
                Step::Add(p) => node.call(&dir, "ADD", p, true, false),
                Step::Check(p) => node.call(&dir, "CHECK", p, true, true),
                Step::CheckWrong(p, other) => {
                    let saved = node.results.get(&p).cloned();
                    let wrong = node.results.get(&other).cloned().expect("other result");
                    node.results.insert(p, wrong);
                    let run = node.call(&dir, "CHECK", p, true, true);
                    if let Some(s) = saved {
                        node.results.insert(p, s);
                    }
                    run
                }
                Step::Del(p) => node.call(&dir, "DEL", p, true, true),
                Step::DelAgain(p) => node.call(&dir, "DEL", p, true, false),
                Step::DelNoNetns(p) => node.call(&dir, "DEL", p, false, false),
            };
            if run.code != Some(0) && !matches!(step, Step::CheckWrong(..)) {
                panic!("{step:?} failed with {}:\n{run:#?}", dir.display());
            }
            out.push((format!("{step:?} output"), norm_output(&run, &node.pods)));
            out.push((format!("{step:?} state"), node.state()));
        }
        out
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Runs the sequence through the reference and the plugins under test and
/// asserts identical transcripts, pointing at the first differing step.
fn differential(variant: Variant, version: &str, pods: usize, steps: Vec<Step>) {
    let ours = plugins_under_test();
    announce();
    let want = run_sequence(reference_dir(), variant, version, pods, steps.clone());
    let got = run_sequence(ours, variant, version, pods, steps);
    assert_eq!(want.len(), got.len());
    for ((label, w), (_, g)) in want.iter().zip(got.iter()) {
        let mut diffs = Vec::new();
        json_diff(w, g, "", &mut diffs);
        assert!(
            diffs.is_empty(),
            "cniVersion {version}: {label} differs from the reference:\n{}\n--- reference:\n{}",
            diffs.join("\n"),
            serde_json::to_string_pretty(w).unwrap_or_default()
        );
    }
}

/// Lists the paths where `want` and `got` differ, with both values.
fn json_diff(want: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            let keys: BTreeSet<&String> = w.keys().chain(g.keys()).collect();
            for k in keys {
                let (a, b) = (
                    w.get(k).unwrap_or(&Value::Null),
                    g.get(k).unwrap_or(&Value::Null),
                );
                json_diff(a, b, &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (a, b)) in w.iter().zip(g).enumerate() {
                json_diff(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ if want != got => out.push(format!("  {path}: reference {want}, under test {got}")),
        _ => {}
    }
}

fn full_sequence(check: bool) -> Vec<Step> {
    let mut steps = vec![Step::Add(0), Step::Add(1)];
    if check {
        steps.extend([Step::Check(0), Step::Check(1), Step::CheckWrong(0, 1)]);
    }
    steps.extend([
        Step::Del(0),
        Step::DelAgain(0),
        Step::Del(1),
        Step::DelAgain(1),
    ]);
    steps
}

#[test]
fn differential_gateway_masq_every_common_version() {
    require_root!();
    for version in ["0.2.0", "0.3.0", "0.3.1"] {
        differential(Variant::GatewayMasq, version, 2, full_sequence(false));
    }
    for version in ["0.4.0", "1.0.0"] {
        differential(Variant::GatewayMasq, version, 2, full_sequence(true));
    }
}

#[test]
fn differential_dual_stack() {
    require_root!();
    differential(Variant::DualStack, "1.0.0", 2, full_sequence(true));
}

#[test]
fn differential_default_gateway_hairpin() {
    require_root!();
    differential(
        Variant::DefaultGatewayHairpin,
        "1.0.0",
        2,
        full_sequence(true),
    );
    // containerd's DEL with CNI_NETNS="" first (no masquerade here, so the
    // reference's nat leak plays no part), then the libcni DEL.
    let steps = vec![
        Step::Add(0),
        Step::Add(1),
        Step::DelNoNetns(0),
        Step::Del(0),
        Step::DelNoNetns(1),
        Step::DelAgain(1),
    ];
    differential(Variant::DefaultGatewayHairpin, "1.0.0", 2, steps);
}

/// ADD by `first`, CHECK + DEL by `second` (with and without netns), then
/// the node must be clean. A DEL with `CNI_NETNS=""` is only sent when
/// `second` is not the reference: the reference leaks its nat rules there
/// (plugins#810), which is the bug we replace.
fn mixed(first: PathBuf, second: PathBuf, variant: Variant) {
    let second_is_ours = second != reference_dir();
    announce();
    std::thread::spawn(move || {
        let mut node = Node::new(variant, "1.0.0", 3);
        for p in 0..3 {
            node.call(&first, "ADD", p, true, false).expect_ok();
        }
        for p in 0..3 {
            node.call(&second, "CHECK", p, true, true).expect_ok();
        }
        // Pod 0: the libcni way (netns + prevResult), then a repeated DEL.
        node.call(&second, "DEL", 0, true, true).expect_ok();
        node.call(&second, "DEL", 0, true, false).expect_ok();
        // Pod 1: repeated DEL without prevResult.
        node.call(&second, "DEL", 1, true, false).expect_ok();
        // Pod 2: containerd's DEL with an empty netns (after the pod's netns
        // is gone), by ours; the reference gets the normal DEL.
        if second_is_ours {
            node.pods.pop();
            node.call(&second, "DEL", 2, false, false).expect_ok();
        } else {
            node.call(&second, "DEL", 2, true, true).expect_ok();
        }
        node.assert_clean("mixed run");
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

#[test]
fn mixed_add_by_reference_del_by_ours_leaves_a_clean_node() {
    require_root!();
    for variant in [Variant::GatewayMasq, Variant::DualStack] {
        mixed(reference_dir(), plugins_under_test(), variant);
    }
}

#[test]
fn mixed_add_by_ours_del_by_reference_leaves_a_clean_node() {
    require_root!();
    for variant in [Variant::GatewayMasq, Variant::DualStack] {
        mixed(plugins_under_test(), reference_dir(), variant);
    }
}

/// The normalisation itself: two ADDs that differ only in MACs, veth names
/// and netns paths compare equal; a different address does not.
#[test]
fn normalisation_ignores_only_random_parts() {
    let pods: Vec<PodNs> = Vec::new();
    let mk = |mac: &str, veth: &str, ip: &str| PluginRun {
        code: Some(0),
        stdout: json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": BRIDGE, "mac": mac},
                           {"name": veth, "mac": mac},
                           {"name": "eth0", "mac": mac, "sandbox": "/proc/1/task/2/ns/net"}],
            "ips": [{"address": ip, "gateway": "10.244.63.1", "interface": 2}]})
        .to_string(),
        stderr: String::new(),
        call: PluginCall::default(),
        binary: PathBuf::new(),
    };
    let a = norm_output(
        &mk("aa:bb:cc:dd:ee:ff", "veth1234abcd", "10.244.63.2/24"),
        &pods,
    );
    let b = norm_output(
        &mk("11:22:33:44:55:66", "vethffff0000", "10.244.63.2/24"),
        &pods,
    );
    let c = norm_output(
        &mk("11:22:33:44:55:66", "vethffff0000", "10.244.63.3/24"),
        &pods,
    );
    assert_eq!(a, b);
    assert_ne!(a, c);
    let err = PluginRun {
        code: Some(1),
        stdout: r#"{"cniVersion":"1.0.0","code":7,"msg":"bad"}"#.into(),
        stderr: String::new(),
        call: PluginCall::default(),
        binary: PathBuf::new(),
    };
    assert_eq!(norm_output(&err, &pods), json!({"exit": 1, "code": 7}));
    let mut diffs = Vec::new();
    json_diff(&a, &c, "", &mut diffs);
    assert_eq!(
        diffs,
        vec![
            r#"  .result.ips[0].address: reference "10.244.63.2/24", under test "10.244.63.3/24""#
        ]
    );
}
