//! CNI spec versions: what we support and how versions compare.

use crate::error::{codes, CniError, Result};
use serde_json::{json, Value};

/// Every config version we accept (Go `version.All`).
pub const SUPPORTED_VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The version we implement; reported by VERSION.
pub const CURRENT_VERSION: &str = "1.1.0";

/// What a config without `cniVersion` means (Go `DecodeVersion`).
pub const DEFAULT_CONFIG_VERSION: &str = "0.1.0";

/// Fails with code 1 "incompatible CNI versions" unless `v` is literally one
/// of [`SUPPORTED_VERSIONS`] (Go `reconcile.go`).
pub fn check_version(v: &str) -> Result<()> {
    if SUPPORTED_VERSIONS.contains(&v) {
        return Ok(());
    }
    let list = SUPPORTED_VERSIONS
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(" ");
    Err(
        CniError::new(codes::INCOMPATIBLE_VERSION, "incompatible CNI versions")
            .with_details(format!("config is {v:?}, plugin supports [{list}]")),
    )
}

/// Parses `major.minor.patch` (Go `version.ParseVersion`: missing parts
/// count as 0); `None` when not numeric or with more than three parts.
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next().map_or(Some(0), |s| s.parse().ok())?;
    let patch = it.next().map_or(Some(0), |s| s.parse().ok())?;
    if it.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

/// True when `v >= min`; false when either is not a version number.
pub fn version_at_least(v: &str, min: &str) -> bool {
    match (parse_version(v), parse_version(min)) {
        (Some(a), Some(b)) => a >= b,
        _ => false,
    }
}

/// From a `cniVersions` list (spec 1.1), the highest version we support.
pub fn highest_supported(candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .filter(|c| SUPPORTED_VERSIONS.contains(&c.as_str()))
        .max_by_key(|c| parse_version(c))
        .cloned()
}

/// The VERSION reply: our current version and every supported version.
pub fn version_reply() -> Value {
    json!({"cniVersion": CURRENT_VERSION, "supportedVersions": SUPPORTED_VERSIONS})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_and_unknown() {
        for v in SUPPORTED_VERSIONS {
            check_version(v).unwrap();
        }
        let e = check_version("0.5.0").unwrap_err();
        assert_eq!(e.code(), 1);
        assert_eq!(e.msg(), "incompatible CNI versions");
        assert_eq!(
            e.details(),
            r#"config is "0.5.0", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]"#
        );
        assert!(check_version("1.1").is_err());
        assert!(check_version("").is_err());
    }

    #[test]
    fn ordering() {
        assert!(version_at_least("0.4.0", "0.4.0"));
        assert!(version_at_least("1.0.0", "0.4.0"));
        assert!(!version_at_least("0.3.1", "0.4.0"));
        assert!(!version_at_least("1.0.0", "1.1.0"));
        assert!(version_at_least("1.10.0", "1.2.0"));
        assert!(!version_at_least("abc", "0.1.0"));
        assert!(!version_at_least("0.1.0", "abc"));
        assert!(version_at_least("1.1", "1.1.0"), "missing parts are 0");
        assert_eq!(parse_version("1"), Some((1, 0, 0)));
        assert_eq!(parse_version("1.2.3.4"), None);
        assert_eq!(parse_version("1.x.0"), None);
    }

    #[test]
    fn picks_highest_supported() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            highest_supported(&v(&["0.4.0", "1.1.0", "1.0.0", "9.9.9"])).as_deref(),
            Some("1.1.0")
        );
        assert_eq!(highest_supported(&v(&["9.9.9", "1.1"])), None);
    }

    #[test]
    fn reply_lists_all() {
        let v = version_reply();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["supportedVersions"].as_array().map(Vec::len), Some(7));
    }
}
