//! ipMasq rules (iptables and nftables backends) in throwaway node netns,
//! including compatibility with Debian's reference `bridge` plugin.

use std::path::Path;
use std::process::Command;

use cni::firewall::{
    check_ipmasq, default_backend, gc_ipmasq, iptables_version, naming, setup_ipmasq,
    teardown_ipmasq, teardown_ipmasq_iptables, MasqBackend, MasqTarget, TeardownPath,
};
use cni_test_support::common;
use cni_test_support::common::{
    result_nets, run_plugin, NodeNs, PluginCall, PodNs, TempDir, REFERENCE_CNI_PATH,
};
use ipnet::IpNet;

const NET: &str = "mynet";
const CID: &str = "abc123";
/// `CNI-` + sha512("mynetabc123")[..24], as the reference plugin printed it.
const CHAIN: &str = "CNI-70a29d9dc18bc4d652ea5d59";

fn target<'a>(network: &'a str, container_id: &'a str) -> MasqTarget<'a> {
    MasqTarget {
        network,
        container_id,
        ifname: "eth0",
    }
}

fn nets(s: &[&str]) -> Vec<IpNet> {
    s.iter().map(|n| n.parse().expect("test CIDR")).collect()
}

fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The nat table's user chains and rules (`:X - ...` and `-A ...` lines) of
/// `iptables-save` or `ip6tables-save`, without counters and comments.
fn nat_lines(save: &str) -> Vec<String> {
    run(save, &["-t", "nat"])
        .lines()
        .filter(|l| l.starts_with("-A ") || (l.starts_with(':') && l.contains(" - ")))
        .map(|l| l.split(" [").next().unwrap_or(l).to_string())
        .collect()
}

fn assert_nat_clean() {
    assert_eq!(
        nat_lines("iptables-save"),
        Vec::<String>::new(),
        "v4 nat not clean"
    );
    assert_eq!(
        nat_lines("ip6tables-save"),
        Vec::<String>::new(),
        "v6 nat not clean"
    );
}

/// Rules of the nftables masquerade chain as (comment, expr) pairs.
fn nft_masq_rules() -> Vec<(String, serde_json::Value)> {
    let out = Command::new("nft")
        .args([
            "-j",
            "list",
            "chain",
            "inet",
            "cni_plugins_masquerade",
            "masq_checks",
        ])
        .output()
        .expect("spawn nft");
    if !out.status.success() {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft json");
    v["nftables"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|i| i.get("rule"))
        .map(|r| {
            (
                r["comment"].as_str().unwrap_or_default().to_string(),
                r["expr"].clone(),
            )
        })
        .collect()
}

/// What the reference bridge v1.1.1 created for mynet/abc123 with
/// 10.22.0.2/16 (iptables-nft 1.8.9, `iptables-save -t nat`).
fn reference_v4_lines() -> Vec<String> {
    let c = r#""name: \"mynet\" id: \"abc123\"""#;
    vec![
        format!(":{CHAIN} -"),
        format!("-A POSTROUTING -s 10.22.0.2/32 -m comment --comment {c} -j {CHAIN}"),
        format!("-A {CHAIN} -d 10.22.0.0/16 -m comment --comment {c} -j ACCEPT"),
        format!("-A {CHAIN} ! -d 224.0.0.0/4 -m comment --comment {c} -j MASQUERADE"),
    ]
}

fn reference_v6_lines() -> Vec<String> {
    let c = r#""name: \"mynet\" id: \"abc123\"""#;
    vec![
        format!(":{CHAIN} -"),
        format!("-A POSTROUTING -s fd10:22::2/128 -m comment --comment {c} -j {CHAIN}"),
        format!("-A {CHAIN} -d fd10:22::/64 -m comment --comment {c} -j ACCEPT"),
        format!("-A {CHAIN} ! -d ff00::/8 -m comment --comment {c} -j MASQUERADE"),
    ]
}

#[test]
fn iptables_setup_matches_reference_and_is_idempotent() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    let t = target(NET, CID);
    let ips = nets(&["10.22.0.2/16", "fd10:22::2/64"]);
    setup_ipmasq(MasqBackend::Iptables, &t, &ips).expect("setup");
    assert_eq!(nat_lines("iptables-save"), reference_v4_lines());
    assert_eq!(nat_lines("ip6tables-save"), reference_v6_lines());
    check_ipmasq(&t, &ips).expect("check after setup");

    setup_ipmasq(MasqBackend::Iptables, &t, &ips).expect("setup again");
    assert_eq!(nat_lines("iptables-save"), reference_v4_lines());
    assert_eq!(nat_lines("ip6tables-save"), reference_v6_lines());
}

