//! Link operations: `ip link` and `bridge vlan` equivalents.

use std::fmt;
use std::os::fd::AsRawFd;

use nix::errno::Errno;

use super::wire::{self, Request};
use super::{Netlink, Result, ACK, CREATE_EXCL, DUMP};
use crate::netns::NetNs;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;

const AF_UNSPEC: u8 = 0;
const AF_BRIDGE: u8 = 7;

const IFF_UP: u32 = 0x1;
const IFF_PROMISC: u32 = 0x100;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKINFO: u16 = 18;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_EXT_MASK: u16 = 29;

const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_INFO_SLAVE_KIND: u16 = 4;
const IFLA_INFO_SLAVE_DATA: u16 = 5;

const IFLA_BR_VLAN_FILTERING: u16 = 7;
const VETH_INFO_PEER: u16 = 1;
const IFLA_BRPORT_MODE: u16 = 4;
const IFLA_BRPORT_ISOLATED: u16 = 33;

const IFLA_BRIDGE_FLAGS: u16 = 0;
const IFLA_BRIDGE_VLAN_INFO: u16 = 2;
const BRIDGE_FLAGS_MASTER: u16 = 1;
const BRIDGE_VLAN_INFO_PVID: u16 = 0x2;
const BRIDGE_VLAN_INFO_UNTAGGED: u16 = 0x4;
const RTEXT_FILTER_BRVLAN: u32 = 0x2;

/// Size of `struct ifinfomsg`.
const IFINFOMSG_LEN: usize = 16;

/// `IFLA_INFO_KIND`: the link type. Only the kinds the plugins compare
/// against are named; everything else keeps its kernel name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoKind {
    /// `bridge`.
    Bridge,
    /// `veth`.
    Veth,
    /// `dummy`.
    Dummy,
    /// `vlan`.
    Vlan,
    /// `vxlan`.
    Vxlan,
    /// `macvlan`.
    MacVlan,
    /// `ipvlan`.
    IpVlan,
    /// `bond`.
    Bond,
    /// `tun`.
    Tun,
    /// Any other kind, by its kernel name.
    Other(String),
}

static KIND_NAMES: [(&str, InfoKind); 9] = [
    ("bridge", InfoKind::Bridge),
    ("veth", InfoKind::Veth),
    ("dummy", InfoKind::Dummy),
    ("vlan", InfoKind::Vlan),
    ("vxlan", InfoKind::Vxlan),
    ("macvlan", InfoKind::MacVlan),
    ("ipvlan", InfoKind::IpVlan),
    ("bond", InfoKind::Bond),
    ("tun", InfoKind::Tun),
];

impl InfoKind {
    fn from_name(name: String) -> InfoKind {
        KIND_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| k.clone())
            .unwrap_or(InfoKind::Other(name))
    }

    /// The kernel's name of the kind (`IFLA_INFO_KIND` value).
    pub fn as_str(&self) -> &str {
        match self {
            InfoKind::Other(name) => name,
            known => KIND_NAMES
                .iter()
                .find(|(_, k)| k == known)
                .map_or("", |(n, _)| n),
        }
    }
}

impl fmt::Display for InfoKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `IFLA_OPERSTATE` (RFC 2863 `IF_OPER_*`). The Debug names are what the
/// bridge plugin lowercases into its "port in error state" message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperState {
    /// `IF_OPER_UNKNOWN` (0).
    Unknown,
    /// `IF_OPER_NOTPRESENT` (1).
    NotPresent,
    /// `IF_OPER_DOWN` (2).
    Down,
    /// `IF_OPER_LOWERLAYERDOWN` (3).
    LowerLayerDown,
    /// `IF_OPER_TESTING` (4).
    Testing,
    /// `IF_OPER_DORMANT` (5).
    Dormant,
    /// `IF_OPER_UP` (6).
    Up,
    /// A value this code does not know.
    Other(u8),
}

