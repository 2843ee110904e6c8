//! Which bridge calls may overlap (issue 12; docs/reliability.md, "Races
//! between calls"). Runtimes may run calls for different attachments in
//! parallel, and a retrying runtime can even overlap calls for one
//! attachment, so two locks keep any call from undoing another's work:
//!
//! - **attachment** (network, container id, ifname): ADD, DEL and CHECK
//!   hold it exclusively for the whole call, so a duplicate ADD finds the
//!   first one's `eth0` and fails before it allocates anything, and DEL or
//!   CHECK never see half an ADD. The file goes when the call ends.
//! - **bridge** (host netns, bridge name): every ADD holds it shared from
//!   "find or create the bridge" until its veth is a port of it. A failed ADD
//!   that created the bridge deletes it only under the exclusive lock, when
//!   no ADD can be between finding the bridge and attaching to it, and only
//!   if it still has no port: a bridge another call uses is never removed.

use std::os::unix::fs::MetadataExt;

use cni::error::{CniError, Result};
use cni::lock::{lock_path, FileLock, LockMode};
use cni::skel::CmdArgs;

/// The attachment lock, held exclusively; its file is removed on release.
pub fn attachment(network: &str, a: &CmdArgs) -> Result<FileLock> {
    let path = lock_path("attachment", &[network, &a.container_id, &a.ifname]);
    Ok(FileLock::acquire(&path, LockMode::Exclusive)?.removed_on_drop())
}

/// The lock of bridge `name` in the calling thread's netns.
pub fn bridge(name: &str, mode: LockMode) -> Result<FileLock> {
    let ns = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(|e| CniError::internal(format!("failed to stat our netns: {e}")))?;
    let ns_id = format!("{}:{}", ns.dev(), ns.ino());
    let path = lock_path("bridge", &[&ns_id, name]);
    Ok(FileLock::acquire(&path, mode)?)
}
