//! ADD as a list of steps (docs/cni-reference.md §2.2). Everything that can be
//! rejected (config, netns, IPAM plugin lookup) is checked before the first
//! kernel change; after that every side effect is undone on failure.

use cni::delegate;
use cni::error::{codes, CniError, Result};
use cni::firewall::{self, spoofcheck, MasqTarget};
use cni::lock::{FileLock, LockMode};
use cni::netlink::{Link, Netlink};
use cni::netns::NetNs;
use cni::skel::CmdArgs;
use cni::spec::{version_at_least, CniResult, Interface};
use ipnet::IpNet;

use crate::announce::{self, Announcement};
use crate::bridge_dev;
use crate::conf::BridgeConf;
use crate::container;
use crate::fw;
use crate::gateway::calc_gateways;
use crate::locks;
use crate::port::{self, Container};
use crate::rollback::Rollback;

/// `CNI_NETNS` opened and checked (ADD and CHECK need it).
pub fn open_netns(a: &CmdArgs) -> Result<NetNs> {
    let path = a
        .netns
        .as_ref()
        .ok_or_else(|| CniError::new(codes::INVALID_ENV, "CNI_NETNS is required"))?;
    Ok(NetNs::open(path)?)
}

/// Deletes the host veth by name (the pair goes with it).
fn delete_veth(name: &str) -> Result<()> {
    let mut nl = Netlink::open()?;
    if let Some(link) = nl.link_by_name(name)? {
        nl.del_link(link.index)?;
    }
    Ok(())
}

/// Everything an ADD works with once the input has been validated.
struct Ctx<'a> {
    a: &'a CmdArgs,
    conf: &'a BridgeConf,
    netns: &'a NetNs,
    /// Host netns connection.
    nl: Netlink,
    /// Container netns connection.
    cnl: Netlink,
    /// The shared bridge lock, held until our veth is a port (`locks`).
    bridge_window: Option<FileLock>,
    /// The pod's gratuitous ARP, sent once its port forwards (`announce`).
    announcement: Option<Announcement>,
}

/// The bridge ADD, step by step.
pub fn add(a: &CmdArgs) -> Result<CniResult> {
    let conf = BridgeConf::load(&a.conf, &a.args)?;
    preflight(a, &conf)?;
    let _attachment = locks::attachment(&conf.network, a)?;
    let netns = open_netns(a)?;
    let mut cx = Ctx {
        a,
        conf: &conf,
        netns: &netns,
        nl: Netlink::open()?,
        cnl: Netlink::open_in(&netns)?,
        bridge_window: None,
        announcement: None,
    };
    // Before the bridge: an ADD that cannot succeed changes nothing.
    container::ensure_absent(&mut cx.cnl, &a.ifname, &netns)?;
    cx.bridge_window = Some(locks::bridge(&conf.bridge, LockMode::Shared)?);
    let (bridge, bridge_is_new) = bridge_dev::ensure_bridge(&mut cx.nl, &conf)?;
    let mut undo = Rollback::default();
    if bridge_is_new {
        let (name, index) = (conf.bridge.clone(), bridge.index);
        undo.push("delete unused bridge", move || {
            bridge_dev::delete_if_unused(&name, index)
        });
    }
    // Why a thread: the IPAM plugin is a separate process (≈ 2 ms, most of
    // it process start-up) and nothing in the veth set-up depends on its
    // answer, so it runs while the kernel builds the pair. The reference
    // runs it after the veth; the outcome is the same.
    std::thread::scope(|s| {
        let mut ipam = conf
            .ipam_type
            .as_deref()
            .map(|ipam| s.spawn(move || delegate::add_tracked(ipam, a)));
        let built = cx.build(&bridge, &mut ipam, &mut undo);
        // A rollback may need the bridge lock exclusively: never hold it then.
        cx.bridge_window = None;
        // A failure before the IPAM answer was used: wait for the child,
        // then release what it allocated.
        if let (Some(pending), Some(ipam_type)) = (ipam.take(), conf.ipam_type.as_deref()) {
            release_on_rollback(&join_ipam(pending), ipam_type, a, &mut undo);
        }
        let result = built?;
        undo.commit();
        Ok(result)
    })
}

