//! iptables backend of portmap, rule for rule the reference's
//! (`plugins/meta/portmap/portmap.go`, v1.1.1): the shared chains
//! `CNI-HOSTPORT-DNAT`/`-SETMARK`/`-MASQ` with their jumps, and one
//! `CNI-DN-<hash>` chain per (network, container) entered from
//! `CNI-HOSTPORT-DNAT` by multiport rules commented
//! `dnat name: "<net>" id: "<id>"`.
//!
//! Rules are written in the exact form `iptables-save` prints them, so a
//! dump compares line for line. Each operation is one `*tables-save` and
//! at most one atomic `*tables-restore --noflush` per family (both
//! families in parallel) instead of the reference's ~20 `iptables` execs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::{Attachment, Masq, PortMapSpec, PortMapping, Proto};
use crate::firewall::error::FirewallError;
use crate::firewall::exec::Running;
use crate::firewall::iptables::Family;
use crate::firewall::iptables_save::{restore_quote, split_words, NatTable};
use crate::firewall::naming::{go_unquote, hash_with_prefix, iptables_comment};

pub(super) const DNAT_CHAIN: &str = "CNI-HOSTPORT-DNAT";
const SETMARK_CHAIN: &str = "CNI-HOSTPORT-SETMARK";
const MASQ_CHAIN: &str = "CNI-HOSTPORT-MASQ";
/// multiport accepts at most 15 ports per rule.
const MULTIPORT_MAX: usize = 15;
/// iptables comments are at most 256 bytes (with the NUL).
const COMMENT_MAX: usize = 255;

/// `CNI-DN-` + sha512(network + id), 28 characters.
pub(super) fn dn_chain(a: &Attachment<'_>) -> String {
    hash_with_prefix(28, "CNI-DN-", &format!("{}{}", a.network, a.container_id))
}

fn sn_chain(a: &Attachment<'_>) -> String {
    hash_with_prefix(28, "CNI-SN-", &format!("{}{}", a.network, a.container_id))
}

/// `dnat name: "<net>" id: "<id>"`, cut like the reference's
/// `trimComment` (253 bytes + `...`).
pub(super) fn entry_comment(a: &Attachment<'_>) -> String {
    let mut c = format!("dnat {}", iptables_comment(a.network, a.container_id));
    if c.len() > COMMENT_MAX {
        let mut cut = COMMENT_MAX - 2;
        while !c.is_char_boundary(cut) {
            cut -= 1;
        }
        c.truncate(cut);
        c.push_str("...");
    }
    c
}

/// The attachment (network, container id) named by an entry comment.
pub(super) fn parse_entry_comment(comment: &str) -> Option<(String, String)> {
    let rest = comment.strip_prefix("dnat name: ")?;
    // The network is a Go-quoted string followed by ` id: `.
    let split = rest.find("\" id: \"")?;
    let (net, id) = rest.split_at(split + 1);
    Some((go_unquote(net)?, go_unquote(id.strip_prefix(" id: ")?)?))
}

fn mark(bit: u8) -> String {
    let m = 1u32 << bit;
    format!("{m:#x}/{m:#x}")
}

fn host_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

