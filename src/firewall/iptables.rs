//! iptables backend of ipMasq, compatible with `pkg/ip/ipmasq_iptables_linux.go`.
//!
//! Same chains, rules and comments as the reference, but each operation is one
//! `iptables-save -t nat` (read) plus at most one `iptables-restore --noflush`
//! (write) per address family, both families in parallel, instead of the
//! reference's ~9 `iptables` execs per address on setup (go-iptables:
//! `--version`, `-S`, `-N`, then `-C` + `-A` per rule) and ~5 on teardown
//! (issue 7). A new pod's IPv4 chain on an iptables-nft host whose `nat`
//! table exists is not even restored: `nft_direct` writes the same rules
//! over netlink (no exec at all); and on iptables-nft, `nft_teardown`
//! removes a chain and its jumps over netlink in both families.

use std::collections::BTreeSet;

use ipnet::IpNet;

use super::error::FirewallError;
use super::exec::{Cmd, Running};
use super::iptables_save::NatTable;
use super::iptables_version::fast_path_verified;
use super::masq_rule::{planned_rules, WantedRule};
use super::naming::{chain_name, container_id_from_comment, iptables_comment};
use super::nft_direct;
use super::nft_teardown::{self, Removed};
use crate::netlink::{nf_exists, NfFamily};

/// IPv4 (`iptables`) or IPv6 (`ip6tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    pub(crate) const ALL: [Family; 2] = [Family::V4, Family::V6];

    fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
    pub(crate) fn save_cmd(self) -> Cmd {
        let prog = match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        };
        Cmd::new(prog, &["-t", "nat"])
    }
    pub(crate) fn restore_cmd(self, script: String) -> Cmd {
        let prog = match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        };
        Cmd::new(prog, &["--noflush", "-w"]).stdin(script)
    }
    /// The nf_tables family iptables-nft keeps this family's tables in.
    fn nf(self) -> NfFamily {
        match self {
            Family::V4 => NfFamily::Ip,
            Family::V6 => NfFamily::Ip6,
        }
    }
    /// True when this family's iptables is the nf_tables variant
    /// (`iptables-nft`, Debian's default): its rules are nf_tables objects.
    fn is_nft(self) -> bool {
        is_nft_variant(match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        })
    }
    /// True when this family's rules may be written or removed over
    /// nf_tables netlink: iptables-nft, in a version whose encoding a test
    /// has checked (`iptables_version::VERIFIED`; detected once per binary).
    fn netlink_ok(self) -> bool {
        self.is_nft() && fast_path_verified()
    }
    /// True when this family's masquerade `chain` certainly does not exist:
    /// iptables is the nf_tables variant and the kernel says the chain is
    /// not in its `nat` table. Then neither a rule in the chain nor a jump
    /// to it can exist (a jump needs its target), so the `*tables-save`
    /// dump can be skipped. Legacy iptables keeps its rules outside
    /// nf_tables: always `false` there.
    pub(crate) fn chain_certainly_absent(self, chain: &str) -> bool {
        self.is_nft() && nf_exists(self.nf(), "nat", Some(chain)) == Some(false)
    }
    /// Removes `chain` and the jumps to it without running a tool where
    /// that is possible (iptables-nft, see `nft_teardown`); `Exec` leaves
    /// this family to `sweep`. `netlink == false` only probes.
    fn teardown_without_exec(self, chain: &str, netlink: bool) -> TeardownPath {
        if !self.netlink_ok() {
            return TeardownPath::Exec;
        }
        if !netlink {
            return match nf_exists(self.nf(), "nat", Some(chain)) {
                Some(false) => TeardownPath::Absent,
                _ => TeardownPath::Exec,
            };
        }
        match nft_teardown::remove_chain(self.nf(), chain) {
            Ok(Removed::Absent) => TeardownPath::Absent,
            Ok(Removed::Deleted) => TeardownPath::Netlink,
            Err(e) => {
                eprintln!(
                    "ipMasq: nf_tables teardown of {chain} not done, using iptables-restore: {e}"
                );
                TeardownPath::Exec
            }
        }
    }
    /// True if this family's iptables works here; the reference's
    /// `SupportsIPTables` probe (`-t filter -S INPUT`).
    pub(crate) fn usable(self) -> bool {
        let prog = match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        Cmd::new(prog, &["-w", "-t", "filter", "-S", "INPUT", "1"])
            .run()
            .is_ok()
    }
}

/// True when `program`, found on `PATH`, is the nf_tables variant of
/// iptables (`xtables-nft-multi`, reached through `iptables-nft-*` links).
fn is_nft_variant(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().contains("nft")))
        .unwrap_or(false)
}

