//! The netlink, netns and sysctl layers against a real kernel, inside
//! throwaway namespaces (a fake node on the test thread, a pod netns).

use std::net::IpAddr;

use cni::netlink::{BridgeVlan, InfoKind, Netlink, RouteSpec, VethSpec};
use cni::netns::{NetNs, NetnsError};
use cni_test_support::common::*;

fn net(s: &str) -> ipnet::IpNet {
    s.parse().expect("valid cidr")
}

#[test]
fn bridge_and_veth_lifecycle() {
    require_root!();
    let root = root_netns_inode();
    let node = NodeNs::enter();
    node.assert_inside();
    let pod = PodNs::new();
    let pod_ns = NetNs::open(&pod.path).expect("open pod netns");
    let mut nl = Netlink::open().expect("netlink in node");

    assert!(nl.link_by_name("br-test").expect("lookup").is_none());
    assert!(nl
        .create_bridge("br-test", Some(1400), false)
        .expect("create"));
    assert!(!nl
        .create_bridge("br-test", None, false)
        .expect("EEXIST tolerated"));
    let br = nl.link_by_name("br-test").expect("lookup").expect("exists");
    assert_eq!(br.kind, Some(InfoKind::Bridge));
    assert_eq!(br.mtu, Some(1400));
    nl.set_up(br.index).expect("up");
    nl.set_promisc(br.index, true).expect("promisc");
    assert!(nl.link_by_index(br.index).unwrap().unwrap().is_promisc());
    nl.set_promisc(br.index, false).expect("promisc off");

    let mac = [0x0a, 0x58, 0x0a, 0x0b, 0x0c, 0x0d];
    nl.create_veth(&VethSpec {
        host_name: "vethtest0001",
        peer_name: "eth0",
        peer_netns: &pod_ns,
        mtu: Some(1400),
        peer_mac: Some(mac),
        master: Some(br.index),
        host_up: true,
    })
    .expect("create veth");
    let host = nl.link_by_name("vethtest0001").unwrap().expect("host end");
    assert_eq!(host.kind, Some(InfoKind::Veth));
    assert_eq!(host.master, Some(br.index));
    assert!(host.is_up());
    assert!(
        nl.link_by_name("eth0").unwrap().is_none(),
        "peer must not be in the node"
    );

    let mut pnl = Netlink::open_in(&pod_ns).expect("netlink in pod");
    let eth0 = pnl.link_by_name("eth0").unwrap().expect("peer in pod");
    assert_eq!(eth0.mac_string(), "0a:58:0a:0b:0c:0d");
    assert_eq!(eth0.peer_index, Some(host.index));
    assert_eq!(eth0.mtu, Some(1400));
    assert!(!eth0.is_up());

    // The same container name again collides with EEXIST.
    let err = nl
        .create_veth(&VethSpec {
            host_name: "vethtest0002",
            peer_name: "eth0",
            peer_netns: &pod_ns,
            mtu: None,
            peer_mac: None,
            master: None,
            host_up: false,
        })
        .unwrap_err();
    assert!(err.is(nix::errno::Errno::EEXIST), "{err}");

    nl.set_bridge_port(host.index, true, true)
        .expect("brport flags");
    let detail = ip_json(&["-d", "link", "show", "vethtest0001"]);
    let slave = &detail[0]["linkinfo"]["info_slave_data"];
    assert_eq!(slave["hairpin"], true, "{detail}");
    assert_eq!(slave["isolated"], true, "{detail}");

    // Pinning a MAC and reading it back.
    let pin = [0x02, 0, 0, 0, 0, 0x42];
    nl.set_mac(br.index, &pin).expect("set mac");
    assert_eq!(
        nl.link_by_index(br.index).unwrap().unwrap().mac_string(),
        "02:00:00:00:00:42"
    );

    // Deleting the host end removes the pair; a second delete is a no-op.
    assert!(nl.del_link(host.index).expect("del"));
    assert!(!nl.del_link(host.index).expect("del again"));
    assert!(pnl.link_by_name("eth0").unwrap().is_none());
    assert_eq!(
        nl.links()
            .unwrap()
            .iter()
            .filter(|l| l.name == "br-test")
            .count(),
        1
    );
    assert_ne!(thread_netns_inode(), root);
}

