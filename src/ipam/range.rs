//! Address ranges and range sets (reference `range.go`, `range_set.go`).
//!
//! A [`Range`] is a subnet plus an inclusive `[range_start, range_end]` window
//! and a gateway. A [`RangeSet`] is a list of non-overlapping ranges of one
//! address family; host-local hands out one address per set.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::error::IpamError;

/// An address as a number, so ranges can be walked with plain arithmetic.
/// IPv4 uses the low 32 bits; the family travels separately.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Inverse of [`to_u128`].
pub fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// Go's `canonicalizeIP`: IPv4-mapped IPv6 addresses become plain IPv4, so
/// `::ffff:10.1.0.5` and `10.1.0.5` are the same lease (and the same file name,
/// since Go's `net.IP.String()` prints mapped addresses in dotted form).
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Parses an address the way Go's `ip.IP` does for requested IPs: a bare
/// address or `addr/prefix`, where the prefix is ignored.
pub fn parse_requested_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    s.parse::<IpNet>().ok().map(|n| canonical(n.addr()))
}

/// One contiguous allocation window inside a subnet, canonicalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    /// The network (no host bits), e.g. `10.1.0.0/16`.
    pub subnet: IpNet,
    /// First candidate address (inclusive). Defaults to network+1.
    pub range_start: IpAddr,
    /// Last candidate address (inclusive). Defaults to broadcast-1 (IPv4) or
    /// the last address (IPv6).
    pub range_end: IpAddr,
    /// Gateway reported in results and never handed out. Defaults to network+1.
    pub gateway: IpAddr,
}

impl Range {
    /// Validates and fills defaults (reference `Range.Canonicalize`).
    pub fn new(
        subnet: IpNet,
        range_start: Option<IpAddr>,
        range_end: Option<IpAddr>,
        gateway: Option<IpAddr>,
    ) -> Result<Range, IpamError> {
        if let IpNet::V6(n) = subnet {
            if n.addr().to_ipv4_mapped().is_some() {
                return Err(IpamError::Config(format!(
                    "IPNet IP and Mask version mismatch: {subnet} is an IPv4-mapped IPv6 subnet; write it as IPv4"
                )));
            }
        }
        if subnet.prefix_len() > subnet.max_prefix_len() - 2 {
            return Err(IpamError::Config(format!(
                "Network {subnet} too small to allocate from"
            )));
        }
        let network = subnet.network();
        if subnet.addr() != network {
            return Err(IpamError::Config(format!(
                "Network has host bits set. For a subnet mask of length {} the network address is {}",
                subnet.prefix_len(),
                network
            )));
        }
        let v4 = subnet.addr().is_ipv4();
        let first = from_u128(to_u128(network) + 1, v4);
        let gateway = match gateway.map(canonical) {
            None => first,
            Some(gw) if gw.is_ipv4() != v4 => {
                return Err(IpamError::Config(format!(
                    "gateway {gw} is not in the address family of network {subnet}"
                )))
            }
            Some(gw) => gw,
        };
        let range_start = match range_start.map(canonical) {
            None => first,
            Some(s) if !in_subnet(&subnet, s) => {
                return Err(IpamError::Config(format!(
                    "RangeStart {s} not in network {subnet}"
                )))
            }
            Some(s) => s,
        };
        let range_end = match range_end.map(canonical) {
            None => last_usable(&subnet),
            Some(e) if !in_subnet(&subnet, e) => {
                return Err(IpamError::Config(format!(
                    "RangeEnd {e} not in network {subnet}"
                )))
            }
            Some(e) => e,
        };
        if to_u128(range_start) > to_u128(range_end) {
            return Err(IpamError::Config(format!(
                "RangeStart {range_start} is after RangeEnd {range_end} in network {subnet}"
            )));
        }
        Ok(Range {
            subnet,
            range_start,
            range_end,
            gateway,
        })
    }

    /// True for IPv4 ranges.
    pub fn is_v4(&self) -> bool {
        self.subnet.addr().is_ipv4()
    }

