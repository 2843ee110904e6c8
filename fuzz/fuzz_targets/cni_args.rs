//! `CNI_ARGS` parsing and the values plugins take from it (`IP=` for
//! host-local, `MAC=` for bridge). Must never panic, and a parse must keep
//! every pair.
#![no_main]

use cni::args::CniArgs;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(args) = CniArgs::parse(s) else { return };
    assert_eq!(args.as_str(), s);
    if s.is_empty() {
        assert!(args.is_empty());
    } else {
        assert_eq!(args.pairs().len(), s.split(';').count());
    }
    for (k, _) in args.pairs() {
        assert!(args.get(k).is_some(), "pair {k:?} not found by get");
        assert!(!k.contains(';') && !k.contains('='));
    }
    let _ = args.ignore_unknown();
    let _ = args.check_known(&["IP"]);
    let _ = args.check_known(&["MAC"]);
    if let Some(ip) = args.get("IP") {
        let _ = cni::ipam::range::parse_requested_ip(ip);
    }
    if let Some(mac) = args.get("MAC") {
        if let Some(m) = cni::netlink::parse_mac(mac) {
            assert_eq!(m.len(), 6);
        }
    }
});
