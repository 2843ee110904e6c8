//! Build script shared by the four plugins (each `Cargo.toml` names it with
//! `build = "../hot-text.rs"`): links the plugin with `plugins/hot-text.ld`,
//! which puts the functions the plugins' usual calls run at the front of the
//! executable code.
//!
//! Why: a plugin is a short-lived process whose peak RSS is almost all pages
//! of its own executable, and the kernel maps a file's cached pages in
//! 64 KiB windows around each fault. With the code a call runs gathered in
//! one place, a call keeps that place resident instead of nearly all of
//! `.text` (docs/benchmarks.md, F19). The layout changes no code: a function
//! the list misses is only placed later.
//!
//! Linux targets only (the script is for GNU ld and lld, the linkers of both
//! shipped builds); left out, with a warning, when RUSTFLAGS pick mold, which
//! takes no linker scripts. `CNI_RS_HOT_TEXT=0` builds without it.
use std::env;
use std::path::PathBuf;

fn main() {
    let dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let script = dir.join("../hot-text.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-env-changed=CNI_RS_HOT_TEXT");
    let linux = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if !linux || env::var("CNI_RS_HOT_TEXT").as_deref() == Ok("0") {
        return;
    }
    // mold takes no SECTIONS scripts: build, but say what is lost.
    let mold = env::var("CARGO_ENCODED_RUSTFLAGS")
        .unwrap_or_default()
        .split('\x1f')
        .any(|flag| flag.contains("mold"));
    if mold {
        println!(
            "cargo:warning=plugins/hot-text.ld not linked: mold takes no linker scripts \
             (higher peak RSS, docs/benchmarks.md F19; CNI_RS_HOT_TEXT=0 silences this)"
        );
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
}
