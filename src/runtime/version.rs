//! `cniVersion` comparisons (Go `version.GreaterThanOrEqualTo`).

/// Parses `"a.b.c"` into a comparable triple; `None` if malformed.
pub fn parse(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split('.');
    let a = it.next()?.parse().ok()?;
    let b = it.next()?.parse().ok()?;
    let c = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((a, b, c))
}

/// `v >= min`; malformed versions compare as false.
pub fn at_least(v: &str, min: &str) -> bool {
    matches!((parse(v), parse(min)), (Some(a), Some(b)) if a >= b)
}

/// The versions this runtime can speak (same list the plugins advertise).
pub const SUPPORTED: [&str; 7] = crate::spec::SUPPORTED_VERSIONS;

/// From a `cniVersions` list (spec 1.1), the highest version we support.
pub fn pick_highest(candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .filter(|c| SUPPORTED.contains(&c.as_str()))
        .max_by_key(|c| parse(c))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_numerically() {
        assert!(at_least("1.1.0", "1.1.0"));
        assert!(at_least("1.10.0", "1.9.0"));
        assert!(!at_least("0.4.0", "1.1.0"));
        assert!(at_least("0.4.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert!(!at_least("bogus", "0.1.0"));
    }

    #[test]
    fn picks_highest_known() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pick_highest(&v(&["0.4.0", "1.1.0", "9.9.9"])).as_deref(),
            Some("1.1.0")
        );
        assert_eq!(pick_highest(&v(&["9.9.9"])), None);
    }
}
