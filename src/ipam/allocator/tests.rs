//! Table tests of the allocator against the in-memory store.

use super::*;
use crate::ipam::mem_store::MemStore;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test IP")
}

fn range(subnet: &str, start: Option<&str>, end: Option<&str>) -> Range {
    Range::new(
        subnet.parse().expect("test CIDR"),
        start.map(ip),
        end.map(ip),
        None,
    )
    .expect("valid range")
}

fn set(ranges: Vec<Range>) -> RangeSet {
    RangeSet::new(ranges).expect("valid set")
}

fn lease(store: &mut MemStore, addr: &str, id: &str) {
    store.insert_raw(addr, format!("{id}\r\neth0").as_bytes());
}

/// Allocates once for a fresh container and returns the address.
fn next(store: &mut MemStore, sets: &[RangeSet], id: &str) -> Result<Vec<IpAddr>, IpamError> {
    let mut a = Allocator::new(store)?;
    Ok(a.allocate(sets, id, "eth0", &[])?
        .into_iter()
        .map(|x| x.address.addr())
        .collect())
}

#[test]
fn iteration_order_table() {
    let s = set(vec![range("10.1.2.0/29", None, None)]); // .1-.6, gw .1
    let two = set(vec![
        range("10.1.2.0/29", None, None),
        range("10.1.3.0/29", Some("10.1.3.4"), None),
    ]);
    struct Case {
        name: &'static str,
        set: RangeSet,
        last: Option<&'static str>,
        leased: &'static [&'static str],
        want: &'static str,
    }
    let cases = [
        Case {
            name: "empty store skips gateway",
            set: s.clone(),
            last: None,
            leased: &[],
            want: "10.1.2.2",
        },
        Case {
            name: "continues after last reserved",
            set: s.clone(),
            last: Some("10.1.2.3"),
            leased: &[],
            want: "10.1.2.4",
        },
        Case {
            name: "from middle skips taken",
            set: s.clone(),
            last: Some("10.1.2.3"),
            leased: &["10.1.2.4", "10.1.2.5"],
            want: "10.1.2.6",
        },
        Case {
            name: "wraps from end",
            set: s.clone(),
            last: Some("10.1.2.6"),
            leased: &[],
            want: "10.1.2.2",
        },
        Case {
            name: "wraps past taken",
            set: s.clone(),
            last: Some("10.1.2.5"),
            leased: &["10.1.2.6", "10.1.2.2"],
            want: "10.1.2.3",
        },
        Case {
            name: "last reserved itself is last resort",
            set: s.clone(),
            last: Some("10.1.2.4"),
            leased: &["10.1.2.2", "10.1.2.3", "10.1.2.5", "10.1.2.6"],
            want: "10.1.2.4",
        },
        Case {
            name: "last outside set ignored",
            set: s.clone(),
            last: Some("10.9.9.9"),
            leased: &[],
            want: "10.1.2.2",
        },
        Case {
            name: "moves to next range",
            set: two.clone(),
            last: Some("10.1.2.6"),
            leased: &[],
            want: "10.1.3.4",
        },
        Case {
            name: "wraps to first range",
            set: two.clone(),
            last: Some("10.1.3.6"),
            leased: &[],
            want: "10.1.2.2",
        },
        Case {
            name: "second range when first full",
            set: two.clone(),
            last: None,
            leased: &["10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"],
            want: "10.1.3.4",
        },
    ];
    for c in cases {
        let mut store = MemStore::new();
        if let Some(l) = c.last {
            store.last.insert(0, ip(l));
        }
        for (i, l) in c.leased.iter().enumerate() {
            lease(&mut store, l, &format!("other{i}"));
        }
        let got = next(&mut store, std::slice::from_ref(&c.set), "ctr").expect(c.name);
        assert_eq!(got, vec![ip(c.want)], "{}", c.name);
        assert_eq!(
            store.last.get(&0),
            Some(&ip(c.want)),
            "{}: last_reserved",
            c.name
        );
    }
}

