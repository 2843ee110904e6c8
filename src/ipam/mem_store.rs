//! An in-memory [`Store`] for unit tests (and, with the `test-hooks`
//! feature, for other crates' tests); never part of a release build.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::error::IpamError;
use super::store::{lease_content, Lease, Owner, Store};

/// An in-memory store for unit tests. `fail_reserve_after` makes the
/// n-th and later `reserve` calls fail with an I/O error, to test rollback.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    /// key → raw content.
    pub files: BTreeMap<String, Vec<u8>>,
    /// set index → last reserved address.
    pub last: BTreeMap<usize, IpAddr>,
    /// Number of successful reserve calls before failures start.
    pub fail_reserve_after: Option<usize>,
    reserves: usize,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a raw lease file (for legacy/orphan scenarios).
    pub fn insert_raw(&mut self, key: &str, content: &[u8]) {
        self.files.insert(key.to_string(), content.to_vec());
    }
}

impl Store for MemStore {
    fn leases(&mut self) -> Result<Vec<Lease>, IpamError> {
        Ok(self
            .files
            .iter()
            .filter_map(|(k, v)| {
                let ip = k.parse::<IpAddr>().ok()?.to_canonical();
                Some(Lease {
                    ip,
                    key: k.clone(),
                    owner: Owner::parse(v),
                })
            })
            .collect())
    }

    fn reserve(&mut self, ip: IpAddr, id: &str, ifname: &str) -> Result<bool, IpamError> {
        if self.fail_reserve_after.is_some_and(|n| self.reserves >= n) {
            return Err(IpamError::Io {
                context: format!("reserve {ip}"),
                source: std::io::Error::other("injected failure"),
            });
        }
        let key = ip.to_string();
        if self.files.contains_key(&key) {
            return Ok(false);
        }
        self.reserves += 1;
        self.files
            .insert(key, lease_content(id, ifname).into_bytes());
        Ok(true)
    }

    fn remove(&mut self, key: &str) -> Result<(), IpamError> {
        self.files.remove(key);
        Ok(())
    }

    fn last_reserved(&mut self, set: usize) -> Option<IpAddr> {
        self.last.get(&set).copied()
    }

    fn set_last_reserved(&mut self, set: usize, ip: IpAddr) -> Result<(), IpamError> {
        self.last.insert(set, ip);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_store_is_exclusive() {
        let mut s = MemStore::new();
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!(s.reserve(ip, "a", "eth0").expect("reserve"));
        assert!(!s.reserve(ip, "b", "eth0").expect("reserve"));
        assert_eq!(s.leases().expect("list").len(), 1);
        s.remove("10.0.0.2").expect("remove");
        s.remove("10.0.0.2").expect("remove twice");
        assert!(s.leases().expect("list").is_empty());
    }
}
