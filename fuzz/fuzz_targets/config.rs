//! Config parsing: any stdin bytes through `NetConf::parse` and every
//! plugin's validation (host-local's `IpamConfig`, the bridge's
//! `BridgeConf`, GC's valid-attachments, `prevResult`). Must never panic;
//! a config that validates must name a safe store directory.
#![no_main]

use cni::args::CniArgs;
use cni::ipam::config::IpamConfig;
use cni::spec::NetConf;
use libfuzzer_sys::fuzz_target;

/// The bridge plugin's config module lives in the binary crate; it only uses
/// the library's public API, so it is compiled into this target as is.
#[allow(dead_code)]
#[path = "../../plugins/bridge/src/conf.rs"]
mod bridge_conf;

fuzz_target!(|data: &[u8]| {
    // The common fields, exactly as the skel parses stdin.
    let conf = NetConf::parse(data);
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        assert!(conf.is_err(), "NetConf accepted bytes serde_json rejects");
        return;
    };
    // host-local validates the raw object even when NetConf would not.
    if let Ok(ipam) = IpamConfig::parse(&value, None) {
        let dir = ipam.network_dir();
        assert_eq!(
            dir.parent(),
            Some(ipam.data_dir.as_path()),
            "{dir:?} escapes dataDir"
        );
        assert!(ipam.name != "." && ipam.name != ".." && !ipam.name.contains('/'));
        assert!(!ipam.range_sets.is_empty());
    }
    let _ = IpamConfig::parse(&value, Some("10.1.2.3"));
    let Ok(conf) = conf else { return };
    assert!(
        cni::spec::SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str())
            || cni::spec::check_version(&conf.cni_version).is_err()
    );
    let _ = conf.ipam_type();
    let _ = conf.prev_result();
    let _ = cni::skel::valid_attachments(&conf);
    for args in ["", "IgnoreUnknown=1;MAC=0a:00:00:00:00:01", "MAC=zz"] {
        if let Ok(a) = CniArgs::parse(args) {
            if let Ok(b) = bridge_conf::BridgeConf::load(&conf, &a) {
                assert!(b.vlan <= 4094);
                assert!(b.vlan_trunk.iter().all(|v| (1..=4094).contains(v)));
                assert!(!b.bridge.is_empty() && b.bridge.len() <= 15 && !b.bridge.contains('/'));
                assert!(!(b.hairpin && b.promisc));
            }
        }
    }
});
