//! `up`: the underlay netns, the node netns with their CNI dirs, addresses
//! and routes. On failure, what was created is torn down again.

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use ipnet::IpNet;

use super::error::{HarnessError, Result};
use super::netlink::{self, in_netns};
use super::nodeconf::{self, Template, NODE_CONFLIST};
use super::nsutil::Netns;
use super::procs::ProcRecord;
use super::state::{NodeState, State};
use super::Harness;
use cni::runtime::CniConfig;

/// Underlay bridge name inside the underlay netns.
const UNDERLAY_BRIDGE: &str = "ul-br0";
/// Node-side underlay interface name.
pub(crate) const NODE_UPLINK: &str = "ul0";
/// Largest supported cluster (node index goes into IPs).
pub const MAX_NODES: u8 = 50;

/// Which container runtime makes the CNI calls for pod sandboxes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ContainerRuntime {
    /// kubesim itself, through the library's libcni-like `cni::runtime`.
    #[default]
    Builtin,
    /// A private containerd per node, driven over CRI; kubesim is only the
    /// kubelet (see `crate::containerd`).
    Containerd,
}

impl ContainerRuntime {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ContainerRuntime::Builtin => "builtin",
            ContainerRuntime::Containerd => "containerd",
        }
    }
}

/// Options of `up`.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Number of nodes (1..=MAX_NODES).
    pub nodes: u8,
    /// Plugin directory (`CNI_PATH`).
    pub cni_bin_dir: PathBuf,
    /// Conflist template (default: built-in `10-bridge.conflist`, no masquerade, so
    /// pod-to-pod traffic keeps pod source IPs as Kubernetes requires).
    pub conflist: Option<PathBuf>,
    /// Force the network's cniVersion (e.g. `1.0.0` for older plugins).
    pub cni_version: Option<String>,
    /// The container runtime.
    pub runtime: ContainerRuntime,
}

/// Creates the cluster. On failure everything created so far is removed.
pub fn up(h: &Harness, opts: &UpOptions) -> Result<State> {
    let _lock = h.dir.lock()?;
    if let Some(existing) = h.dir.load()? {
        if !existing.nodes.is_empty() || existing.underlay.is_some() {
            return Err(HarnessError::Usage(format!(
                "a cluster already exists in {} ({} nodes); run `kubesim down` first",
                h.dir.root.display(),
                existing.nodes.len()
            )));
        }
    }
    let template = prepare_template(opts)?;
    let mut state = State {
        cni_bin_dir: opts.cni_bin_dir.clone(),
        network: template.list.name.clone(),
        ..State::default()
    };
    h.dir.save(&state)?;
    match build(h, opts, &template, &mut state) {
        Ok(()) => Ok(state),
        Err(e) => {
            h.say("  up failed; removing what was created");
            // The file also knows about a holder that was started but not
            // yet added to `state` (recorded before wiring it).
            let recorded = h.dir.load().ok().flatten().unwrap_or(state);
            super::teardown::teardown(h, &recorded);
            let _ = std::fs::remove_dir_all(h.dir.root.join("nodes"));
            let _ = std::fs::remove_file(h.dir.file());
            Err(e)
        }
    }
}

/// Validates the template against the plugin dir before anything is created.
fn prepare_template(opts: &UpOptions) -> Result<Template> {
    if opts.nodes == 0 || opts.nodes > MAX_NODES {
        return Err(HarnessError::Usage(format!(
            "--nodes must be 1..={MAX_NODES}"
        )));
    }
    if !opts.cni_bin_dir.is_dir() {
        return Err(HarnessError::Usage(format!(
            "CNI bin dir {} does not exist",
            opts.cni_bin_dir.display()
        )));
    }
    let mut template = Template::load(opts.conflist.as_deref())?;
    if let Some(v) = &opts.cni_version {
        if let Some(obj) = template.json.as_object_mut() {
            obj.insert("cniVersion".into(), v.clone().into());
            obj.remove("cniVersions");
        }
        let bytes =
            serde_json::to_vec(&template.json).map_err(|e| HarnessError::Usage(e.to_string()))?;
        template = Template::parse(&bytes, "conflist with --cni-version")?;
    }
    template.check_plugins(&opts.cni_bin_dir)?;
    let probe = CniConfig::new(vec![opts.cni_bin_dir.clone()], std::env::temp_dir());
    probe.validate_network_list(&template.list).map_err(|e| {
        HarnessError::Usage(format!("{e}; pick another --cni-version or --cni-bin-dir"))
    })?;
    // The builtin runtime brings every pod's lo up through the loopback
    // plugin, as containerd does (containerd nodes get theirs installed).
    if opts.runtime == ContainerRuntime::Builtin {
        probe
            .validate_network_list(&super::loopback::network()?)
            .map_err(|e| {
                HarnessError::Usage(format!(
                    "the builtin runtime sets up each pod's lo with the loopback plugin: {e}; \
                     pick a --cni-bin-dir that has it"
                ))
            })?;
    }
    Ok(template)
}

