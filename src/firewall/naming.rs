//! Names and comments shared with the reference Go plugins, byte for byte.
//!
//! Compatibility depends on these: a chain or comment that differs by one
//! character means DEL of a pod created by the other implementation leaks its
//! rules. Sources: `pkg/utils/utils.go` (`FormatChainName`, `FormatComment`,
//! `MustFormatHashWithPrefix`) and `pkg/ip/ipmasq_nftables_linux.go`
//! (`hashForNetwork`, `hashForInstance`, `commentForInstance`).

use sha2::{Digest, Sha512};

/// iptables chain names are at most 28 characters (`maxChainLength`).
const MAX_CHAIN_LEN: usize = 28;
/// Prefix of every chain the plugins create (`chainPrefix`).
const CHAIN_PREFIX: &str = "CNI-";
/// knftables' `CommentLengthMax`: the kernel limit for nft comments.
pub(crate) const NFT_COMMENT_MAX: usize = 128;

/// `MustFormatHashWithPrefix`: `prefix` followed by lowercase hex of
/// sha512(`to_hash`), cut to `len` characters in total.
pub fn hash_with_prefix(len: usize, prefix: &str, to_hash: &str) -> String {
    let digest = Sha512::digest(to_hash.as_bytes());
    let mut out = format!("{prefix}{}", crate::hex::encode(digest));
    out.truncate(len.max(prefix.len()));
    out
}

/// `FormatChainName`: the per-(network, container) iptables chain,
/// `CNI-` + 24 hex chars of sha512(network + container_id). ifname is not
/// part of it (historical, kept for compatibility).
pub fn chain_name(network: &str, container_id: &str) -> String {
    hash_with_prefix(
        MAX_CHAIN_LEN,
        CHAIN_PREFIX,
        &format!("{network}{container_id}"),
    )
}

/// `FormatComment`: `name: "<network>" id: "<containerID>"` with Go `%q` quoting.
pub fn iptables_comment(network: &str, container_id: &str) -> String {
    format!("name: {} id: {}", go_quote(network), go_quote(container_id))
}

/// Parses a comment made by [`iptables_comment`] for `network`, returning the
/// container id, or `None` if the comment belongs to something else.
pub(crate) fn container_id_from_comment(network: &str, comment: &str) -> Option<String> {
    let prefix = format!("name: {} id: ", go_quote(network));
    let rest = comment.strip_prefix(&prefix)?;
    go_unquote(rest)
}

/// `hashForNetwork`: 16 hex chars of sha512(network).
pub fn nft_network_hash(network: &str) -> String {
    hash_with_prefix(16, "", network)
}

/// `hashForInstance`: `<hash16(network)>-<hash16(ifname:containerID)>`.
pub fn nft_instance_hash(network: &str, ifname: &str, container_id: &str) -> String {
    format!(
        "{}-{}",
        nft_network_hash(network),
        hash_with_prefix(16, "", &format!("{ifname}:{container_id}"))
    )
}

/// `commentForInstance`: instance hash plus a readable tail, double quotes
/// removed, cut to `NFT_COMMENT_MAX` bytes (at a char boundary: Go cuts
/// bytes, which only differs for non-ASCII names).
pub fn nft_comment(network: &str, ifname: &str, container_id: &str) -> String {
    let strip = |s: &str| s.replace('"', "");
    let mut comment = format!(
        "{}, net: {}, if: {}, id: {}",
        nft_instance_hash(network, ifname, container_id),
        strip(network),
        strip(ifname),
        strip(container_id)
    );
    if comment.len() > NFT_COMMENT_MAX {
        let mut cut = NFT_COMMENT_MAX;
        while !comment.is_char_boundary(cut) {
            cut -= 1;
        }
        comment.truncate(cut);
    }
    comment
}

/// Spoof-check reference id: `<containerID>-<ifname>` (bridge `uniqueID`).
pub fn spoofcheck_ref_id(container_id: &str, ifname: &str) -> String {
    format!("{container_id}-{ifname}")
}

/// Go's `strconv.Quote` (what `%q` prints) for valid UTF-8 input.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Inverse of [`go_quote`]; `None` if `s` is not exactly one quoted string.
pub(crate) fn go_unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return None,
            '\\' => {
                let esc = chars.next()?;
                let decoded = match esc {
                    '"' => '"',
                    '\\' => '\\',
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'v' => '\u{b}',
                    'x' => hex_char(&mut chars, 2)?,
                    'u' => hex_char(&mut chars, 4)?,
                    'U' => hex_char(&mut chars, 8)?,
                    _ => return None,
                };
                out.push(decoded);
            }
            c => out.push(c),
        }
    }
    Some(out)
}

fn hex_char(chars: &mut std::str::Chars<'_>, digits: usize) -> Option<char> {
    let hex: String = chars.take(digits).collect();
    if hex.len() != digits {
        return None;
    }
    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden value from running Debian's reference bridge (v1.1.1) with
    /// network "mynet", container "abc123": `iptables-save -t nat` showed
    /// `CNI-70a29d9dc18bc4d652ea5d59`.
    #[test]
    fn chain_name_matches_reference_run() {
        assert_eq!(
            chain_name("mynet", "abc123"),
            "CNI-70a29d9dc18bc4d652ea5d59"
        );
        assert_eq!(chain_name("mynet", "abc123").len(), 28);
    }

    #[test]
    fn comment_matches_reference_run() {
        assert_eq!(
            iptables_comment("mynet", "abc123"),
            r#"name: "mynet" id: "abc123""#
        );
        assert_eq!(
            iptables_comment("we\"ird\\", "a\tb"),
            r#"name: "we\"ird\\" id: "a\tb""#
        );
    }

    #[test]
    fn comment_round_trips() {
        for (net, id) in [("mynet", "abc"), ("a\"b", "c\\d"), ("ünï", "x\u{1}y")] {
            let c = iptables_comment(net, id);
            assert_eq!(container_id_from_comment(net, &c).as_deref(), Some(id));
            assert_eq!(container_id_from_comment("other", &c), None);
        }
    }

    /// Golden values computed with `printf %s mynet | sha512sum` and
    /// `printf %s eth0:abc123 | sha512sum` (Go: sha512 hex, first 16 chars).
    #[test]
    fn nft_hashes() {
        assert_eq!(nft_network_hash("mynet"), "d23676b4f2d9fe04");
        assert_eq!(
            nft_instance_hash("mynet", "eth0", "abc123"),
            "d23676b4f2d9fe04-ebce0e3dd4dafae3"
        );
    }

    #[test]
    fn nft_comment_format_and_truncation() {
        let c = nft_comment("my\"net", "eth0", "abc123");
        assert_eq!(
            c,
            format!(
                "{}, net: mynet, if: eth0, id: abc123",
                nft_instance_hash("my\"net", "eth0", "abc123")
            )
        );
        let long = "f".repeat(200);
        let c = nft_comment("mynet", "eth0", &long);
        assert_eq!(c.len(), NFT_COMMENT_MAX);
        let c = nft_comment("mynet", "eth0", &"é".repeat(100));
        assert!(c.len() <= NFT_COMMENT_MAX);
    }

    #[test]
    fn spoofcheck_ref() {
        assert_eq!(spoofcheck_ref_id("abc123", "eth0"), "abc123-eth0");
    }
}
