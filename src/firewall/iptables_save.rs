//! Parsing `iptables-save -t nat` output into chains and rules.
//!
//! We only need to recognise the rules the CNI plugins write (`-s`, `-d`,
//! `! -d`, `-m comment --comment`, `-j`); any other option marks a rule as
//! "foreign" so it never compares equal to one of ours.

use std::collections::BTreeSet;

use ipnet::IpNet;

/// The nat table as dumped by `iptables-save -t nat`.
#[derive(Debug, Default, Clone)]
pub(crate) struct NatTable {
    /// Every chain name (built-in and user-defined).
    pub chains: BTreeSet<String>,
    /// Every `-A` rule, in dump order.
    pub rules: Vec<SavedRule>,
}

/// One `-A <chain> ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedRule {
    /// The line exactly as dumped; `-A` swapped for `-D` deletes this rule.
    pub line: String,
    /// The chain the rule is in.
    pub chain: String,
    /// `-s` (normalised to its network).
    pub source: Option<IpNet>,
    /// `-d` (normalised to its network).
    pub dest: Option<IpNet>,
    /// `!` before `-d`.
    pub dest_negated: bool,
    /// The `--comment` text, unescaped.
    pub comment: Option<String>,
    /// The `-j` target.
    pub target: Option<String>,
    /// True if the rule uses anything else than the options above.
    pub foreign: bool,
}

impl NatTable {
    /// Parses the `*nat` section of an `iptables-save` dump.
    pub(crate) fn parse(dump: &str) -> NatTable {
        let mut table = NatTable::default();
        let mut in_nat = false;
        for line in dump.lines().map(str::trim) {
            if line.starts_with('*') {
                in_nat = line == "*nat";
            } else if !in_nat || line.is_empty() || line.starts_with('#') || line == "COMMIT" {
                continue;
            } else if let Some(decl) = line.strip_prefix(':') {
                let name = decl.split_whitespace().next().unwrap_or_default();
                table.chains.insert(name.to_string());
            } else if line.starts_with("-A ") {
                table.rules.extend(SavedRule::parse(line));
            }
        }
        table
    }

    /// Rules (in any chain) that jump to `chain`.
    pub(crate) fn jumps_to<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a SavedRule> {
        self.rules
            .iter()
            .filter(move |r| r.target.as_deref() == Some(chain))
    }

    /// Rules inside `chain`.
    pub(crate) fn rules_in<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a SavedRule> {
        self.rules.iter().filter(move |r| r.chain == chain)
    }
}

impl SavedRule {
    /// Never fails on content it does not understand: such rules are
    /// marked foreign (they cannot be ours), so someone else's odd rule can
    /// never make our DEL fail. `None` only for a line without a chain.
    fn parse(line: &str) -> Option<SavedRule> {
        let mut rule = SavedRule {
            line: line.to_string(),
            chain: String::new(),
            source: None,
            dest: None,
            dest_negated: false,
            comment: None,
            target: None,
            foreign: false,
        };
        let Some(tokens) = split_words(line) else {
            rule.chain = line.split_whitespace().nth(1)?.to_string();
            rule.foreign = true;
            return Some(rule);
        };
        let mut it = tokens.into_iter();
        let mut negate_next = false;
        while let Some(tok) = it.next() {
            if tok == "!" {
                negate_next = true;
                continue;
            }
            let negate = std::mem::take(&mut negate_next);
            let known = match (tok.as_str(), it.next()) {
                ("-A", Some(v)) => {
                    rule.chain = v;
                    true
                }
                ("-s", Some(v)) if !negate => parse_net(&v).map(|n| rule.source = Some(n)).is_ok(),
                ("-d", Some(v)) => {
                    rule.dest_negated = negate;
                    parse_net(&v).map(|n| rule.dest = Some(n)).is_ok()
                }
                ("-m", Some(v)) => v == "comment",
                ("--comment", Some(v)) => {
                    rule.comment = Some(v);
                    true
                }
                ("-j", Some(v)) => {
                    rule.target = Some(v);
                    true
                }
                _ => false,
            };
            rule.foreign |= !known;
        }
        (!rule.chain.is_empty()).then_some(rule)
    }
}

