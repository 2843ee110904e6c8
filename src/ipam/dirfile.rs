//! Reading a small file relative to an open directory, shared by the lease
//! store (`disk`) and its attachment index (`index`).

use std::fs::File;
use std::io::{ErrorKind, Read};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// Reads `name` relative to the open directory `dir`: `openat`, one `read`
/// and `close` for a normal lease (no full-path lookup, no size-hint `statx`
/// and `lseek` as `read_to_end` would do), which matters with 65k leases.
pub(super) fn read_at(dir: &File, name: &str) -> std::io::Result<Vec<u8>> {
    let fd = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
        Mode::empty(),
    )?;
    let mut f = File::from(fd);
    let mut buf = [0u8; 512];
    let n = loop {
        match f.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    let mut out = buf[..n].to_vec();
    // A short read of a regular file means end of file; only a full buffer
    // (an unusually long id) needs more reads.
    if n == buf.len() {
        f.read_to_end(&mut out)?;
    }
    Ok(out)
}
