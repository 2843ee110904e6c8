//! Link operations: `ip link` and `bridge vlan` equivalents, as
//! netlink-packet-route `LinkMessage`s.

use std::os::fd::AsRawFd;

use netlink_packet_core::{NlasIterator, ParseableParametrized};
use netlink_packet_route::link::{
    AfSpecBridge, AfSpecInet, AfSpecUnspec, BridgeFlag, BridgeVlanInfo, BridgeVlanInfoFlags,
    InetDevConf, InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind,
    InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags, LinkHeader, LinkInfo, LinkMessage,
    State as OperState,
};
use netlink_packet_route::AddressFamily;
use nix::errno::Errno;

use super::{undecodable, Netlink, Result, ACK, CREATE_EXCL};
use crate::netns::NetNs;

const RTM_NEWLINK: u16 = libc::RTM_NEWLINK;

/// The facts about a link that the plugins look at.
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
    pub oper_state: OperState,
    /// `IFF_*` flags (`ifi_flags`).
    pub flags: u32,
}

impl Link {
    /// The facts of a kernel `RTM_NEWLINK` reply.
    fn from_message(msg: LinkMessage) -> Link {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            mac: None,
            mtu: None,
            master: None,
            peer_index: None,
            oper_state: OperState::Unknown,
            flags: msg.header.flags.bits(),
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::Address(mac) => link.mac = Some(mac),
                LinkAttribute::Mtu(mtu) => link.mtu = Some(mtu),
                LinkAttribute::Controller(master) => link.master = Some(master),
                LinkAttribute::Link(peer) => link.peer_index = Some(peer),
                LinkAttribute::OperState(state) => link.oper_state = state,
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = Some(kind);
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    /// True when the administrative `IFF_UP` flag is set.
    pub fn is_up(&self) -> bool {
        LinkFlags::from_bits_retain(self.flags).contains(LinkFlags::Up)
    }

    /// True when `IFF_PROMISC` is set (what `ip link` shows as PROMISC).
    pub fn is_promisc(&self) -> bool {
        LinkFlags::from_bits_retain(self.flags).contains(LinkFlags::Promisc)
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

/// A link message for link `index` (`AF_UNSPEC`, no flags).
fn message(index: u32, attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.attributes = attributes;
    msg
}

fn new_bridge_message(name: &str, mtu: Option<u32>, vlan_filtering: bool) -> LinkMessage {
    let mut attrs = vec![LinkAttribute::IfName(name.to_string())];
    attrs.extend(mtu.map(LinkAttribute::Mtu));
    let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
    if vlan_filtering {
        info.push(LinkInfo::Data(InfoData::Bridge(vec![
            InfoBridge::VlanFiltering(true),
        ])));
    }
    attrs.push(LinkAttribute::LinkInfo(info));
    message(0, attrs)
}

/// The veth request: the peer is a whole `LinkMessage` in
/// `IFLA_INFO_DATA`/`VETH_INFO_PEER`, born in the peer's namespace.
fn new_veth_message(spec: &VethSpec) -> LinkMessage {
    let mut peer = vec![
        LinkAttribute::IfName(spec.peer_name.to_string()),
        LinkAttribute::NetNsFd(spec.peer_netns.as_raw_fd()),
    ];
    peer.extend(spec.mtu.map(LinkAttribute::Mtu));
    peer.extend(
        spec.peer_mac
            .map(|mac| LinkAttribute::Address(mac.to_vec())),
    );
    let mut attrs = vec![LinkAttribute::IfName(spec.host_name.to_string())];
    attrs.extend(spec.mtu.map(LinkAttribute::Mtu));
    attrs.extend(spec.master.map(LinkAttribute::Controller));
    attrs.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(message(0, peer)))),
    ]));
    let mut msg = message(0, attrs);
    if spec.host_up {
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
    }
    msg
}

/// `RTM_SETLINK` changing only `flag` (the change mask) to on/off.
fn set_flag_message(index: u32, flag: LinkFlags, on: bool) -> LinkMessage {
    let mut msg = message(index, Vec::new());
    if on {
        msg.header.flags = flag;
    }
    msg.header.change_mask = flag;
    msg
}