#[test]
fn sequential_allocations_round_robin() {
    let sets = [set(vec![range("10.1.2.0/29", None, None)])];
    let mut store = MemStore::new();
    let mut got = Vec::new();
    for i in 0..5 {
        got.extend(next(&mut store, &sets, &format!("c{i}")).expect("allocate"));
    }
    let want: Vec<IpAddr> = ["10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"]
        .iter()
        .map(|s| ip(s))
        .collect();
    assert_eq!(got, want);
    // Free .3: the next allocation still does not reuse it at once... it is the only one.
    Allocator::new(&mut store)
        .expect("open")
        .release("c1", "eth0")
        .expect("release");
    assert_eq!(
        next(&mut store, &sets, "c9").expect("allocate"),
        vec![ip("10.1.2.3")]
    );
}

#[test]
fn freed_address_not_reused_immediately() {
    let sets = [set(vec![range("10.1.2.0/24", None, None)])];
    let mut store = MemStore::new();
    next(&mut store, &sets, "a").expect("a"); // .2
    next(&mut store, &sets, "b").expect("b"); // .3
    Allocator::new(&mut store)
        .expect("open")
        .release("a", "eth0")
        .expect("release");
    assert_eq!(
        next(&mut store, &sets, "c").expect("c"),
        vec![ip("10.1.2.4")]
    );
}

#[test]
fn exhaustion_message_lists_ranges() {
    let sets = [set(vec![
        range("10.1.2.0/30", None, None),
        range("10.1.3.0/30", None, None),
    ])];
    let mut store = MemStore::new();
    // /30: .1 (gateway) and .2 usable window .1-.2 → only .2 per range.
    assert_eq!(
        next(&mut store, &sets, "a").expect("a"),
        vec![ip("10.1.2.2")]
    );
    assert_eq!(
        next(&mut store, &sets, "b").expect("b"),
        vec![ip("10.1.3.2")]
    );
    let e = next(&mut store, &sets, "c").expect_err("exhausted");
    assert_eq!(
        e.to_string(),
        "failed to allocate for range 0: no IP addresses available in range set: 10.1.2.1-10.1.2.2,10.1.3.1-10.1.3.2"
    );
    assert_eq!(e.code(), 11);
    assert_eq!(store.files.len(), 2);
}

#[test]
fn never_hands_out_network_gateway_broadcast() {
    let sets = [set(vec![range(
        "10.1.2.0/29",
        Some("10.1.2.0"),
        Some("10.1.2.7"),
    )])];
    let mut store = MemStore::new();
    let mut got = Vec::new();
    while let Ok(v) = next(&mut store, &sets, &format!("c{}", got.len())) {
        got.extend(v);
    }
    got.sort_by_key(|ip| to_u128(*ip));
    let want: Vec<IpAddr> = (2..=6).map(|i| ip(&format!("10.1.2.{i}"))).collect();
    assert_eq!(got, want);
}

#[test]
fn ipv6_and_dual_stack() {
    let sets = [
        set(vec![range("10.1.2.0/24", None, None)]),
        set(vec![range("fd10:1::/64", None, None)]),
    ];
    let mut store = MemStore::new();
    let mut a = Allocator::new(&mut store).expect("open");
    let got = a.allocate(&sets, "ctr", "eth0", &[]).expect("allocate");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].address.to_string(), "10.1.2.2/24");
    assert_eq!(got[0].gateway, ip("10.1.2.1"));
    assert_eq!(got[0].set, 0);
    assert_eq!(got[1].address.to_string(), "fd10:1::2/64");
    assert_eq!(got[1].gateway, ip("fd10:1::1"));
    assert_eq!(got[1].set, 1);
    assert_eq!(store.last.get(&1), Some(&ip("fd10:1::2")));
}

