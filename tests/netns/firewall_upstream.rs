//! nftables ipMasq compatibility with an upstream `bridge` that has the
//! nftables backend (containernetworking/plugins >= v1.6.1). Debian ships
//! v1.1.1 (iptables only), so this test needs a locally built binary:
//!
//! ```sh
//! git -C plugins archive v1.6.2 | tar -x -C /tmp/plg
//! cd /tmp/plg && GOFLAGS=-mod=vendor go build -o /tmp/bridge-v162 ./plugins/main/bridge
//! CNI_UPSTREAM_BRIDGE=/tmp/bridge-v162 cargo test --test netns firewall_upstream:: -- --ignored
//! ```
//! (v1.6.2 builds offline from its vendor/ tree with Go 1.19.)

use std::path::{Path, PathBuf};
use std::process::Command;

use cni::firewall::{check_ipmasq, setup_ipmasq, teardown_ipmasq, MasqBackend, MasqTarget};
use cni_test_support::common::{
    result_nets, run_plugin, NodeNs, PluginCall, PodNs, TempDir, REFERENCE_CNI_PATH,
};

fn nft_table_text() -> String {
    let out = Command::new("nft")
        .args(["list", "table", "inet", "cni_plugins_masquerade"])
        .output()
        .expect("spawn nft");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn masq_rule_count() -> usize {
    nft_table_text().matches(" masquerade comment ").count()
}

#[test]
#[ignore = "needs CNI_UPSTREAM_BRIDGE=<bridge plugin >= v1.6.1> (see module docs)"]
fn nftables_rules_compatible_with_upstream_bridge() {
    require_root!();
    let upstream = PathBuf::from(
        std::env::var("CNI_UPSTREAM_BRIDGE")
            .expect("set CNI_UPSTREAM_BRIDGE to a bridge >= v1.6.1"),
    );
    let _node = NodeNs::enter();
    let pod = PodNs::new();
    let data = TempDir::new("fw-upstream");
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "mynet", "type": "bridge", "bridge": "cni0",
        "isGateway": true, "ipMasq": true, "ipMasqBackend": "nftables",
        "ipam": {"type": "host-local", "dataDir": data.path(),
                 "ranges": [[{"subnet": "10.22.0.0/16"}], [{"subnet": "fd10:22::/64"}]]}
    })
    .to_string();
    let call = |cmd: &str| {
        PluginCall::new(
            cmd,
            "abc123",
            &pod.path.display().to_string(),
            "eth0",
            Path::new(REFERENCE_CNI_PATH),
        )
        .stdin(conf.as_str())
    };
    let add = run_plugin(&upstream, &call("ADD")).expect_ok().json();
    let ips = result_nets(&add);
    let t = MasqTarget {
        network: "mynet",
        container_id: "abc123",
        ifname: "eth0",
    };
    let upstream_text = nft_table_text();
    assert_eq!(masq_rule_count(), 2, "{upstream_text}");
    check_ipmasq(&t, &ips).expect("our check accepts upstream rules");

    teardown_ipmasq(&t, &[]).expect("our teardown of upstream rules");
    assert_eq!(masq_rule_count(), 0);

    // From scratch, ours writes the identical table (comments included)...
    let del = Command::new("nft")
        .args(["delete", "table", "inet", "cni_plugins_masquerade"])
        .status()
        .expect("nft");
    assert!(del.success());
    setup_ipmasq(MasqBackend::Nftables, &t, &ips).expect("our setup");
    assert_eq!(nft_table_text(), upstream_text);
    // ...and the upstream DEL removes our rules.
    run_plugin(&upstream, &call("DEL")).expect_ok();
    assert_eq!(masq_rule_count(), 0);
}