/// Port options go as `IFLA_INFO_SLAVE_KIND`/`IFLA_INFO_SLAVE_DATA` in an
/// `RTM_NEWLINK` (what `ip link set type bridge_slave` sends).
fn bridge_port_message(index: u32, hairpin: bool, isolated: bool) -> LinkMessage {
    message(
        index,
        vec![LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![
                InfoBridgePort::HairpinMode(hairpin),
                InfoBridgePort::Isolated(isolated),
            ])),
        ])],
    )
}

/// One VLAN on a bridge port, addressed to the master
/// (`BRIDGE_FLAGS_MASTER`): the body of `RTM_SETLINK` (add) and
/// `RTM_DELLINK` (delete).
fn vlan_message(index: u32, vlan: BridgeVlan) -> LinkMessage {
    let mut flags = BridgeVlanInfoFlags::empty();
    if vlan.pvid {
        flags |= BridgeVlanInfoFlags::Pvid;
    }
    if vlan.untagged {
        flags |= BridgeVlanInfoFlags::Untagged;
    }
    let mut msg = message(
        index,
        vec![LinkAttribute::AfSpecBridge(vec![
            AfSpecBridge::Flags(BridgeFlag::Controller),
            AfSpecBridge::VlanInfo(BridgeVlanInfo {
                flags,
                vid: vlan.vid,
            }),
        ])],
    );
    msg.header.interface_family = AddressFamily::Bridge;
    msg
}

/// `bridge vlan show`: an `AF_BRIDGE` dump asking for the VLANs.
fn vlan_dump_message() -> LinkMessage {
    let mut msg = message(
        0,
        vec![LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan])],
    );
    msg.header.interface_family = AddressFamily::Bridge;
    msg
}

/// `RTM_SETLINK` body that sets only `arp_notify` (the crate emits the
/// non-zero fields of the devconf, each as its own attribute).
fn arp_notify_message(index: u32) -> LinkMessage {
    let mut conf = InetDevConf::default();
    conf.arp_notify = 1;
    message(
        index,
        vec![LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
            AfSpecInet::DevConfRequest(conf),
        ])])],
    )
}

/// The VLANs of port `index` in one `AF_BRIDGE` link message.
fn port_vlans(msg: &LinkMessage, index: u32) -> Vec<BridgeVlan> {
    if msg.header.index != index {
        return Vec::new();
    }
    let mut out = Vec::new();
    for attr in &msg.attributes {
        let LinkAttribute::AfSpecBridge(spec) = attr else {
            continue;
        };
        for entry in spec {
            if let AfSpecBridge::VlanInfo(info) = entry {
                out.push(BridgeVlan {
                    vid: info.vid,
                    pvid: info.flags.contains(BridgeVlanInfoFlags::Pvid),
                    untagged: info.flags.contains(BridgeVlanInfoFlags::Untagged),
                });
            }
        }
    }
    out
}

/// `sizeof(struct ifinfomsg)`: where a link message's attributes start.
const LINK_HEADER_LEN: usize = 16;

/// The attributes the plugins read ([`Link::from_message`], bridge VLANs).
const READ_ATTRIBUTES: [u16; 8] = [
    libc::IFLA_IFNAME,
    libc::IFLA_ADDRESS,
    libc::IFLA_MTU,
    libc::IFLA_MASTER,
    libc::IFLA_LINK,
    libc::IFLA_OPERSTATE,
    libc::IFLA_LINKINFO,
    libc::IFLA_AF_SPEC,
];

/// Decodes a link reply; other message types yield nothing. Only the
/// attributes in [`READ_ATTRIBUTES`] are parsed, each by the crate's own
/// parser. Why not `LinkMessage::parse`: a kernel link message also
/// carries statistics, per-family configuration and dozens more attributes;
/// parsing and allocating them all, for every link of a dump, is work for
/// values no plugin looks at.
fn parse_link(msg_type: u16, payload: &[u8]) -> Result<Option<LinkMessage>, String> {
    if msg_type != RTM_NEWLINK {
        return Ok(None);
    }
    let header = LinkHeader::parse(payload).map_err(|e| undecodable("link", e))?;
    let family = header.interface_family;
    let mut attributes = Vec::new();
    for nla in NlasIterator::new(payload.get(LINK_HEADER_LEN..).unwrap_or_default()) {
        let nla = nla.map_err(|e| undecodable("link", e))?;
        if READ_ATTRIBUTES.contains(&nla.kind()) {
            attributes.push(
                LinkAttribute::parse_with_param(&nla, family)
                    .map_err(|e| undecodable("link", e))?,
            );
        }
    }
    let mut msg = LinkMessage::default();
    msg.header = header;
    msg.attributes = attributes;
    Ok(Some(msg))
}