#[test]
fn requested_ips() {
    let sets = [
        set(vec![range("10.1.2.0/24", None, None)]),
        set(vec![range("fd10:1::/64", None, None)]),
    ];
    let mut store = MemStore::new();
    lease(&mut store, "10.1.2.9", "other");
    let mut a = Allocator::new(&mut store).expect("open");

    let got = a
        .allocate(&sets, "c1", "eth0", &[ip("fd10:1::50"), ip("10.1.2.50")])
        .expect("requested");
    assert_eq!(got[0].address.to_string(), "10.1.2.50/24");
    assert_eq!(got[1].address.to_string(), "fd10:1::50/64");

    let e = a
        .allocate(&sets, "c2", "eth0", &[ip("10.1.2.1")])
        .expect_err("gw");
    assert_eq!(
        e.to_string(),
        "failed to allocate for range 0: requested ip 10.1.2.1 is subnet's gateway"
    );
    let e = a
        .allocate(&sets, "c2", "eth0", &[ip("10.1.2.9")])
        .expect_err("taken");
    assert_eq!(
        e.to_string(),
        "failed to allocate for range 0: requested IP address 10.1.2.9 is not available in range set 10.1.2.1-10.1.2.254"
    );
    let e = a
        .allocate(&sets, "c2", "eth0", &[ip("10.9.9.9"), ip("10.1.2.60")])
        .expect_err("outside");
    assert_eq!(
        e.to_string(),
        "failed to allocate all requested IPs: 10.9.9.9"
    );
    // Everything from the failed calls was rolled back.
    assert!(!a.holds("c2", "eth0"));
    // Two requested in one family: the second is left over.
    let e = a
        .allocate(&sets, "c3", "eth0", &[ip("10.1.2.70"), ip("10.1.2.71")])
        .expect_err("two in one set");
    assert_eq!(
        e.to_string(),
        "failed to allocate all requested IPs: 10.1.2.71"
    );
    assert!(!a.holds("c3", "eth0"));
    // Mapped form is the same address.
    let got = a
        .allocate(&sets, "c4", "eth0", &[ip("::ffff:10.1.2.80")])
        .expect("mapped");
    assert_eq!(got[0].address.to_string(), "10.1.2.80/24");
    drop(a);
    assert!(store.files.contains_key("10.1.2.80"));
    // other, c1 (v4+v6), c4 (v4 requested + v6 allocated).
    assert_eq!(store.files.len(), 5);
}