#[test]
fn addresses_and_routes() {
    require_root!();
    let _node = NodeNs::enter();
    let mut nl = Netlink::open().expect("netlink");
    assert!(nl.create_bridge("br-addr", None, false).unwrap());
    let br = nl.link_by_name("br-addr").unwrap().unwrap();
    nl.set_up(br.index).unwrap();

    assert!(nl.add_address(br.index, net("10.77.0.1/24")).unwrap());
    assert!(
        !nl.add_address(br.index, net("10.77.0.1/24")).unwrap(),
        "EEXIST tolerated"
    );
    assert!(nl.add_address(br.index, net("fd77::1/64")).unwrap());
    let v4 = nl.addresses(Some(br.index), Some(false)).unwrap();
    assert_eq!(
        v4.iter().map(|a| a.net).collect::<Vec<_>>(),
        vec![net("10.77.0.1/24")]
    );
    let shown = ip_json(&["addr", "show", "br-addr"]);
    let infos = shown[0]["addr_info"].as_array().unwrap();
    assert!(
        infos
            .iter()
            .any(|a| a["local"] == "10.77.0.1" && a["broadcast"] == "10.77.0.255"),
        "{shown}"
    );
    let v6 = nl.addresses(Some(br.index), Some(true)).unwrap();
    assert!(v6.iter().any(|a| a.net == net("fd77::1/64")), "{v6:?}");

    let spec = RouteSpec {
        dst: Some(net("10.99.0.0/16")),
        gw: Some("10.77.0.254".parse::<IpAddr>().unwrap()),
        oif: Some(br.index),
        priority: Some(42),
        mtu: Some(1300),
        advmss: Some(1200),
        ..RouteSpec::default()
    };
    assert!(nl.add_route(&spec).unwrap());
    assert!(!nl.add_route(&spec).unwrap(), "identical route tolerated");
    let routes = nl.routes(false).unwrap();
    let r = routes
        .iter()
        .find(|r| r.dst == net("10.99.0.0/16"))
        .expect("route present");
    assert_eq!(r.gw, spec.gw);
    assert_eq!(r.priority, Some(42));
    assert_eq!(r.table, 254);
    let shown = ip_json(&["route", "show", "10.99.0.0/16"]);
    assert_eq!(shown[0]["metric"], 42, "{shown}");

    let table = RouteSpec {
        dst: Some(net("10.98.0.0/16")),
        oif: Some(br.index),
        table: Some(1000),
        scope: Some(253),
        ..RouteSpec::default()
    };
    assert!(nl.add_route(&table).unwrap());
    let r = nl
        .routes(false)
        .unwrap()
        .into_iter()
        .find(|r| r.dst == net("10.98.0.0/16"))
        .unwrap();
    assert_eq!((r.table, r.scope), (1000, 253));

    let default6 = RouteSpec {
        dst: Some(net("::/0")),
        gw: Some("fd77::fe".parse().unwrap()),
        oif: Some(br.index),
        ..RouteSpec::default()
    };
    assert!(nl.add_route(&default6).unwrap());
    assert!(nl
        .routes(true)
        .unwrap()
        .iter()
        .any(|r| r.dst == net("::/0") && r.gw == default6.gw));

    assert!(nl.del_route(&spec).unwrap());
    assert!(!nl.del_route(&spec).unwrap());
    assert!(nl.del_address(br.index, net("10.77.0.1/24")).unwrap());
    assert!(!nl.del_address(br.index, net("10.77.0.1/24")).unwrap());
}

