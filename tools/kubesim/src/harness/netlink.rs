//! kubesim's rtnetlink calls: the links, addresses and routes that wire
//! nodes to the underlay, and the reads behind `inspect`, each one the
//! netlink request an `ip` command would send.
//!
//! A netlink socket talks to the netns it was created in, so [`in_netns`]
//! creates the connection on a thread that joined the target netns
//! ([`Netns::with`]) and drives it there on a tokio current-thread runtime
//! while the caller's future runs. kubesim's own threads never move.

use std::future::Future;
use std::net::IpAddr;
use std::os::fd::RawFd;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::RouteProtocol;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::error::{HarnessError, Result};
use super::nsutil::Netns;

/// Runs `f` with a netlink handle whose socket lives in `ns`; returns
/// what `f` returns once the connection's thread has left.
pub fn in_netns<T, F, Fut>(ns: &Netns, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T>>,
{
    let where_ = ns.path.display().to_string();
    ns.with(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(HarnessError::io("start the netlink runtime"))?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection().map_err(HarnessError::io(
                format!("open a netlink socket in {where_}"),
            ))?;
            let driver = tokio::spawn(conn);
            let out = f(handle).await;
            driver.abort();
            out
        })
    })?
}

/// The index of link `name` (`ip link show NAME`).
pub async fn link_index(h: &Handle, name: &str) -> Result<u32> {
    let ctx = || format!("ip link show {name}");
    h.link()
        .get()
        .match_name(name)
        .execute()
        .try_next()
        .await
        .map_err(HarnessError::netlink(ctx()))?
        .map(|link| link.header.index)
        .ok_or_else(|| HarnessError::Usage(format!("{}: no such link", ctx())))
}

/// `ip link add NAME type bridge` and up.
pub async fn add_bridge(h: &Handle, name: &str) -> Result<()> {
    h.link()
        .add(LinkBridge::new(name).build())
        .execute()
        .await
        .map_err(HarnessError::netlink(format!(
            "ip link add {name} up type bridge"
        )))
}

/// `ip link add NAME type veth peer name PEER netns <fd>`: the peer is
/// created directly in the netns open at `peer_netns`.
pub async fn add_veth_peer_in(h: &Handle, name: &str, peer: &str, peer_netns: RawFd) -> Result<()> {
    let peer_msg = LinkUnspec::new_with_name(peer)
        .setns_by_fd(peer_netns)
        .build();
    let msg = LinkVeth::new(name, peer)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build();
    h.link()
        .add(msg)
        .execute()
        .await
        .map_err(HarnessError::netlink(format!(
            "ip link add {name} type veth peer name {peer} netns <node>"
        )))
}

