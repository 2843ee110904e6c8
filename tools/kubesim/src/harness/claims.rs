//! The demo's claims, each worded once. Both stories ([`super::story`] on
//! the built-in runtime, `containerd::story` on containerd over CRI)
//! gather their evidence their own way and hand it here, so the two demos
//! check the same things under the same titles; where a title names how a
//! runtime reads its evidence, that fragment is a parameter.

use std::fmt::Display;

use cni::runtime::GcReport;

use super::hostport;
use super::inspect::Leftovers;
use super::report::DemoReport;

/// Port every demo app container listens on.
pub const APP_PORT: u16 = 8080;
/// Pods on node-1 for the "ten pods, same port" claim.
pub const SAME_PORT_PODS: usize = 10;
/// The node port the hostPort pod maps to its :APP_PORT (Docker's `-p 5000:8080`).
pub const HOST_PORT: u16 = 5000;
/// The pod with the hostPort, and the one refused the same port.
pub const HOSTPORT_POD: &str = "web-hostport";
pub const HOSTPORT_POD_2: &str = "web-hostport-2";
/// The port the duo pod's server binds (and a second container cannot).
pub const DUO_PORT: u16 = 9000;

/// The first three of `v`, so a detail line stays readable.
fn few(v: &[String]) -> String {
    v.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
}

/// Evidence of a claim about every node: it holds if it holds on each.
#[derive(Debug)]
pub struct PerNode {
    ok: bool,
    details: Vec<String>,
}

impl Default for PerNode {
    fn default() -> Self {
        PerNode {
            ok: true,
            details: Vec::new(),
        }
    }
}

impl PerNode {
    /// One node's verdict and evidence.
    pub fn push(&mut self, ok: bool, detail: String) {
        self.ok &= ok;
        self.details.push(detail);
    }

    /// A node where gathering the evidence failed.
    pub fn failed(&mut self, node: &str, what: impl Display) {
        self.push(false, format!("{node}: {what}"));
    }

    /// Records the claim `title` over all nodes.
    pub fn check(self, r: &mut DemoReport, title: &str) {
        r.check(title, self.ok, self.details.join("; "));
    }
}

/// CNI CHECK of every attachment (the plugins confirm what they set up);
/// `from` says where the runtime read the attachments.
pub fn cni_check(r: &mut DemoReport, from: &str, checked: usize, failed: &[String]) {
    r.check(
        &format!("CNI CHECK passes for every pod{from} (interfaces, addresses, routes, leases)"),
        failed.is_empty(),
        if failed.is_empty() {
            format!("{checked} attachments checked")
        } else {
            failed.join("; ")
        },
    );
}

/// Pod IPs: `distinct` among `pods`, `bad` the pods without one inside
/// their node's pod CIDR (and why); `read` says where the IPs were read.
pub fn unique_ips(r: &mut DemoReport, read: &str, pods: usize, distinct: usize, bad: &[String]) {
    r.check(
        &format!("every pod gets a unique IP from its node's pod CIDR{read}"),
        bad.is_empty() && distinct == pods,
        if bad.is_empty() {
            format!("{pods} pods, {distinct} distinct IPs, all inside their node's CIDR")
        } else {
            format!("{pods} pods, {distinct} distinct IPs; {}", bad.join("; "))
        },
    );
}

/// A pod as the all-pairs probe names it.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Pod name.
    pub name: String,
    /// Its node.
    pub node: String,
    /// Its pod IP.
    pub ip: String,
    /// `namespace/name`; its app container answers as `KEY/app`.
    pub key: String,
}

impl Peer {
    /// Who must answer a probe of this pod: its app container.
    fn server(&self) -> String {
        format!("{}/app", self.key)
    }
}

/// A probe from one pod to another (indices into the story's [`Peer`]s):
/// the server's name and the client IP it saw, or why it failed.
pub type Probe = Result<(String, String), String>;

/// Every pod probed from every other pod.
#[derive(Debug, Default)]
pub struct Pairs {
    total: usize,
    same: usize,
    cross: usize,
    failed: Vec<String>,
    natted: Vec<String>,
    example: String,
}