/// The IPAM ADD running on its own thread.
type PendingIpam<'s> =
    std::thread::ScopedJoinHandle<'s, std::result::Result<CniResult, delegate::Failure>>;

/// The IPAM thread's outcome (a panic there is an unknown state).
fn join_ipam(pending: PendingIpam<'_>) -> std::result::Result<CniResult, delegate::Failure> {
    pending.join().unwrap_or_else(|_| {
        Err(delegate::Failure {
            error: CniError::internal("IPAM thread panicked"),
            may_hold: true,
        })
    })
}

/// Registers the IPAM DEL for a rollback only when this call's IPAM ADD may
/// have allocated (SPEC §4 cleans up a failed IPAM ADD; but an IPAM plugin
/// that refused, e.g. because the attachment already holds a lease, owns
/// nothing of ours, and a DEL by container id would free another call's
/// lease).
fn release_on_rollback<'a, T>(
    outcome: &std::result::Result<T, delegate::Failure>,
    ipam: &'a str,
    a: &'a CmdArgs,
    undo: &mut Rollback<'a>,
) {
    let may_hold = match outcome {
        Ok(_) => true,
        Err(f) => f.may_hold,
    };
    if may_hold {
        undo.push("ipam del", move || delegate::del(ipam, a));
    }
}

/// Checks that need no kernel change, so bad input leaves nothing behind.
fn preflight(a: &CmdArgs, conf: &BridgeConf) -> Result<()> {
    if !conf.is_layer3() && !version_at_least(&conf.cni_version, "0.3.0") {
        // The 0.1/0.2 result has no interfaces list, only IPs: an L2-only
        // attachment cannot be reported. The reference finds out after
        // creating everything (plugins#997); refuse before touching anything.
        return Err(CniError::new(
            codes::INVALID_CONFIG,
            format!(
                "cniVersion {} cannot describe an L2-only (no ipam) attachment; use 0.3.0 or later",
                conf.cni_version
            ),
        ));
    }
    if let Some(ipam) = &conf.ipam_type {
        delegate::find_plugin(ipam, &a.path)?;
    }
    Ok(())
}

impl<'a> Ctx<'a> {
    /// Veth, port, container addresses, gateway, masquerading and the final
    /// re-reads: the result of the ADD.
    fn build(
        &mut self,
        bridge: &Link,
        ipam: &mut Option<PendingIpam<'_>>,
        undo: &mut Rollback<'a>,
    ) -> Result<CniResult> {
        let (host, cont) = self.attach(bridge, undo)?;
        let mut result = self.base_result(bridge, &host, &cont);
        match (ipam.take(), self.conf.ipam_type.as_deref()) {
            (Some(pending), Some(ipam_type)) => {
                let outcome = join_ipam(pending);
                release_on_rollback(&outcome, ipam_type, self.a, undo);
                let ipam_result = outcome.map_err(CniError::from)?;
                self.configure_ip(ipam_result, bridge, &cont, &mut result, undo)?;
            }
            _ if !self.conf.disable_container_interface => container::up_l2(&mut self.cnl, &cont)?,
            _ => {}
        }
        self.finish(bridge, host, &mut result)?;
        Ok(result)
    }

    /// Veth pair, port settings, bridge MAC pin and spoof check.
    /// Returns (host end, container end).
    fn attach(&mut self, bridge: &Link, undo: &mut Rollback<'a>) -> Result<(Link, Link)> {
        let (a, conf) = (self.a, self.conf);
        let mut c = Container {
            netns: self.netns,
            nl: &mut self.cnl,
            id: &a.container_id,
            ifname: &a.ifname,
        };
        let host = port::create_veth(&mut self.nl, &mut c, conf, bridge.index)?;
        // Our port now keeps the bridge in use: other rollbacks may judge it.
        self.bridge_window = None;
        let host_name = host.name.clone();
        undo.push("delete veth", move || delete_veth(&host_name));
        port::configure_port(&mut self.nl, &host, conf)?;
        bridge_dev::pin_mac(&mut self.nl, bridge.index)?;
        let cont = container::link(&mut self.cnl, &a.ifname)?;
        if conf.macspoofchk {
            let mac = cont.mac_string();
            fw(spoofcheck::setup(
                &a.container_id,
                &a.ifname,
                &host.name,
                &mac,
            ))?;
            undo.push("spoofcheck teardown", || {
                fw(spoofcheck::teardown(&a.container_id, &a.ifname))
            });
        }
        Ok((host, cont))
    }

