//! Deterministic host-side veth names.
//!
//! The reference picks `veth` + 4 random bytes. We derive the bytes from
//! sha512(container id, ifname, attempt) instead: same shape (NetworkManager
//! ignores `veth*`), but stable per attachment, so retries and tests are
//! reproducible. A collision just moves to the next attempt.

use sha2::{Digest, Sha512};

/// How many names to try before giving up (as the reference's `makeVeth`).
pub const ATTEMPTS: u32 = 10;

/// `veth` + 8 lowercase hex characters for `attempt` (0-based).
pub fn host_veth_name(container_id: &str, ifname: &str, attempt: u32) -> String {
    let mut h = Sha512::new();
    h.update(container_id.as_bytes());
    h.update([0]);
    h.update(ifname.as_bytes());
    if attempt > 0 {
        h.update([0]);
        h.update(attempt.to_string().as_bytes());
    }
    let digest = h.finalize();
    format!("veth{}", cni::hex::encode(&digest[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_shaped_like_the_reference() {
        let a = host_veth_name("abc", "eth0", 0);
        assert_eq!(a, host_veth_name("abc", "eth0", 0));
        assert_eq!(a.len(), 12);
        assert!(a.starts_with("veth"));
        assert!(a[4..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, host_veth_name("abc", "eth1", 0));
        assert_ne!(a, host_veth_name("abd", "eth0", 0));
        assert_ne!(a, host_veth_name("abc", "eth0", 1));
        // The separator keeps ("ab", "ceth0") apart from ("abc", "eth0").
        assert_ne!(a, host_veth_name("ab", "ceth0", 0));
    }
}
