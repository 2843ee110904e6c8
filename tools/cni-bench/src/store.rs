//! host-local stores written directly in the reference's on-disk format
//! (`<dataDir>/<network>/<ip>` containing `<id>\r\n<ifname>`, plus
//! `last_reserved_ip.<set>`), for the "65 000 leases" scenario.

use crate::error::{BenchError, Result};
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn write_file(path: &Path, content: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| BenchError::io(path, e))?;
    f.write_all(content).map_err(|e| BenchError::io(path, e))
}

/// Writes `count` leases for consecutive IPv4 addresses starting at `first`
/// into `net_dir` (created if missing), owned by `lease-<n>` on `eth0`, and
/// points `last_reserved_ip.0` at the last one, as the reference leaves a
/// store it filled in order. Returns that last address.
pub fn prefill(net_dir: &Path, first: Ipv4Addr, count: u32) -> Result<Ipv4Addr> {
    std::fs::create_dir_all(net_dir).map_err(|e| BenchError::io(net_dir, e))?;
    let start = u32::from(first);
    let mut last = first;
    for n in 0..count {
        if n % 1024 == 0 && crate::util::interrupted() {
            return Err(BenchError::Interrupted);
        }
        let ip = Ipv4Addr::from(
            start
                .checked_add(n)
                .ok_or_else(|| BenchError::Other("lease range overflows the IPv4 space".into()))?,
        );
        write_file(
            &net_dir.join(ip.to_string()),
            format!("lease-{n}\r\neth0").as_bytes(),
        )?;
        last = ip;
    }
    set_last_reserved(net_dir, last)?;
    Ok(last)
}

/// Rewrites `last_reserved_ip.0`, so every timed ADD starts from the same
/// point of the round-robin iterator.
pub fn set_last_reserved(net_dir: &Path, ip: Ipv4Addr) -> Result<()> {
    write_file(
        &net_dir.join("last_reserved_ip.0"),
        ip.to_string().as_bytes(),
    )
}

/// Copies the regular files of `src` into `dst` (created if missing).
pub fn copy_flat(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst).map_err(|e| BenchError::io(dst, e))?;
    for (n, entry) in std::fs::read_dir(src)
        .map_err(|e| BenchError::io(src, e))?
        .enumerate()
    {
        if n % 1024 == 0 && crate::util::interrupted() {
            return Err(BenchError::Interrupted);
        }
        let entry = entry.map_err(|e| BenchError::io(src, e))?;
        let from = entry.path();
        if from.is_file() {
            let to = dst.join(entry.file_name());
            std::fs::copy(&from, &to).map_err(|e| BenchError::io(&to, e))?;
        }
    }
    Ok(())
}

/// Names of the lease files (those named like an IP) in a network dir;
/// a missing dir has none.
pub fn leases(net_dir: &Path) -> Result<Vec<IpAddr>> {
    let rd = match std::fs::read_dir(net_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BenchError::io(net_dir, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| BenchError::io(net_dir, e))?;
        if let Some(ip) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<IpAddr>().ok())
        {
            out.push(ip);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::TempDir;

    #[test]
    fn prefill_writes_reference_format() {
        let t = TempDir::new("store-unit").unwrap();
        let net = t.path().join("net");
        let last = prefill(&net, Ipv4Addr::new(10, 250, 0, 254), 4).unwrap();
        assert_eq!(last, Ipv4Addr::new(10, 250, 1, 1));
        assert_eq!(
            std::fs::read(net.join("10.250.0.254")).unwrap(),
            b"lease-0\r\neth0"
        );
        assert_eq!(
            std::fs::read(net.join("10.250.1.1")).unwrap(),
            b"lease-3\r\neth0"
        );
        assert_eq!(
            std::fs::read(net.join("last_reserved_ip.0")).unwrap(),
            b"10.250.1.1"
        );
        assert_eq!(leases(&net).unwrap().len(), 4);

        let copy = t.path().join("copy");
        copy_flat(&net, &copy).unwrap();
        assert_eq!(leases(&copy).unwrap().len(), 4);
        assert_eq!(
            std::fs::read(copy.join("last_reserved_ip.0")).unwrap(),
            b"10.250.1.1"
        );
        assert!(leases(&t.path().join("missing")).unwrap().is_empty());
    }
}