    /// `[bridge, host veth, container]`; MACs of the first two come later.
    fn base_result(&self, bridge: &Link, host: &Link, cont: &Link) -> CniResult {
        let named = |name: &str| Interface {
            name: name.to_string(),
            ..Interface::default()
        };
        CniResult {
            cni_version: self.conf.cni_version.clone(),
            interfaces: vec![
                named(&bridge.name),
                named(&host.name),
                Interface {
                    mac: Some(cont.mac_string()),
                    sandbox: Some(self.netns.path().display().to_string()),
                    ..named(&self.a.ifname)
                },
            ],
            ips: Vec::new(),
            routes: Vec::new(),
            dns: Default::default(),
        }
    }

    /// Container addresses and routes from the IPAM result, gateways,
    /// masquerading.
    fn configure_ip(
        &mut self,
        ipam_result: CniResult,
        bridge: &Link,
        cont: &Link,
        result: &mut CniResult,
        undo: &mut Rollback<'a>,
    ) -> Result<()> {
        let (a, conf) = (self.a, self.conf);
        if ipam_result.ips.is_empty() {
            return Err(CniError::internal("IPAM plugin returned missing IP config"));
        }
        result.ips = ipam_result.ips;
        result.routes = ipam_result.routes;
        result.dns = ipam_result.dns;
        let gws = calc_gateways(result, conf);
        self.announcement = Some(container::configure_l3(
            &mut self.cnl,
            self.netns,
            cont,
            result,
            conf.enable_dad,
        )?);
        if conf.is_gateway {
            bridge_dev::apply_gateways(&mut self.nl, conf, bridge, &gws, &mut result.interfaces)?;
        }
        if conf.ip_masq {
            let ips: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
            let target = masq_target(conf, a);
            fw(match conf.ip_masq_backend {
                Some(backend) => firewall::setup_ipmasq(backend, &target, &ips),
                None => firewall::setup_ipmasq_default(&target, &ips),
            })?;
            undo.push("ipmasq teardown", move || {
                fw(firewall::teardown_ipmasq(&masq_target(conf, a), &ips))
            });
        }
        Ok(())
    }

    /// Waits for the port, re-reads both MACs (they change when ports are
    /// enslaved: plugins#805/#809) and applies the config's DNS.
    fn finish(&mut self, bridge: &Link, host: Link, result: &mut CniResult) -> Result<()> {
        let host = if self.conf.disable_container_interface {
            self.nl.link_by_index(host.index)?.unwrap_or(host)
        } else {
            port::wait_port_up(&mut self.nl, host.index)?
        };
        // Only now: a broadcast sent before the port forwards is lost, and
        // a neighbour still holding a previous owner's MAC for the IP keeps
        // it. Every thread has been joined, so the helper may be forked.
        if let Some(what) = self.announcement.take() {
            announce::start(self.netns, &what);
        }
        result.interfaces[1].mac = Some(host.mac_string());
        let bridge_now = self.nl.link_by_index(bridge.index)?;
        result.interfaces[0].mac = Some(bridge_now.as_ref().unwrap_or(bridge).mac_string());
        if let Some(dns) = &self.conf.dns {
            result.dns = dns.clone();
        }
        Ok(())
    }
}

/// The masquerade rule owner: (network, container id, ifname).
pub fn masq_target<'a>(conf: &'a BridgeConf, a: &'a CmdArgs) -> MasqTarget<'a> {
    MasqTarget {
        network: &conf.network,
        container_id: &a.container_id,
        ifname: &a.ifname,
    }
}
