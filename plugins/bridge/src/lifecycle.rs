//! GC and STATUS (spec 1.1). The reference implements neither GC
//! (plugins#1013) nor anything but IPAM pass-through for STATUS.

use cni::delegate;
use cni::error::Result;
use cni::firewall;
use cni::skel::{valid_attachments, CmdArgs};

use crate::conf::BridgeConf;
use crate::fw;

/// GC: IPAM drops leases of attachments that are no longer valid, and the
/// masquerade rules of this network that belong to none of them go too.
/// Spoof-check rules are swept only for `macspoofchk` networks.
pub fn gc(a: &CmdArgs) -> Result<()> {
    let conf = BridgeConf::load(&a.conf, &a.args)?;
    // Lock files of bridges that went with their netns.
    cni::lock::sweep();
    if let Some(ipam) = &conf.ipam_type {
        delegate::gc(ipam, a)?;
    }
    // Without the key the runtime told us nothing about what is valid.
    let Some(valid) = valid_attachments(&a.conf)? else {
        return Ok(());
    };
    let valid: Vec<(String, String)> = valid
        .into_iter()
        .map(|att| (att.container_id, att.ifname))
        .collect();
    fw(firewall::gc_ipmasq(&conf.network, &valid))?;
    if conf.macspoofchk {
        fw(firewall::spoofcheck::gc(&valid))?;
    }
    Ok(())
}

/// STATUS: whatever the IPAM plugin says; L2-only is always ready.
pub fn status(a: &CmdArgs) -> Result<()> {
    let conf = BridgeConf::load(&a.conf, &a.args)?;
    match &conf.ipam_type {
        Some(ipam) => delegate::status(ipam, a),
        None => Ok(()),
    }
}