#[test]
fn plan_requested_needs_no_store() {
    let sets = [
        set(vec![range("10.1.2.0/24", None, None)]),
        set(vec![range("fd10:1::/64", None, None)]),
    ];
    assert_eq!(
        plan_requested(&sets, &[]).expect("nothing"),
        vec![None, None]
    );
    assert_eq!(
        plan_requested(
            &sets,
            &[ip("fd10:1::5"), ip("::ffff:10.1.2.5"), ip("10.1.2.5")]
        )
        .expect("one per set, duplicates once"),
        vec![Some(ip("10.1.2.5")), Some(ip("fd10:1::5"))]
    );
    let msg = |r: Result<Vec<Option<IpAddr>>, IpamError>| r.expect_err("bad").to_string();
    assert_eq!(
        msg(plan_requested(&sets, &[ip("10.99.0.5")])),
        "failed to allocate all requested IPs: 10.99.0.5"
    );
    assert_eq!(
        msg(plan_requested(&sets, &[ip("10.1.2.1")])),
        "failed to allocate for range 0: requested ip 10.1.2.1 is subnet's gateway"
    );
    // Outside the window (the default window starts after the network).
    assert_eq!(
        msg(plan_requested(&sets, &[ip("fd10:1::")])),
        "failed to allocate all requested IPs: fd10:1::"
    );
    let wide = [set(vec![range(
        "10.1.4.0/24",
        Some("10.1.4.0"),
        Some("10.1.4.255"),
    )])];
    assert_eq!(
        msg(plan_requested(&wide, &[ip("10.1.4.255")])),
        "failed to allocate for range 0: requested ip 10.1.4.255 is the network or broadcast address of 10.1.4.0/24"
    );
    let gw_only = set(vec![range(
        "10.1.3.0/30",
        Some("10.1.3.1"),
        Some("10.1.3.1"),
    )]);
    let e = plan_requested(&[gw_only], &[]).expect_err("nothing allocatable");
    assert!(matches!(e, IpamError::Exhausted(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "failed to allocate for range 0: no IP addresses available in range set: 10.1.3.1-10.1.3.1"
    );
}

#[test]
fn plan_requested_scales_to_many_sets_and_requests() {
    // 65 536 one-/30 sets and 100 000 requests (the first of each pair of
    // duplicates counts): no O(sets x requests) or O(requests^2) walk.
    let sets: Vec<RangeSet> = (0..65_536u32)
        .map(|i| {
            let base = std::net::Ipv4Addr::from(0x0a00_0000 + i * 4);
            set(vec![range(&format!("{base}/30"), None, None)])
        })
        .collect();
    let wanted = |i: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i * 4 + 2));
    let requested: Vec<IpAddr> = (0..100_000u32).map(|i| wanted(i % 50_000)).collect();
    let started = std::time::Instant::now();
    let plan = plan_requested(&sets, &requested).expect("one per set");
    assert_eq!(plan.iter().filter(|p| p.is_some()).count(), 50_000);
    assert_eq!(plan[49_999], Some(wanted(49_999)));
    assert_eq!(plan[50_000], None);
    // Two addresses for one set: the first in request order wins.
    let e = plan_requested(&sets, &[wanted(7), ip("10.0.0.29"), ip("10.99.0.1")])
        .expect_err("second in set 7");
    assert_eq!(
        e.to_string(),
        "failed to allocate all requested IPs: 10.0.0.29 10.99.0.1"
    );
    assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
}

#[test]
fn duplicate_add_is_rejected() {
    let sets = [set(vec![range("10.1.2.0/24", None, None)])];
    let mut store = MemStore::new();
    next(&mut store, &sets, "ctr").expect("first");
    let e = next(&mut store, &sets, "ctr").expect_err("second");
    assert_eq!(
        e.to_string(),
        "failed to allocate for range 0: 10.1.2.2 has been allocated to ctr, duplicate allocation is not allowed"
    );
    // Also with a requested IP, and another ifname is fine.
    let mut a = Allocator::new(&mut store).expect("open");
    assert!(a
        .allocate(&sets, "ctr", "eth0", &[ip("10.1.2.30")])
        .is_err());
    assert!(a.allocate(&sets, "ctr", "eth1", &[]).is_ok());
    drop(a);
    assert_eq!(store.files.len(), 2);
}

#[test]
fn failure_in_later_set_rolls_back_earlier_sets() {
    let sets = [
        set(vec![range("10.1.2.0/24", None, None)]),
        set(vec![range("10.1.3.0/30", None, None)]),
    ];
    let mut store = MemStore::new();
    lease(&mut store, "10.1.3.2", "other");
    let e = next(&mut store, &sets, "ctr").expect_err("set 1 full");
    assert!(
        e.to_string()
            .starts_with("failed to allocate for range 1: no IP addresses"),
        "{e}"
    );
    assert_eq!(store.files.keys().collect::<Vec<_>>(), vec!["10.1.3.2"]);

    // An I/O failure in set 1 also rolls back set 0.
    let mut store = MemStore::new();
    store.fail_reserve_after = Some(1);
    let e = next(&mut store, &sets, "ctr").expect_err("io");
    assert_eq!(e.code(), 5);
    assert!(store.files.is_empty());
}