/// Wraps restore lines into a `*nat ... COMMIT` script; `None` if empty.
fn script(lines: Vec<String>) -> Option<String> {
    if lines.is_empty() {
        return None;
    }
    let mut s = String::from("*nat\n");
    for l in lines {
        s.push_str(&l);
        s.push('\n');
    }
    s.push_str("COMMIT\n");
    Some(s)
}

/// Restore lines that add what is missing for `ips` (all of one family).
fn setup_lines(table: &NatTable, chain: &str, comment: &str, ips: &[IpNet]) -> Vec<String> {
    let mut lines = Vec::new();
    if !table.chains.contains(chain) {
        // Only declare a missing chain: declaring an existing one flushes it.
        lines.push(format!(":{chain} - [0:0]"));
    }
    let planned = planned_rules(table, chain, comment, ips);
    lines.extend(planned.iter().map(WantedRule::append_line));
    lines
}

/// Restore lines removing every jump to `chain`, then the chain itself.
fn teardown_lines(table: &NatTable, chain: &str) -> Vec<String> {
    let mut lines: Vec<String> = table
        .jumps_to(chain)
        .map(|r| format!("-D{}", &r.line[2..]))
        .collect();
    if table.chains.contains(chain) {
        lines.push(format!("-F {chain}"));
        lines.push(format!("-X {chain}"));
    }
    lines
}

/// Whether a family's dump may be skipped when that family does not work
/// on this host (e.g. IPv6 disabled): only for removals, which must not fail
/// DEL for a family that cannot hold any rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unusable {
    Fail,
    Skip,
}

/// Dumps the nat table of every family in `families`, in parallel.
fn save_all(
    families: &[Family],
    unusable: Unusable,
) -> Result<Vec<(Family, NatTable)>, FirewallError> {
    let running: Vec<(Family, Result<Running, FirewallError>)> = families
        .iter()
        .map(|f| (*f, f.save_cmd().spawn()))
        .collect();
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for (family, started) in running {
        match started.and_then(Running::wait) {
            Ok(o) => out.push((family, NatTable::parse(&o.stdout))),
            Err(_) if unusable == Unusable::Skip && !family.usable() => {}
            Err(e) => errs.push(e),
        }
    }
    FirewallError::collect(errs)?;
    Ok(out)
}

/// How often [`sweep`] re-dumps after a failed restore.
const SWEEP_ATTEMPTS: usize = 8;

/// Removes what `plan` lists for each family's current table. A failed
/// restore is retried on a fresh dump: concurrent DELs (of the same pod, or
/// of pods a GC sweeps) may remove a chain between our dump and our `-X`,
/// and the next dump no longer lists it. Each retry follows someone else's
/// progress, so a few always suffice; the bound only stops a restore that
/// fails for another reason.
fn sweep(
    families: &[Family],
    plan: impl Fn(&NatTable) -> Vec<String>,
) -> Result<(), FirewallError> {
    let attempt = || {
        let scripts = save_all(families, Unusable::Skip)?
            .into_iter()
            .filter_map(|(family, table)| script(plan(&table)).map(|s| (family, s)))
            .collect();
        restore_all(scripts)
    };
    let mut result = attempt();
    for _ in 1..SWEEP_ATTEMPTS {
        if result.is_ok() {
            break;
        }
        result = attempt();
    }
    result
}

/// Applies one restore script per family, in parallel.
fn restore_all(scripts: Vec<(Family, String)>) -> Result<(), FirewallError> {
    let running: Vec<Result<Running, FirewallError>> = scripts
        .into_iter()
        .map(|(f, s)| f.restore_cmd(s).spawn())
        .collect();
    let errs = running
        .into_iter()
        .filter_map(|r| r.and_then(Running::wait).err())
        .collect();
    FirewallError::collect(errs)
}

fn families_of(ips: &[IpNet]) -> Vec<Family> {
    Family::ALL
        .into_iter()
        .filter(|f| ips.iter().any(|ip| Family::of(ip) == *f))
        .collect()
}