impl From<u8> for OperState {
    fn from(value: u8) -> OperState {
        match value {
            0 => OperState::Unknown,
            1 => OperState::NotPresent,
            2 => OperState::Down,
            3 => OperState::LowerLayerDown,
            4 => OperState::Testing,
            5 => OperState::Dormant,
            6 => OperState::Up,
            other => OperState::Other(other),
        }
    }
}

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
    /// Decodes an `RTM_NEWLINK` payload; `None` when it is too short.
    fn parse(payload: &[u8]) -> Option<Link> {
        let mut link = Link {
            index: wire::read_u32(payload, 4)?,
            name: String::new(),
            kind: None,
            mac: None,
            mtu: None,
            master: None,
            peer_index: None,
            oper_state: OperState::Unknown,
            flags: wire::read_u32(payload, 8)?,
        };
        for (kind, value) in wire::attrs(payload.get(IFINFOMSG_LEN..)?) {
            match kind {
                IFLA_IFNAME => link.name = wire::value_str(value),
                IFLA_ADDRESS => link.mac = Some(value.to_vec()),
                IFLA_MTU => link.mtu = wire::value_u32(value),
                IFLA_MASTER => link.master = wire::value_u32(value),
                IFLA_LINK => link.peer_index = wire::value_u32(value),
                IFLA_OPERSTATE => {
                    if let Some(&s) = value.first() {
                        link.oper_state = OperState::from(s);
                    }
                }
                IFLA_LINKINFO => {
                    for (k, v) in wire::attrs(value) {
                        if k == IFLA_INFO_KIND {
                            link.kind = Some(InfoKind::from_name(wire::value_str(v)));
                        }
                    }
                }
                _ => {}
            }
        }
        Some(link)
    }

    /// True when the administrative `IFF_UP` flag is set.
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }

    /// True when `IFF_PROMISC` is set (what `ip link` shows as PROMISC).
    pub fn is_promisc(&self) -> bool {
        self.flags & IFF_PROMISC != 0
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

/// `struct ifinfomsg`; `ifi_type` stays 0 as the kernel ignores it.
fn ifinfomsg(family: u8, index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut h = [0u8; IFINFOMSG_LEN];
    h[0] = family;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

/// A link message with a bare header for link `index`.
fn base(msg_type: u16, index: u32) -> Request {
    Request::new(msg_type, &ifinfomsg(AF_UNSPEC, index, 0, 0))
}

fn get_by_name_request(name: &str) -> Request {
    let mut req = base(RTM_GETLINK, 0);
    req.attr_str(IFLA_IFNAME, name);
    req
}

fn new_bridge_request(name: &str, mtu: Option<u32>, vlan_filtering: bool) -> Request {
    let mut req = base(RTM_NEWLINK, 0);
    req.attr_str(IFLA_IFNAME, name);
    if let Some(mtu) = mtu {
        req.attr_u32(IFLA_MTU, mtu);
    }
    let info = req.begin_nest(IFLA_LINKINFO);
    req.attr_str(IFLA_INFO_KIND, InfoKind::Bridge.as_str());
    if vlan_filtering {
        let data = req.begin_nest(IFLA_INFO_DATA);
        req.attr_u8(IFLA_BR_VLAN_FILTERING, 1);
        req.end_nest(data);
    }
    req.end_nest(info);
    req
}

/// The veth request: the peer is a whole `ifinfomsg` + attributes nested in
/// `IFLA_INFO_DATA`/`VETH_INFO_PEER`.
fn new_veth_request(spec: &VethSpec) -> Request {
    let up = if spec.host_up { IFF_UP } else { 0 };
    let mut req = Request::new(RTM_NEWLINK, &ifinfomsg(AF_UNSPEC, 0, up, up));
    req.attr_str(IFLA_IFNAME, spec.host_name);
    if let Some(mtu) = spec.mtu {
        req.attr_u32(IFLA_MTU, mtu);
    }
    if let Some(master) = spec.master {
        req.attr_u32(IFLA_MASTER, master);
    }
    let info = req.begin_nest(IFLA_LINKINFO);
    req.attr_str(IFLA_INFO_KIND, InfoKind::Veth.as_str());
    let data = req.begin_nest(IFLA_INFO_DATA);
    let peer = req.begin_nest(VETH_INFO_PEER);
    req.raw(&ifinfomsg(AF_UNSPEC, 0, 0, 0));
    req.attr_str(IFLA_IFNAME, spec.peer_name);
    req.attr_u32(IFLA_NET_NS_FD, spec.peer_netns.as_raw_fd() as u32);
    if let Some(mtu) = spec.mtu {
        req.attr_u32(IFLA_MTU, mtu);
    }
    if let Some(mac) = spec.peer_mac {
        req.attr(IFLA_ADDRESS, &mac);
    }
    req.end_nest(peer);
    req.end_nest(data);
    req.end_nest(info);
    req
}

/// `RTM_SETLINK` changing only `flag` (`ifi_change`) to on/off.
fn set_flag_request(index: u32, flag: u32, on: bool) -> Request {
    let flags = if on { flag } else { 0 };
    Request::new(RTM_SETLINK, &ifinfomsg(AF_UNSPEC, index, flags, flag))
}

fn set_attr_u32_request(index: u32, kind: u16, value: u32) -> Request {
    let mut req = base(RTM_SETLINK, index);
    req.attr_u32(kind, value);
    req
}

fn set_mac_request(index: u32, mac: &[u8]) -> Request {
    let mut req = base(RTM_SETLINK, index);
    req.attr(IFLA_ADDRESS, mac);
    req
}

/// Port options go as `IFLA_INFO_SLAVE_KIND`/`IFLA_INFO_SLAVE_DATA` in an
/// `RTM_NEWLINK` (what `ip link set type bridge_slave` sends).
fn bridge_port_request(index: u32, hairpin: bool, isolated: bool) -> Request {
    let mut req = base(RTM_NEWLINK, index);
    let info = req.begin_nest(IFLA_LINKINFO);
    req.attr_str(IFLA_INFO_SLAVE_KIND, InfoKind::Bridge.as_str());
    let data = req.begin_nest(IFLA_INFO_SLAVE_DATA);
    req.attr_u8(IFLA_BRPORT_MODE, u8::from(hairpin));
    req.attr_u8(IFLA_BRPORT_ISOLATED, u8::from(isolated));
    req.end_nest(data);
    req.end_nest(info);
    req
}

/// `RTM_SETLINK` (add) or `RTM_DELLINK` (delete) of one VLAN on a bridge
/// port, addressed to the master (`BRIDGE_FLAGS_MASTER`).
fn vlan_request(msg_type: u16, index: u32, vlan: BridgeVlan) -> Request {
    let mut flags = 0;
    if vlan.pvid {
        flags |= BRIDGE_VLAN_INFO_PVID;
    }
    if vlan.untagged {
        flags |= BRIDGE_VLAN_INFO_UNTAGGED;
    }
    let mut info = [0u8; 4];
    info[0..2].copy_from_slice(&flags.to_ne_bytes());
    info[2..4].copy_from_slice(&vlan.vid.to_ne_bytes());
    let mut req = Request::new(msg_type, &ifinfomsg(AF_BRIDGE, index, 0, 0));
    let spec = req.begin_nest(IFLA_AF_SPEC);
    req.attr_u16(IFLA_BRIDGE_FLAGS, BRIDGE_FLAGS_MASTER);
    req.attr(IFLA_BRIDGE_VLAN_INFO, &info);
    req.end_nest(spec);
    req
}

fn vlan_dump_request() -> Request {
    let mut req = Request::new(RTM_GETLINK, &ifinfomsg(AF_BRIDGE, 0, 0, 0));
    req.attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN);
    req
}

/// The VLANs in an `AF_BRIDGE` `RTM_NEWLINK` of port `index` (`Some(empty)`
/// for another port), `None` when the message is too short.
fn parse_vlans(payload: &[u8], index: u32, out: &mut Vec<BridgeVlan>) -> Option<()> {
    if wire::read_u32(payload, 4)? != index {
        return Some(());
    }
    for (kind, value) in wire::attrs(payload.get(IFINFOMSG_LEN..)?) {
        if kind != IFLA_AF_SPEC {
            continue;
        }
        for (k, v) in wire::attrs(value) {
            if k != IFLA_BRIDGE_VLAN_INFO {
                continue;
            }
            let (Some(flags), Some(vid)) = (wire::read_u16(v, 0), wire::read_u16(v, 2)) else {
                continue;
            };
            out.push(BridgeVlan {
                vid,
                pvid: flags & BRIDGE_VLAN_INFO_PVID != 0,
                untagged: flags & BRIDGE_VLAN_INFO_UNTAGGED != 0,
            });
        }
    }
    Some(())
}

impl Netlink {
    /// Sends a link request and collects the `RTM_NEWLINK` replies.
    fn link_request(&mut self, op: &str, req: Request, flags: u16) -> Result<Vec<Link>> {
        let mut out = Vec::new();
        self.request(op, req, flags, |msg_type, payload| {
            if msg_type == RTM_NEWLINK {
                out.push(Link::parse(payload)?);
            }
            Some(())
        })?;
        Ok(out)
    }

    fn get_link(&mut self, op: &str, req: Request) -> Result<Option<Link>> {
        match self.link_request(op, req, ACK) {
            Ok(links) => Ok(links.into_iter().next()),
            Err(e) if e.is(Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `ip link show NAME`; `Ok(None)` when there is no such link.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        self.get_link(&format!("get link {name:?}"), get_by_name_request(name))
    }

    /// `ip link show` by index; `Ok(None)` when there is no such link.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        self.get_link(&format!("get link #{index}"), base(RTM_GETLINK, index))
    }

    /// `ip link show` (all links).
    pub fn links(&mut self) -> Result<Vec<Link>> {
        self.link_request("dump links", base(RTM_GETLINK, 0), DUMP)
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
        let req = new_bridge_request(name, mtu, vlan_filtering);
        match self.ack(&format!("create bridge {name:?}"), req, CREATE_EXCL) {
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
        self.ack(&op, new_veth_request(spec), CREATE_EXCL)
    }

    fn set_flag(&mut self, index: u32, flag: u32, on: bool, what: &str) -> Result<()> {
        let op = format!("set link #{index} {what}");
        self.ack(&op, set_flag_request(index, flag, on), ACK)
    }

    /// `ip link set DEV up`.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        self.set_flag(index, IFF_UP, true, "up")
    }

    /// `ip link set DEV down`.
    pub fn set_down(&mut self, index: u32) -> Result<()> {
        self.set_flag(index, IFF_UP, false, "down")
    }

    /// `ip link set DEV promisc on|off`.
    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        self.set_flag(index, IFF_PROMISC, on, "promisc")
    }

    /// `ip link set DEV address MAC`.
    pub fn set_mac(&mut self, index: u32, mac: &[u8]) -> Result<()> {
        let op = format!("set link #{index} address {}", format_mac(mac));
        self.ack(&op, set_mac_request(index, mac), ACK)
    }

    /// `ip link set DEV master BRIDGE`.
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        let op = format!("set link #{index} master #{master}");
        self.ack(&op, set_attr_u32_request(index, IFLA_MASTER, master), ACK)
    }

    /// `ip link set DEV type bridge_slave hairpin on|off isolated on|off`
    /// (`IFLA_BRPORT_MODE`, `IFLA_BRPORT_ISOLATED`). The port must already
    /// be enslaved: the kernel applies port data through the master.
    pub fn set_bridge_port(&mut self, index: u32, hairpin: bool, isolated: bool) -> Result<()> {
        let op = format!("set bridge port #{index} hairpin {hairpin} isolated {isolated}");
        self.ack(&op, bridge_port_request(index, hairpin, isolated), ACK)
    }

    /// `ip link del DEV`; `Ok(false)` when it was already gone.
    pub fn del_link(&mut self, index: u32) -> Result<bool> {
        let op = format!("delete link #{index}");
        match self.ack(&op, base(RTM_DELLINK, index), ACK) {
            Ok(()) => Ok(true),
            Err(e) if e.is(Errno::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `bridge vlan add dev PORT vid V [pvid] [untagged] master`.
    pub fn bridge_vlan_add(&mut self, index: u32, vlan: BridgeVlan) -> Result<()> {
        let op = format!("add vlan {} to bridge port #{index}", vlan.vid);
        self.ack(&op, vlan_request(RTM_SETLINK, index, vlan), ACK)
    }

    /// `bridge vlan del dev PORT vid V master`.
    pub fn bridge_vlan_del(&mut self, index: u32, vlan: BridgeVlan) -> Result<()> {
        let op = format!("delete vlan {} from bridge port #{index}", vlan.vid);
        self.ack(&op, vlan_request(RTM_DELLINK, index, vlan), ACK)
    }

    /// `bridge vlan show dev PORT`.
    pub fn bridge_vlans(&mut self, index: u32) -> Result<Vec<BridgeVlan>> {
        let mut out = Vec::new();
        self.request(
            "dump bridge vlans",
            vlan_dump_request(),
            DUMP,
            |msg_type, payload| {
                if msg_type == RTM_NEWLINK {
                    parse_vlans(payload, index, &mut out)?;
                }
                Some(())
            },
        )?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::wire::payload;

    #[test]
    fn parses_a_link() {
        let mut req = Request::new(
            RTM_NEWLINK,
            &ifinfomsg(AF_UNSPEC, 7, IFF_UP | IFF_PROMISC, 0),
        );
        req.attr_str(IFLA_IFNAME, "cni0")
            .attr(IFLA_ADDRESS, &[0x0a, 0x58, 10, 1, 0, 1])
            .attr_u32(IFLA_MTU, 1450)
            .attr_u32(IFLA_MASTER, 3)
            .attr_u32(IFLA_LINK, 9)
            .attr_u8(IFLA_OPERSTATE, 6);
        let info = req.begin_nest(IFLA_LINKINFO | 0x8000);
        req.attr_str(IFLA_INFO_KIND, "bridge");
        req.end_nest(info);
        let link = Link::parse(&payload(req)).expect("link");
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
    }

    #[test]
    fn kinds_and_states() {
        assert_eq!(InfoKind::from_name("veth".into()), InfoKind::Veth);
        let other = InfoKind::from_name("wireguard".into());
        assert_eq!(other, InfoKind::Other("wireguard".into()));
        assert_eq!(other.to_string(), "wireguard");
        assert_eq!(InfoKind::Bridge.to_string(), "bridge");
        assert_eq!(format!("{:?}", OperState::from(3)), "LowerLayerDown");
        assert_eq!(OperState::from(0), OperState::Unknown);
        assert_eq!(OperState::from(42), OperState::Other(42));
    }

    #[test]
    fn truncated_link_never_panics() {
        let mut req = Request::new(RTM_NEWLINK, &ifinfomsg(AF_UNSPEC, 7, 0, 0));
        req.attr_str(IFLA_IFNAME, "eth0").attr_u8(IFLA_OPERSTATE, 2);
        let info = req.begin_nest(IFLA_LINKINFO);
        req.attr_str(IFLA_INFO_KIND, "veth");
        req.end_nest(info);
        let full = payload(req);
        for cut in 0..full.len() {
            let link = Link::parse(&full[..cut]);
            assert_eq!(link.is_some(), cut >= IFINFOMSG_LEN, "{cut}");
            let mut vlans = Vec::new();
            let _ = parse_vlans(&full[..cut], 7, &mut vlans);
        }
    }

    #[test]
    fn parses_bridge_vlans() {
        let mut req = vlan_request(
            RTM_NEWLINK,
            8,
            BridgeVlan {
                vid: 1,
                pvid: true,
                untagged: true,
            },
        );
        let spec = req.begin_nest(IFLA_AF_SPEC);
        let mut info = [0u8; 4];
        info[2..4].copy_from_slice(&100u16.to_ne_bytes());
        req.attr(IFLA_BRIDGE_VLAN_INFO, &info);
        req.attr(IFLA_BRIDGE_VLAN_INFO, &[1, 2]); // too short: skipped
        req.end_nest(spec);
        let data = payload(req);
        let mut vlans = Vec::new();
        assert_eq!(parse_vlans(&data, 8, &mut vlans), Some(()));
        assert_eq!(
            vlans,
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
        vlans.clear();
        assert_eq!(parse_vlans(&data, 9, &mut vlans), Some(()));
        assert!(vlans.is_empty());
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