#[test]
fn release_and_legacy_fallback() {
    let mut store = MemStore::new();
    lease(&mut store, "10.1.2.2", "ctr");
    store.insert_raw("10.1.2.3", b"ctr\r\neth1");
    store.insert_raw("10.1.2.4", b"ctr");
    store.insert_raw("fd10::5", b"old");
    let mut a = Allocator::new(&mut store).expect("open");
    // Exact match wins; the legacy file of the same id stays.
    assert_eq!(
        a.release("ctr", "eth0").expect("release"),
        vec![ip("10.1.2.2")]
    );
    assert!(a.holds("ctr", "eth1"));
    // No exact match for eth9: the legacy id-only file matches.
    assert!(a.holds("ctr", "eth9"));
    assert_eq!(
        a.release("ctr", "eth9").expect("release"),
        vec![ip("10.1.2.4")]
    );
    assert_eq!(
        a.release("old", "eth0").expect("release"),
        vec![ip("fd10::5")]
    );
    // Idempotent.
    assert!(a.release("old", "eth0").expect("again").is_empty());
    assert!(a.release("nobody", "eth0").expect("unknown").is_empty());
    drop(a);
    assert_eq!(store.files.keys().collect::<Vec<_>>(), vec!["10.1.2.3"]);
}

#[test]
fn gc_keeps_only_valid_attachments() {
    let mut store = MemStore::new();
    lease(&mut store, "10.1.2.2", "keep");
    store.insert_raw("10.1.2.3", b"keep\r\neth1");
    lease(&mut store, "10.1.2.4", "gone");
    store.insert_raw("10.1.2.5", b"keep");
    store.insert_raw("10.1.2.6", b"gone-legacy");
    store.insert_raw("10.1.2.7", b"");
    store.insert_raw("10.1.2.8", &[0xff, 0x00]);
    store.last.insert(0, ip("10.1.2.8"));
    let mut a = Allocator::new(&mut store).expect("open");
    let valid = vec![("keep".to_string(), "eth0".to_string())];
    let removed = a.gc(&valid).expect("gc");
    let want: Vec<IpAddr> = ["10.1.2.3", "10.1.2.4", "10.1.2.6", "10.1.2.7", "10.1.2.8"]
        .iter()
        .map(|s| ip(s))
        .collect();
    assert_eq!(removed, want);
    drop(a);
    assert_eq!(
        store.files.keys().collect::<Vec<_>>(),
        vec!["10.1.2.2", "10.1.2.5"]
    );
    assert_eq!(
        store.last.get(&0),
        Some(&ip("10.1.2.8")),
        "GC never touches last_reserved"
    );
    // Empty valid list releases everything.
    let mut a = Allocator::new(&mut store).expect("open");
    assert_eq!(a.gc(&[]).expect("gc all").len(), 2);
    drop(a);
    assert!(store.files.is_empty());
}

#[test]
fn orphans_block_until_reclaimed() {
    let sets = [set(vec![range("10.1.2.0/29", None, None)])];
    let mut store = MemStore::new();
    store.insert_raw("10.1.2.2", b"");
    let mut a = Allocator::new(&mut store).expect("open");
    assert!(!a.holds("x", "eth0"));
    assert_eq!(a.reclaim_orphans().expect("reclaim"), vec![ip("10.1.2.2")]);
    let got = a.allocate(&sets, "ctr", "eth0", &[]).expect("allocate");
    assert_eq!(got[0].address.addr(), ip("10.1.2.2"));
    drop(a);
    assert_eq!(
        store.files.get("10.1.2.2").map(Vec::as_slice),
        Some(&b"ctr\r\neth0"[..])
    );
}