    /// Whether `ip` (any family) lies inside `[range_start, range_end]`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if ip.is_ipv4() != self.is_v4() || !self.subnet.contains(&ip) {
            return false;
        }
        let v = to_u128(ip);
        to_u128(self.range_start) <= v && v <= to_u128(self.range_end)
    }

    /// Reference `Range.Overlaps`: any endpoint of one inside the other.
    pub fn overlaps(&self, other: &Range) -> bool {
        if self.is_v4() != other.is_v4() {
            return false;
        }
        self.contains(other.range_start)
            || self.contains(other.range_end)
            || other.contains(self.range_start)
            || other.contains(self.range_end)
    }

    /// Addresses that are never handed out even when inside the window: the
    /// gateway, the network address and (IPv4) the broadcast address.
    pub fn is_reserved(&self, ip: IpAddr) -> bool {
        ip == self.gateway
            || ip == self.subnet.network()
            || (self.is_v4() && ip == self.subnet.broadcast())
    }

    /// Number of addresses in the window (reserved ones included).
    pub fn window_len(&self) -> u128 {
        to_u128(self.range_end) - to_u128(self.range_start) + 1
    }

    /// Number of reserved addresses that fall inside the window.
    pub fn reserved_in_window(&self) -> u128 {
        let mut seen: Vec<IpAddr> = Vec::with_capacity(3);
        let mut candidates = vec![self.gateway, self.subnet.network()];
        if self.is_v4() {
            candidates.push(self.subnet.broadcast());
        }
        for c in candidates {
            if self.contains(c) && !seen.contains(&c) {
                seen.push(c);
            }
        }
        seen.len() as u128
    }
}

impl fmt::Display for Range {
    /// `start-end`, as in the reference's error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.range_start, self.range_end)
    }
}

fn in_subnet(subnet: &IpNet, ip: IpAddr) -> bool {
    ip.is_ipv4() == subnet.addr().is_ipv4() && subnet.contains(&ip)
}

/// Broadcast-1 for IPv4 (the broadcast is not a host), the last address for IPv6.
fn last_usable(subnet: &IpNet) -> IpAddr {
    let last = subnet.broadcast();
    if subnet.addr().is_ipv4() {
        from_u128(to_u128(last) - 1, true)
    } else {
        last
    }
}

/// A pool of ranges of one family; one address is allocated per set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    /// Validates a set (reference `RangeSet.Canonicalize`): non-empty, one
    /// family, no two ranges overlapping.
    pub fn new(ranges: Vec<Range>) -> Result<RangeSet, IpamError> {
        let Some(first) = ranges.first() else {
            return Err(IpamError::Config("empty range set".into()));
        };
        if ranges.iter().any(|r| r.is_v4() != first.is_v4()) {
            return Err(IpamError::Config("mixed address families".into()));
        }
        let windows: Vec<Window> = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| Window::of(i, r))
            .collect();
        if let Some((i, j)) = first_overlap(&windows) {
            let (a, b) = (&ranges[i], &ranges[j]);
            return Err(IpamError::Config(format!("subnets {a} and {b} overlap")));
        }
        Ok(RangeSet(ranges))
    }

    /// The ranges, in configuration order (which is also iteration order).
    pub fn ranges(&self) -> &[Range] {
        &self.0
    }

    /// True for IPv4 sets.
    pub fn is_v4(&self) -> bool {
        self.0.first().is_some_and(Range::is_v4)
    }

    /// The range holding `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    /// Whether any range of the set holds `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// Whether any range of `self` overlaps any range of `other`.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.0.iter().any(|a| other.0.iter().any(|b| a.overlaps(b)))
    }
}

/// A range's address window tagged with its owner: the range's index in
/// its set, or the set's index in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub owner: usize,
    pub v4: bool,
    pub start: u128,
    pub end: u128,
}

impl Window {
    /// The window of `range`, owned by `owner`.
    pub fn of(owner: usize, range: &Range) -> Window {
        Window {
            owner,
            v4: range.is_v4(),
            start: to_u128(range.range_start),
            end: to_u128(range.range_end),
        }
    }

