//! Link operations: `ip link` and `bridge vlan` equivalents.

use std::os::fd::AsRawFd;

use netlink_packet_route::link::{
    AfSpecBridge, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort,
    InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkExtentMask,
    LinkFlags, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::errno::Errno;

use super::{Netlink, Result, ACK, CREATE_EXCL, DUMP};
use crate::netns::NetNs;

/// The facts about a link that the plugins look at, plus the raw message.
#[derive(Debug, Clone)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// `IFLA_INFO_KIND` (bridge, veth, ...), if any.
    pub kind: Option<InfoKind>,
    /// Hardware address.
    pub mac: Option<Vec<u8>>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Index of the master (bridge) device.
    pub master: Option<u32>,
    /// `IFLA_LINK`: for a veth, the peer's index (in the peer's namespace).
    pub peer_index: Option<u32>,
    /// Operational state.
    pub oper_state: State,
    /// `IFF_*` flags.
    pub flags: LinkFlags,
    /// The full kernel message, for anything not summarised above.
    pub message: LinkMessage,
}

impl Link {
    fn from_message(message: LinkMessage) -> Link {
        let mut link = Link {
            index: message.header.index,
            name: String::new(),
            kind: None,
            mac: None,
            mtu: None,
            master: None,
            peer_index: None,
            oper_state: State::Unknown,
            flags: message.header.flags,
            message: LinkMessage::default(),
        };
        for attr in &message.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Address(a) => link.mac = Some(a.clone()),
                LinkAttribute::Mtu(m) => link.mtu = Some(*m),
                LinkAttribute::Controller(m) => link.master = Some(*m),
                LinkAttribute::Link(p) => link.peer_index = Some(*p),
                LinkAttribute::OperState(s) => link.oper_state = *s,
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(k) = info {
                            link.kind = Some(k.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        link.message = message;
        link
    }

    /// True when the administrative `IFF_UP` flag is set.
    pub fn is_up(&self) -> bool {
        self.flags.contains(LinkFlags::Up)
    }

    /// True when `IFF_PROMISC` is set (what `ip link` shows as PROMISC).
    pub fn is_promisc(&self) -> bool {
        self.flags.contains(LinkFlags::Promisc)
    }

    /// The MAC as lowercase `aa:bb:..` (Go `HardwareAddr.String()`), or "".
    pub fn mac_string(&self) -> String {
        self.mac.as_deref().map(format_mac).unwrap_or_default()
    }
}

/// Formats a hardware address the way Go does: lowercase, colon separated.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (or `-` separated) into six bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(mac)
}

/// A veth pair created in one request: the host end here (attached to a
/// bridge), the peer born directly inside the container namespace.
#[derive(Debug)]
pub struct VethSpec<'a> {
    /// Host-side name (`veth` + 8 hex).
    pub host_name: &'a str,
    /// Container-side name (`CNI_IFNAME`).
    pub peer_name: &'a str,
    /// Namespace the peer is created in (`IFLA_NET_NS_FD`).
    pub peer_netns: &'a NetNs,
    /// MTU of both ends; `None` keeps the kernel default.
    pub mtu: Option<u32>,
    /// MAC of the container end.
    pub peer_mac: Option<[u8; 6]>,
    /// Bridge index to enslave the host end to.
    pub master: Option<u32>,
    /// Bring the host end up in the same request.
    pub host_up: bool,
}

/// One VLAN entry of a bridge port (`bridge vlan show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeVlan {
    /// VLAN id.
    pub vid: u16,
    /// Port VLAN id (untagged ingress goes here).
    pub pvid: bool,
    /// Egress untagged.
    pub untagged: bool,
}

