//! The `bridge` CNI plugin: a drop-in replacement for the reference
//! `containernetworking/plugins` bridge. This file only wires the verbs;
//! each verb is a short list of steps in its own module.

#![cfg_attr(not(test), no_main)]

mod add;
mod announce;
mod bridge_dev;
mod check;
mod conf;
mod container;
mod del;
mod detach;
mod detached_del;
mod gateway;
mod lifecycle;
mod locks;
mod names;
mod port;
mod rollback;

use cni::error::Result;
use cni::skel::{CmdArgs, Plugin};
use cni::spec::CniResult;

/// Firewall failures as CNI errors, with the codes the firewall layer
/// chooses (7 bad config, 11 xtables lock busy, 999 otherwise).
pub(crate) fn fw<T>(r: std::result::Result<T, cni::firewall::FirewallError>) -> Result<T> {
    r.map_err(cni::error::CniError::from)
}

struct Bridge;

impl Plugin for Bridge {
    fn name(&self) -> &'static str {
        "bridge"
    }
    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        add::add(a)
    }
    fn del(&self, a: &CmdArgs) -> Result<()> {
        del::del(a)
    }
    fn check(&self, a: &CmdArgs) -> Result<()> {
        check::check(a)
    }
    fn gc(&self, a: &CmdArgs) -> Result<()> {
        lifecycle::gc(a)
    }
    fn status(&self, a: &CmdArgs) -> Result<()> {
        lifecycle::status(a)
    }
}

cni::plugin_main!(Bridge);