    fn key(&self) -> (bool, u128, u128) {
        (self.v4, self.start, self.end)
    }
}

/// The pair of owners `(i, j)`, `i < j`, that the reference's all-pairs loop
/// (`for i { for j > i { if overlaps { report i, j } } }`) reports first:
/// the smallest `i` whose windows overlap a window of a later owner, then
/// the smallest such `j`. Windows of different families never overlap
/// (reference `Range.Overlaps`), and windows of one owner must not overlap
/// each other (a validated set).
///
/// O(n log n) instead of the reference's O(n²), so tens of thousands of
/// ranges (a 2 MB config) are checked in milliseconds:
/// 1. sorted by (family, start), a window overlaps an earlier one iff the
///    running maximum end of its family reaches its start, and a later one
///    iff the next window of its family starts before its end; the smallest
///    owner with any overlapping window is `i` (its partner is larger, since
///    a smaller partner would itself be a smaller overlapping owner);
/// 2. `j` is the smallest owner of a window overlapping one of `i`'s
///    windows, each found by a binary search in `i`'s sorted windows.
pub fn first_overlap(windows: &[Window]) -> Option<(usize, usize)> {
    let mut sorted: Vec<&Window> = windows.iter().collect();
    sorted.sort_by_key(|w| w.key());
    let mut first: Option<usize> = None;
    let mut reach: Option<(bool, u128)> = None;
    for (k, w) in sorted.iter().enumerate() {
        let after_earlier = matches!(reach, Some((v4, end)) if v4 == w.v4 && end >= w.start);
        let before_next = sorted
            .get(k + 1)
            .is_some_and(|n| n.v4 == w.v4 && n.start <= w.end);
        if after_earlier || before_next {
            first = Some(first.map_or(w.owner, |f| f.min(w.owner)));
        }
        reach = match reach {
            Some((v4, end)) if v4 == w.v4 => Some((v4, end.max(w.end))),
            _ => Some((w.v4, w.end)),
        };
    }
    let i = first?;
    // `i`'s windows are disjoint, so sorted by start their ends ascend too:
    // the last one starting at or before `w.end` is the only candidate.
    let own: Vec<&Window> = sorted.iter().copied().filter(|w| w.owner == i).collect();
    let hits = |w: &Window| {
        let after = own.partition_point(|o| (o.v4, o.start) <= (w.v4, w.end));
        after > 0 && {
            let o = own[after - 1];
            o.v4 == w.v4 && o.end >= w.start
        }
    };
    windows
        .iter()
        .filter(|w| w.owner != i && hits(w))
        .map(|w| w.owner)
        .min()
        .map(|j| (i, j))
}

