//! `resolvConf` parsing (reference `dns.go`): `nameserver`, `domain`,
//! `search` and `options` lines; `#` and `;` start comment lines.

use std::path::Path;

use super::error::IpamError;

/// DNS settings for the result, as read from a resolv.conf-style file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsConf {
    pub nameservers: Vec<String>,
    /// The last `domain` line wins, as in the reference.
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// Parses resolv.conf text. Unknown keywords and lines without a value are skipped.
pub fn parse_resolv_conf(text: &str) -> DnsConf {
    let mut dns = DnsConf::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [keyword, values @ ..] = fields.as_slice() else {
            continue;
        };
        let Some(first) = values.first() else {
            continue;
        };
        match *keyword {
            "nameserver" => dns.nameservers.push(first.to_string()),
            "domain" => dns.domain = Some(first.to_string()),
            "search" => dns.search.extend(values.iter().map(|s| s.to_string())),
            "options" => dns.options.extend(values.iter().map(|s| s.to_string())),
            _ => {}
        }
    }
    dns
}

/// Reads and parses `path`.
pub fn read_resolv_conf(path: &Path) -> Result<DnsConf, IpamError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| IpamError::io("failed to read ipam.resolvConf", path, e))?;
    Ok(parse_resolv_conf(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_keywords_and_comments() {
        let text =
            "# generated\n; also a comment\nnameserver 10.0.0.10\n  nameserver   fd10::53  \n\
                    domain example.com\ndomain cluster.local\nsearch a.svc b.svc\nsearch c\n\
                    options ndots:5 timeout:1\nbogus x\nnameserver\n\n";
        let dns = parse_resolv_conf(text);
        assert_eq!(dns.nameservers, vec!["10.0.0.10", "fd10::53"]);
        assert_eq!(dns.domain.as_deref(), Some("cluster.local"));
        assert_eq!(dns.search, vec!["a.svc", "b.svc", "c"]);
        assert_eq!(dns.options, vec!["ndots:5", "timeout:1"]);
    }

    #[test]
    fn empty_and_missing() {
        assert_eq!(parse_resolv_conf(""), DnsConf::default());
        let e = read_resolv_conf(Path::new("/nonexistent/resolv.conf")).expect_err("missing");
        assert_eq!(e.code(), 5);
        assert!(e.to_string().contains("/nonexistent/resolv.conf"), "{e}");
    }
}
