//! Peak RSS of one plugin call, measured through GNU `time`.
//!
//! Why not our own `wait4`: std spawns children with vfork semantics
//! (posix_spawn), and at exec the kernel folds the high-water RSS of the
//! mm the child was borrowing — *ours* — into the child's `ru_maxrss`, so
//! every plugin would read as big as cni-bench itself. GNU `time` forks
//! from a tiny process, which leaves a small constant floor (the same for
//! both sides; [`floor_kib`] measures it) — the method `bench-ref.sh` and
//! the reference's published figures used.

use crate::error::{BenchError, Result};
use crate::exec::{exec, Call, Outcome};
use crate::util::TempDir;
use std::path::{Path, PathBuf};

pub const TIME: &str = "/usr/bin/time";

/// Runs `call` of `bin` under `time -f %M`; returns the outcome and the
/// peak RSS (KiB) of the plugin and the children it waited for.
pub fn measure(bin: &Path, call: &Call, scratch: &TempDir, side: &str) -> Result<(Outcome, u64)> {
    let report = scratch.path().join("time.out");
    let mut call = call.clone();
    call.wrap = vec![
        TIME.into(),
        "-f".into(),
        "%M".into(),
        "-o".into(),
        report.display().to_string(),
    ];
    let outcome = exec(bin, &call)?;
    let text = std::fs::read_to_string(&report).map_err(|e| BenchError::io(&report, e))?;
    // A failing child makes time prepend "Command exited with ...".
    let kib = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse::<u64>().ok())
        .ok_or_else(|| BenchError::Output {
            side: side.into(),
            what: format!("{TIME} report"),
            detail: format!("{text:?}"),
        })?;
    Ok((outcome, kib))
}

/// A 129-byte static x86-64 ELF that only calls exit(0).
#[cfg(target_arch = "x86_64")]
fn noop_elf() -> Vec<u8> {
    let mut e = Vec::with_capacity(129);
    // ELF header: 64-bit, little endian, SysV, ET_EXEC, x86-64.
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // e_type
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // e_machine
    e.extend_from_slice(&1u32.to_le_bytes()); // e_version
    e.extend_from_slice(&0x40_0078u64.to_le_bytes()); // e_entry
    e.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    e.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    e.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    e.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    e.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
                                  // One PT_LOAD, R+X, mapping the whole file at 0x400000.
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&5u32.to_le_bytes());
    e.extend_from_slice(&0u64.to_le_bytes());
    e.extend_from_slice(&0x40_0000u64.to_le_bytes());
    e.extend_from_slice(&0x40_0000u64.to_le_bytes());
    e.extend_from_slice(&129u64.to_le_bytes());
    e.extend_from_slice(&129u64.to_le_bytes());
    e.extend_from_slice(&0x1000u64.to_le_bytes());
    // mov eax, 60 (exit); xor edi, edi; syscall
    e.extend_from_slice(&[0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05]);
    e
}

/// Writes the no-op binary into `dir`; `None` on other architectures.
pub fn write_noop(dir: &Path) -> Result<Option<PathBuf>> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("noop");
        std::fs::write(&path, noop_elf()).map_err(|e| BenchError::io(&path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| BenchError::io(&path, e))?;
        Ok(Some(path))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = dir;
        Ok(None)
    }
}

/// The floor of the method: what `time` reports for a program that maps
/// almost nothing. `None` where the no-op binary cannot be built.
pub fn floor_kib(scratch: &TempDir) -> Result<Option<u64>> {
    let Some(path) = write_noop(scratch.path())? else {
        return Ok(None);
    };
    let mut call = Call::new("VERSION", "", Path::new(""), scratch.path());
    call.netns = None;
    let (o, kib) = measure(&path, &call, scratch, "floor")?;
    Ok((o.code == 0).then_some(kib))
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn noop_elf_layout() {
        let e = noop_elf();
        assert_eq!(e.len(), 129);
        assert_eq!(&e[..4], b"\x7fELF");
        assert_eq!(e[120], 0xb8, "code starts at the entry offset 0x78");
    }

    #[test]
    fn floor_is_small() {
        if !Path::new(TIME).exists() {
            return;
        }
        let t = TempDir::new("floor-unit").unwrap();
        let kib = floor_kib(&t).unwrap().expect("no-op runs");
        assert!(kib > 0 && kib < 4096, "floor {kib} KiB");
    }
}
