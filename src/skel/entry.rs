//! The entry point of a plugin executable: [`plugin_main!`](crate::plugin_main)
//! defines the C `main`, [`run_with_arg`] wires [`dispatch`](super::dispatch)
//! to the real process.

use super::dispatch::dispatch_to;
use super::help::{help_text, version_text};
use super::process::{ignore_sigpipe, install_panic_hook, PANICKED, STDOUT_DOC};
use super::Plugin;
use std::sync::atomic::Ordering;

/// Defines the C `main` of a plugin executable, bypassing Rust's runtime
/// set-up. Why: that set-up reads and parses `/proc/self/maps` to locate
/// the main thread's stack guard, installs `SIGSEGV`/`SIGBUS` handlers with
/// an alternate signal stack and polls the standard descriptors — about
/// 5 % of a host-local call's CPU time, for a process that lives for two
/// milliseconds (issue 7). `argv[1]` is taken from C's `argv` (with musl,
/// `std::env::args` is empty without Rust's set-up) and [`run_with_arg`]
/// ignores `SIGPIPE` itself. A stack overflow is then a plain `SIGSEGV`
/// instead of a message.
///
/// Use it in a binary with `#![cfg_attr(not(test), no_main)]`:
/// `cni::plugin_main!(MyPlugin);`
#[macro_export]
macro_rules! plugin_main {
    ($plugin:expr) => {
        #[cfg(not(test))]
        #[no_mangle]
        extern "C" fn main(argc: i32, argv: *const *const ::std::ffi::c_char) -> i32 {
            // SAFETY: the C runtime passes `argc` valid entries in `argv`.
            let first = unsafe { $crate::skel::c_arg(argc, argv, 1) };
            $crate::skel::run_with_arg(&$plugin, first)
        }
        /// The unit-test build of the binary has the test harness's `main`;
        /// this keeps the plugin reachable there (no dead-code noise).
        #[cfg(test)]
        #[allow(dead_code)]
        fn plugin_entry() -> ! {
            $crate::skel::run_with_arg(&$plugin, None)
        }
    };
}

/// `argv[index]` of a C `main`, lossily decoded; `None` past the end.
///
/// # Safety
/// `argv` must point to `argc` valid NUL-terminated strings, as the C
/// runtime passes them to `main`.
pub unsafe fn c_arg(
    argc: i32,
    argv: *const *const std::ffi::c_char,
    index: usize,
) -> Option<String> {
    if argv.is_null() || index >= usize::try_from(argc).unwrap_or(0) {
        return None;
    }
    // SAFETY: index < argc, and the caller guarantees argv's validity.
    let ptr = unsafe { *argv.add(index) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-null argv entry is a NUL-terminated string.
    Some(
        unsafe { std::ffi::CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// Handles `--version`/`--help` (`first_arg` is `argv[1]`), refuses to
/// block on a terminal, then runs [`dispatch`](super::dispatch()) on the real process
/// environment and exits with its code.
pub fn run_with_arg<P: Plugin>(p: &P, first_arg: Option<String>) -> ! {
    ignore_sigpipe();
    install_panic_hook();
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    if command.is_empty() {
        let arg = first_arg.unwrap_or_default();
        match arg.as_str() {
            "--version" | "-V" => {
                print!("{}", version_text(p.name()));
                std::process::exit(0);
            }
            "--help" | "-h" => {
                print!("{}", help_text(p.name()));
                std::process::exit(0);
            }
            _ => {}
        }
        if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
            eprint!("{}", help_text(p.name()));
            std::process::exit(0);
        }
    }
    let env = |k: &str| std::env::var(k).ok();
    // Unlocked handles: a panic hook on another thread must be able to
    // write to stdout while dispatch runs.
    let code = dispatch_to(
        p,
        &env,
        &mut std::io::stdin(),
        &mut RawStdout,
        &mut std::io::stderr(),
        &STDOUT_DOC,
    );
    // The hook exits 1 itself; this only decides the race between its
    // `exit(1)` and ours when the answer was complete first.
    std::process::exit(if PANICKED.load(Ordering::SeqCst) {
        1
    } else {
        code
    })
}

/// File descriptor 1 without `std`'s line buffering: the document goes out
/// in one `write` (a pretty-printed result is many lines, and `Stdout`
/// writes each line on its own), so a plugin killed mid-answer leaves the
/// runtime no half document short of a pipe buffer's size.
pub(super) struct RawStdout;

impl std::io::Write for RawStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // SAFETY: fd 1 stays open for the life of the process, and `buf`
        // is a valid slice.
        let n = unsafe { libc::write(1, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