impl fmt::Display for RangeSet {
    /// `a-b,c-d`, as in "no IP addresses available in range set: a-b,c-d".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test CIDR")
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test IP")
    }

    #[test]
    fn defaults_v4() {
        let r = Range::new(net("10.1.2.0/24"), None, None, None).expect("valid");
        assert_eq!(r.range_start, ip("10.1.2.1"));
        assert_eq!(r.range_end, ip("10.1.2.254"));
        assert_eq!(r.gateway, ip("10.1.2.1"));
        assert_eq!(r.to_string(), "10.1.2.1-10.1.2.254");
    }

    #[test]
    fn defaults_v6() {
        let r = Range::new(net("fd10:1::/64"), None, None, None).expect("valid");
        assert_eq!(r.range_start, ip("fd10:1::1"));
        assert_eq!(r.range_end, ip("fd10:1::ffff:ffff:ffff:ffff"));
        assert_eq!(r.gateway, ip("fd10:1::1"));
    }

    #[test]
    fn too_small_networks_rejected() {
        for s in ["10.1.2.0/31", "10.1.2.4/32", "fd10::/127", "fd10::1/128"] {
            let e = Range::new(net(s), None, None, None).expect_err(s);
            assert!(
                e.to_string().contains("too small to allocate from"),
                "{s}: {e}"
            );
        }
        assert!(Range::new(net("10.1.2.0/30"), None, None, None).is_ok());
        assert!(Range::new(net("fd10::/126"), None, None, None).is_ok());
    }

    #[test]
    fn host_bits_rejected() {
        let e = Range::new(net("10.1.2.3/24"), None, None, None).expect_err("host bits");
        assert_eq!(
            e.to_string(),
            "Network has host bits set. For a subnet mask of length 24 the network address is 10.1.2.0"
        );
    }

    #[test]
    fn start_end_validation() {
        let n = net("10.1.2.0/24");
        let e = Range::new(n, Some(ip("10.1.3.1")), None, None).expect_err("start outside");
        assert_eq!(
            e.to_string(),
            "RangeStart 10.1.3.1 not in network 10.1.2.0/24"
        );
        let e = Range::new(n, None, Some(ip("10.1.3.1")), None).expect_err("end outside");
        assert_eq!(
            e.to_string(),
            "RangeEnd 10.1.3.1 not in network 10.1.2.0/24"
        );
        let e = Range::new(n, Some(ip("10.1.2.50")), Some(ip("10.1.2.40")), None)
            .expect_err("start > end");
        assert!(e.to_string().contains("is after RangeEnd"), "{e}");
        let e = Range::new(n, Some(ip("fd10::5")), None, None).expect_err("family");
        assert!(e.to_string().contains("not in network"), "{e}");
        let e = Range::new(n, None, None, Some(ip("fd10::1"))).expect_err("gw family");
        assert!(e.to_string().contains("address family"), "{e}");
    }

    #[test]
    fn mapped_addresses_canonicalized() {
        let r = Range::new(net("10.1.2.0/24"), Some(ip("::ffff:10.1.2.10")), None, None)
            .expect("mapped start");
        assert_eq!(r.range_start, ip("10.1.2.10"));
        assert!(r.contains(ip("::ffff:10.1.2.20")));
        assert!(Range::new(net("::ffff:10.1.2.0/120"), None, None, None).is_err());
        assert_eq!(
            parse_requested_ip("::ffff:10.0.0.1/8"),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(parse_requested_ip("10.0.0.1/8"), Some(ip("10.0.0.1")));
        assert_eq!(parse_requested_ip("nope"), None);
    }

    #[test]
    fn contains_and_reserved() {
        let r = Range::new(
            net("10.1.2.0/24"),
            Some(ip("10.1.2.10")),
            Some(ip("10.1.2.20")),
            None,
        )
        .expect("valid");
        assert!(r.contains(ip("10.1.2.10")));
        assert!(r.contains(ip("10.1.2.20")));
        assert!(!r.contains(ip("10.1.2.21")));
        assert!(!r.contains(ip("fd10::1")));
        assert!(r.is_reserved(ip("10.1.2.1")));
        assert!(r.is_reserved(ip("10.1.2.0")));
        assert!(r.is_reserved(ip("10.1.2.255")));
        assert!(!r.is_reserved(ip("10.1.2.10")));
        assert_eq!(r.window_len(), 11);
        assert_eq!(r.reserved_in_window(), 0);
        let full = Range::new(
            net("10.1.2.0/24"),
            Some(ip("10.1.2.0")),
            Some(ip("10.1.2.255")),
            None,
        )
        .expect("valid");
        assert_eq!(full.reserved_in_window(), 3);
    }

    #[test]
    fn range_set_validation() {
        let a = Range::new(net("10.1.2.0/24"), None, None, None).expect("valid");
        let b = Range::new(net("10.1.3.0/24"), None, None, None).expect("valid");
        let v6 = Range::new(net("fd10::/64"), None, None, None).expect("valid");
        let overlap =
            Range::new(net("10.1.2.0/24"), Some(ip("10.1.2.100")), None, None).expect("valid");
        assert_eq!(
            RangeSet::new(vec![]).expect_err("empty").to_string(),
            "empty range set"
        );
        assert_eq!(
            RangeSet::new(vec![a.clone(), v6])
                .expect_err("mixed")
                .to_string(),
            "mixed address families"
        );
        assert_eq!(
            RangeSet::new(vec![a.clone(), overlap])
                .expect_err("overlap")
                .to_string(),
            "subnets 10.1.2.1-10.1.2.254 and 10.1.2.100-10.1.2.254 overlap"
        );
        let set = RangeSet::new(vec![a, b]).expect("valid");
        assert_eq!(set.to_string(), "10.1.2.1-10.1.2.254,10.1.3.1-10.1.3.254");
        assert!(set.contains(ip("10.1.3.7")));
        assert!(!set.contains(ip("10.1.4.7")));
    }

    /// The reference's all-pairs loop, as the oracle for [`first_overlap`].
    fn brute(windows: &[Window]) -> Option<(usize, usize)> {
        let owners = windows.iter().map(|w| w.owner).max()? + 1;
        let hit = |a: &Window, b: &Window| a.v4 == b.v4 && a.start <= b.end && b.start <= a.end;
        for i in 0..owners {
            for j in i + 1..owners {
                let wi = windows.iter().filter(|w| w.owner == i);
                if wi
                    .clone()
                    .any(|a| windows.iter().filter(|w| w.owner == j).any(|b| hit(a, b)))
                {
                    return Some((i, j));
                }
            }
        }
        None
    }

    #[test]
    fn first_overlap_matches_the_all_pairs_loop() {
        // Deterministic xorshift, so failures reproduce.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut found = 0;
        for _ in 0..3000 {
            let owners = 1 + next(6) as usize;
            let mut windows: Vec<Window> = Vec::new();
            for owner in 0..owners {
                // Each owner gets disjoint windows (a valid set): walk upward.
                let v4 = next(4) != 0;
                let mut at = next(40) as u128;
                for _ in 0..1 + next(3) {
                    let start = at;
                    let end = start + next(6) as u128;
                    windows.push(Window {
                        owner,
                        v4,
                        start,
                        end,
                    });
                    at = end + 1 + next(30) as u128;
                }
            }
            let want = brute(&windows);
            found += usize::from(want.is_some());
            assert_eq!(first_overlap(&windows), want, "{windows:?}");
        }
        assert!(found > 300, "the generator must produce overlaps: {found}");
    }

    #[test]
    fn first_overlap_reports_lowest_pair() {
        let w = |owner, start, end| Window {
            owner,
            v4: true,
            start,
            end,
        };
        // 2 overlaps 0 and 1 overlaps 3: the loop reports (0, 2) first.
        let ws = [w(0, 10, 20), w(1, 30, 40), w(2, 15, 16), w(3, 40, 50)];
        assert_eq!(first_overlap(&ws), Some((0, 2)));
        // Same numbers, other family: no overlap across families.
        let v6 = Window {
            owner: 1,
            v4: false,
            start: 10,
            end: 20,
        };
        assert_eq!(first_overlap(&[w(0, 10, 20), v6]), None);
        // One wide window covering many: its partner is the smallest index.
        let ws = [w(0, 100, 110), w(1, 0, 1000), w(2, 5, 6)];
        assert_eq!(first_overlap(&ws), Some((0, 1)));
        assert_eq!(first_overlap(&[w(0, 1, 2), w(1, 3, 4)]), None);
        assert_eq!(first_overlap(&[]), None);
    }

    #[test]
    fn many_ranges_in_one_set_are_checked_quickly() {
        let mut ranges: Vec<Range> = (0..65_536u32)
            .map(|i| {
                let base = Ipv4Addr::from(0x0a00_0000 + i * 4);
                Range::new(
                    IpNet::new(IpAddr::V4(base), 30).expect("cidr"),
                    None,
                    None,
                    None,
                )
                .expect("valid")
            })
            .collect();
        let started = std::time::Instant::now();
        assert!(RangeSet::new(ranges.clone()).is_ok());
        let dup = ranges[65_535].clone();
        ranges.push(dup);
        assert_eq!(
            RangeSet::new(ranges).expect_err("overlap").to_string(),
            "subnets 10.3.255.253-10.3.255.254 and 10.3.255.253-10.3.255.254 overlap"
        );
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    }
}