#[test]
fn iptables_teardown_with_and_without_ips() {
    require_root!();
    let _node = NodeNs::enter();
    let t = target(NET, CID);
    let ips = nets(&["10.22.0.2/16", "fd10:22::2/64"]);
    setup_ipmasq(MasqBackend::Iptables, &t, &ips).expect("setup");
    teardown_ipmasq(&t, &ips).expect("teardown with ips");
    assert_nat_clean();

    setup_ipmasq(MasqBackend::Iptables, &t, &ips).expect("setup");
    teardown_ipmasq(&t, &[]).expect("teardown without ips");
    assert_nat_clean();

    // Nothing left: teardown again is a success.
    teardown_ipmasq(&t, &[]).expect("teardown of nothing");
}

#[test]
fn iptables_teardown_keeps_other_containers() {
    require_root!();
    let _node = NodeNs::enter();
    let a = target(NET, "a");
    let b = target(NET, "b");
    setup_ipmasq(MasqBackend::Iptables, &a, &nets(&["10.22.0.2/16"])).expect("setup a");
    setup_ipmasq(MasqBackend::Iptables, &b, &nets(&["10.22.0.3/16"])).expect("setup b");
    let before_b: Vec<String> = nat_lines("iptables-save")
        .into_iter()
        .filter(|l| l.contains(&naming::chain_name(NET, "b")))
        .collect();
    teardown_ipmasq(&a, &[]).expect("teardown a");
    assert_eq!(nat_lines("iptables-save"), before_b);
}

#[test]
fn iptables_legacy_prefix_source_is_removed() {
    require_root!();
    let _node = NodeNs::enter();
    let t = target(NET, CID);
    setup_ipmasq(MasqBackend::Iptables, &t, &nets(&["10.22.0.2/16"])).expect("setup");
    // Old plugin versions jumped with `-s <ip>/<prefix>`.
    let comment = naming::iptables_comment(NET, CID);
    run(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            "10.22.0.0/16",
            "-j",
            CHAIN,
            "-m",
            "comment",
            "--comment",
            &comment,
        ],
    );
    teardown_ipmasq(&t, &[]).expect("teardown");
    assert_nat_clean();
}

#[test]
fn check_detects_missing_rule() {
    require_root!();
    let _node = NodeNs::enter();
    let t = target(NET, CID);
    let ips = nets(&["10.22.0.2/16"]);
    assert!(check_ipmasq(&t, &ips).is_err(), "check before setup");
    setup_ipmasq(MasqBackend::Iptables, &t, &ips).expect("setup");
    check_ipmasq(&t, &ips).expect("check");
    let comment = naming::iptables_comment(NET, CID);
    run(
        "iptables",
        &[
            "-t",
            "nat",
            "-D",
            CHAIN,
            "!",
            "-d",
            "224.0.0.0/4",
            "-j",
            "MASQUERADE",
            "-m",
            "comment",
            "--comment",
            &comment,
        ],
    );
    let err = check_ipmasq(&t, &ips).expect_err("MASQUERADE rule removed");
    assert!(err.to_string().contains("MASQUERADE"), "{err}");
}

#[test]
fn iptables_gc_keeps_valid_removes_invalid() {
    require_root!();
    let _node = NodeNs::enter();
    for (net, cid, ip) in [
        (NET, "keep", "10.22.0.2/16"),
        (NET, "stale", "10.22.0.3/16"),
        ("othernet", "other", "10.23.0.2/16"),
    ] {
        setup_ipmasq(
            MasqBackend::Iptables,
            &target(net, cid),
            &nets(&[ip, "fd10:22::9/64"]),
        )
        .expect("setup");
    }
    // ifname is not part of iptables naming: a valid id with another ifname keeps its chain.
    gc_ipmasq(NET, &[("keep".to_string(), "net1".to_string())]).expect("gc");
    for save in ["iptables-save", "ip6tables-save"] {
        let lines = nat_lines(save).join("\n");
        assert!(
            lines.contains(&naming::chain_name(NET, "keep")),
            "{save}: {lines}"
        );
        assert!(
            lines.contains(&naming::chain_name("othernet", "other")),
            "{save}: {lines}"
        );
        assert!(
            !lines.contains(&naming::chain_name(NET, "stale")),
            "{save}: {lines}"
        );
    }
}