/// `ip link set NAME master CONTROLLER up`.
pub async fn enslave_up(h: &Handle, name: &str, controller: &str) -> Result<()> {
    let index = link_index(h, name).await?;
    let ctrl = link_index(h, controller).await?;
    h.link()
        .set(
            LinkUnspec::new_with_index(index)
                .controller(ctrl)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(HarnessError::netlink(format!(
            "ip link set {name} master {controller} up"
        )))
}

/// `ip link set NAME up`.
pub async fn link_up(h: &Handle, name: &str) -> Result<()> {
    let index = link_index(h, name).await?;
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(HarnessError::netlink(format!("ip link set {name} up")))
}

/// `ip addr add ADDR dev NAME` (`nodad` skips IPv6 duplicate address
/// detection, so the address is usable at once).
pub async fn add_address(h: &Handle, name: &str, addr: IpNet, nodad: bool) -> Result<()> {
    let index = link_index(h, name).await?;
    let mut req = h.address().add(index, addr.addr(), addr.prefix_len());
    let msg = req.message_mut();
    // `ip addr add` sets no broadcast unless asked (`brd +`); neither do we.
    msg.attributes
        .retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
    if nodad {
        msg.header.flags |= AddressHeaderFlags::Nodad;
    }
    let suffix = if nodad { " nodad" } else { "" };
    req.execute().await.map_err(HarnessError::netlink(format!(
        "ip addr add {addr} dev {name}{suffix}"
    )))
}

/// `ip route add DST via GATEWAY dev NAME` (protocol `boot`, as `ip`
/// sets by default).
pub async fn add_route(h: &Handle, dst: IpNet, via: IpAddr, name: &str) -> Result<()> {
    let ctx = format!("ip route add {dst} via {via} dev {name}");
    let oif = link_index(h, name).await?;
    let msg = match (dst.addr(), via) {
        (IpAddr::V4(d), IpAddr::V4(g)) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(d, dst.prefix_len())
            .gateway(g)
            .output_interface(oif)
            .protocol(RouteProtocol::Boot)
            .build(),
        (IpAddr::V6(d), IpAddr::V6(g)) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .destination_prefix(d, dst.prefix_len())
            .gateway(g)
            .output_interface(oif)
            .protocol(RouteProtocol::Boot)
            .build(),
        _ => {
            return Err(HarnessError::Usage(format!(
                "{ctx}: destination and gateway differ in address family"
            )))
        }
    };
    h.route()
        .add(msg)
        .execute()
        .await
        .map_err(HarnessError::netlink(ctx))
}

/// Global-scope addresses on link `name`, in the kernel's order (`ip addr
/// show dev NAME scope global`).
pub async fn global_addresses(h: &Handle, name: &str) -> Result<Vec<IpAddr>> {
    let index = link_index(h, name).await?;
    let msgs: Vec<AddressMessage> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(HarnessError::netlink(format!("ip addr show dev {name}")))?;
    Ok(msgs
        .iter()
        .filter(|m| m.header.scope == AddressScope::Universe)
        .filter_map(local_address)
        .collect())
}

/// The address `ip` prints as `local`: IFA_LOCAL, else IFA_ADDRESS (IPv6
/// addresses carry only the latter).
fn local_address(m: &AddressMessage) -> Option<IpAddr> {
    let find = |want_local: bool| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) if want_local => Some(*ip),
            AddressAttribute::Address(ip) if !want_local => Some(*ip),
            _ => None,
        })
    };
    find(true).or_else(|| find(false))
}

/// Names of all veth links (`ip link show type veth`).
pub async fn veth_names(h: &Handle) -> Result<Vec<String>> {
    let links: Vec<LinkMessage> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(HarnessError::netlink("ip link show type veth"))?;
    Ok(links
        .iter()
        .filter(|l| is_veth(l))
        .filter_map(link_name)
        .collect())
}

fn is_veth(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth))),
        _ => false,
    })
}

fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::AddressMessageBuilder;

    fn addr_msg(attrs: Vec<AddressAttribute>) -> AddressMessage {
        let mut m = AddressMessageBuilder::<std::net::Ipv4Addr>::new().build();
        m.attributes = attrs;
        m
    }

    #[test]
    fn local_address_prefers_ifa_local_and_falls_back_to_ifa_address() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let local: IpAddr = "10.0.0.1".parse().unwrap();
        let both = addr_msg(vec![
            AddressAttribute::Address(peer),
            AddressAttribute::Local(local),
        ]);
        assert_eq!(local_address(&both), Some(local));
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(
            local_address(&addr_msg(vec![AddressAttribute::Address(v6)])),
            Some(v6)
        );
        assert_eq!(local_address(&addr_msg(vec![])), None);
    }

    #[test]
    fn veth_is_recognised_by_its_link_kind() {
        let veth = LinkVeth::new("a", "b").build();
        assert!(is_veth(&veth));
        assert_eq!(link_name(&veth).as_deref(), Some("a"));
        assert!(!is_veth(&LinkBridge::new("br").build()));
        assert!(!is_veth(&LinkUnspec::new_with_name("lo").build()));
    }
}