fn to_destination(pod: &IpNet, port: u16) -> String {
    match pod.addr() {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Quotes a condition token for a restore line only when it needs it.
fn token(s: &str) -> String {
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\' || c == '\'')
    {
        restore_quote(s)
    } else {
        s.to_string()
    }
}

/// The shared rules, as `iptables-save` prints them, for `masq`.
fn shared_rules(masq: &Masq) -> Vec<String> {
    let mut rules = vec![
        format!("-A PREROUTING -m addrtype --dst-type LOCAL -j {DNAT_CHAIN}"),
        format!("-A OUTPUT -m addrtype --dst-type LOCAL -j {DNAT_CHAIN}"),
    ];
    if let Masq::MarkBit(bit) = masq {
        let m = mark(*bit);
        rules.push(format!(
            "-A {SETMARK_CHAIN} -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark {m}"
        ));
        rules.push(format!("-A {MASQ_CHAIN} -m mark --mark {m} -j MASQUERADE"));
        rules.push(format!(
            "-A POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j {MASQ_CHAIN}"
        ));
    }
    rules
}

/// The rules of the attachment's `CNI-DN-` chain for pod address `pod`,
/// in the reference's order (per mapping: hairpin mark, localhost mark,
/// DNAT).
fn dn_rules(spec: &PortMapSpec<'_>, chain: &str, pod: &IpNet) -> Vec<String> {
    let v6 = pod.addr().is_ipv6();
    let mark_target = match &spec.masq {
        Masq::Off => None,
        Masq::MarkBit(_) => Some(SETMARK_CHAIN),
        Masq::External(c) => Some(c.as_str()),
    };
    let mut rules = Vec::new();
    for m in spec.mappings.iter().filter(|m| m.applies_to(v6)) {
        let dest = m
            .dest()
            .map(|d| format!(" -d {}", host_prefix(d)))
            .unwrap_or_default();
        let p = m.protocol.as_str();
        let base = format!("-p {p} -m {p} --dport {}", m.host_port);
        if let Some(target) = mark_target {
            rules.push(format!(
                "-A {chain} -s {}{dest} {base} -j {target}",
                pod.trunc()
            ));
            if !v6 {
                rules.push(format!(
                    "-A {chain} -s 127.0.0.1/32{dest} {base} -j {target}"
                ));
            }
        }
        rules.push(format!(
            "-A {chain}{dest} {base} -j DNAT --to-destination {}",
            to_destination(pod, m.container_port)
        ));
    }
    rules
}

/// Host ports per protocol (sorted by protocol, input order kept), cut
/// into multiport chunks: one entry rule each.
fn entry_port_lists(mappings: &[PortMapping]) -> Vec<(Proto, String)> {
    let mut by_proto: BTreeMap<Proto, Vec<u16>> = BTreeMap::new();
    for m in mappings {
        by_proto.entry(m.protocol).or_default().push(m.host_port);
    }
    let mut out = Vec::new();
    for (proto, ports) in by_proto {
        for chunk in ports.chunks(MULTIPORT_MAX) {
            let list: Vec<String> = chunk.iter().map(u16::to_string).collect();
            out.push((proto, list.join(",")));
        }
    }
    out
}

/// The entry rules of the attachment for one family.
fn entry_rules(spec: &PortMapSpec<'_>, chain: &str, v6: bool) -> Vec<String> {
    let comment = restore_quote(&entry_comment(&spec.attachment));
    let conds: String = spec
        .conditions(v6)
        .iter()
        .map(|c| format!(" {}", token(c)))
        .collect();
    entry_port_lists(spec.mappings)
        .into_iter()
        .map(|(proto, ports)| {
            let p = proto.as_str();
            format!("-A {DNAT_CHAIN}{conds} -p {p} -m comment --comment {comment} -m multiport --dports {ports} -j {chain}")
        })
        .collect()
}

/// Restore lines setting up the attachment for `pod` on `table`.
fn setup_lines(table: &NatTable, spec: &PortMapSpec<'_>, pod: &IpNet) -> Vec<String> {
    let chain = dn_chain(&spec.attachment);
    let mut shared_chains = vec![DNAT_CHAIN];
    if matches!(spec.masq, Masq::MarkBit(_)) {
        shared_chains.extend([SETMARK_CHAIN, MASQ_CHAIN]);
    }
    let mut lines: Vec<String> = shared_chains
        .into_iter()
        .filter(|c| !table.chains.contains(*c))
        .map(|c| format!(":{c} - [0:0]"))
        .collect();
    // Declaring our chain creates it, or flushes it on a repeated ADD.
    lines.push(format!(":{chain} - [0:0]"));
    let present: BTreeSet<&str> = table.rules.iter().map(|r| r.line.as_str()).collect();
    for rule in shared_rules(&spec.masq) {
        if present.contains(rule.as_str()) {
            continue;
        }
        // The masquerade jump goes first in POSTROUTING, as the reference puts it.
        match rule.strip_prefix("-A POSTROUTING ") {
            Some(rest) => lines.push(format!("-I POSTROUTING 1 {rest}")),
            None => lines.push(rule),
        }
    }
    lines.extend(
        table
            .jumps_to(&chain)
            .map(|r| format!("-D{}", &r.line[2..])),
    );
    lines.extend(dn_rules(spec, &chain, pod));
    lines.extend(entry_rules(spec, &chain, pod.addr().is_ipv6()));
    lines
}

fn family_of(pod: &IpNet) -> Family {
    if pod.addr().is_ipv6() {
        Family::V6
    } else {
        Family::V4
    }
}

fn script(lines: &[String]) -> String {
    let mut s = String::from("*nat\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("COMMIT\n");
    s
}

/// Dumps the nat table of each family, in parallel.
fn save(families: &[Family]) -> Vec<(Family, Result<NatTable, FirewallError>)> {
    let running: Vec<_> = families
        .iter()
        .map(|f| (*f, f.save_cmd().spawn()))
        .collect();
    running
        .into_iter()
        .map(|(f, r)| {
            (
                f,
                r.and_then(Running::wait)
                    .map(|o| NatTable::parse(&o.stdout)),
            )
        })
        .collect()
}

/// Applies one restore script per family, in parallel.
fn restore(scripts: Vec<(Family, String)>) -> Result<(), FirewallError> {
    let running: Vec<_> = scripts
        .into_iter()
        .map(|(f, s)| f.restore_cmd(s).spawn())
        .collect();
    let errs = running
        .into_iter()
        .filter_map(|r| r.and_then(Running::wait).err())
        .collect();
    FirewallError::collect(errs)
}

/// Programs the attachment for each pod address (one restore per family).
pub(super) fn setup(spec: &PortMapSpec<'_>) -> Result<(), FirewallError> {
    let pods = spec.pod_ips();
    let families: Vec<Family> = pods.iter().map(family_of).collect();
    let mut scripts = Vec::new();
    for ((family, table), pod) in save(&families).into_iter().zip(&pods) {
        scripts.push((family, script(&setup_lines(&table?, spec, pod))));
    }
    restore(scripts)
}

/// Restore lines removing the attachment's chains and every jump to them.
fn teardown_lines(table: &NatTable, chains: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    for chain in chains {
        lines.extend(table.jumps_to(chain).map(|r| format!("-D{}", &r.line[2..])));
    }
    for chain in chains.iter().filter(|c| table.chains.contains(*c)) {
        lines.push(format!("-F {chain}"));
        lines.push(format!("-X {chain}"));
    }
    lines
}

/// How often a teardown re-dumps after a failed restore (a concurrent DEL
/// or GC may remove a chain between our dump and our `-X`).
const ATTEMPTS: usize = 8;

/// Removes the chains `plan` picks from each family's table, retrying on
/// a fresh dump after a failed restore. A family whose iptables does not
/// work here (e.g. no IPv6) holds no rule and is skipped.
fn sweep(
    families: &[Family],
    plan: impl Fn(&NatTable) -> Vec<String>,
) -> Result<(), FirewallError> {
    let attempt = || {
        let mut scripts = Vec::new();
        for (family, table) in save(families) {
            match table {
                Ok(t) => {
                    let lines = plan(&t);
                    if !lines.is_empty() {
                        scripts.push((family, script(&lines)));
                    }
                }
                Err(_) if !family.usable() => {}
                Err(e) => return Err(e),
            }
        }
        restore(scripts)
    };
    let mut result = attempt();
    for _ in 1..ATTEMPTS {
        if result.is_ok() {
            break;
        }
        result = attempt();
    }
    result
}

/// Removes the attachment's `CNI-DN-`/`CNI-SN-` chains and their jumps in
/// both families. On iptables-nft a family whose chains the kernel says do
/// not exist is not even dumped.
pub(super) fn teardown(a: &Attachment<'_>) -> Result<(), FirewallError> {
    let chains = [dn_chain(a), sn_chain(a)];
    let families: Vec<Family> = Family::ALL
        .into_iter()
        .filter(|f| !chains.iter().all(|c| f.chain_certainly_absent(c)))
        .collect();
    if families.is_empty() {
        return Ok(());
    }
    sweep(&families, |t| teardown_lines(t, &chains))
}

/// Verifies, in the family of each pod address, the attachment's chain
/// (exactly the expected rules) and its entry rules. Shared chains are
/// not checked (as the reference).
pub(super) fn check(spec: &PortMapSpec<'_>) -> Result<(), FirewallError> {
    let chain = dn_chain(&spec.attachment);
    let pods = spec.pod_ips();
    let families: Vec<Family> = pods.iter().map(family_of).collect();
    for ((_, table), pod) in save(&families).into_iter().zip(&pods) {
        let table = table?;
        if !table.chains.contains(&chain) {
            return Err(FirewallError::Missing(format!(
                "chain {chain} not found for {pod}"
            )));
        }
        let have: Vec<&str> = table.rules_in(&chain).map(|r| r.line.as_str()).collect();
        let want = dn_rules(spec, &chain, pod);
        if have != want {
            return Err(FirewallError::Missing(format!(
                "chain {chain} holds {have:?}, expected {want:?}"
            )));
        }
        for (proto, ports) in entry_port_lists(spec.mappings) {
            let found = table.rules_in(DNAT_CHAIN).any(|r| {
                r.target.as_deref() == Some(chain.as_str())
                    && split_words(&r.line).is_some_and(|w| {
                        w.windows(2).any(|p| p[0] == "-p" && p[1] == proto.as_str())
                            && w.windows(2).any(|p| p[0] == "--dports" && p[1] == ports)
                    })
            });
            if !found {
                return Err(FirewallError::Missing(format!(
                    "no {DNAT_CHAIN} rule for {} ports {ports} to {chain}",
                    proto.as_str()
                )));
            }
        }
    }
    Ok(())
}

/// `CNI-DN-` chains of `network` whose container is not in `valid_ids`:
/// attributed by an entry comment whose (network, id) hashes to the chain.
fn stale_chains(table: &NatTable, network: &str, valid_ids: &BTreeSet<&str>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for r in table.rules_in(DNAT_CHAIN) {
        let (Some(target), Some(comment)) = (&r.target, &r.comment) else {
            continue;
        };
        let Some((net, id)) = parse_entry_comment(comment) else {
            continue;
        };
        let a = Attachment {
            network: &net,
            container_id: &id,
        };
        if net == network && &dn_chain(&a) == target && !valid_ids.contains(id.as_str()) {
            out.insert(target.clone());
        }
    }
    out.into_iter().collect()
}

/// Removes the chains of `network`'s attachments not in `valid_ids`.
pub(super) fn gc(network: &str, valid_ids: &BTreeSet<&str>) -> Result<(), FirewallError> {
    sweep(&Family::ALL, |t| {
        teardown_lines(t, &stale_chains(t, network, valid_ids))
    })
}

/// The per-attachment chains of each family's table (for conflict checks).
pub(super) fn tables() -> Vec<(bool, NatTable)> {
    let families: Vec<Family> = Family::ALL
        .into_iter()
        .filter(|f| !f.chain_certainly_absent(DNAT_CHAIN))
        .collect();
    save(&families)
        .into_iter()
        .filter_map(|(f, t)| t.ok().map(|t| (f == Family::V6, t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Attachment<'static> = Attachment {
        network: "pmnet",
        container_id: "ctr-0001",
    };

    fn tcp(host: u16, ctr: u16, host_ip: Option<&str>) -> PortMapping {
        PortMapping {
            host_port: host,
            container_port: ctr,
            protocol: Proto::Tcp,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
        }
    }

    fn spec<'a>(maps: &'a [PortMapping], masq: Masq) -> PortMapSpec<'a> {
        PortMapSpec {
            attachment: A,
            mappings: maps,
            masq,
            conditions_v4: &[],
            conditions_v6: &[],
            pod_v4: Some("10.94.0.2/24".parse().unwrap()),
            pod_v6: Some("fd00:94::3/64".parse().unwrap()),
        }
    }

    /// Golden names from running the reference (cni-reference §2.1).
    #[test]
    fn names_match_the_reference() {
        assert_eq!(dn_chain(&A), "CNI-DN-2efd3196fe9f7dfbcf803");
        assert_eq!(sn_chain(&A), "CNI-SN-2efd3196fe9f7dfbcf803");
        assert_eq!(entry_comment(&A), r#"dnat name: "pmnet" id: "ctr-0001""#);
        assert_eq!(
            parse_entry_comment(&entry_comment(&A)),
            Some(("pmnet".into(), "ctr-0001".into()))
        );
        assert_eq!(mark(13), "0x2000/0x2000");
        assert_eq!(mark(0), "0x1/0x1");
    }

    #[test]
    fn long_comments_are_cut_like_the_reference() {
        let id = "x".repeat(300);
        let c = entry_comment(&Attachment {
            network: "n",
            container_id: &id,
        });
        assert_eq!(c.len(), 256);
        assert!(c.ends_with("..."));
    }

    /// The dump lines the reference leaves (cni-reference §2.4/§2.5).
    #[test]
    fn dn_rules_are_the_reference_dump_lines() {
        let maps = [
            tcp(5080, 8080, None),
            tcp(5443, 443, Some("10.94.0.1")),
            tcp(5444, 444, Some("fd00:94::1")),
        ];
        let s = spec(&maps, Masq::MarkBit(13));
        let c = "CNI-DN-930fcb050ce9ff63c84e1";
        let v4 = dn_rules(&s, c, &s.pod_v4.unwrap());
        assert_eq!(
            v4,
            [
                "-A CNI-DN-930fcb050ce9ff63c84e1 -s 10.94.0.0/24 -p tcp -m tcp --dport 5080 -j CNI-HOSTPORT-SETMARK",
                "-A CNI-DN-930fcb050ce9ff63c84e1 -s 127.0.0.1/32 -p tcp -m tcp --dport 5080 -j CNI-HOSTPORT-SETMARK",
                "-A CNI-DN-930fcb050ce9ff63c84e1 -p tcp -m tcp --dport 5080 -j DNAT --to-destination 10.94.0.2:8080",
                "-A CNI-DN-930fcb050ce9ff63c84e1 -s 10.94.0.0/24 -d 10.94.0.1/32 -p tcp -m tcp --dport 5443 -j CNI-HOSTPORT-SETMARK",
                "-A CNI-DN-930fcb050ce9ff63c84e1 -s 127.0.0.1/32 -d 10.94.0.1/32 -p tcp -m tcp --dport 5443 -j CNI-HOSTPORT-SETMARK",
                "-A CNI-DN-930fcb050ce9ff63c84e1 -d 10.94.0.1/32 -p tcp -m tcp --dport 5443 -j DNAT --to-destination 10.94.0.2:443",
            ]
        );
        let v6 = dn_rules(&s, c, &s.pod_v6.unwrap());
        assert_eq!(v6[1], "-A CNI-DN-930fcb050ce9ff63c84e1 -p tcp -m tcp --dport 5080 -j DNAT --to-destination [fd00:94::3]:8080");
        assert_eq!(v6[2], "-A CNI-DN-930fcb050ce9ff63c84e1 -s fd00:94::/64 -d fd00:94::1/128 -p tcp -m tcp --dport 5444 -j CNI-HOSTPORT-SETMARK");
        assert_eq!(v6.len(), 4);
        let off = spec(&maps[..1], Masq::Off);
        assert_eq!(dn_rules(&off, c, &off.pod_v4.unwrap()).len(), 1);
    }

    #[test]
    fn entry_rules_group_by_protocol_in_chunks_of_15() {
        let mut maps: Vec<PortMapping> = (1..=16).map(|p| tcp(p, p, None)).collect();
        maps.insert(
            0,
            PortMapping {
                protocol: Proto::Udp,
                ..tcp(53, 53, None)
            },
        );
        let lists = entry_port_lists(&maps);
        assert_eq!(lists.len(), 3);
        assert_eq!(lists[0].1, "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15");
        assert_eq!(lists[1], (Proto::Tcp, "16".to_string()));
        assert_eq!(lists[2], (Proto::Udp, "53".to_string()));
        let conds = [
            "!".to_string(),
            "-s".to_string(),
            "192.0.2.0/24".to_string(),
        ];
        let mut s = spec(&maps[..1], Masq::MarkBit(13));
        s.conditions_v4 = &conds;
        assert_eq!(
            entry_rules(&s, "CNI-DN-x", false),
            [
                r#"-A CNI-HOSTPORT-DNAT ! -s 192.0.2.0/24 -p udp -m comment --comment "dnat name: \"pmnet\" id: \"ctr-0001\"" -m multiport --dports 53 -j CNI-DN-x"#
            ]
        );
    }

    #[test]
    fn repeated_setup_replaces_the_chain_and_entries() {
        let maps = [tcp(5080, 8080, None)];
        let s = spec(&maps, Masq::MarkBit(13));
        let pod = s.pod_v4.unwrap();
        let first = setup_lines(&NatTable::default(), &s, &pod);
        assert!(first.contains(&":CNI-HOSTPORT-DNAT - [0:0]".to_string()));
        assert!(first.iter().any(|l| l.starts_with("-I POSTROUTING 1 ")));
        // Pretend the first setup is in the kernel, as iptables-save shows it.
        let mut dump = String::from(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
        );
        dump += ":CNI-HOSTPORT-DNAT - [0:0]\n:CNI-HOSTPORT-SETMARK - [0:0]\n:CNI-HOSTPORT-MASQ - [0:0]\n:CNI-DN-2efd3196fe9f7dfbcf803 - [0:0]\n";
        for r in shared_rules(&s.masq)
            .iter()
            .chain(&entry_rules(&s, &dn_chain(&A), false))
        {
            dump += r;
            dump.push('\n');
        }
        dump += "COMMIT\n";
        let again = setup_lines(&NatTable::parse(&dump), &s, &pod);
        assert!(
            !again
                .iter()
                .any(|l| l.starts_with(':') && l.contains("HOSTPORT")),
            "{again:?}"
        );
        assert!(
            !again
                .iter()
                .any(|l| l.starts_with("-I ") || l.contains("addrtype")),
            "{again:?}"
        );
        assert_eq!(
            again
                .iter()
                .filter(|l| l.starts_with("-D CNI-HOSTPORT-DNAT"))
                .count(),
            1
        );
    }

    #[test]
    fn gc_attributes_chains_by_comment_and_hash() {
        let b = Attachment {
            network: "pmnet",
            container_id: "gone",
        };
        let other = Attachment {
            network: "othernet",
            container_id: "gone",
        };
        let mut dump = String::from("*nat\n");
        for a in [A, b, other] {
            let s = PortMapSpec {
                attachment: a,
                ..spec(&[], Masq::Off)
            };
            let maps = [tcp(1, 1, None)];
            let s = PortMapSpec {
                mappings: &maps,
                ..s
            };
            dump += &format!(":{} - [0:0]\n", dn_chain(&a));
            dump += &entry_rules(&s, &dn_chain(&a), false)[0];
            dump.push('\n');
        }
        dump += "COMMIT\n";
        let t = NatTable::parse(&dump);
        let valid: BTreeSet<&str> = ["ctr-0001"].into_iter().collect();
        assert_eq!(stale_chains(&t, "pmnet", &valid), vec![dn_chain(&b)]);
    }
}