#[test]
fn nftables_setup_teardown_gc() {
    require_root!();
    let _node = NodeNs::enter();
    let t = target(NET, CID);
    let ips = nets(&["10.22.0.2/16", "fd10:22::2/64"]);
    setup_ipmasq(MasqBackend::Nftables, &t, &ips).expect("setup");
    setup_ipmasq(MasqBackend::Nftables, &t, &ips).expect("setup again (replaces)");
    let rules = nft_masq_rules();
    assert_eq!(rules.len(), 2, "{rules:?}");
    let comment = "d23676b4f2d9fe04-ebce0e3dd4dafae3, net: mynet, if: eth0, id: abc123";
    assert!(rules.iter().all(|(c, _)| c == comment), "{rules:?}");
    let text = run("nft", &["list", "table", "inet", "cni_plugins_masquerade"]);
    assert!(
        text.contains("ip saddr 10.22.0.2 ip daddr != 10.22.0.0/16 masquerade"),
        "{text}"
    );
    assert!(
        text.contains("ip6 saddr fd10:22::2 ip6 daddr != fd10:22::/64 masquerade"),
        "{text}"
    );
    assert!(
        text.contains("type nat hook postrouting priority srcnat"),
        "{text}"
    );
    assert!(text.contains("ip daddr 224.0.0.0/4 return"), "{text}");
    assert!(text.contains("goto masq_checks"), "{text}");
    check_ipmasq(&t, &ips).expect("check (nftables)");

    teardown_ipmasq(&t, &[]).expect("teardown without ips");
    assert!(nft_masq_rules().is_empty());
    assert!(check_ipmasq(&t, &ips).is_err());

    // GC: same container with another ifname is a different nft instance.
    setup_ipmasq(
        MasqBackend::Nftables,
        &target(NET, "keep"),
        &nets(&["10.22.0.4/16"]),
    )
    .expect("keep");
    setup_ipmasq(
        MasqBackend::Nftables,
        &target(NET, "stale"),
        &nets(&["10.22.0.5/16"]),
    )
    .expect("stale");
    setup_ipmasq(
        MasqBackend::Nftables,
        &target("othernet", "x"),
        &nets(&["10.23.0.5/16"]),
    )
    .expect("other");
    gc_ipmasq(NET, &[("keep".to_string(), "eth0".to_string())]).expect("gc");
    let left: Vec<String> = nft_masq_rules().into_iter().map(|(c, _)| c).collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().any(|c| c.ends_with("id: keep")));
    assert!(left.iter().any(|c| c.ends_with("id: x")));
}

#[test]
fn teardown_covers_both_backends() {
    require_root!();
    let _node = NodeNs::enter();
    let t = target(NET, CID);
    let ips = nets(&["10.22.0.2/16"]);
    setup_ipmasq(MasqBackend::Iptables, &t, &ips).expect("iptables setup");
    setup_ipmasq(MasqBackend::Nftables, &t, &ips).expect("nftables setup");
    teardown_ipmasq(&t, &[]).expect("teardown");
    assert_nat_clean();
    assert!(nft_masq_rules().is_empty());
}

/// The netlink existence probe that lets ADD skip `iptables-save` and DEL
/// skip `ip6tables-save`/`nft` agrees with what the tools created.
#[test]
fn nf_probe_agrees_with_the_tools() {
    use cni::netlink::{nf_exists, NfFamily};
    require_root!();
    let _node = NodeNs::enter();
    let t = target(NET, CID);
    assert_eq!(nf_exists(NfFamily::Ip, "nat", Some(CHAIN)), Some(false));
    assert_eq!(
        nf_exists(NfFamily::Inet, "cni_plugins_masquerade", None),
        Some(false)
    );
    setup_ipmasq(MasqBackend::Iptables, &t, &nets(&["10.22.0.2/16"])).expect("setup");
    assert_eq!(nat_lines("iptables-save"), reference_v4_lines());
    assert_eq!(nf_exists(NfFamily::Ip, "nat", Some(CHAIN)), Some(true));
    assert_eq!(
        nf_exists(NfFamily::Ip, "nat", Some("CNI-nope")),
        Some(false)
    );
    assert_eq!(nf_exists(NfFamily::Ip6, "nat", Some(CHAIN)), Some(false));
    setup_ipmasq(MasqBackend::Nftables, &t, &nets(&["10.22.0.2/16"])).expect("nft setup");
    assert_eq!(
        nf_exists(NfFamily::Inet, "cni_plugins_masquerade", None),
        Some(true)
    );
    teardown_ipmasq(&t, &[]).expect("teardown");
    assert_nat_clean();
    assert!(nft_masq_rules().is_empty());
    assert_eq!(nf_exists(NfFamily::Ip, "nat", Some(CHAIN)), Some(false));
}

#[test]
fn default_backend_is_iptables_when_usable() {
    require_root!();
    let _node = NodeNs::enter();
    assert_eq!(default_backend(), MasqBackend::Iptables);
    assert_eq!(
        MasqBackend::from_config(None).expect("default"),
        MasqBackend::Iptables
    );
}

