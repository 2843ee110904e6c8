//! Config parsing and validation tests (messages follow the reference).

use super::*;
use serde_json::json;

fn parse(v: Value) -> Result<IpamConfig, IpamError> {
    IpamConfig::parse(&v, None)
}

fn err(v: Value) -> IpamError {
    parse(v).expect_err("should be rejected")
}

fn ipam(ipam: Value) -> Value {
    json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge", "ipam": ipam})
}

#[test]
fn legacy_single_range() {
    let c = parse(ipam(json!({
        "type": "host-local", "subnet": "10.1.2.0/24", "rangeStart": "10.1.2.9",
        "rangeEnd": "10.1.2.20", "gateway": "10.1.2.30",
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.2.1", "priority": 5}],
        "dataDir": "/tmp/x", "resolvConf": "/etc/r.conf"
    })))
    .expect("valid");
    assert_eq!(c.name, "net1");
    assert_eq!(c.cni_version, "1.0.0");
    assert_eq!(c.range_sets.len(), 1);
    let r = &c.range_sets[0].ranges()[0];
    assert_eq!(r.to_string(), "10.1.2.9-10.1.2.20");
    assert_eq!(r.gateway.to_string(), "10.1.2.30");
    assert_eq!(c.routes.len(), 2);
    assert_eq!(
        c.routes[1].gw.map(|g| g.to_string()).as_deref(),
        Some("10.1.2.1")
    );
    assert_eq!(c.routes[1].priority, Some(5));
    assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(c.resolv_conf, Some(PathBuf::from("/etc/r.conf")));
    assert_eq!(c.network_dir(), PathBuf::from("/tmp/x/net1"));
}

#[test]
fn defaults() {
    let c = parse(ipam(json!({"type": "host-local", "subnet": "10.1.2.0/24"}))).expect("valid");
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(c.resolv_conf, None);
    assert!(c.routes.is_empty());
    let c = parse(json!({"name": "n", "ipam": {"subnet": "10.1.2.0/24"}})).expect("no version");
    assert_eq!(c.cni_version, "0.1.0");
}

