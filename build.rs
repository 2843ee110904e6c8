//! Links the GCC unwinder (`libgcc_eh.a`) statically into every executable,
//! so they no longer load `libgcc_s.so.1` at start-up (issue 7).
//!
//! Why: Rust's std on `*-linux-gnu` links `-lgcc_s` only for the
//! `_Unwind_*` symbols. Loading that library costs every plugin exec a
//! library mapping plus its constructor `__cpu_indicator_init`, whose
//! `cpuid` instructions each trap to the hypervisor on a VM (≈ 5 µs each
//! here): a few percent of a 1.5 ms plugin call. With the static unwinder
//! placed before `-lgcc_s` on the link line (it is bundled in this
//! package's rlib), `--as-needed` drops `libgcc_s` from `DT_NEEDED`. This
//! is what `gcc -static-libgcc` does for C programs. If the compiler
//! driver cannot name the archive, nothing changes (libgcc_s is used).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "linux" || target_env != "gnu" {
        return;
    }
    if let Some(archive) = libgcc_eh() {
        if let Some(dir) = archive.parent() {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-lib=static=gcc_eh");
        }
    }
}

/// `cc -print-file-name=libgcc_eh.a`, if that names an existing file.
fn libgcc_eh() -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    // gcc echoes the bare name back when it does not find the file.
    (path.is_absolute() && path.is_file()).then_some(path)
}
