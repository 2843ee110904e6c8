//! `/proc/sys` access for per-namespace network knobs.
//!
//! Keys use the slash form (`net/ipv6/conf/eth0.100/accept_dad`) rather than
//! the dotted `sysctl(8)` form, so interface names containing dots (VLAN
//! devices like `cni0.100`) work, as in the Go `pkg/utils/sysctl`.
//!
//! `/proc/sys/net` resolves to the network namespace of the thread that opens
//! the file: to change a container's knobs, call these inside
//! [`crate::netns::NetNs::run`].

use std::io;
use std::path::PathBuf;

fn path_of(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.trim_start_matches('/'))
}

/// Reads a sysctl value, without the trailing newline.
pub fn get(key: &str) -> io::Result<String> {
    let raw = std::fs::read_to_string(path_of(key))?;
    Ok(raw.trim_end_matches('\n').to_string())
}

/// Writes `value` unless the key already holds it (read-before-write avoids
/// needless writes and works on read-only `/proc/sys` when nothing changes).
/// Returns whether a write happened.
pub fn set(key: &str, value: &str) -> io::Result<bool> {
    if get(key)? == value {
        return Ok(false);
    }
    std::fs::write(path_of(key), value)?;
    Ok(true)
}

/// Like [`set`] but a missing key is not an error: IPv6 knobs do not exist
/// when IPv6 is disabled on the host (plugins#102, #59). Returns whether a
/// write happened.
pub fn set_if_present(key: &str, value: &str) -> io::Result<bool> {
    match set(key, value) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_known_key() {
        let v = get("net/ipv4/ip_forward").expect("read ip_forward");
        assert!(v == "0" || v == "1", "{v:?}");
        assert!(!v.ends_with('\n'));
    }

    #[test]
    fn missing_key_is_not_found() {
        let err = get("net/ipv6/conf/no-such-if0/accept_dad").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(!set_if_present("net/ipv6/conf/no-such-if0/accept_dad", "0").expect("tolerated"));
    }

    #[test]
    fn writing_the_current_value_is_a_no_op() {
        let key = "net/ipv4/ip_forward";
        let cur = get(key).expect("read");
        assert!(!set(key, &cur).expect("no write needed"));
    }

    #[test]
    fn slash_keys_map_under_proc_sys() {
        assert_eq!(
            path_of("net/ipv6/conf/cni0.100/accept_dad"),
            PathBuf::from("/proc/sys/net/ipv6/conf/cni0.100/accept_dad")
        );
    }
}