#[test]
fn final_range_set_order() {
    let mut v = ipam(json!({
        "subnet": "10.1.0.0/24",
        "ranges": [[{"subnet": "10.3.0.0/24"}], [{"subnet": "fd10:3::/64"}]]
    }));
    v["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "10.2.0.0/24"}]]});
    let c = parse(v).expect("valid");
    let subnets: Vec<String> = c
        .range_sets
        .iter()
        .map(|s| s.ranges()[0].subnet.to_string())
        .collect();
    assert_eq!(
        subnets,
        vec!["10.2.0.0/24", "10.1.0.0/24", "10.3.0.0/24", "fd10:3::/64"]
    );
}

#[test]
fn go_field_spellings_accepted() {
    let mut v = ipam(
        json!({"Ranges": [[{"Subnet": "10.3.0.0/24", "RangeStart": "10.3.0.10", "GATEWAY": "10.3.0.254"}]]}),
    );
    v["runtimeConfig"] = json!({"IPRanges": [[{"Subnet": "10.2.0.0/24", "RangeEnd": "10.2.0.99"}]], "IPs": ["10.2.0.50"]});
    let c = parse(v).expect("valid");
    assert_eq!(c.range_sets[0].to_string(), "10.2.0.1-10.2.0.99");
    assert_eq!(c.range_sets[1].to_string(), "10.3.0.10-10.3.0.254");
    assert_eq!(
        c.range_sets[1].ranges()[0].gateway.to_string(),
        "10.3.0.254"
    );
    assert_eq!(
        c.requested_ips,
        vec!["10.2.0.50".parse::<IpAddr>().expect("ip")]
    );
}

#[test]
fn requested_ip_sources_merge_in_order() {
    let mut v = ipam(json!({"subnet": "10.1.0.0/16"}));
    v["args"] = json!({"cni": {"ips": ["10.1.0.20/16", "::ffff:10.1.0.21"]}});
    v["runtimeConfig"] = json!({"ips": ["10.1.0.30"]});
    let c = IpamConfig::parse(&v, Some("10.1.0.10")).expect("valid");
    let want: Vec<IpAddr> = ["10.1.0.10", "10.1.0.20", "10.1.0.21", "10.1.0.30"]
        .iter()
        .map(|s| s.parse().expect("ip"))
        .collect();
    assert_eq!(c.requested_ips, want);
    let e = IpamConfig::parse(&v, Some("bogus")).expect_err("bad CNI_ARGS IP");
    assert_eq!(e.code(), 4);
    v["args"] = json!({"cni": {"ips": ["nope"]}});
    assert_eq!(parse(v.clone()).expect_err("bad args ip").code(), 7);
    v["args"] = json!({"cni": {"ips": [5]}});
    assert_eq!(parse(v).expect_err("wrong type").code(), 6);
}

#[test]
fn validation_messages() {
    let cases: Vec<(Value, &str, u32)> = vec![
        (json!({"name": "n"}), "IPAM config missing 'ipam' key", 7),
        (json!({"name": "n", "ipam": null}), "IPAM config missing 'ipam' key", 7),
        (ipam(json!({"type": "host-local"})), "no IP ranges specified", 7),
        (ipam(json!({"ranges": []})), "no IP ranges specified", 7),
        (ipam(json!({"subnet": "10.1.2.0/31"})), "invalid range set 0: Network 10.1.2.0/31 too small to allocate from", 7),
        (ipam(json!({"subnet": "10.1.2.7/32"})), "invalid range set 0: Network 10.1.2.7/32 too small to allocate from", 7),
        (ipam(json!({"subnet": "fd10::/127"})), "invalid range set 0: Network fd10::/127 too small to allocate from", 7),
        (ipam(json!({"subnet": "fd10::/128"})), "invalid range set 0: Network fd10::/128 too small to allocate from", 7),
        (ipam(json!({"subnet": "10.1.2.3/24"})), "invalid range set 0: Network has host bits set. For a subnet mask of length 24 the network address is 10.1.2.0", 7),
        (ipam(json!({"subnet": "10.1.2.0/24", "rangeStart": "10.1.3.1"})), "invalid range set 0: RangeStart 10.1.3.1 not in network 10.1.2.0/24", 7),
        (ipam(json!({"subnet": "10.1.2.0/24", "rangeEnd": "10.1.3.1"})), "invalid range set 0: RangeEnd 10.1.3.1 not in network 10.1.2.0/24", 7),
        (ipam(json!({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.50", "rangeEnd": "10.1.2.40"})), "invalid range set 0: RangeStart 10.1.2.50 is after RangeEnd 10.1.2.40 in network 10.1.2.0/24", 7),
        (ipam(json!({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "fd10::/64"}]]})), "invalid range set 0: mixed address families", 7),
        (ipam(json!({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "10.1.2.0/25"}]]})), "invalid range set 0: subnets 10.1.2.1-10.1.2.254 and 10.1.2.1-10.1.2.126 overlap", 7),
        (ipam(json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.0.0/16"}]]})), "range set 0 overlaps with 1", 7),
        (ipam(json!({"subnet": "10.1.2.0/24", "ranges": [[{"subnet": "10.1.3.0/24"}], [{"subnet": "10.1.2.128/25"}]]})), "range set 0 overlaps with 2", 7),
        (ipam(json!({"ranges": [[]]})), "invalid range set 0: empty range set", 7),
        (ipam(json!({"ranges": [[{"rangeStart": "10.1.2.1"}]]})), "invalid range set 0: ipam.ranges[0][0]: missing \"subnet\"", 7),
        (ipam(json!({"subnet": "10.1.2.0"})), "invalid range set 0: ipam.subnet: \"10.1.2.0\" is not a CIDR (like 10.1.0.0/16)", 7),
        (ipam(json!({"subnet": "10.1.2.0/24", "gateway": "10.1.2.x"})), "invalid range set 0: ipam.gateway: \"10.1.2.x\" is not an IP address", 7),
        (ipam(json!({"subnet": 5})), "ipam.subnet: expected a string, got a number", 6),
        (ipam(json!({"ranges": {"subnet": "10.1.2.0/24"}})), "ipam.ranges: expected an array, got an object", 6),
        (ipam(json!({"ranges": [{"subnet": "10.1.2.0/24"}]})), "invalid range set 0: ipam.ranges[0]: a range set must be an array of ranges, got an object", 6),
        (ipam(json!({"subnet": "10.1.2.0/24", "routes": [{"gw": "10.1.2.1"}]})), "ipam.routes[0]: missing \"dst\"", 7),
        (ipam(json!({"subnet": "10.1.2.0/24", "dataDir": 7})), "ipam.dataDir: expected a string, got a number", 6),
        (json!({"name": "n", "ipam": "host-local"}), "ipam: expected an object, got a string", 6),
        (json!([1]), "network config must be a JSON object", 6),
    ];
    for (v, want, code) in cases {
        let e = err(v.clone());
        assert_eq!(e.to_string(), want, "config {v}");
        assert_eq!(e.code(), code, "config {v}");
    }
}

#[test]
fn old_versions_limit_one_set_per_family() {
    let two_v4 = |version: &str| json!({"cniVersion": version, "name": "n", "ipam": {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]}});
    for v in ["0.1.0", "0.2.0"] {
        let e = err(two_v4(v));
        assert_eq!(
            e.to_string(),
            format!("CNI version {v} does not support more than 1 address per family")
        );
    }
    for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        parse(two_v4(v)).expect(v);
    }
    // One per family is fine even for 0.2.0.
    parse(json!({"cniVersion": "0.2.0", "name": "n", "ipam": {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd10::/64"}]]}}))
        .expect("dual stack 0.2.0");
}

#[test]
fn network_name_cannot_escape_data_dir() {
    for name in ["", ".", "..", "a/b", "../x", "/abs"] {
        let v = json!({"cniVersion": "1.0.0", "name": name, "ipam": {"subnet": "10.1.0.0/24"}});
        let e = err(v);
        assert_eq!(e.code(), 7, "{name:?}");
    }
    parse(json!({"name": "..a", "ipam": {"subnet": "10.1.0.0/24"}}))
        .expect("dots inside a name are fine");
}

#[test]
fn from_slice_decode_error() {
    let e = IpamConfig::from_slice(b"{not json", None).expect_err("malformed");
    assert_eq!(e.code(), 6);
    assert!(
        e.to_string().starts_with("failed to parse network config"),
        "{e}"
    );
}

#[test]
fn case_insensitive_lookup_prefers_exact() {
    let m = json!({"subnet": "a", "Subnet": "b", "GW": null});
    let m = m.as_object().expect("object");
    assert_eq!(get_ci(m, "subnet"), Some(&json!("a")));
    assert_eq!(
        get_ci(m, "SUBNET")
            .and_then(Value::as_str)
            .map(|s| s == "a" || s == "b"),
        Some(true)
    );
    assert_eq!(get_ci(m, "gw"), None);
}

#[test]
fn many_range_sets_are_checked_quickly_and_report_the_first_pair() {
    let sets: Vec<Value> = (0..65_536u32)
        .map(|i| {
            let base = std::net::Ipv4Addr::from(0x0a00_0000 + i * 4);
            json!([{ "subnet": format!("{base}/30") }])
        })
        .collect();
    let started = std::time::Instant::now();
    let c = parse(ipam(json!({ "ranges": sets.clone() }))).expect("disjoint");
    assert_eq!(c.range_sets.len(), 65_536);
    // The last two overlap (reliability corpus case ranges-65k-sets-overlap-at-end).
    let mut overlapping = sets.clone();
    overlapping.push(json!([{ "subnet": "10.3.255.252/30" }]));
    assert_eq!(
        err(ipam(json!({ "ranges": overlapping }))).to_string(),
        "range set 65535 overlaps with 65536"
    );
    // Several overlapping pairs: the lowest first index, then the lowest partner.
    let mut several = sets;
    several.push(json!([{ "subnet": "10.0.0.8/30" }])); // overlaps set 2
    several.push(json!([{ "subnet": "10.0.0.4/30" }])); // overlaps set 1
    several.push(json!([{ "subnet": "10.0.0.0/8" }])); // overlaps everything
    assert_eq!(
        err(ipam(json!({ "ranges": several }))).to_string(),
        "range set 0 overlaps with 65538"
    );
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
}
