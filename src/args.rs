//! `CNI_ARGS` (`K=V;K=V`), parsed exactly like Go's `types.LoadArgs`.
//!
//! Unknown-key rejection is the plugin's decision (each reference plugin
//! declares its own keys), so parsing keeps every pair and
//! [`CniArgs::check_known`] applies the `IgnoreUnknown` rule.

use crate::error::{codes, CniError, Result};

/// The key that disables unknown-key errors (Go `CommonArgs.IgnoreUnknown`).
pub const IGNORE_UNKNOWN: &str = "IgnoreUnknown";

/// Parsed `CNI_ARGS`, in order, keys case-sensitive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    raw: String,
    pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parses `s`: empty means no args; otherwise split on `;`, then each
    /// pair on `=`, which must give exactly two parts (so empty pairs from a
    /// trailing `;` and values containing `=` are rejected, as in Go).
    /// Errors are code 4 "invalid CNI_ARGS" (Go returns a plain error there).
    pub fn parse(s: &str) -> Result<CniArgs> {
        let mut pairs = Vec::new();
        if !s.is_empty() {
            for pair in s.split(';') {
                let kv: Vec<&str> = pair.split('=').collect();
                let [k, v] = kv.as_slice() else {
                    return Err(CniError::new(codes::INVALID_ENV, "invalid CNI_ARGS")
                        .with_details(format!("ARGS: invalid pair {pair:?}")));
                };
                pairs.push(((*k).to_string(), (*v).to_string()));
            }
        }
        Ok(CniArgs {
            raw: s.to_string(),
            pairs,
        })
    }

    /// The value of `key` (case-sensitive); the last one wins on duplicates,
    /// as Go assigns fields in order.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The original `CNI_ARGS` string (passed on to delegates).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// `IgnoreUnknown` as Go's `UnmarshallableBool`: "1"/"true" → true,
    /// "0"/"false" → false (case-insensitive), absent → false.
    /// Any other value is code 4, as Go fails to load such args.
    pub fn ignore_unknown(&self) -> Result<bool> {
        match self.get(IGNORE_UNKNOWN) {
            None => Ok(false),
            Some(v) => parse_bool(v).ok_or_else(|| {
                CniError::new(codes::INVALID_ENV, "invalid CNI_ARGS").with_details(format!(
                    "ARGS: error parsing value of pair \"{IGNORE_UNKNOWN}={v}\": boolean unmarshal error: invalid input {}",
                    v.to_lowercase()
                ))
            }),
        }
    }

    /// Fails with code 4 `ARGS: unknown args ["K" ...]` when a key is
    /// neither in `known` nor `IgnoreUnknown`, unless `IgnoreUnknown` is true.
    pub fn check_known(&self, known: &[&str]) -> Result<()> {
        if self.ignore_unknown()? {
            return Ok(());
        }
        let unknown: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != IGNORE_UNKNOWN && !known.contains(&k.as_str()))
            .map(|(k, _)| format!("{k:?}"))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(CniError::new(
            codes::INVALID_ENV,
            format!("ARGS: unknown args [{}]", unknown.join(" ")),
        ))
    }
}

/// Go `UnmarshallableBool` text rules.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty() {
        let a = CniArgs::parse("").unwrap();
        assert!(a.is_empty());
        assert_eq!(a.get("IP"), None);
        a.check_known(&[]).unwrap();
    }

    #[test]
    fn kubelet_style() {
        let s = "K8S_POD_NAME=web;IgnoreUnknown=1;K8S_POD_NAMESPACE=default;IP=10.1.0.9";
        let a = CniArgs::parse(s).unwrap();
        assert_eq!(a.get("IP"), Some("10.1.0.9"));
        assert_eq!(a.get("ip"), None, "keys are case-sensitive");
        assert_eq!(a.get("K8S_POD_NAME"), Some("web"));
        assert!(a.ignore_unknown().unwrap());
        a.check_known(&["IP"]).unwrap();
        assert_eq!(a.as_str(), s);
        assert_eq!(a.pairs().len(), 4);
    }

    #[test]
    fn unknown_rejected_without_ignore() {
        let a = CniArgs::parse("FOO=1;IP=10.0.0.1;BAR=").unwrap();
        let e = a.check_known(&["IP"]).unwrap_err();
        assert_eq!(e.code(), 4);
        assert_eq!(e.msg(), r#"ARGS: unknown args ["FOO" "BAR"]"#);
        let a = CniArgs::parse("FOO=1;IgnoreUnknown=TRUE").unwrap();
        a.check_known(&[]).unwrap();
        let a = CniArgs::parse("FOO=1;IgnoreUnknown=false").unwrap();
        assert!(a.check_known(&[]).is_err());
        let a = CniArgs::parse("IgnoreUnknown=0").unwrap();
        a.check_known(&[]).unwrap();
        let a = CniArgs::parse("ignoreunknown=1").unwrap();
        assert!(
            a.check_known(&[]).is_err(),
            "IgnoreUnknown key is case-sensitive"
        );
    }

    #[test]
    fn bad_ignore_unknown_value() {
        let a = CniArgs::parse("IgnoreUnknown=yes").unwrap();
        assert_eq!(a.ignore_unknown().unwrap_err().code(), 4);
        assert!(a.check_known(&[]).is_err());
    }

    #[test]
    fn invalid_pairs() {
        for s in ["a", "a=b;", ";", "a=b=c", "a=b;c", "=;"] {
            let e = CniArgs::parse(s).unwrap_err();
            assert_eq!(e.code(), 4, "{s}");
            assert_eq!(e.msg(), "invalid CNI_ARGS");
            assert!(e.details().starts_with("ARGS: invalid pair"), "{s}");
        }
        let a = CniArgs::parse("=x;k=").unwrap();
        assert_eq!(a.get(""), Some("x"));
        assert_eq!(a.get("k"), Some(""));
    }

    #[test]
    fn last_duplicate_wins() {
        let a = CniArgs::parse("IP=1;IP=2").unwrap();
        assert_eq!(a.get("IP"), Some("2"));
    }
}