#[test]
fn reclaimed_orphan_keeps_address_held_under_another_key() {
    // An empty canonical file and a live non-canonical one for the same
    // address: reclaiming the orphan must not free the address.
    let sets = [set(vec![range("10.1.2.0/29", None, None)])]; // .2-.6
    let mut store = MemStore::new();
    store.insert_raw("10.1.2.2", b"");
    store.insert_raw("::ffff:10.1.2.2", b"other\r\neth0");
    let mut a = Allocator::new(&mut store).expect("open");
    assert_eq!(a.index().len(), 1, "one address, two keys");
    assert_eq!(a.index().iter().count(), 2);
    assert_eq!(a.reclaim_orphans().expect("reclaim"), vec![ip("10.1.2.2")]);
    assert!(a.index().is_leased(ip("10.1.2.2")));
    let got = a.allocate(&sets, "ctr", "eth0", &[]).expect("allocate");
    assert_eq!(got[0].address.addr(), ip("10.1.2.3"));
    // Requesting it explicitly is refused too.
    let e = a
        .allocate(&sets, "ctr2", "eth0", &[ip("10.1.2.2")])
        .expect_err("taken under another key");
    assert!(e.to_string().contains("not available"), "{e}");
    // A set whose only free address is held under a non-canonical key is full.
    let tiny = set(vec![range(
        "10.1.2.0/29",
        Some("10.1.2.2"),
        Some("10.1.2.2"),
    )]);
    assert!(!a.has_free(&tiny));
    // DEL of the other owner removes its non-canonical key and frees it.
    assert_eq!(
        a.release("other", "eth0").expect("release"),
        vec![ip("10.1.2.2")]
    );
    assert!(!a.index().is_leased(ip("10.1.2.2")));
    assert!(a.has_free(&tiny));
    drop(a);
    assert!(!store.files.contains_key("::ffff:10.1.2.2"));
}

#[test]
fn gc_and_release_remove_every_key_of_an_address() {
    let mut store = MemStore::new();
    lease(&mut store, "10.1.2.3", "a");
    store.insert_raw("::ffff:10.1.2.3", b"a\r\neth0");
    lease(&mut store, "10.1.2.4", "b");
    store.insert_raw("::ffff:10.1.2.4", b"");
    let mut a = Allocator::new(&mut store).expect("open");
    assert_eq!(a.held_by("a", "eth0"), vec![ip("10.1.2.3")]);
    assert_eq!(a.gc(&[]).expect("gc"), vec![ip("10.1.2.3"), ip("10.1.2.4")]);
    assert!(a.index().is_empty());
    drop(a);
    assert!(store.files.is_empty(), "{:?}", store.files.keys());
}

#[test]
fn has_free_counts() {
    let s = set(vec![range("10.1.2.0/29", None, None)]); // usable .2-.6
    let mut store = MemStore::new();
    for i in 2..=6 {
        lease(&mut store, &format!("10.1.2.{i}"), &format!("c{i}"));
    }
    assert!(!Allocator::new(&mut store).expect("open").has_free(&s));
    store.files.insert("10.1.2.6".into(), Vec::new()); // orphan: reclaimable
    assert!(Allocator::new(&mut store).expect("open").has_free(&s));
    let v6 = set(vec![range("fd10::/64", None, None)]);
    assert!(Allocator::new(&mut store).expect("open").has_free(&v6));
}

#[test]
fn has_free_with_many_ranges_counts_per_range() {
    // 2000 /30 ranges in one set, listed in descending order (the binary
    // search must not rely on configuration order); one usable address each.
    let ranges: Vec<Range> = (0..2000u32)
        .rev()
        .map(|i| {
            let base = std::net::Ipv4Addr::from(0x0a40_0000 + i * 4);
            range(&format!("{base}/30"), None, None)
        })
        .collect();
    let s = set(ranges);
    let mut store = MemStore::new();
    for i in 0..2000u32 {
        if i != 1234 {
            let addr = std::net::Ipv4Addr::from(0x0a40_0000 + i * 4 + 2);
            lease(&mut store, &addr.to_string(), &format!("c{i}"));
        }
    }
    // A lease of another family and one outside every range change nothing.
    lease(&mut store, "fd10::2", "v6");
    lease(&mut store, "10.99.0.2", "outside");
    assert!(Allocator::new(&mut store).expect("open").has_free(&s));
    store.insert_raw("::ffff:10.64.19.74", b"late\r\neth0"); // range 1234, mapped name
    assert!(!Allocator::new(&mut store).expect("open").has_free(&s));
}