/// Adds the masquerade chain and rules for `ips` (idempotent).
pub(crate) fn setup(network: &str, container_id: &str, ips: &[IpNet]) -> Result<(), FirewallError> {
    let chain = chain_name(network, container_id);
    let comment = iptables_comment(network, container_id);
    let of_family = |family: Family| -> Vec<IpNet> {
        ips.iter()
            .filter(|ip| Family::of(ip) == family)
            .copied()
            .collect()
    };
    // A new pod's chain does not exist yet: nothing to dump for that family.
    let (fresh, mut existing): (Vec<Family>, Vec<Family>) = families_of(ips)
        .into_iter()
        .partition(|f| f.chain_certainly_absent(&chain));
    let mut tables = Vec::new();
    for family in fresh {
        if family == Family::V4 && family.netlink_ok() && nft_direct::base_chain_ready() {
            let rules = planned_rules(&NatTable::default(), &chain, &comment, &of_family(family));
            match nft_direct::append_masq_rules(&chain, &rules) {
                Ok(()) => {
                    crate::cni_debug!("ipMasq: {chain} written over nf_tables netlink");
                    continue;
                }
                // Nothing was applied (or, on EEXIST, a concurrent ADD made
                // the chain): dump and add what is missing, idempotently.
                Err(e) => {
                    eprintln!("ipMasq: nf_tables fast path not taken, using iptables-restore: {e}");
                    existing.push(family);
                    continue;
                }
            }
        }
        tables.push((family, NatTable::default()));
    }
    tables.extend(save_all(&existing, Unusable::Fail)?);
    let scripts = tables
        .into_iter()
        .filter_map(|(family, table)| {
            script(setup_lines(&table, &chain, &comment, &of_family(family))).map(|s| (family, s))
        })
        .collect();
    restore_all(scripts)
}

/// How the iptables teardown removed one family's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeardownPath {
    /// The chain did not exist (nf_tables probe): nothing to remove.
    Absent,
    /// Deleted over nf_tables netlink, with every jump to it.
    Netlink,
    /// Left to `*tables-save` + `*tables-restore` (legacy iptables, or the
    /// netlink way failed or was not allowed).
    Exec,
}

/// Removes the container's chain and every jump to it, in both families.
/// Needs no addresses: the chain name is deterministic and the jumps are
/// found by target, which also covers the legacy `-s ip/prefix` form.
pub(crate) fn teardown(network: &str, container_id: &str) -> Result<(), FirewallError> {
    teardown_via(network, container_id, true).map(drop)
}

/// [`teardown`], returning how each family (IPv4, IPv6) went. With
/// `netlink == false` nothing is deleted over netlink (tests compare both).
pub(crate) fn teardown_via(
    network: &str,
    container_id: &str,
    netlink: bool,
) -> Result<[TeardownPath; 2], FirewallError> {
    let chain = chain_name(network, container_id);
    let paths = Family::ALL.map(|f| f.teardown_without_exec(&chain, netlink));
    let exec: Vec<Family> = Family::ALL
        .into_iter()
        .zip(paths)
        .filter(|(_, path)| *path == TeardownPath::Exec)
        .map(|(family, _)| family)
        .collect();
    if !exec.is_empty() {
        sweep(&exec, |table| teardown_lines(table, &chain))?;
    }
    Ok(paths)
}