fn reference_conf(data_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0", "name": NET, "type": "bridge", "bridge": "cni0",
        "isGateway": true, "ipMasq": true,
        "ipam": {"type": "host-local", "dataDir": data_dir,
                 "ranges": [[{"subnet": "10.22.0.0/16"}], [{"subnet": "fd10:22::/64"}]]}
    })
    .to_string()
}

fn reference_call(cmd: &str, pod: &PodNs, conf: &str) -> PluginCall {
    PluginCall::new(
        cmd,
        CID,
        &pod.path.display().to_string(),
        "eth0",
        Path::new(REFERENCE_CNI_PATH),
    )
    .stdin(conf)
}

/// The reference ADD creates exactly what our setup creates, and our
/// teardown (without addresses, as on DEL with an empty netns) removes it.
#[test]
fn reference_rules_are_removed_by_our_teardown() {
    require_root!();
    let _node = NodeNs::enter();
    let pod = PodNs::new();
    let data = TempDir::new("fw-ref");
    let conf = reference_conf(data.path());
    let bridge = Path::new(REFERENCE_CNI_PATH).join("bridge");
    let add = run_plugin(&bridge, &reference_call("ADD", &pod, &conf)).expect_ok();
    let ips = result_nets(&add.json());
    assert_eq!(ips, nets(&["10.22.0.2/16", "fd10:22::2/64"]));
    let ref_v4 = nat_lines("iptables-save");
    let ref_v6 = nat_lines("ip6tables-save");
    assert_eq!(ref_v4, reference_v4_lines());
    assert_eq!(ref_v6, reference_v6_lines());

    // Removed over nf_tables netlink in both families (iptables-nft here).
    let paths = teardown_ipmasq_iptables(NET, CID, true).expect("our teardown");
    assert_eq!(paths, [TeardownPath::Netlink, TeardownPath::Netlink]);
    assert_nat_clean();
    teardown_ipmasq(&target(NET, CID), &[]).expect("our teardown of nothing");

    // Ours re-creates the identical state...
    setup_ipmasq(MasqBackend::Iptables, &target(NET, CID), &ips).expect("our setup");
    assert_eq!(nat_lines("iptables-save"), ref_v4);
    assert_eq!(nat_lines("ip6tables-save"), ref_v6);
    // ...which the reference DEL removes.
    run_plugin(&bridge, &reference_call("DEL", &pod, &conf)).expect_ok();
    assert_nat_clean();
}

/// Twenty pods set up and torn down at once on one node (as parallel ADDs
/// and DELs do, DEL even twice per pod): every chain complete, then nothing left.
#[test]
fn parallel_setup_and_teardown() {
    require_root!();
    let _node = NodeNs::enter();
    let ids: Vec<String> = (0..20).map(|i| format!("pod{i}")).collect();
    // Threads start in the creating thread's netns (the node).
    std::thread::scope(|s| {
        for (i, id) in ids.iter().enumerate() {
            s.spawn(move || {
                let ips = nets(&[
                    &format!("10.22.1.{}/16", i + 2),
                    &format!("fd10:22::1:{:x}/64", i + 2),
                ]);
                setup_ipmasq(MasqBackend::Iptables, &target(NET, id), &ips)
                    .expect("parallel setup");
                setup_ipmasq(MasqBackend::Nftables, &target(NET, id), &ips)
                    .expect("parallel nft setup");
            });
        }
    });
    for save in ["iptables-save", "ip6tables-save"] {
        let lines = nat_lines(save);
        for id in &ids {
            let chain = naming::chain_name(NET, id);
            assert_eq!(
                lines.iter().filter(|l| l.contains(&chain)).count(),
                4,
                "{save} {id}: {lines:#?}"
            );
        }
    }
    assert_eq!(nft_masq_rules().len(), 40);
    // Each pod is deleted twice at once (a runtime retrying DEL): both succeed.
    std::thread::scope(|s| {
        for id in ids.iter().chain(ids.iter()) {
            s.spawn(move || teardown_ipmasq(&target(NET, id), &[]).expect("parallel teardown"));
        }
    });
    assert_nat_clean();
    assert!(nft_masq_rules().is_empty());
}

