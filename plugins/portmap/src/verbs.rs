//! The verbs, each a short list of steps over `cni::firewall::portmap`.

use std::collections::BTreeSet;

use cni::error::{codes, CniError, Result};
use cni::firewall::portmap::{self, Attachment, PortMapSpec};
use cni::lock::{lock_path, FileLock, LockMode};
use cni::skel::{valid_attachments, CmdArgs};
use cni::spec::CniResult;

use crate::conf::{self, Config};

fn attachment(a: &CmdArgs) -> Attachment<'_> {
    Attachment {
        network: &a.conf.name,
        container_id: &a.container_id,
    }
}

fn spec<'a>(a: &'a CmdArgs, c: &'a Config, prev: &CniResult) -> PortMapSpec<'a> {
    let (pod_v4, pod_v6) = conf::pod_addresses(prev, &a.ifname);
    PortMapSpec {
        attachment: attachment(a),
        mappings: &c.mappings,
        masq: c.masq.clone(),
        conditions_v4: &c.conditions_v4,
        conditions_v6: &c.conditions_v6,
        pod_v4,
        pod_v6,
    }
}

fn prev_result(a: &CmdArgs, missing: &str) -> Result<CniResult> {
    a.conf
        .prev_result()?
        .ok_or_else(|| CniError::new(codes::INVALID_CONFIG, missing))
}

/// ADD: program the mappings (refusing ports another attachment holds),
/// flush stale UDP conntrack entries, pass `prevResult` on.
pub fn add(a: &CmdArgs) -> Result<CniResult> {
    let c = conf::parse(&a.conf)?;
    let prev = prev_result(a, "must be called as chained plugin")?;
    if c.mappings.is_empty() {
        return Ok(prev);
    }
    let spec = spec(a, &c, &prev);
    if spec.pod_v4.is_none() && spec.pod_v6.is_none() {
        return Ok(prev);
    }
    // Node-wide: the conflict check and the rules it guards are one step,
    // and two first ADDs must not both create the shared chains.
    let _lock = FileLock::acquire(&lock_path("portmap", &[]), LockMode::Exclusive)?;
    portmap::setup(c.backend, &spec)?;
    portmap::flush_udp_conntrack(&c.mappings, spec.pod_v4.is_some(), spec.pod_v6.is_some());
    Ok(prev)
}

/// DEL: remove the attachment's rules in both backends. Needs neither the
/// netns nor `prevResult` nor the mappings (the CRI repeats DEL after the
/// sandbox is gone); the rules are found by name and comment.
pub fn del(a: &CmdArgs) -> Result<()> {
    conf::parse(&a.conf)?;
    Ok(portmap::teardown(&attachment(a))?)
}

/// CHECK: the rules of the attachment are in place.
pub fn check(a: &CmdArgs) -> Result<()> {
    let c = conf::parse(&a.conf)?;
    let prev = prev_result(a, "Required prevResult missing")?;
    if c.mappings.is_empty() {
        return Ok(());
    }
    Ok(portmap::check(c.backend, &spec(a, &c, &prev))?)
}

/// GC: remove the rules of this network's attachments that are not in
/// `cni.dev/valid-attachments`.
pub fn gc(a: &CmdArgs) -> Result<()> {
    conf::parse(&a.conf)?;
    let Some(valid) = valid_attachments(&a.conf)? else {
        return Ok(());
    };
    let ids: BTreeSet<&str> = valid.iter().map(|v| v.container_id.as_str()).collect();
    Ok(portmap::gc(&a.conf.name, &ids)?)
}

/// STATUS: ready when the configured backend's tool works here.
pub fn status(a: &CmdArgs) -> Result<()> {
    let c = conf::parse(&a.conf)?;
    let ok = match c.backend {
        portmap::Backend::Iptables => cni::firewall::supports_iptables(),
        portmap::Backend::Nftables => cni::firewall::supports_nftables(),
    };
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            codes::NOT_AVAILABLE,
            "portmap: the configured firewall backend is not usable on this node",
        ))
    }
}
