//! The pod's `lo`, set up the way containerd's CRI plugin does it: a second
//! CNI network of its own, `cni-loopback` (cniVersion 0.3.1, one `loopback`
//! plugin, `CNI_IFNAME=lo`), ADDed when the sandbox is created and DELeted
//! at every DEL of the pod network, through the same libcni runtime and
//! result cache as the pod's main network.

use cni::runtime::{NetworkConfigList, RuntimeConf};

use super::error::{HarnessError, Result};

/// containerd's loopback network, as every plugin call receives it.
pub const CONF: &str = r#"{"cniVersion":"0.3.1","name":"cni-loopback","type":"loopback"}"#;
/// The interface the runtime asks for.
pub const IFNAME: &str = "lo";

/// The loopback network list.
pub fn network() -> Result<NetworkConfigList> {
    NetworkConfigList::from_conf_bytes(CONF.as_bytes())
        .map_err(HarnessError::cni("the built-in loopback network"))
}

/// The pod's main runtime config, retargeted at `lo`; capability args are
/// kept (the loopback plugin declares none, so it sees none).
pub fn runtime_conf(main: &RuntimeConf) -> RuntimeConf {
    RuntimeConf {
        ifname: IFNAME.into(),
        ..main.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_is_containerds() {
        let list = network().expect("parse");
        assert_eq!(list.name, "cni-loopback");
        assert_eq!(list.cni_version, "0.3.1");
        assert_eq!(list.plugin_type(0), "loopback");
        assert_eq!(list.plugins.len(), 1);
    }
}