/// Verifies that every rule setup would add for `ips` is present.
pub(crate) fn check(network: &str, container_id: &str, ips: &[IpNet]) -> Result<(), FirewallError> {
    let chain = chain_name(network, container_id);
    let comment = iptables_comment(network, container_id);
    for (family, table) in save_all(&families_of(ips), Unusable::Fail)? {
        if !table.chains.contains(&chain) {
            return Err(FirewallError::Missing(format!(
                "iptables chain {chain} not found"
            )));
        }
        for ip in ips.iter().filter(|ip| Family::of(ip) == family) {
            for rule in WantedRule::for_ip(&chain, &comment, ip) {
                if !rule.is_in(&table) {
                    return Err(FirewallError::Missing(format!(
                        "iptables rule `{}` not found",
                        rule.append_line()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Removes the chains of `network` whose container id is not in `valid_ids`.
/// A chain is attributed by its comment AND its name being the hash of that
/// (network, id): portmap's `CNI-DN-...` chains carry the same comment format.
pub(crate) fn gc(network: &str, valid_ids: &BTreeSet<&str>) -> Result<(), FirewallError> {
    sweep(&Family::ALL, |table| {
        stale_chains(table, network, valid_ids)
            .iter()
            .flat_map(|c| teardown_lines(table, c))
            .collect()
    })
}

fn stale_chains(table: &NatTable, network: &str, valid_ids: &BTreeSet<&str>) -> Vec<String> {
    table
        .chains
        .iter()
        .filter(|c| c.starts_with("CNI-"))
        .filter_map(|c| {
            let owner = table
                .rules_in(c)
                .filter_map(|r| container_id_from_comment(network, r.comment.as_deref()?))
                .find(|id| &chain_name(network, id) == c)?;
            (!valid_ids.contains(owner.as_str())).then(|| c.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::iptables_save::restore_quote;
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn setup_lines_on_empty_table() {
        let table = NatTable::parse("*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n");
        let c = iptables_comment("mynet", "abc123");
        let lines = setup_lines(&table, "CNI-x", &c, &nets(&["10.22.0.2/16"]));
        let q = r#""name: \"mynet\" id: \"abc123\"""#;
        assert_eq!(
            lines,
            vec![
                ":CNI-x - [0:0]".to_string(),
                format!("-A CNI-x -d 10.22.0.0/16 -j ACCEPT -m comment --comment {q}"),
                format!("-A CNI-x ! -d 224.0.0.0/4 -j MASQUERADE -m comment --comment {q}"),
                format!("-A POSTROUTING -s 10.22.0.2 -j CNI-x -m comment --comment {q}"),
            ]
        );
    }

    #[test]
    fn setup_lines_follow_append_unique_order_for_two_ips() {
        let table = NatTable::default();
        let lines = setup_lines(&table, "CNI-x", "c", &nets(&["10.1.0.2/24", "10.2.0.2/24"]));
        // One MASQUERADE only, after the first ACCEPT, as the reference does.
        assert_eq!(lines.len(), 1 + 3 + 2);
        assert!(lines[2].contains("MASQUERADE"));
        assert!(lines[4].contains("-d 10.2.0.0/24"));
    }

    #[test]
    fn setup_lines_skip_existing() {
        let dump = "*nat\n:POSTROUTING ACCEPT [0:0]\n:CNI-x - [0:0]\n\
            -A POSTROUTING -s 10.22.0.2/32 -m comment --comment \"c\" -j CNI-x\n\
            -A CNI-x -d 10.22.0.0/16 -m comment --comment \"c\" -j ACCEPT\n\
            -A CNI-x ! -d 224.0.0.0/4 -m comment --comment \"c\" -j MASQUERADE\nCOMMIT\n";
        let table = NatTable::parse(dump);
        assert!(setup_lines(&table, "CNI-x", "c", &nets(&["10.22.0.2/16"])).is_empty());
        // A different comment is a different rule (AppendUnique compares all args).
        assert_eq!(
            setup_lines(&table, "CNI-x", "d", &nets(&["10.22.0.2/16"])).len(),
            3
        );
    }

    #[test]
    fn teardown_lines_cover_bare_and_legacy_sources() {
        let dump = "*nat\n:POSTROUTING ACCEPT [0:0]\n:CNI-x - [0:0]\n\
            -A POSTROUTING -s 10.22.0.2/32 -m comment --comment \"c\" -j CNI-x\n\
            -A POSTROUTING -s 10.22.0.0/16 -m comment --comment \"c\" -j CNI-x\n\
            -A POSTROUTING -s 10.9.0.0/16 -j CNI-other\n\
            -A CNI-x -d 10.22.0.0/16 -m comment --comment \"c\" -j ACCEPT\nCOMMIT\n";
        let table = NatTable::parse(dump);
        assert_eq!(
            teardown_lines(&table, "CNI-x"),
            vec![
                "-D POSTROUTING -s 10.22.0.2/32 -m comment --comment \"c\" -j CNI-x",
                "-D POSTROUTING -s 10.22.0.0/16 -m comment --comment \"c\" -j CNI-x",
                "-F CNI-x",
                "-X CNI-x",
            ]
        );
        assert!(teardown_lines(&table, "CNI-gone").is_empty());
    }

    #[test]
    fn stale_chains_need_matching_name_and_network() {
        let a = chain_name("net", "a");
        let b = chain_name("net", "b");
        let other = chain_name("othernet", "c");
        let ca = iptables_comment("net", "a");
        let cb = iptables_comment("net", "b");
        let cc = iptables_comment("othernet", "c");
        let q = restore_quote;
        let dump = format!(
            "*nat\n:{a} - [0:0]\n:{b} - [0:0]\n:{other} - [0:0]\n:CNI-DN-1234567890abcdef012345 - [0:0]\n\
             -A {a} -j ACCEPT -m comment --comment {}\n\
             -A {b} -j ACCEPT -m comment --comment {}\n\
             -A {other} -j ACCEPT -m comment --comment {}\n\
             -A CNI-DN-1234567890abcdef012345 -j ACCEPT -m comment --comment {}\nCOMMIT\n",
            q(&ca),
            q(&cb),
            q(&cc),
            q(&cb)
        );
        let table = NatTable::parse(&dump);
        let valid: BTreeSet<&str> = ["a"].into_iter().collect();
        assert_eq!(stale_chains(&table, "net", &valid), vec![b]);
    }
}
