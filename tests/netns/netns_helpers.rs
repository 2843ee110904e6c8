//! Proves the test helpers isolate every test in its own namespaces.

use cni_test_support::common::*;

#[test]
fn node_and_pod_namespaces_are_private() {
    require_root!();
    let root = root_netns_inode();
    let node = NodeNs::enter();
    node.assert_inside();
    assert_ne!(thread_netns_inode(), root);
    let pod = PodNs::new();
    let links = pod.ip_json(&["link", "show"]);
    let names: Vec<&str> = links
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .collect();
    assert_eq!(names, vec!["lo"], "a fresh pod netns holds only lo");
    // A link made in the node stays in the node.
    let st = std::process::Command::new("ip")
        .args(["link", "add", "probe0", "type", "bridge"])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        ip_json(&["link", "show", "probe0"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let path = pod.path.clone();
    drop(pod);
    assert!(!path.exists(), "pod netns must vanish when dropped");
}

#[test]
fn leak_check_sees_links_and_nat_rules() {
    require_root!();
    // Use a node netns as the "machine" so nothing real is touched.
    let _node = NodeNs::enter();
    let here = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
    let before = MachineSnapshot::take_in(&here);
    assert_eq!(
        before,
        MachineSnapshot::take_in(&here),
        "stable when nothing changes"
    );
    let run = |argv: &[&str]| {
        let st = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .status()
            .unwrap();
        assert!(st.success(), "{argv:?}");
    };
    run(&[
        "ip",
        "link",
        "add",
        "vethleak0",
        "type",
        "veth",
        "peer",
        "name",
        "vethleak1",
    ]);
    let with_veth = MachineSnapshot::take_in(&here);
    assert_ne!(before, with_veth, "a leaked veth is seen");
    run(&["ip", "link", "del", "vethleak0"]);
    assert_eq!(before, MachineSnapshot::take_in(&here));
    run(&["iptables", "-w", "-t", "nat", "-N", "CNI-leak"]);
    assert_ne!(
        before,
        MachineSnapshot::take_in(&here),
        "a leaked CNI chain is seen"
    );
    run(&["iptables", "-w", "-t", "nat", "-X", "CNI-leak"]);
}