impl Pairs {
    /// Probes each ordered pair of `pods` with `probe(src, dst)`.
    pub fn probe_all(pods: &[Peer], mut probe: impl FnMut(usize, usize) -> Probe) -> Pairs {
        let mut p = Pairs {
            total: pods.len() * pods.len().saturating_sub(1),
            ..Pairs::default()
        };
        for (i, src) in pods.iter().enumerate() {
            for (j, dst) in pods.iter().enumerate().filter(|(j, _)| *j != i) {
                match probe(i, j) {
                    Ok((server, seen)) if server == dst.server() => {
                        if seen != src.ip {
                            p.natted
                                .push(format!("{}->{} seen as {seen}", src.name, dst.name));
                        }
                        if src.node == dst.node {
                            p.same += 1;
                        } else {
                            p.cross += 1;
                            if p.example.is_empty() {
                                p.example = format!(
                                    "; e.g. {} ({}) -> {} seen as {seen}",
                                    src.name, src.node, dst.name
                                );
                            }
                        }
                    }
                    Ok((server, _)) => p
                        .failed
                        .push(format!("{}->{}: answered by {server}", src.name, dst.name)),
                    Err(e) => p.failed.push(format!("{}->{}: {e}", src.name, dst.name)),
                }
            }
        }
        p
    }

    /// Records two claims: no NAT between pods (the Kubernetes model; with
    /// an ipMasq conflist cross-node peers would see the node's address),
    /// and every pair reaching each other. `via` says how pods probed,
    /// `across` how nodes are joined, as the runtime's title has them.
    pub fn check(&self, r: &mut DemoReport, via: &str, across: &str) {
        let (same, cross, total) = (self.same, self.cross, self.total);
        r.check(
            "pod-to-pod traffic is not NATed: every server sees the client's pod IP",
            self.natted.is_empty() && same + cross > 0,
            if self.natted.is_empty() {
                format!(
                    "{} connections, all seen from the client's pod IP",
                    same + cross
                )
            } else {
                format!(
                    "{} NATed (is ipMasq on in the conflist?): {}",
                    self.natted.len(),
                    few(&self.natted)
                )
            },
        );
        r.check(
            &format!("all pairs of pods reach each other by pod IP{via}, same node and across nodes{across}"),
            self.failed.is_empty() && same + cross == total && cross > 0,
            if self.failed.is_empty() {
                format!(
                    "{total}/{total} connections ok ({same} same-node, {cross} cross-node{})",
                    self.example
                )
            } else {
                format!("{} failed: {}", self.failed.len(), few(&self.failed))
            },
        );
    }
}

/// SAME_PORT_PODS pods on node-1 on :APP_PORT, each probed from the first
/// pod elsewhere; `up` counts the node-1 pods the runtime sees up, as
/// `up_as` says.
pub fn same_port(
    r: &mut DemoReport,
    pods: &[Peer],
    up: usize,
    up_as: &str,
    mut probe: impl FnMut(usize, usize) -> Probe,
) {
    let web: Vec<usize> = (0..pods.len())
        .filter(|&i| pods[i].node == "node-1")
        .collect();
    let from = pods.iter().position(|p| p.node != "node-1");
    let reachable = from.map_or(0, |f| {
        web.iter()
            .filter(|&&j| matches!(probe(f, j), Ok((server, _)) if server == pods[j].server()))
            .count()
    });
    let from = from.map_or("no pod outside node-1", |f| pods[f].name.as_str());
    let n = web.len();
    r.check(
        &format!("{SAME_PORT_PODS} pods on one node all listen on :{APP_PORT}, no conflict, all reachable"),
        n == SAME_PORT_PODS && up == SAME_PORT_PODS && reachable == SAME_PORT_PODS,
        format!("{up}/{n} {up_as}, {reachable}/{n} answered {from} on node-2"),
    );
}

/// A probe of the hostPort pod: the client IP it saw, or why it failed.
pub type Answer = Result<String, String>;