/// A node that already has other software's nat rules (kube-proxy-like
/// matches, comments with spaces, a portmap-style chain with our comment
/// format): our setup and teardown leave all of them untouched.
#[test]
fn foreign_rules_are_left_alone() {
    require_root!();
    let _node = NodeNs::enter();
    let comment = naming::iptables_comment(NET, CID);
    let foreign = format!(
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SEP-1 - [0:0]\n:CNI-DN-0123456789abcdef01234 - [0:0]\n\
         -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment \"default/kubernetes:https cluster IP\" -m tcp --dport 443 -j KUBE-SEP-1\n\
         -A KUBE-SEP-1 -p tcp -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.0.0.5:6443\n\
         -A POSTROUTING -s 10.22.0.0/16 ! -o cni0 -j MASQUERADE\n\
         -A CNI-DN-0123456789abcdef01234 -p tcp -m comment --comment \"{}\" -m tcp --dport 8080 -j DNAT --to-destination 10.22.0.2:80\n\
         COMMIT\n",
        comment.replace('"', "\\\"")
    );
    restore("iptables-restore", &foreign);
    let before = nat_lines("iptables-save");

    let t = target(NET, CID);
    let ips = nets(&["10.22.0.2/16"]);
    setup_ipmasq(MasqBackend::Iptables, &t, &ips).expect("setup");
    check_ipmasq(&t, &ips).expect("check");
    let with_ours = nat_lines("iptables-save");
    assert_eq!(with_ours.len(), before.len() + 4, "{with_ours:#?}");
    teardown_ipmasq(&t, &[]).expect("teardown");
    assert_eq!(nat_lines("iptables-save"), before);
    gc_ipmasq(NET, &[]).expect("gc");
    assert_eq!(
        nat_lines("iptables-save"),
        before,
        "gc must not touch the portmap-style chain"
    );
}

/// Creates table `ip nat` and its `POSTROUTING` base chain the iptables way
/// (as kube-proxy, docker or an earlier ADD leave them on a node), so that a
/// new pod's IPv4 chain takes the nf_tables netlink fast path.
fn prepare_nat() {
    let rule = ["POSTROUTING", "-s", "192.0.2.1/32", "-j", "ACCEPT"];
    run("iptables", &[&["-t", "nat", "-A"][..], &rule].concat());
    run("iptables", &[&["-t", "nat", "-D"][..], &rule].concat());
    assert_eq!(
        cni::netlink::nf_exists(cni::netlink::NfFamily::Ip, "nat", Some("POSTROUTING")),
        Some(true)
    );
}

/// `nft --debug=netlink list chain ip nat <chain>`: each rule's expression
/// lines (`[ payload load ... ]`), handles dropped.
fn nft_exprs(chain: &str) -> Vec<String> {
    run(
        "nft",
        &["--debug=netlink", "list", "chain", "ip", "nat", chain],
    )
    .lines()
    .filter_map(|l| {
        if l.starts_with("ip nat ") {
            Some(format!("rule in {chain}"))
        } else if l.trim_start().starts_with('[') {
            Some(l.trim().to_string())
        } else {
            None
        }
    })
    .collect()
}

/// The `iptables-restore --noflush` script our exec path would apply for a
/// fresh chain: per address ACCEPT, MASQUERADE (once), POSTROUTING jump.
fn restore_script(network: &str, cid: &str, ips: &[IpNet]) -> String {
    let chain = naming::chain_name(network, cid);
    let c = format!(
        "\"{}\"",
        naming::iptables_comment(network, cid).replace('"', "\\\"")
    );
    let mut s = format!(":{chain} - [0:0]\n");
    for (i, ip) in ips.iter().enumerate() {
        s += &format!(
            "-A {chain} -d {} -j ACCEPT -m comment --comment {c}\n",
            ip.trunc()
        );
        if i == 0 {
            s += &format!("-A {chain} ! -d 224.0.0.0/4 -j MASQUERADE -m comment --comment {c}\n");
        }
        s += &format!(
            "-A POSTROUTING -s {} -j {chain} -m comment --comment {c}\n",
            ip.addr()
        );
    }
    s
}

/// Pods of the fast-path comparison: the reference case, two addresses of
/// one family, and prefixes that need a bitwise mask (/12, /31) or none (/32).
fn fast_path_pods() -> Vec<(&'static str, &'static str, Vec<IpNet>)> {
    vec![
        (NET, CID, nets(&["10.22.0.2/16"])),
        (NET, "two", nets(&["10.1.0.2/24", "10.2.0.2/24"])),
        (
            "othernet",
            "odd",
            nets(&["10.48.3.4/12", "10.9.9.9/31", "10.7.7.7/32"]),
        ),
    ]
}

/// What iptables-restore itself makes of [`fast_path_pods`], in a second
/// fresh node: (`iptables-save` lines, expression dumps per chain).
fn restored_by_iptables() -> (Vec<String>, Vec<Vec<String>>) {
    std::thread::spawn(|| {
        let node = NodeNs::enter();
        node.assert_inside();
        prepare_nat();
        let mut script = String::from("*nat\n");
        for (net, cid, ips) in fast_path_pods() {
            script += &restore_script(net, cid, &ips);
        }
        script += "COMMIT\n";
        restore("iptables-restore", &script);
        let mut dumps = vec![nft_exprs("POSTROUTING")];
        for (net, cid, _) in fast_path_pods() {
            dumps.push(nft_exprs(&naming::chain_name(net, cid)));
        }
        (nat_lines("iptables-save"), dumps)
    })
    .join()
    .expect("iptables-restore node")
}