#[test]
fn large_nearly_full_range_allocates() {
    // A /16 with every address but one leased: the single free one is found.
    let s = set(vec![range("10.20.0.0/16", None, None)]);
    let mut store = MemStore::new();
    let free = ip("10.20.77.77");
    for v in to_u128(ip("10.20.0.2"))..=to_u128(ip("10.20.255.254")) {
        let a = from_u128(v, true);
        if a != free {
            store.insert_raw(&a.to_string(), b"x\r\neth0");
        }
    }
    store.last.insert(0, ip("10.20.200.0"));
    let got = next(&mut store, std::slice::from_ref(&s), "ctr").expect("allocate");
    assert_eq!(got, vec![free]);
    assert!(next(&mut store, std::slice::from_ref(&s), "ctr2").is_err());
}

#[test]
fn partial_mode_gives_the_same_answers_as_complete_mode() {
    let sets = [set(vec![range("10.1.2.0/29", None, None)])]; // .2-.6 usable
    let mut full = MemStore::new();
    for (a, id) in [("10.1.2.2", "x"), ("10.1.2.3", "y"), ("10.1.2.5", "z")] {
        lease(&mut full, a, id);
    }
    let mut part = full.clone();
    // Fresh attachment: the partial view knows none of the other leases and
    // finds the free address through failed exclusive creates.
    let got_full = Allocator::new(&mut full)
        .expect("open")
        .allocate(&sets, "new", "eth0", &[])
        .expect("full");
    let mut a = Allocator::with_leases(&mut part, Vec::new());
    let got_part = a.allocate(&sets, "new", "eth0", &[]).expect("partial");
    assert_eq!(got_full, got_part);
    assert_eq!(got_part[0].address.addr(), ip("10.1.2.4"));
    assert_eq!(a.held_by("new", "eth0"), vec![ip("10.1.2.4")]);
    // A taken requested address is refused with the same message.
    let e = a
        .allocate(&sets, "other", "eth0", &[ip("10.1.2.5")])
        .expect_err("taken");
    assert!(e.to_string().contains("is not available"), "{e}");
    let (_, surprised) = a.into_parts();
    assert!(!surprised, "failed creates are expected in partial mode");
    // Exhaustion: the walk tries every address, then reports it.
    let mut a = Allocator::with_leases(&mut part, Vec::new());
    a.allocate(&sets, "six", "eth0", &[]).expect("last free");
    let e = a.allocate(&sets, "seven", "eth0", &[]).expect_err("full");
    assert!(e.to_string().contains("no IP addresses available"), "{e}");
    drop(a);
    assert_eq!(part.files.len(), 5);
}

#[test]
fn partial_mode_release_and_duplicate_use_the_given_leases() {
    let sets = [set(vec![range("10.1.2.0/24", None, None)])];
    let mut store = MemStore::new();
    lease(&mut store, "10.1.2.7", "ctr");
    lease(&mut store, "10.1.2.8", "keep");
    let own = store
        .leases()
        .expect("list")
        .into_iter()
        .filter(|l| l.owner.is_attachment("ctr", "eth0"))
        .collect();
    let mut a = Allocator::with_leases(&mut store, own);
    assert!(a.holds("ctr", "eth0"));
    let e = a.allocate(&sets, "ctr", "eth0", &[]).expect_err("dup");
    assert!(
        e.to_string().contains("10.1.2.7 has been allocated to ctr"),
        "{e}"
    );
    assert_eq!(a.release("ctr", "eth0").expect("rel"), vec![ip("10.1.2.7")]);
    assert!(a.held_by("ctr", "eth0").is_empty());
    drop(a);
    assert_eq!(store.files.keys().collect::<Vec<_>>(), vec!["10.1.2.8"]);
}