fn build(h: &Harness, opts: &UpOptions, template: &Template, state: &mut State) -> Result<()> {
    let underlay = h.step("starting underlay netns", || {
        let (rec, _) = h.launcher.start(
            "__pause",
            &["underlay".into()],
            None,
            &h.dir.logs().join("underlay.log"),
        )?;
        Ok(rec)
    })?;
    state.underlay = Some(underlay.clone());
    h.dir.save(state)?;
    let ul = Netns::of_pid(underlay.pid)?;
    in_netns(&ul, |h| async move {
        netlink::add_bridge(&h, UNDERLAY_BRIDGE).await
    })?;
    for i in 1..=opts.nodes {
        let node = h.step(&format!("creating node node-{i}"), || {
            add_node(h, template, &ul, i, state)
        })?;
        state.nodes.push(node);
        h.dir.save(state)?;
    }
    h.step("installing routes between nodes", || {
        install_routes(state, template.dual_stack)
    })
}

fn add_node(
    h: &Harness,
    template: &Template,
    ul: &Netns,
    i: u8,
    state: &State,
) -> Result<NodeState> {
    let name = format!("node-{i}");
    let (holder, _) = h.launcher.start(
        "__pause",
        &["node".into(), name.clone()],
        None,
        &h.dir.logs().join(format!("{name}.log")),
    )?;
    // Record the holder before anything else can fail, so `down` finds it.
    let mut pending = state.clone();
    pending
        .nodes
        .push(node_state(h, template, &name, i, holder.clone(), 0));
    h.dir.save(&pending)?;
    let ns = Netns::of_pid(holder.pid)?;
    if state.nodes.iter().any(|n| n.netns_inode == ns.inode) || ns.inode == ul.inode {
        return Err(HarnessError::Safety(format!(
            "node {name} got a netns that is already in use"
        )));
    }
    let node = node_state(h, template, &name, i, holder, ns.inode);
    wire_node(ul, &ns, &node, template.dual_stack)?;
    write_node_dirs(template, &node)?;
    Ok(node)
}

fn node_state(
    h: &Harness,
    template: &Template,
    name: &str,
    i: u8,
    holder: ProcRecord,
    inode: u64,
) -> NodeState {
    let dir = h.dir.node_dir(name);
    let mut pod_cidrs = vec![nodeconf::pod_cidr_v4(i)];
    if template.dual_stack {
        pod_cidrs.push(nodeconf::pod_cidr_v6(i));
    }
    NodeState {
        name: name.to_string(),
        index: i,
        holder,
        netns_inode: inode,
        underlay_ip: nodeconf::underlay_v4(i),
        pod_cidrs,
        bridge: template.bridge_name(),
        conf_dir: dir.join("net.d"),
        cache_dir: dir.join("cache"),
        data_dir: dir.join("data"),
    }
}

/// One veth from the underlay bridge into the node, the node's underlay
/// address, and forwarding on (the node routes for its pods).
fn wire_node(ul: &Netns, ns: &Netns, node: &NodeState, dual: bool) -> Result<()> {
    let host_end = format!("ul-{}", node.name);
    let node_fd = ns.open()?;
    in_netns(ul, |h| async move {
        netlink::add_veth_peer_in(&h, &host_end, NODE_UPLINK, node_fd.as_raw_fd()).await?;
        netlink::enslave_up(&h, &host_end, UNDERLAY_BRIDGE).await
    })?;
    let mut addrs = vec![(cidr(&format!("{}/24", node.underlay_ip))?, false)];
    if dual {
        let v6 = format!("{}/64", nodeconf::underlay_v6(node.index));
        addrs.push((cidr(&v6)?, true));
    }
    in_netns(ns, |h| async move {
        for (addr, nodad) in addrs {
            netlink::add_address(&h, NODE_UPLINK, addr, nodad).await?;
        }
        netlink::link_up(&h, NODE_UPLINK).await
    })?;
    ns.sysctl("net/ipv4/ip_forward", "1")?;
    if dual {
        ns.sysctl("net/ipv6/conf/all/forwarding", "1")?;
    }
    Ok(())
}

fn write_node_dirs(template: &Template, node: &NodeState) -> Result<()> {
    for dir in [&node.conf_dir, &node.cache_dir, &node.data_dir] {
        std::fs::create_dir_all(dir)
            .map_err(HarnessError::io(format!("create {}", dir.display())))?;
    }
    let conf = template.for_node(&node.pod_cidrs, &node.data_dir);
    let text =
        serde_json::to_string_pretty(&conf).map_err(|e| HarnessError::Usage(e.to_string()))?;
    let path = node.conf_dir.join(NODE_CONFLIST);
    std::fs::write(&path, text + "\n")
        .map_err(HarnessError::io(format!("write {}", path.display())))
}

/// On every node, `<remote pod CIDR> via <remote underlay IP>` (host-gw
/// style), for each family the cluster runs.
fn install_routes(state: &State, dual: bool) -> Result<()> {
    for node in &state.nodes {
        let mut routes = Vec::new();
        for other in state.nodes.iter().filter(|o| o.name != node.name) {
            routes.push((cidr(&other.pod_cidrs[0])?, ip(&other.underlay_ip)?));
            if dual {
                let via = ip(&nodeconf::underlay_v6(other.index))?;
                routes.push((cidr(&other.pod_cidrs[1])?, via));
            }
        }
        let ns = Netns::of_pid(node.holder.pid)?;
        in_netns(&ns, |h| async move {
            for (dst, via) in routes {
                netlink::add_route(&h, dst, via, NODE_UPLINK).await?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn cidr(s: &str) -> Result<IpNet> {
    s.parse()
        .map_err(|e| HarnessError::Usage(format!("bad CIDR {s:?}: {e}")))
}

fn ip(s: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|e| HarnessError::Usage(format!("bad IP address {s:?}: {e}")))
}