/// A hostPort reached from node-2 at node-1's address.
#[derive(Debug)]
pub struct HostPortDnat<'a> {
    /// How the runtime set it up and probed (prefix of the detail).
    pub how: String,
    /// The probing pod.
    pub from: &'a str,
    /// node-1's address.
    pub node_ip: &'a str,
    /// The hostPort pod's own IP.
    pub pod_ip: &'a str,
    /// Its app container (`KEY/app`), who must answer.
    pub server: &'a str,
    /// The probe of node-1:HOST_PORT.
    pub via_node: Answer,
    /// The probe of its pod IP:APP_PORT.
    pub direct: Answer,
}

/// Docker's `-p` next to the Kubernetes model: an opt-in DNAT.
pub fn host_port_dnat(r: &mut DemoReport, e: &HostPortDnat) {
    r.check(
        &format!("a hostPort is an opt-in DNAT on the node's address: node-1:{HOST_PORT} reaches one pod's :{APP_PORT} from node-2"),
        e.via_node.is_ok() && e.direct.is_ok(),
        match (&e.via_node, &e.direct) {
            (Ok(seen), Ok(_)) => format!(
                "{}{} -> {}:{HOST_PORT} answered by {} (it saw {seen}); the same pod also at its own IP {}:{APP_PORT}",
                e.how, e.from, e.node_ip, e.server, e.pod_ip
            ),
            (via_node, direct) => format!("via node-1:{HOST_PORT}: {via_node:?}; via pod IP: {direct:?}"),
        },
    );
}

/// A second pod asking for the same hostPort on node-1.
#[derive(Debug)]
pub struct HostPortRefusal<'a> {
    /// Who refused (prefix of "refused: ERROR").
    pub by: &'a str,
    /// The second pod's key if it started, portmap's error if not.
    pub second: Result<String, String>,
    /// node-1 before and after the attempt.
    pub before: &'a Leftovers,
    /// See `before`.
    pub after: &'a Leftovers,
    /// Where the runtime looked for the second pod, and how many it found.
    pub recorded_in: &'a str,
    /// See `recorded_in`.
    pub recorded: usize,
    /// node-1:HOST_PORT still answered by the first pod.
    pub still: bool,
}

/// Portmap refuses the second pod, which leaves nothing behind; then the
/// lesson of the hostPort pair.
pub fn host_port_refused(r: &mut DemoReport, e: &HostPortRefusal) {
    let refused = matches!(&e.second, Err(err) if err.contains("already allocated"));
    r.check(
        &format!("a second pod asking for hostPort {HOST_PORT} on that node is refused by portmap and leaves nothing behind"),
        refused && e.recorded == 0 && e.before == e.after && e.still,
        format!(
            "{}; node-1 before: {}; after: {}; {}: {}; node-1:{HOST_PORT} still answered by {HOSTPORT_POD}: {}",
            match &e.second {
                Err(err) => format!("{}refused: {err}", e.by),
                Ok(key) => format!("{key} started with hostPort {HOST_PORT} too!"),
            },
            e.before.summary(),
            e.after.summary(),
            e.recorded_in,
            e.recorded,
            e.still
        ),
    );
    r.note(hostport::LESSON);
}

/// One container reaches another over loopback: `client` names the
/// client and how it ran, `reply` what it got.
pub fn localhost(r: &mut DemoReport, ok: bool, client: &str, reply: &str) {
    r.check(
        "two containers in one pod talk over 127.0.0.1",
        ok,
        format!("{client} -> 127.0.0.1:{DUO_PORT}: {reply}"),
    );
}

/// A second server on :DUO_PORT in the same pod fails to bind; `evidence`
/// says how the runtime saw it.
pub fn one_bind(r: &mut DemoReport, refused: bool, evidence: &str) {
    r.check(
        "two containers in one pod cannot bind the same port",
        refused,
        format!("a second server on :{DUO_PORT}: {evidence}"),
    );
}