impl Netlink {
    fn get_link(&mut self, op: &str, msg: LinkMessage) -> Result<Option<Link>> {
        let mut found = None;
        let result = self.request(op, libc::RTM_GETLINK, &msg, ACK, |t, payload| {
            if let Some(msg) = parse_link(t, payload)? {
                found.get_or_insert(Link::from_message(msg));
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(found),
            Err(e) if e.is(Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `ip link show NAME`; `Ok(None)` when there is no such link.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let msg = message(0, vec![LinkAttribute::IfName(name.to_string())]);
        self.get_link(&format!("get link {name:?}"), msg)
    }

    /// `ip link show` by index; `Ok(None)` when there is no such link.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        self.get_link(&format!("get link #{index}"), message(index, Vec::new()))
    }

    /// `ip link show` (all links).
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msg = message(0, Vec::new());
        self.dump("dump links", libc::RTM_GETLINK, &msg, |t, payload, out| {
            out.extend(parse_link(t, payload)?.map(Link::from_message));
            Ok(())
        })
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
        let msg = new_bridge_message(name, mtu, vlan_filtering);
        match self.ack(
            &format!("create bridge {name:?}"),
            libc::RTM_NEWLINK,
            &msg,
            CREATE_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.is(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a veth pair in one request (see [`VethSpec`]). `EEXIST` is
    /// returned as is: the caller decides whether the host or the container
    /// name collided.
    pub fn create_veth(&mut self, spec: &VethSpec) -> Result<()> {
        let op = format!("create veth {:?} <-> {:?}", spec.host_name, spec.peer_name);
        let msg = new_veth_message(spec);
        self.ack(&op, libc::RTM_NEWLINK, &msg, CREATE_EXCL)
    }

    fn set_flag(&mut self, index: u32, flag: LinkFlags, on: bool, what: &str) -> Result<()> {
        let op = format!("set link #{index} {what}");
        let msg = set_flag_message(index, flag, on);
        self.ack(&op, libc::RTM_SETLINK, &msg, ACK)
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
        let op = format!("set link #{index} address {}", format_mac(mac));
        let msg = message(index, vec![LinkAttribute::Address(mac.to_vec())]);
        self.ack(&op, libc::RTM_SETLINK, &msg, ACK)
    }

    /// `sysctl net.ipv4.conf.DEV.arp_notify=1`, over netlink
    /// (`IFLA_AF_SPEC`/`IFLA_INET_CONF`, the kernel's `inet_set_link_af`).
    /// Why not `/proc/sys`: every netns has a `/proc/sys/net` dentry under
    /// the same parent, so each path lookup there walks one dentry per
    /// namespace on the node, and the write needs a thread inside the pod.
    pub fn set_arp_notify(&mut self, index: u32) -> Result<()> {
        let msg = arp_notify_message(index);
        let op = format!("set link #{index} ipv4 arp_notify 1");
        self.ack(&op, libc::RTM_SETLINK, &msg, ACK)
    }

    /// `ip link set DEV master BRIDGE`.
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        let op = format!("set link #{index} master #{master}");
        let msg = message(index, vec![LinkAttribute::Controller(master)]);
        self.ack(&op, libc::RTM_SETLINK, &msg, ACK)
    }

    /// `ip link set DEV type bridge_slave hairpin on|off isolated on|off`
    /// (`IFLA_BRPORT_MODE`, `IFLA_BRPORT_ISOLATED`). The port must already
    /// be enslaved: the kernel applies port data through the master.
    pub fn set_bridge_port(&mut self, index: u32, hairpin: bool, isolated: bool) -> Result<()> {
        let op = format!("set bridge port #{index} hairpin {hairpin} isolated {isolated}");
        let msg = bridge_port_message(index, hairpin, isolated);
        self.ack(&op, libc::RTM_NEWLINK, &msg, ACK)
    }

    /// `ip link del DEV`; `Ok(false)` when it was already gone.
    pub fn del_link(&mut self, index: u32) -> Result<bool> {
        let op = format!("delete link #{index}");
        let msg = message(index, Vec::new());
        match self.ack(&op, libc::RTM_DELLINK, &msg, ACK) {
            Ok(()) => Ok(true),
            Err(e) if e.is(Errno::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `bridge vlan add dev PORT vid V [pvid] [untagged] master`.
    pub fn bridge_vlan_add(&mut self, index: u32, vlan: BridgeVlan) -> Result<()> {
        let op = format!("add vlan {} to bridge port #{index}", vlan.vid);
        let msg = vlan_message(index, vlan);
        self.ack(&op, libc::RTM_SETLINK, &msg, ACK)
    }

    /// `bridge vlan del dev PORT vid V master`.
    pub fn bridge_vlan_del(&mut self, index: u32, vlan: BridgeVlan) -> Result<()> {
        let op = format!("delete vlan {} from bridge port #{index}", vlan.vid);
        let msg = vlan_message(index, vlan);
        self.ack(&op, libc::RTM_DELLINK, &msg, ACK)
    }

    /// `bridge vlan show dev PORT`.
    pub fn bridge_vlans(&mut self, index: u32) -> Result<Vec<BridgeVlan>> {
        let msg = vlan_dump_message();
        self.dump(
            "dump bridge vlans",
            libc::RTM_GETLINK,
            &msg,
            |t, payload, out| {
                if let Some(msg) = parse_link(t, payload)? {
                    out.extend(port_vlans(&msg, index));
                }
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{Emitable, Parseable};

    use super::*;

    fn emit(msg: &LinkMessage) -> Vec<u8> {
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// A kernel reply as bytes (what `ip link show cni0` gets), decoded.
    #[cfg(target_endian = "little")]
    #[test]
    fn parses_a_link() {
        let reply = hex("00000000 07000000 03010000 00000000
             09000300 636e6930 00000000
             0a000100 0a580a01 00010000
             08000400 aa050000
             08000a00 03000000
             08000500 09000000
             05001000 06000000
             10001280 0b000100 62726964 67650000");
        let link = Link::from_message(parse_link(RTM_NEWLINK, &reply).expect("ok").expect("link"));
        assert_eq!(link.index, 7);
        assert_eq!(link.name, "cni0");
        assert_eq!(link.kind, Some(InfoKind::Bridge));
        assert_eq!(link.mac_string(), "0a:58:0a:01:00:01");
        assert_eq!(
            (link.mtu, link.master, link.peer_index),
            (Some(1450), Some(3), Some(9))
        );
        assert_eq!(link.oper_state, OperState::Up);
        assert!(link.is_up() && link.is_promisc());
        assert_eq!(parse_link(RTM_NEWLINK + 1, &reply), Ok(None));
    }

    #[test]
    fn kinds_and_states() {
        assert_eq!(InfoKind::Bridge.to_string(), "bridge");
        assert_eq!(InfoKind::Veth.to_string(), "veth");
        assert_eq!(InfoKind::Other("wireguard".into()).to_string(), "wireguard");
        assert_eq!(format!("{:?}", OperState::from(3)), "LowerLayerDown");
        assert_eq!(OperState::from(0), OperState::Unknown);
        assert_eq!(OperState::from(42), OperState::Other(42));
    }

    #[test]
    fn truncated_link_never_panics() {
        let mut msg = message(7, vec![LinkAttribute::IfName("eth0".into())]);
        msg.attributes
            .push(LinkAttribute::OperState(OperState::Down));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Veth,
            )]));
        let full = emit(&msg);
        for cut in 0..full.len() {
            let _ = parse_link(RTM_NEWLINK, &full[..cut]);
        }
        assert!(parse_link(RTM_NEWLINK, &full[..3]).is_err());
    }

    /// The crate's encoding of the requests, byte for byte: what the
    /// hand-written encoder sent before (`ifinfomsg`, attributes, nests
    /// without `NLA_F_NESTED`, as `ip link`/`bridge` send them).
    #[cfg(target_endian = "little")]
    #[test]
    fn requests_are_the_kernel_abi() {
        let vlan = BridgeVlan {
            vid: 100,
            pvid: true,
            untagged: true,
        };
        assert_eq!(
            emit(&vlan_message(8, vlan)),
            hex("07000000 08000000 00000000 00000000
                 14001a00 06000000 01000000 08000200 06006400")
        );
        assert_eq!(
            emit(&vlan_dump_message()),
            hex("07000000 00000000 00000000 00000000 08001d00 02000000")
        );
        assert_eq!(
            emit(&set_flag_message(5, LinkFlags::Up, false)),
            hex("00000000 05000000 00000000 01000000")
        );
        assert_eq!(
            emit(&new_bridge_message("br0", Some(1400), true)),
            hex("00000000 00000000 00000000 00000000
                 08000300 62723000 08000400 78050000
                 1c001200 0b000100 62726964 67650000
                   0c000200 05000700 01000000")
        );
        // IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF|NLA_F_NESTED {
        // IPV4_DEVCONF_ARP_NOTIFY: 1 } } }
        assert_eq!(
            emit(&arp_notify_message(6)),
            hex("00000000 06000000 00000000 00000000
                 14001a00 10000200 0c000180 08001600 01000000")
        );
        assert_eq!(
            emit(&bridge_port_message(4, true, false)),
            hex("00000000 04000000 00000000 00000000
                 24001200 0b000400 62726964 67650000
                   14000500 05000400 01000000 05002100 00000000")
        );
    }

    #[test]
    fn veth_request_round_trips() {
        let ns = NetNs::current().expect("own netns");
        let spec = VethSpec {
            host_name: "veth0123abcd",
            peer_name: "eth0",
            peer_netns: &ns,
            mtu: Some(1450),
            peer_mac: Some([0x0a, 0x58, 10, 1, 0, 2]),
            master: Some(3),
            host_up: true,
        };
        let msg = new_veth_message(&spec);
        let back = LinkMessage::parse(&emit(&msg)[..]).expect("parse");
        assert_eq!(back.header.flags, LinkFlags::Up);
        assert_eq!(back.header.change_mask, LinkFlags::Up);
        let host = Link::from_message(back.clone());
        assert_eq!(
            (host.name.as_str(), host.mtu, host.master, host.kind),
            ("veth0123abcd", Some(1450), Some(3), Some(InfoKind::Veth))
        );
        let peer = back
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) => Some(peer.clone()),
                    _ => None,
                }),
                _ => None,
            })
            .expect("peer");
        assert!(peer
            .attributes
            .contains(&LinkAttribute::NetNsFd(ns.as_raw_fd())));
        let peer = Link::from_message(peer);
        assert_eq!(
            (peer.name.as_str(), peer.mtu, peer.mac_string().as_str()),
            ("eth0", Some(1450), "0a:58:0a:01:00:02")
        );
    }

    #[test]
    fn parses_bridge_vlans() {
        let mut msg = vlan_message(
            8,
            BridgeVlan {
                vid: 1,
                pvid: true,
                untagged: true,
            },
        );
        if let Some(LinkAttribute::AfSpecBridge(spec)) = msg.attributes.first_mut() {
            spec.push(AfSpecBridge::VlanInfo(BridgeVlanInfo {
                flags: BridgeVlanInfoFlags::empty(),
                vid: 100,
            }));
        }
        let parsed = parse_link(RTM_NEWLINK, &emit(&msg))
            .expect("ok")
            .expect("link");
        assert_eq!(
            port_vlans(&parsed, 8),
            vec![
                BridgeVlan {
                    vid: 1,
                    pvid: true,
                    untagged: true
                },
                BridgeVlan {
                    vid: 100,
                    pvid: false,
                    untagged: false
                },
            ]
        );
        assert!(port_vlans(&parsed, 9).is_empty());
    }

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
