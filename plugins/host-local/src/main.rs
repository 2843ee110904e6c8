//! `host-local`: drop-in replacement for the reference host-local IPAM plugin.
//!
//! All logic lives in `cni::ipam`; this file maps CNI verbs onto
//! `cni::ipam::ops` and converts results and errors.

#![cfg_attr(not(test), no_main)]

use cni::error::Result;
use cni::ipam::config::IpamConfig;
use cni::ipam::{ops, wire};
use cni::skel::{self, CmdArgs, Plugin};
use cni::spec::CniResult;

/// `CNI_ARGS` keys host-local understands (Go `IPAMEnvArgs`).
const KNOWN_ARGS: &[&str] = &["IP"];

struct HostLocal;

/// Parses the config the way the reference's `LoadIPAMConfig` does,
/// including the `CNI_ARGS` check (unknown keys fail unless `IgnoreUnknown`).
fn load(a: &CmdArgs) -> Result<IpamConfig> {
    a.args.check_known(KNOWN_ARGS)?;
    Ok(IpamConfig::parse(&a.conf.raw, a.args.get("IP"))?)
}

/// GC and STATUS carry no per-container `CNI_ARGS`.
fn load_without_args(a: &CmdArgs) -> Result<IpamConfig> {
    Ok(IpamConfig::parse(&a.conf.raw, None)?)
}

impl Plugin for HostLocal {
    fn name(&self) -> &'static str {
        "host-local"
    }

    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        let conf = load(a)?;
        let outcome = ops::add(&conf, &a.container_id, &a.ifname)?;
        Ok(wire::add_result(&outcome, &conf.cni_version))
    }

    fn del(&self, a: &CmdArgs) -> Result<()> {
        let conf = load(a)?;
        Ok(ops::del(&conf, &a.container_id, &a.ifname)?)
    }

    fn check(&self, a: &CmdArgs) -> Result<()> {
        let conf = load(a)?;
        Ok(ops::check(&conf, &a.container_id, &a.ifname)?)
    }

    fn gc(&self, a: &CmdArgs) -> Result<()> {
        let conf = load_without_args(a)?;
        let valid: Option<Vec<(String, String)>> = skel::valid_attachments(&a.conf)?
            .map(|v| v.into_iter().map(|x| (x.container_id, x.ifname)).collect());
        Ok(ops::gc(&conf, valid.as_deref())?)
    }

    fn status(&self, a: &CmdArgs) -> Result<()> {
        let conf = load_without_args(a)?;
        Ok(ops::status(&conf)?)
    }

    /// IPAM never enters `CNI_NETNS`.
    fn configures_netns(&self) -> bool {
        false
    }
}

cni::plugin_main!(HostLocal);
