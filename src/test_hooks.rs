//! Hooks that let the tests kill a plugin at a chosen point (crash safety)
//! or force a race (see `skel::race`). They exist only with the cargo
//! feature `test-hooks`, which the tests enable and release builds do not:
//! a shipped binary reads no such variable. Without the feature,
//! [`crash_point`] is an empty inline function.

/// The variable naming the point: one of `after-lock`, `after-create`,
/// `after-write`, `before-rename`, `after-remove`, `index-*` (IPAM store,
/// see `ipam::disk`) or `helper-panic-*` (skel).
#[cfg(feature = "test-hooks")]
pub const CRASH_ENV: &str = "CNI_RS_TEST_CRASH_POINT";

/// Kills the process with SIGKILL if [`CRASH_ENV`] names `point`.
#[cfg(feature = "test-hooks")]
pub fn crash_point(point: &str) {
    if std::env::var_os(CRASH_ENV).is_some_and(|v| v == point) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Without the `test-hooks` feature: nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn crash_point(_point: &str) {}
