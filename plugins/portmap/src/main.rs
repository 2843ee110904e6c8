//! The `portmap` CNI plugin: a drop-in replacement for the reference
//! `containernetworking/plugins` portmap, chained after the main plugin to
//! implement Kubernetes `hostPort` (capability `portMappings`). This file
//! only wires the verbs; the rules live in `cni::firewall::portmap`.

#![cfg_attr(not(test), no_main)]

mod conf;
mod verbs;

use cni::error::Result;
use cni::skel::{CmdArgs, Plugin};
use cni::spec::CniResult;

struct PortMap;

impl Plugin for PortMap {
    fn name(&self) -> &'static str {
        "portmap"
    }
    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        verbs::add(a)
    }
    fn del(&self, a: &CmdArgs) -> Result<()> {
        verbs::del(a)
    }
    fn check(&self, a: &CmdArgs) -> Result<()> {
        verbs::check(a)
    }
    fn gc(&self, a: &CmdArgs) -> Result<()> {
        verbs::gc(a)
    }
    fn status(&self, a: &CmdArgs) -> Result<()> {
        verbs::status(a)
    }
    /// portmap never enters the sandbox: its rules are the host's.
    fn configures_netns(&self) -> bool {
        false
    }
}

cni::plugin_main!(PortMap);