/// Parses an address or CIDR as iptables prints it, normalised to the network.
pub(crate) fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|e| format!("bad address {s:?}: {e}"))
}

/// Splits a dump line into words; `"..."` groups, `\x` escapes `x`
/// (the quoting `iptables-save` uses for comments and `iptables-restore` reads).
pub(crate) fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(chars.next()?);
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return None;
    }
    if in_word {
        words.push(cur);
    }
    Some(words)
}

/// Quotes a value for an `iptables-restore` line (inverse of [`split_words`]).
pub(crate) fn restore_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from the reference bridge (v1.1.1) with iptables-nft 1.8.9.
    const REFERENCE_DUMP: &str = r#"# Generated by iptables-save v1.8.9 (nf_tables) on Thu Nov 26 07:28:28 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-70a29d9dc18bc4d652ea5d59 - [0:0]
-A POSTROUTING -s 10.22.0.2/32 -m comment --comment "name: \"mynet\" id: \"abc123\"" -j CNI-70a29d9dc18bc4d652ea5d59
-A CNI-70a29d9dc18bc4d652ea5d59 -d 10.22.0.0/16 -m comment --comment "name: \"mynet\" id: \"abc123\"" -j ACCEPT
-A CNI-70a29d9dc18bc4d652ea5d59 ! -d 224.0.0.0/4 -m comment --comment "name: \"mynet\" id: \"abc123\"" -j MASQUERADE
COMMIT
# Completed on Thu Nov 26 07:28:28 2026
"#;

    #[test]
    fn parses_reference_dump() {
        let t = NatTable::parse(REFERENCE_DUMP);
        assert!(t.chains.contains("CNI-70a29d9dc18bc4d652ea5d59"));
        assert!(t.chains.contains("POSTROUTING"));
        assert_eq!(t.rules.len(), 3);
        let post = &t.rules[0];
        assert_eq!(post.chain, "POSTROUTING");
        assert_eq!(post.source, Some("10.22.0.2/32".parse().unwrap()));
        assert_eq!(
            post.comment.as_deref(),
            Some(r#"name: "mynet" id: "abc123""#)
        );
        assert_eq!(post.target.as_deref(), Some("CNI-70a29d9dc18bc4d652ea5d59"));
        assert!(!post.foreign);
        let masq = &t.rules[2];
        assert!(masq.dest_negated);
        assert_eq!(masq.dest, Some("224.0.0.0/4".parse().unwrap()));
        assert_eq!(t.jumps_to("CNI-70a29d9dc18bc4d652ea5d59").count(), 1);
        assert_eq!(t.rules_in("CNI-70a29d9dc18bc4d652ea5d59").count(), 2);
    }

    #[test]
    fn other_options_are_foreign() {
        let t = NatTable::parse("*nat\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n");
        assert!(t.rules[0].foreign);
        let t = NatTable::parse("*nat\n-A POSTROUTING ! -s 10.0.0.0/8 -j X\nCOMMIT\n");
        assert!(t.rules[0].foreign);
    }

    #[test]
    fn odd_rules_are_foreign_not_errors() {
        let t = NatTable::parse(
            "*nat\n-A X -s not-an-ip -j Y\n-A X -m comment --comment \"unbalanced\n-A X -d\nCOMMIT\n",
        );
        assert_eq!(t.rules.len(), 3);
        assert!(t.rules.iter().all(|r| r.foreign && r.chain == "X"));
    }

    #[test]
    fn ignores_other_tables() {
        let t = NatTable::parse("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n");
        assert!(t.chains.is_empty() && t.rules.is_empty());
    }

    #[test]
    fn quoting_round_trips() {
        for s in ["plain", r#"name: "a\b" id: "c""#, "sp ace"] {
            let line = format!("-A X --comment {}", restore_quote(s));
            assert_eq!(split_words(&line).unwrap()[3], s);
        }
        assert_eq!(split_words(r#"a "b"#), None);
    }

    #[test]
    fn v6_addresses() {
        assert_eq!(
            parse_net("fd10:22::2/128").unwrap(),
            "fd10:22::2/128".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_net("fd10:22::5/64").unwrap(),
            "fd10:22::/64".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_net("10.1.1.1").unwrap(),
            "10.1.1.1/32".parse::<IpNet>().unwrap()
        );
    }
}
