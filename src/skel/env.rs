//! Validation of what the runtime hands a plugin: the `CNI_*` variables,
//! stdin, the target netns and the GC attachment list (Go `pkg/skel` and
//! `pkg/utils`).

use crate::error::{codes, CniError, Result};
use crate::spec::{casefold_from_value, NetConf, MAX_IFNAME};
use serde::Deserialize;
use std::io::Read;

/// Largest stdin accepted: generous for big prevResults, small enough that
/// a runaway writer cannot exhaust memory.
pub const MAX_STDIN: u64 = 16 * 1024 * 1024;

/// One still-valid attachment sent with GC.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID", default)]
    pub container_id: String,
    #[serde(default)]
    pub ifname: String,
}

/// The GC key (spec, after cni#1101) and the older name libcni also sends.
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";
/// The pre-rename GC key, still sent by libcni.
pub const LEGACY_ATTACHMENTS_KEY: &str = "cni.dev/attachments";

/// The GC attachment list: `cni.dev/valid-attachments`, else the legacy
/// `cni.dev/attachments`. `Ok(None)` when neither key is present (or both
/// are null): the runtime passed no list, so a plugin must not treat that
/// as "nothing is valid". A value that is not a list of
/// `{"containerID","ifname"}` objects is code 6.
pub fn valid_attachments(conf: &NetConf) -> Result<Option<Vec<Attachment>>> {
    let found = [VALID_ATTACHMENTS_KEY, LEGACY_ATTACHMENTS_KEY]
        .into_iter()
        .find_map(|k| conf.raw.get(k).filter(|v| !v.is_null()).map(|v| (k, v)));
    let Some((key, v)) = found else {
        return Ok(None);
    };
    casefold_from_value::<Vec<Attachment>>(v.clone())
        .map(Some)
        .map_err(|e| CniError::new(codes::DECODE, format!("invalid {key:?}: {e}")))
}

/// Validates `CNI_CONTAINERID` (Go `ValidateContainerID`): code 3 when
/// empty, code 4 for characters outside `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`
/// (so it can never contain `/` or be `..`).
pub fn validate_container_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(CniError::new(
            codes::UNKNOWN_CONTAINER,
            "missing containerID",
        ));
    }
    if !crate::spec::is_valid_id(id) {
        return Err(
            CniError::new(codes::INVALID_ENV, "invalid characters in containerID").with_details(id),
        );
    }
    Ok(())
}

/// Validates `CNI_IFNAME` (Go `ValidateInterfaceName`): non-empty, at most
/// 15 bytes, not `.`/`..`, no `/`, `:` or whitespace; code 4 otherwise.
pub fn validate_ifname(name: &str) -> Result<()> {
    let err = |msg: &str| Err(CniError::new(codes::INVALID_ENV, msg).with_details(name));
    if name.is_empty() {
        return err("interface name is empty");
    }
    if name.len() > MAX_IFNAME {
        return Err(
            CniError::new(codes::INVALID_ENV, "interface name is too long").with_details(format!(
                "interface name should be less than {} characters",
                MAX_IFNAME + 1
            )),
        );
    }
    if name == "." || name == ".." {
        return err("interface name is . or ..");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return err("interface name contains / or : or whitespace characters");
    }
    Ok(())
}

/// Reads stdin up to [`MAX_STDIN`]: code 5 on read failure or overflow.
pub(super) fn read_stdin(stdin: &mut dyn Read) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    stdin
        .take(MAX_STDIN + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CniError::new(codes::IO, format!("error reading from stdin: {e}")))?;
    if buf.len() as u64 > MAX_STDIN {
        return Err(CniError::new(
            codes::IO,
            format!("network config on stdin exceeds {MAX_STDIN} bytes"),
        ));
    }
    Ok(buf)
}

/// Fails with code 8 when `netns` is the namespace this process runs in
/// (configuring it would change the host). Unreadable paths are left to
/// the plugin, which reports its own "failed to open netns" error.
pub(super) fn check_not_own_netns(netns: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (Ok(target), Ok(own)) = (
        std::fs::metadata(netns),
        std::fs::metadata("/proc/thread-self/ns/net"),
    ) else {
        return Ok(());
    };
    if target.dev() == own.dev() && target.ino() == own.ino() {
        return Err(CniError::new(
            codes::INVALID_NETNS,
            format!(
                "CNI_NETNS {:?} is the plugin's own network namespace",
                netns
            ),
        )
        .with_details("set CNI_NETNS_OVERRIDE=1 only in tests"));
    }
    Ok(())
}