/// A new pod's IPv4 rules written over nf_tables netlink are exactly what
/// iptables-restore (iptables-nft) writes: same `iptables-save` lines and
/// the same nf_tables expressions, rule by rule.
#[test]
fn fast_path_rules_equal_iptables_restore_rules() {
    require_root!();
    let (want_lines, want_dumps) = restored_by_iptables();
    let node = NodeNs::enter();
    node.assert_inside();
    prepare_nat();
    for (i, (net, cid, ips)) in fast_path_pods().into_iter().enumerate() {
        setup_ipmasq(MasqBackend::Iptables, &target(net, cid), &ips).expect("setup");
        if i == 0 {
            assert_eq!(nat_lines("iptables-save"), reference_v4_lines());
        }
    }
    let lines = nat_lines("iptables-save");
    assert_eq!(lines, want_lines);
    let mut dumps = vec![nft_exprs("POSTROUTING")];
    for (net, cid, ips) in fast_path_pods() {
        dumps.push(nft_exprs(&naming::chain_name(net, cid)));
        check_ipmasq(&target(net, cid), &ips).expect("check");
    }
    assert_eq!(dumps, want_dumps);
    assert!(dumps[0].iter().any(|l| l.contains("jump ->")), "{dumps:#?}");
    assert!(
        dumps[3].iter().any(|l| l.starts_with("[ bitwise")),
        "{dumps:#?}"
    );

    // A second ADD finds the chain: the exec path, adding nothing.
    for (net, cid, ips) in fast_path_pods() {
        setup_ipmasq(MasqBackend::Iptables, &target(net, cid), &ips).expect("setup again");
    }
    assert_eq!(nat_lines("iptables-save"), want_lines);
    for (net, cid, ips) in fast_path_pods() {
        teardown_ipmasq(&target(net, cid), &ips).expect("teardown");
    }
    assert_nat_clean();
}

/// The fast path's rules are deleted by the `iptables -D` commands the
/// reference's go-iptables DEL runs, and by our teardown.
#[test]
fn fast_path_rules_are_deleted_by_iptables_d_and_teardown() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    prepare_nat();
    let t = target(NET, CID);
    let ips = nets(&["10.22.0.2/16"]);
    setup_ipmasq(MasqBackend::Iptables, &t, &ips).expect("setup");
    assert_eq!(nat_lines("iptables-save"), reference_v4_lines());
    let c = naming::iptables_comment(NET, CID);
    let comment = ["-m", "comment", "--comment", &c];
    for rule in [
        &["POSTROUTING", "-s", "10.22.0.2/32", "-j", CHAIN][..],
        &[CHAIN, "-d", "10.22.0.0/16", "-j", "ACCEPT"],
        &[CHAIN, "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE"],
    ] {
        let args = [&["-t", "nat", "-C"][..], rule, &comment].concat();
        run("iptables", &args);
        let args = [&["-t", "nat", "-D"][..], rule, &comment].concat();
        run("iptables", &args);
    }
    assert_eq!(nat_lines("iptables-save"), vec![format!(":{CHAIN} -")]);
    run("iptables", &["-t", "nat", "-X", CHAIN]);
    assert_nat_clean();

    setup_ipmasq(MasqBackend::Iptables, &t, &ips).expect("setup after -X");
    assert_eq!(nat_lines("iptables-save"), reference_v4_lines());
    teardown_ipmasq(&t, &[]).expect("teardown");
    assert_nat_clean();
}

