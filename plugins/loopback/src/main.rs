//! The `loopback` CNI plugin: a drop-in replacement for the reference
//! `containernetworking/plugins` loopback, which runtimes (containerd,
//! CRI-O) run for every pod. ADD brings `lo` up in `CNI_NETNS`, DEL sets
//! it down, CHECK verifies it is up; `CNI_IFNAME` is ignored (always `lo`).

#![cfg_attr(not(test), no_main)]

mod lo;
mod output;

use cni::error::Result;
use cni::skel::{CmdArgs, Plugin};
use cni::spec::CniResult;

struct Loopback;

impl Plugin for Loopback {
    fn name(&self) -> &'static str {
        "loopback"
    }
    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        output::add_result(a)
    }
    fn add_document(&self, a: &CmdArgs) -> Result<String> {
        output::add_document(a)
    }
    fn del(&self, a: &CmdArgs) -> Result<()> {
        lo::down(a.netns.as_deref())
    }
    /// A malformed `prevResult` is an error before `lo` is looked at, as
    /// for ADD.
    fn check(&self, a: &CmdArgs) -> Result<()> {
        a.conf.prev_result()?;
        lo::check_up(a.netns.as_deref())
    }
    /// Loopback holds no state outside the sandbox: nothing to collect,
    /// but a malformed attachment list is reported like every plugin does.
    fn gc(&self, a: &CmdArgs) -> Result<()> {
        cni::skel::valid_attachments(&a.conf)?;
        Ok(())
    }
    /// ADD needs nothing but the sandbox: always ready.
    fn status(&self, _a: &CmdArgs) -> Result<()> {
        Ok(())
    }
}

cni::plugin_main!(Loopback);
