//! The lease store abstraction and its in-memory implementation.
//!
//! The allocator reads every lease **once** per command (under the store's
//! lock) and then works in memory; the store only has to list, create
//! exclusively, remove, and remember the last reserved address per range set.
//! [`DiskStore`](super::disk::DiskStore) is the reference-compatible directory;
//! `mem_store::MemStore` backs the unit tests.

use std::net::IpAddr;

use super::error::IpamError;

/// Separator between container id and ifname in a lease file (reference `LineBreak`).
pub const LINE_BREAK: &str = "\r\n";

/// Who holds a lease, as read from the lease file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// `<id>\r\n<ifname>`: the normal form since 2018.
    Attachment { id: String, ifname: String },
    /// `<id>` alone: files written before the ifname line existed. They match
    /// any ifname of that container, as in the reference's fallback.
    Legacy { id: String },
    /// Empty file: a reservation whose writer died between the exclusive
    /// create and the write. Found under the lock, its writer is gone and it
    /// never returned the address to anyone, so it is reclaimed.
    Orphan,
    /// Content we cannot interpret (not UTF-8). It keeps blocking its address;
    /// only GC (which knows every valid attachment) removes it.
    Unknown,
}

impl Owner {
    /// Parses a lease file's content like the reference: whitespace-trimmed,
    /// split at the first CRLF.
    pub fn parse(content: &[u8]) -> Owner {
        let Ok(text) = std::str::from_utf8(content) else {
            return Owner::Unknown;
        };
        let text = text.trim();
        if text.is_empty() {
            return Owner::Orphan;
        }
        match text.split_once(LINE_BREAK) {
            Some((id, ifname)) => Owner::Attachment {
                id: id.trim().to_string(),
                ifname: ifname.to_string(),
            },
            None => Owner::Legacy {
                id: text.to_string(),
            },
        }
    }

    /// The container id, if the content names one.
    pub fn id(&self) -> Option<&str> {
        match self {
            Owner::Attachment { id, .. } | Owner::Legacy { id } => Some(id),
            Owner::Orphan | Owner::Unknown => None,
        }
    }

    /// True when this lease belongs exactly to `(id, ifname)`.
    pub fn is_attachment(&self, id: &str, ifname: &str) -> bool {
        matches!(self, Owner::Attachment { id: i, ifname: n } if i == id.trim() && n == ifname)
    }

    /// True for a legacy id-only lease of container `id`.
    pub fn is_legacy_of(&self, id: &str) -> bool {
        matches!(self, Owner::Legacy { id: i } if i == id.trim())
    }
}

/// The exact bytes of a lease file: `<id>\r\n<ifname>`, no trailing newline.
pub fn lease_content(id: &str, ifname: &str) -> String {
    format!("{}{LINE_BREAK}{ifname}", id.trim())
}

/// One lease as listed by a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The leased address (canonical).
    pub ip: IpAddr,
    /// The store key (file name); usually `ip.to_string()`, kept verbatim so
    /// non-canonical names written by other tools can still be removed.
    pub key: String,
    /// Who holds it.
    pub owner: Owner,
}

/// Persistence for leases. Implementations are used by one command at a time
/// (the disk store holds an exclusive lock for its whole lifetime).
pub trait Store {
    /// Every lease currently stored. Called once per command.
    fn leases(&mut self) -> Result<Vec<Lease>, IpamError>;
    /// Creates the lease for `ip` exclusively. `Ok(false)` means the address
    /// is already taken (someone else created it first).
    fn reserve(&mut self, ip: IpAddr, id: &str, ifname: &str) -> Result<bool, IpamError>;
    /// Removes the lease stored under `key`; a missing lease is not an error.
    fn remove(&mut self, key: &str) -> Result<(), IpamError>;
    /// The last address reserved in range set `set`, if known and readable.
    fn last_reserved(&mut self, set: usize) -> Option<IpAddr>;
    /// Remembers `ip` as the last address reserved in range set `set`.
    fn set_last_reserved(&mut self, set: usize, ip: IpAddr) -> Result<(), IpamError>;
}

/// Defence in depth (the skel validates these too): the container id and
/// ifname end up in lease file contents, where CR/LF would forge the format.
pub fn validate_attachment(id: &str, ifname: &str) -> Result<(), IpamError> {
    let bad = |s: &str| s.is_empty() || s.contains('/') || s.chars().any(char::is_control);
    if bad(id) || id.trim() != id || id == "." || id == ".." {
        return Err(IpamError::Args(format!(
            "invalid container id {id:?}: must be non-empty, without '/', whitespace or control characters"
        )));
    }
    if bad(ifname) || ifname.chars().any(char::is_whitespace) || ifname == "." || ifname == ".." {
        return Err(IpamError::Args(format!(
            "invalid interface name {ifname:?}: must be non-empty, without '/', whitespace or control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lease_contents() {
        assert_eq!(
            Owner::parse(b"abc\r\neth0"),
            Owner::Attachment {
                id: "abc".into(),
                ifname: "eth0".into()
            }
        );
        assert_eq!(
            Owner::parse(b"  abc\r\neth0\n"),
            Owner::Attachment {
                id: "abc".into(),
                ifname: "eth0".into()
            }
        );
        assert_eq!(Owner::parse(b"abc"), Owner::Legacy { id: "abc".into() });
        assert_eq!(Owner::parse(b"abc\n"), Owner::Legacy { id: "abc".into() });
        assert_eq!(Owner::parse(b""), Owner::Orphan);
        assert_eq!(Owner::parse(b" \n"), Owner::Orphan);
        assert_eq!(Owner::parse(&[0xff, 0xfe]), Owner::Unknown);
    }

    #[test]
    fn content_is_byte_exact() {
        assert_eq!(lease_content("abc", "eth0"), "abc\r\neth0");
        assert_eq!(lease_content(" abc ", "eth0"), "abc\r\neth0");
    }

    #[test]
    fn owner_matching() {
        let o = Owner::parse(b"abc\r\neth0");
        assert!(o.is_attachment("abc", "eth0"));
        assert!(!o.is_attachment("abc", "eth1"));
        assert!(!o.is_legacy_of("abc"));
        let l = Owner::parse(b"abc");
        assert!(l.is_legacy_of("abc"));
        assert!(!l.is_attachment("abc", "eth0"));
        assert_eq!(l.id(), Some("abc"));
        assert_eq!(Owner::Orphan.id(), None);
    }
}