/// Feeds `script` to `prog` (`iptables-restore` or `ip6tables-restore`).
fn restore(prog: &str, script: &str) {
    let mut child = Command::new(prog)
        .args(["--noflush", "-w"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn restore");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), script.as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success(), "{prog}: {script}");
}

/// A restore script of the reference's lines for mynet/abc123, the legacy
/// `-s <net>/<prefix>` jump of old plugin versions, and another container's
/// chain (which must survive), for one family.
fn teardown_fixture(v6: bool) -> String {
    let c = r#""name: \"mynet\" id: \"abc123\"""#;
    let (lines, legacy, other_src, other_net) = if v6 {
        (
            reference_v6_lines(),
            "fd10:22::/64",
            "fd10:22::3/128",
            "fd10:22::/64",
        )
    } else {
        (
            reference_v4_lines(),
            "10.22.0.0/16",
            "10.22.0.3/32",
            "10.22.0.0/16",
        )
    };
    let other = naming::chain_name(NET, "other");
    let mut s = String::from("*nat\n");
    for l in lines {
        s += &if l.starts_with(':') {
            format!("{l} [0:0]\n")
        } else {
            format!("{l}\n")
        };
    }
    s += &format!("-A POSTROUTING -s {legacy} -m comment --comment {c} -j {CHAIN}\n");
    s += &format!(":{other} - [0:0]\n-A POSTROUTING -s {other_src} -j {other}\n");
    s += &format!("-A {other} -d {other_net} -j ACCEPT\nCOMMIT\n");
    s
}

/// What is left after the iptables teardown of mynet/abc123 on
/// [`teardown_fixture`] in a fresh node, with or without netlink.
fn left_after_teardown(netlink: bool) -> ([TeardownPath; 2], Vec<String>, Vec<String>) {
    std::thread::spawn(move || {
        let node = NodeNs::enter();
        node.assert_inside();
        restore("iptables-restore", &teardown_fixture(false));
        restore("ip6tables-restore", &teardown_fixture(true));
        assert_eq!(nat_lines("iptables-save").len(), 8);
        assert_eq!(nat_lines("ip6tables-save").len(), 8);
        let paths = teardown_ipmasq_iptables(NET, CID, netlink).expect("teardown");
        (
            paths,
            nat_lines("iptables-save"),
            nat_lines("ip6tables-save"),
        )
    })
    .join()
    .expect("teardown node")
}

/// Rules written by iptables-restore are removed by the netlink teardown
/// exactly as by the iptables-save/iptables-restore path, in both families:
/// the reference's lines, the legacy prefix jump; another container's chain
/// stays.
#[test]
fn netlink_teardown_equals_exec_teardown() {
    require_root!();
    let (exec_paths, exec_v4, exec_v6) = left_after_teardown(false);
    let (paths, v4, v6) = left_after_teardown(true);
    assert_eq!(exec_paths, [TeardownPath::Exec, TeardownPath::Exec]);
    assert_eq!(paths, [TeardownPath::Netlink, TeardownPath::Netlink]);
    assert_eq!(v4, exec_v4);
    assert_eq!(v6, exec_v6);
    let other = naming::chain_name(NET, "other");
    for left in [&v4, &v6] {
        assert_eq!(left.len(), 3, "{left:#?}");
        assert!(left.iter().all(|l| l.contains(&other)), "{left:#?}");
    }
}

/// A `goto` to the chain (`-g`) is a reference the netlink teardown finds
/// too; a second teardown finds nothing (probe) and runs nothing.
#[test]
fn netlink_teardown_removes_gotos_and_is_idempotent() {
    require_root!();
    let _node = NodeNs::enter();
    setup_ipmasq(
        MasqBackend::Iptables,
        &target(NET, CID),
        &nets(&["10.22.0.2/16"]),
    )
    .expect("setup");
    restore(
        "iptables-restore",
        &format!("*nat\n:KUBE-X - [0:0]\n-A KUBE-X -g {CHAIN}\nCOMMIT\n"),
    );
    let paths = teardown_ipmasq_iptables(NET, CID, true).expect("teardown");
    assert_eq!(paths, [TeardownPath::Netlink, TeardownPath::Absent]);
    assert_eq!(nat_lines("iptables-save"), vec![":KUBE-X -".to_string()]);
    let paths = teardown_ipmasq_iptables(NET, CID, true).expect("teardown again");
    assert_eq!(paths, [TeardownPath::Absent, TeardownPath::Absent]);
}

/// Our bridge's environment for the iptables-version tests: a fake
/// `iptables` first on `PATH` that answers `--version` with a chosen
/// version (appending a line to a counter file each time) and hands every
/// other call to the real one; a private version cache; the debug log.
struct FakeIptables {
    dir: TempDir,
}

impl FakeIptables {
    fn new(version: &str) -> FakeIptables {
        let dir = TempDir::new("fw-iptables-version");
        let fake = FakeIptables { dir };
        std::fs::create_dir_all(fake.bin_dir()).expect("mkdir bin");
        fake.write_script(version, "");
        fake
    }
    fn bin_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("bin")
    }
    /// (Re)writes the script; `extra` changes its size, as an upgrade would.
    fn write_script(&self, version: &str, extra: &str) {
        let path = std::env::var_os("PATH").expect("PATH");
        let real = std::env::split_paths(&path)
            .map(|d| d.join("iptables"))
            .find(|p| p.is_file())
            .expect("a real iptables on PATH");
        let script = format!(
            "#!/bin/sh\n# {extra}\nif [ \"$1\" = --version ]; then\n  echo x >> {calls}\n  \
             echo '{version}'\n  exit 0\nfi\nexec {real} \"$@\"\n",
            calls = self.calls_file().display(),
            real = real.display()
        );
        let file = self.bin_dir().join("iptables");
        std::fs::write(&file, script).expect("write fake iptables");
        let mut perms = std::fs::metadata(&file).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&file, perms).expect("chmod");
    }
    fn calls_file(&self) -> std::path::PathBuf {
        self.dir.path().join("version-calls")
    }
    fn cache(&self) -> std::path::PathBuf {
        self.dir.path().join("cache").join("iptables-version")
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
    /// How often `iptables --version` ran.
    fn version_calls(&self) -> usize {
        std::fs::read_to_string(self.calls_file())
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
    fn call(&self, cmd: &str, cid: &str, pod: &PodNs) -> PluginCall {
        let path = format!(
            "{}:{}",
            self.bin_dir().display(),
            std::env::var("PATH").expect("PATH")
        );
        let conf = reference_conf(&self.dir.path().join("data"));
        PluginCall::new(
            cmd,
            cid,
            &pod.path.display().to_string(),
            "eth0",
            &common::our_cni_path(),
        )
        .env("PATH", &path)
        .env(
            iptables_version::CACHE_ENV,
            &self.cache().display().to_string(),
        )
        .env(
            "CNI_RS_LOG",
            &self.dir.path().join("log").display().to_string(),
        )
        .stdin(conf)
    }
}

const FAST_PATH_LOG: &str = "written over nf_tables netlink";

/// With an iptables whose encoding no test has checked (here a fake
/// 1.8.7), the bridge writes and removes the masquerade rules with the
/// iptables tools, never over nf_tables netlink, and they are still the
/// reference's rules.
#[test]
fn unverified_iptables_version_takes_the_exec_path() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    prepare_nat();
    let fake = FakeIptables::new("iptables v1.8.7 (nf_tables)");
    let pod = PodNs::new();
    let bridge = common::bin("bridge");
    run_plugin(&bridge, &fake.call("ADD", CID, &pod)).expect_ok();
    assert_eq!(nat_lines("iptables-save"), reference_v4_lines());
    assert_eq!(nat_lines("ip6tables-save"), reference_v6_lines());
    let log = fake.log();
    assert!(
        log.contains("\"iptables v1.8.7 (nf_tables)\" is not a verified version"),
        "{log}"
    );
    assert!(!log.contains(FAST_PATH_LOG), "fast path taken:\n{log}");
    assert_eq!(fake.version_calls(), 1);
    run_plugin(&bridge, &fake.call("DEL", CID, &pod)).expect_ok();
    assert_nat_clean();
}

/// The verified version (a fake answering 1.8.9) takes the fast path, and
/// `iptables --version` runs once per iptables binary, not per call: the
/// cache is used until the binary changes or the cache is corrupt.
#[test]
fn iptables_version_is_detected_once_per_binary() {
    require_root!();
    let node = NodeNs::enter();
    node.assert_inside();
    prepare_nat();
    let version = "iptables v1.8.9 (nf_tables)";
    let fake = FakeIptables::new(version);
    let bridge = common::bin("bridge");
    let pods: Vec<(String, PodNs)> = (0..4).map(|i| (format!("pod{i}"), PodNs::new())).collect();
    let add = |i: usize| {
        let (cid, pod) = &pods[i];
        run_plugin(&bridge, &fake.call("ADD", cid, pod)).expect_ok();
        let chain = naming::chain_name(NET, cid);
        let log = fake.log();
        assert!(
            log.contains(&format!("ipMasq: {chain} {FAST_PATH_LOG}")),
            "pod {i}: fast path not taken:\n{log}"
        );
    };
    add(0);
    assert_eq!(fake.version_calls(), 1);
    add(1);
    assert_eq!(fake.version_calls(), 1, "cached: no second exec");

    fake.write_script(version, "upgraded");
    add(2);
    assert_eq!(fake.version_calls(), 2, "another binary: detected again");

    std::fs::write(fake.cache(), "garbage").expect("corrupt the cache");
    add(3);
    assert_eq!(fake.version_calls(), 3, "corrupt cache: detected again");
    let cache = std::fs::read_to_string(fake.cache()).expect("cache rewritten");
    assert!(
        cache.ends_with(&format!("\nversion {version}\n")),
        "{cache}"
    );
    assert!(!fake.log().contains("not a verified version"));

    for (cid, pod) in &pods {
        run_plugin(&bridge, &fake.call("DEL", cid, pod)).expect_ok();
    }
    assert_eq!(fake.version_calls(), 3, "DELs use the cache");
    assert_nat_clean();
}
