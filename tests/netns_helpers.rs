//! Proves the test helpers isolate every test in its own namespaces.
mod common;

use common::*;

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