fn base(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

impl Netlink {
    fn get_link(&mut self, op: &str, msg: LinkMessage) -> Result<Option<Link>> {
        match self.request(op, RouteNetlinkMessage::GetLink(msg), ACK) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            })),
            Err(e) if e.is(Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `ip link show NAME`; `Ok(None)` when there is no such link.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link(&format!("get link {name:?}"), msg)
    }

    /// `ip link show` by index; `Ok(None)` when there is no such link.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        self.get_link(&format!("get link #{index}"), base(index))
    }

    /// `ip link show` (all links).
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.request(
            "dump links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            })
            .collect())
    }

    /// `ip link add NAME [mtu M] type bridge [vlan_filtering 1]`.
    /// Returns `false` when a link of that name already exists (parallel
    /// ADDs may race to create it; the caller verifies its kind).
    pub fn create_bridge(
        &mut self,
        name: &str,
        mtu: Option<u32>,
        vlan_filtering: bool,
    ) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
        if vlan_filtering {
            info.push(LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::VlanFiltering(true),
            ])));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(info));
        match self.request(
            &format!("create bridge {name:?}"),
            RouteNetlinkMessage::NewLink(msg),
            CREATE_EXCL,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.is(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a veth pair in one request (see [`VethSpec`]). `EEXIST` is
    /// returned as is: the caller decides whether the host or the container
    /// name collided.
    pub fn create_veth(&mut self, spec: &VethSpec) -> Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(spec.peer_name.to_string()));
        peer.attributes
            .push(LinkAttribute::NetNsFd(spec.peer_netns.as_raw_fd()));
        if let Some(mtu) = spec.mtu {
            peer.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = spec.peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        let mut msg = LinkMessage::default();
        if spec.host_up {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        msg.attributes
            .push(LinkAttribute::IfName(spec.host_name.to_string()));
        if let Some(mtu) = spec.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(master) = spec.master {
            msg.attributes.push(LinkAttribute::Controller(master));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        let op = format!("create veth {:?} <-> {:?}", spec.host_name, spec.peer_name);
        self.request(&op, RouteNetlinkMessage::NewLink(msg), CREATE_EXCL)
            .map(drop)
    }

    fn set_link(&mut self, op: &str, msg: LinkMessage) -> Result<()> {
        self.request(op, RouteNetlinkMessage::SetLink(msg), ACK)
            .map(drop)
    }

    fn set_flag(&mut self, index: u32, flag: LinkFlags, on: bool, what: &str) -> Result<()> {
        let mut msg = base(index);
        msg.header.change_mask = flag;
        if on {
            msg.header.flags = flag;
        }
        self.set_link(&format!("set link #{index} {what}"), msg)
    }

    /// `ip link set DEV up`.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        self.set_flag(index, LinkFlags::Up, true, "up")
    }

    /// `ip link set DEV down`.
    pub fn set_down(&mut self, index: u32) -> Result<()> {
        self.set_flag(index, LinkFlags::Up, false, "down")
    }

    /// `ip link set DEV promisc on|off`.
    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        self.set_flag(index, LinkFlags::Promisc, on, "promisc")
    }

    /// `ip link set DEV address MAC`.
    pub fn set_mac(&mut self, index: u32, mac: &[u8]) -> Result<()> {
        let mut msg = base(index);
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.set_link(
            &format!("set link #{index} address {}", format_mac(mac)),
            msg,
        )
    }

    /// `ip link set DEV master BRIDGE`.
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        let mut msg = base(index);
        msg.attributes.push(LinkAttribute::Controller(master));
        self.set_link(&format!("set link #{index} master #{master}"), msg)
    }

    /// `ip link set DEV type bridge_slave hairpin on|off isolated on|off`
    /// (`IFLA_BRPORT_MODE`, `IFLA_BRPORT_ISOLATED`). The port must already
    /// be enslaved: the kernel applies port data through the master.
    pub fn set_bridge_port(&mut self, index: u32, hairpin: bool, isolated: bool) -> Result<()> {
        let mut msg = base(index);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![
                InfoBridgePort::HairpinMode(hairpin),
                InfoBridgePort::Isolated(isolated),
            ])),
        ]));
        let op = format!("set bridge port #{index} hairpin {hairpin} isolated {isolated}");
        self.request(&op, RouteNetlinkMessage::NewLink(msg), ACK)
            .map(drop)
    }

    /// `ip link del DEV`; `Ok(false)` when it was already gone.
    pub fn del_link(&mut self, index: u32) -> Result<bool> {
        match self.request(
            &format!("delete link #{index}"),
            RouteNetlinkMessage::DelLink(base(index)),
            ACK,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.is(Errno::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn vlan_msg(index: u32, vlan: BridgeVlan) -> LinkMessage {
        let mut msg = base(index);
        msg.header.interface_family = AddressFamily::Bridge;
        let mut flags = BridgeVlanInfoFlags::empty();
        if vlan.pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if vlan.untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        msg.attributes.push(LinkAttribute::AfSpecBridge(vec![
            AfSpecBridge::Flags(BridgeFlag::Controller),
            AfSpecBridge::VlanInfo(BridgeVlanInfo {
                flags,
                vid: vlan.vid,
            }),
        ]));
        msg
    }

    /// `bridge vlan add dev PORT vid V [pvid] [untagged] master`.
    pub fn bridge_vlan_add(&mut self, index: u32, vlan: BridgeVlan) -> Result<()> {
        let op = format!("add vlan {} to bridge port #{index}", vlan.vid);
        self.set_link(&op, Self::vlan_msg(index, vlan))
    }

    /// `bridge vlan del dev PORT vid V master`.
    pub fn bridge_vlan_del(&mut self, index: u32, vlan: BridgeVlan) -> Result<()> {
        let op = format!("delete vlan {} from bridge port #{index}", vlan.vid);
        self.request(
            &op,
            RouteNetlinkMessage::DelLink(Self::vlan_msg(index, vlan)),
            ACK,
        )
        .map(drop)
    }

    /// `bridge vlan show dev PORT`.
    pub fn bridge_vlans(&mut self, index: u32) -> Result<Vec<BridgeVlan>> {
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
        let replies = self.request("dump bridge vlans", RouteNetlinkMessage::GetLink(msg), DUMP)?;
        let mut out = Vec::new();
        for reply in replies {
            let RouteNetlinkMessage::NewLink(l) = reply else {
                continue;
            };
            if l.header.index != index {
                continue;
            }
            for attr in l.attributes {
                let LinkAttribute::AfSpecBridge(specs) = attr else {
                    continue;
                };
                for spec in specs {
                    if let AfSpecBridge::VlanInfo(info) = spec {
                        out.push(BridgeVlan {
                            vid: info.vid,
                            pvid: info.flags.contains(BridgeVlanInfoFlags::Pvid),
                            untagged: info.flags.contains(BridgeVlanInfoFlags::Untagged),
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let mac = parse_mac("0A:58:0a:01:00:02").expect("valid mac");
        assert_eq!(mac, [0x0a, 0x58, 0x0a, 0x01, 0x00, 0x02]);
        assert_eq!(format_mac(&mac), "0a:58:0a:01:00:02");
        for bad in [
            "",
            "0a:58:0a:01:00",
            "0a:58:0a:01:00:zz",
            "0a:58:0a:01:00:002",
        ] {
            assert!(parse_mac(bad).is_none(), "{bad:?}");
        }
    }
}