#[test]
fn sysctl_inside_a_pod_namespace() {
    require_root!();
    let _node = NodeNs::enter();
    let pod = PodNs::new();
    let ns = NetNs::open(&pod.path).unwrap();
    let (before, changed) = ns
        .run(|| {
            let before = cni::sysctl::get("net/ipv4/conf/lo/arp_notify").unwrap();
            let changed = cni::sysctl::set("net/ipv4/conf/lo/arp_notify", "1").unwrap();
            (before, changed)
        })
        .unwrap();
    assert_eq!(before, "0");
    assert!(changed);
    let out = pod.exec(&["cat", "/proc/sys/net/ipv4/conf/lo/arp_notify"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    // The node's own value is untouched.
    assert_eq!(
        cni::sysctl::get("net/ipv4/conf/lo/arp_notify").unwrap(),
        "0"
    );
}

#[test]
fn netns_open_classifies_paths() {
    require_root!();
    let dir = TempDir::new("netns");
    let file = dir.path().join("not-a-netns");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(NetNs::open(&file), Err(NetnsError::NotNs { .. })));
    assert!(matches!(
        NetNs::open(dir.path().join("missing")),
        Err(NetnsError::NotExist { .. })
    ));
    let pod = PodNs::new();
    let path = pod.path.clone();
    assert!(NetNs::open(&path).is_ok());
    drop(pod);
    assert!(matches!(
        NetNs::open(&path),
        Err(NetnsError::NotExist { .. })
    ));
}

/// True when the kernel was built with CONFIG_BRIDGE_VLAN_FILTERING.
fn kernel_has_vlan_filtering(nl: &mut Netlink) -> bool {
    match nl.create_bridge("br-probe", None, true) {
        Ok(_) => {
            let probe = nl.link_by_name("br-probe").unwrap().unwrap();
            nl.del_link(probe.index).unwrap();
            true
        }
        Err(e) if e.is(nix::errno::Errno::EOPNOTSUPP) => false,
        Err(e) => panic!("probe vlan_filtering: {e}"),
    }
}

#[test]
fn bridge_port_vlans() {
    require_root!();
    let _node = NodeNs::enter();
    let pod = PodNs::new();
    let pod_ns = NetNs::open(&pod.path).unwrap();
    let mut nl = Netlink::open().unwrap();
    if !kernel_has_vlan_filtering(&mut nl) {
        eprintln!("skipped: kernel without CONFIG_BRIDGE_VLAN_FILTERING");
        return;
    }
    assert!(nl.create_bridge("br-vlan", None, true).unwrap());
    let br = nl.link_by_name("br-vlan").unwrap().unwrap();
    nl.create_veth(&VethSpec {
        host_name: "vethvlan0001",
        peer_name: "eth0",
        peer_netns: &pod_ns,
        mtu: None,
        peer_mac: None,
        master: Some(br.index),
        host_up: true,
    })
    .unwrap();
    let host = nl.link_by_name("vethvlan0001").unwrap().unwrap();
    // VLANs: drop the default, add a PVID and a tagged one.
    let before = nl.bridge_vlans(host.index).expect("vlans");
    assert!(before.iter().any(|v| v.vid == 1 && v.pvid), "{before:?}");
    for v in before {
        nl.bridge_vlan_del(host.index, v).expect("del vlan");
    }
    nl.bridge_vlan_add(
        host.index,
        BridgeVlan {
            vid: 100,
            pvid: true,
            untagged: true,
        },
    )
    .expect("add pvid");
    nl.bridge_vlan_add(
        host.index,
        BridgeVlan {
            vid: 200,
            pvid: false,
            untagged: false,
        },
    )
    .expect("add tagged");
    let mut after = nl.bridge_vlans(host.index).expect("vlans");
    after.sort_by_key(|v| v.vid);
    assert_eq!(
        after,
        vec![
            BridgeVlan {
                vid: 100,
                pvid: true,
                untagged: true
            },
            BridgeVlan {
                vid: 200,
                pvid: false,
                untagged: false
            }
        ]
    );
}