/// A container restart of web-1/app.
#[derive(Debug)]
pub struct Restart {
    /// How the runtime proves no CNI call happened (title suffix).
    pub proof: &'static str,
    /// The container before and after, as the runtime names it.
    pub old: String,
    /// See `old`.
    pub new: String,
    /// A new container (process) took the old one's place.
    pub replaced: bool,
    /// The pod's IP(s) before and after.
    pub ip_before: String,
    /// See `ip_before`.
    pub ip_after: String,
    /// No CNI call happened, and the evidence for it.
    pub no_cni_call: bool,
    /// See `no_cni_call`.
    pub cni_evidence: String,
    /// The pod answered from node-2 afterwards.
    pub reachable: bool,
}

/// Restarting a container is not a pod event: no CNI call, same IP.
pub fn restart(r: &mut DemoReport, e: &Restart) {
    r.check(
        &format!(
            "restarting a container keeps the pod IP and makes no CNI call{}",
            e.proof
        ),
        e.replaced && e.ip_before == e.ip_after && e.no_cni_call && e.reachable,
        format!(
            "web-1/app {} -> {}; IP {} -> {}; {}; reachable: {}",
            e.old, e.new, e.ip_before, e.ip_after, e.cni_evidence, e.reachable
        ),
    );
}

/// The first 12 characters of a sandbox ID.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Recreating a pod is a new sandbox: new ID, new IP. `sandbox` is how
/// the runtime's title names the sandbox; `ids` and `ips` are old, new.
pub fn recreate(
    r: &mut DemoReport,
    sandbox: &str,
    ids: [&str; 2],
    ips: [&str; 2],
    reachable: bool,
) {
    r.check(
        &format!("deleting and recreating a pod gives a new {sandbox} and a new IP"),
        ids[0] != ids[1] && ips[0] != ips[1] && reachable,
        format!(
            "sandbox {} -> {}; IP {} -> {}; reachable: {reachable}",
            short(ids[0]),
            short(ids[1]),
            ips[0],
            ips[1]
        ),
    );
}

/// One node before and after every pod was deleted.
#[derive(Debug)]
pub struct NodeCleanup {
    /// Node name.
    pub name: String,
    /// What the pods had there.
    pub before: Leftovers,
    /// Pods the runtime still knows on it.
    pub pods_left: usize,
    /// What is left.
    pub after: Leftovers,
}

/// Deleting every pod leaves nothing on any node. `deleting` names how
/// the pods went, `also` anything else claimed gone (title fragments);
/// `pods_in` where the runtime counts the pods left.
pub fn cleanup(
    r: &mut DemoReport,
    deleting: &str,
    also: &str,
    pods_in: &str,
    deleted: usize,
    nodes: &[NodeCleanup],
) {
    let clean = nodes.iter().all(|n| n.pods_left == 0 && n.after.is_clean());
    let details: Vec<String> = nodes
        .iter()
        .map(|n| {
            format!(
                "{}: with pods {}; after: {} {pods_in}, {}",
                n.name,
                n.before.summary(),
                n.pods_left,
                n.after.summary()
            )
        })
        .collect();
    r.check(
        &format!("after {deleting} no {also}lease, veth, masquerade or hostPort (DNAT) rule, or cache entry is left"),
        clean && deleted > 0,
        format!("{deleted} pods deleted; {}", details.join("; ")),
    );
}

/// One node's share of "GC with an empty valid-attachment list finds
/// nothing left": its GC outcome and what is left after it.
pub fn gc_empty_on(
    nodes: &mut PerNode,
    node: &str,
    cni_version: &str,
    gc: Result<GcReport, impl Display>,
    after: &Leftovers,
) {
    match gc {
        Ok(rep) => nodes.push(
            rep.stale_deleted.is_empty() && after.is_clean(),
            format!(
                "{node}: {} stale attachments, GC sent to {} plugins (cniVersion {cni_version}), after GC {}",
                rep.stale_deleted.len(),
                rep.plugins_collected,
                after.summary()
            ),
        ),
        Err(e) => nodes.failed(node, format_args!("GC failed: {e}")),
    }
}

/// The claim [`gc_empty_on`] gathers per node.
pub fn gc_empty(r: &mut DemoReport, nodes: PerNode) {
    nodes.check(
        r,
        "GC with an empty valid-attachment list finds nothing left",
    );
}
