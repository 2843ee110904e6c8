//! The real libcni client `cnitool` (upstream v1.1.2, built offline from
//! Debian's libcni source) drives the plugins under test: add/check/del with a
//! conflist, inside a node netns the test made, against pod netns it made.
//!
//! cnitool has no option for libcni's cache dir (`/var/lib/cni`, see libcni
//! `getCacheDir`: only the Go API can change it), so every cnitool call runs in
//! a private mount namespace with a temp dir bound over `/var/lib/cni`; the
//! machine's files are never touched. host-local's store is a temp `dataDir`.
//!
//! Plugins under test: ours, or `$CNI_RS_CLIENT_PLUGINS` (e.g. `/usr/lib/cni`).
//! One test chains portmap (host port in `CAP_ARGS`) after the bridge and
//! adds a loopback network, as a runtime does for a pod with a hostPort.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use cni_test_support::clients::*;
use cni_test_support::common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

const NET: &str = "clicnitool";
const BRIDGE: &str = "cni-tool0";
const SUBNET: &str = "10.244.61.0/24";
const GATEWAY: &str = "10.244.61.1";
/// The loopback network of the portmap test (a `.conf`, not a conflist).
const LOOPBACK_NET: &str = "cni-loopback";

/// Everything one cnitool run needs; temp dirs vanish on drop.
struct Cnitool {
    tool: PathBuf,
    plugins: PathBuf,
    netconf: TempDir,
    data: TempDir,
    cache: TempDir,
    mounts: PrivateMounts,
}

impl Cnitool {
    fn new(tool: PathBuf, plugins: PathBuf, cni_version: &str) -> Cnitool {
        let netconf = TempDir::new("cnitool-netconf");
        let data = TempDir::new("cnitool-data");
        let cache = TempDir::new("cnitool-cache");
        let conflist = json!({
            "cniVersion": cni_version,
            "name": NET,
            "plugins": [{
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": data.path(),
                }
            }]
        });
        std::fs::write(
            netconf.path().join(format!("10-{NET}.conflist")),
            serde_json::to_vec_pretty(&conflist).expect("serialize conflist"),
        )
        .expect("write conflist");
        let mounts = PrivateMounts::new().bind(cache.path(), "/var/lib/cni");
        Cnitool {
            tool,
            plugins,
            netconf,
            data,
            cache,
            mounts,
        }
    }

    /// `cnitool <verb> NET <pod netns>` in the node netns (the calling thread's).
    fn run(&self, verb: &str, pod: &PodNs) -> Output {
        self.run_with(verb, NET, pod, &[])
    }

    /// `cnitool <verb> <net> <pod netns>` with extra environment (`CAP_ARGS`,
    /// `CNI_IFNAME`).
    fn run_with(&self, verb: &str, net: &str, pod: &PodNs, env: &[(&str, &str)]) -> Output {
        let argv: Vec<OsString> = vec![
            self.tool.clone().into(),
            verb.into(),
            net.into(),
            pod.path.clone().into(),
        ];
        let mut cmd = self.mounts.command(&argv);
        cmd.env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("NETCONFPATH", self.netconf.path())
            .env("CNI_PATH", client_cni_path(&self.plugins))
            .envs(env.iter().copied());
        cmd.output().expect("spawn cnitool")
    }

    /// Like [`Cnitool::run_with`], panicking with cnitool's output unless it succeeds.
    fn ok_with(&self, verb: &str, net: &str, pod: &PodNs, env: &[(&str, &str)]) -> String {
        let out = self.run_with(verb, net, pod, env);
        assert!(
            out.status.success(),
            "cnitool {verb} {net} {} failed ({}):\nstdout: {}\nstderr: {}",
            pod.path.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Chains `portmap` (capability `portMappings`) after the bridge in
    /// NET's conflist and adds a single-plugin loopback network
    /// (`LOOPBACK_NET`, a `.conf` file, as containerd keeps it).
    fn with_portmap_and_loopback(self) -> Cnitool {
        let path = self.netconf.path().join(format!("10-{NET}.conflist"));
        let mut conflist: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read conflist")).expect("json");
        let version = conflist["cniVersion"].clone();
        conflist["plugins"]
            .as_array_mut()
            .expect("plugins")
            .push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&conflist).expect("serialize"),
        )
        .expect("write conflist");
        let lo = json!({"cniVersion": version, "name": LOOPBACK_NET, "type": "loopback"});
        std::fs::write(
            self.netconf.path().join("99-loopback.conf"),
            serde_json::to_vec_pretty(&lo).expect("serialize"),
        )
        .expect("write loopback conf");
        self
    }

    fn ok(&self, verb: &str, pod: &PodNs) -> String {
        let out = self.run(verb, pod);
        assert!(
            out.status.success(),
            "cnitool {verb} {} failed ({}):\nstdout: {}\nstderr: {}",
            pod.path.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn store(&self) -> PathBuf {
        self.data.path().join(NET)
    }

    /// libcni's cache file for the container cnitool derives from `pod`.
    fn cache_file(&self, pod: &PodNs) -> PathBuf {
        self.cache
            .path()
            .join("results")
            .join(format!("{NET}-{}-eth0", container_id(&pod.path)))
    }
}

/// cnitool's container id: `cnitool-` + hex of the first 10 bytes of
/// sha512(absolute netns path).
fn container_id(netns: &Path) -> String {
    let digest = Sha512::digest(netns.as_os_str().as_encoded_bytes());
    format!("cnitool-{}", cni::hex::encode(&digest[..10]))
}

/// Prints which client (and version) drives which plugins.
fn announce(tool: &Path, plugins: &Path) {
    let libcni = first_line(&[
        "dpkg-query",
        "-W",
        "-f=${Version}",
        "golang-github-appc-cni-dev",
    ]);
    report(&format!(
        "client: cnitool v1.1.2 ({}), libcni from golang-github-appc-cni-dev {libcni}, {}",
        tool.display(),
        first_line(&["go", "version"])
    ));
    report(&format!("plugins: {}", describe_plugins(plugins)));
}

fn ipv4_of(result: &Value) -> String {
    let addr = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("result without ips[0].address: {result}"));
    addr.split('/').next().expect("address").to_string()
}

/// Checks an ADD result printed by cnitool (libcni re-prints the plugin's
/// result in the conflist's version).
fn check_add_result(result: &Value, pod: &PodNs, version: &str) {
    assert_eq!(result["cniVersion"], version, "{result}");
    let ip = ipv4_of(result);
    assert!(
        ip.starts_with("10.244.61."),
        "address outside {SUBNET}: {result}"
    );
    assert_eq!(result["ips"][0]["gateway"], GATEWAY, "{result}");
    let ifaces = result["interfaces"].as_array().expect("interfaces");
    assert_eq!(
        ifaces.len(),
        3,
        "bridge, host veth, container iface: {result}"
    );
    assert_eq!(ifaces[0]["name"], BRIDGE, "{result}");
    let idx = result["ips"][0]["interface"]
        .as_u64()
        .expect("ips[0].interface") as usize;
    assert_eq!(
        idx, 2,
        "ips[0].interface points at the container iface: {result}"
    );
    assert_eq!(ifaces[idx]["name"], "eth0", "{result}");
    assert_eq!(
        ifaces[idx]["sandbox"].as_str(),
        pod.path.to_str(),
        "sandbox is the netns path cnitool got: {result}"
    );
}

/// The pod side after ADD: eth0 with the address, default route via the gateway.
fn check_pod_state(pod: &PodNs, ip: &str) {
    let addrs = pod.ip_json(&["-4", "addr", "show", "dev", "eth0"]);
    let have: Vec<String> = addrs[0]["addr_info"]
        .as_array()
        .expect("addr_info")
        .iter()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
        .collect();
    assert_eq!(have, vec![format!("{ip}/24")], "pod eth0 addresses");
    let routes = pod.ip_json(&["-4", "route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], GATEWAY, "pod default route: {routes}");
    assert_eq!(routes[0]["dev"], "eth0", "pod default route: {routes}");
}

fn eth0_exists(pod: &PodNs) -> bool {
    pod.exec(&["ip", "link", "show", "dev", "eth0"])
        .status
        .success()
}

/// Full add/check/del cycle for two pods through cnitool.
fn cnitool_cycle(version: &str) {
    let Some(tool) = cnitool() else { return };
    let plugins = plugins_under_test();
    announce(&tool, &plugins);
    report(&format!("conflist cniVersion {version}"));

    let node = NodeNs::enter();
    node.assert_inside();
    let pod1 = PodNs::new();
    let pod2 = PodNs::new();
    let ct = Cnitool::new(tool, plugins, version);

    // ADD
    let r1: Value = serde_json::from_str(&ct.ok("add", &pod1)).expect("add result is JSON");
    let r2: Value = serde_json::from_str(&ct.ok("add", &pod2)).expect("add result is JSON");
    check_add_result(&r1, &pod1, version);
    check_add_result(&r2, &pod2, version);
    let (ip1, ip2) = (ipv4_of(&r1), ipv4_of(&r2));
    assert_ne!(ip1, ip2, "two pods got the same IP");
    check_pod_state(&pod1, &ip1);
    check_pod_state(&pod2, &ip2);
    assert_eq!(veth_names().len(), 2, "one host veth per pod");

    // The host-local lease and libcni's cache.
    let id1 = container_id(&pod1.path);
    assert_eq!(
        std::fs::read(ct.store().join(&ip1)).expect("lease file of pod1"),
        format!("{id1}\r\neth0").into_bytes()
    );
    let cache: Value = serde_json::from_slice(
        &std::fs::read(ct.cache_file(&pod1))
            .unwrap_or_else(|e| panic!("libcni cache {}: {e}", ct.cache_file(&pod1).display())),
    )
    .expect("cache is JSON");
    assert_eq!(cache["kind"], "cniCacheV1");
    assert_eq!(cache["containerId"], id1.as_str());
    assert_eq!(cache["networkName"], NET);
    assert_eq!(cache["ifName"], "eth0");
    assert_eq!(
        cache["result"]["ips"][0]["address"],
        format!("{ip1}/24").as_str(),
        "cached result: {cache}"
    );

    ping_from(&pod1, &ip2);
    ping_from(&pod2, &ip1);
    ping_from(&pod1, GATEWAY);

    // CHECK (libcni sends the cached result as prevResult).
    ct.ok("check", &pod1);
    ct.ok("check", &pod2);

    // DEL pod1, twice: the second has no cache, so no prevResult.
    ct.ok("del", &pod1);
    assert!(!ct.cache_file(&pod1).exists(), "DEL left libcni's cache");
    assert!(
        !ct.store().join(&ip1).exists(),
        "DEL left the lease of {ip1}"
    );
    assert!(!eth0_exists(&pod1), "DEL left eth0 in pod1");
    assert_eq!(veth_names().len(), 1, "DEL left pod1's host veth");
    ct.ok("del", &pod1);
    let after = ct.run("check", &pod1);
    assert!(!after.status.success(), "CHECK after DEL must fail");
    assert!(
        firewall_lines_with(&id1).is_empty(),
        "masquerade rules of {id1} left: {:?}",
        firewall_lines_with(&id1)
    );

    // DEL pod2: the node is clean again.
    ct.ok("del", &pod2);
    ct.ok("del", &pod2);
    assert_eq!(leases(&ct.store()), Vec::<String>::new(), "leases left");
    assert_eq!(veth_names(), Vec::<String>::new(), "veths left on the node");
    assert!(!eth0_exists(&pod2), "DEL left eth0 in pod2");
    assert!(
        firewall_lines_with(NET).is_empty(),
        "firewall rules of {NET} left: {:?}",
        firewall_lines_with(NET)
    );
    let cached = cache_entries(ct.cache.path());
    assert!(cached.is_empty(), "libcni cache entries left: {cached:?}");
}

// No 1.1.0 conflist here: libcni 1.1.2 (Debian bookworm's, also inside its
// containerd 1.6) knows result versions up to 1.0.0 only and rejects a 1.1.0
// result whatever the plugin ("unsupported CNI result version").

#[test]
fn cnitool_add_check_del_conflist_1_0_0() {
    require_root!();
    cnitool_cycle("1.0.0");
}

#[test]
fn cnitool_add_check_del_conflist_0_4_0() {
    require_root!();
    cnitool_cycle("0.4.0");
}

/// The machine's `/var/lib/cni` is untouched: cnitool's cache lives in the
/// bound temp dir only (checked from outside the private mount namespace).
#[test]
fn cnitool_never_touches_the_machines_cache_dir() {
    require_root!();
    let Some(tool) = cnitool() else { return };
    let plugins = plugins_under_test();
    announce(&tool, &plugins);
    let before = tree_snapshot(Path::new("/var/lib/cni"));
    let existed = Path::new("/var/lib/cni").exists();
    {
        let _node = NodeNs::enter();
        let pod = PodNs::new();
        let ct = Cnitool::new(tool, plugins, "1.0.0");
        ct.ok("add", &pod);
        assert!(ct.cache_file(&pod).is_file(), "cache in the bound temp dir");
        ct.ok("del", &pod);
    }
    assert_eq!(Path::new("/var/lib/cni").exists(), existed);
    assert_eq!(tree_snapshot(Path::new("/var/lib/cni")), before);
    // The wrapper itself: a command sees the temp dir at /var/lib/cni.
    let probe = TempDir::new("probe");
    std::fs::write(probe.path().join("marker"), b"x").expect("write marker");
    let out = run_ok(
        &mut PrivateMounts::new()
            .bind(probe.path(), "/var/lib/cni")
            .command(&["cat".into(), "/var/lib/cni/marker".into()]),
    );
    assert_eq!(out.stdout, b"x");
    assert!(!Path::new("/var/lib/cni/marker").exists());
}

/// A TCP server inside `pod` on `port` that answers each connection with
/// the peer's address; stops when dropped.
struct PodServer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PodServer {
    fn start(pod: &PodNs, port: u16) -> PodServer {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let path = pod.path.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            in_netns(&path);
            let l = std::net::TcpListener::bind(("0.0.0.0", port)).expect("bind in pod");
            l.set_nonblocking(true).expect("nonblocking");
            ready_tx.send(()).expect("ready");
            while !flag.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.write_all(peer.ip().to_string().as_bytes());
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        ready_rx.recv().expect("pod server ready");
        PodServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for PodServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Moves the calling thread into the netns at `path` (a namespace this
/// test created).
fn in_netns(path: &Path) {
    let ns = std::fs::File::open(path).expect("open pod netns");
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns pod");
}

/// What a TCP server at `addr` answers (its view of our address), or `None`.
fn tcp_answer(addr: &str) -> Option<String> {
    use std::io::Read;
    let addr: std::net::SocketAddr = addr.parse().expect("socket address");
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn lo_is_up(pod: &PodNs) -> bool {
    pod.ip_json(&["link", "show", "dev", "lo"])[0]["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"))
}

/// cnitool as a runtime drives a pod: `add` of the loopback network
/// (`CNI_IFNAME=lo`), then of the bridge + portmap conflist with the host
/// port in `CAP_ARGS` (libcni turns it into `runtimeConfig.portMappings`).
/// The DNAT must carry TCP from the node to the pod through the host port;
/// DEL must leave no rule, lease, veth or cache entry.
#[test]
fn cnitool_cap_args_port_mapping_through_bridge_portmap_and_loopback() {
    require_root!();
    let Some(tool) = cnitool() else { return };
    let plugins = plugins_under_test();
    // CNI_PATH falls back to /usr/lib/cni: make sure it is not used here.
    for p in ["bridge", "portmap", "loopback"] {
        assert!(
            plugins.join(p).is_file(),
            "{p} missing in {}",
            plugins.display()
        );
    }
    announce(&tool, &plugins);
    report("conflist bridge + portmap (CAP_ARGS portMappings), loopback .conf, cniVersion 1.0.0");
    let node = NodeNs::enter();
    node.assert_inside();
    let pod = PodNs::new();
    let ct = Cnitool::new(tool, plugins.clone(), "1.0.0").with_portmap_and_loopback();
    let lo_env = [("CNI_IFNAME", "lo")];
    let cap = json!({"portMappings": [
        {"hostPort": 7080, "containerPort": 8080, "protocol": "tcp"}]})
    .to_string();
    let cap_env = [("CAP_ARGS", cap.as_str())];

    // loopback: lo comes up, so the pod reaches itself on 127.0.0.1.
    assert!(!lo_is_up(&pod), "a fresh pod's lo is down");
    let lo: Value =
        serde_json::from_str(&ct.ok_with("add", LOOPBACK_NET, &pod, &lo_env)).expect("json");
    assert_eq!(lo["interfaces"][0]["name"], "lo", "{lo}");
    assert!(lo_is_up(&pod), "loopback ADD left lo down");
    let server = PodServer::start(&pod, 8080);
    let path = pod.path.clone();
    let self_answer = std::thread::spawn(move || {
        in_netns(&path);
        tcp_answer("127.0.0.1:8080")
    })
    .join()
    .expect("pod client");
    assert_eq!(
        self_answer.as_deref(),
        Some("127.0.0.1"),
        "pod → its own lo"
    );

    // bridge + portmap: nothing answers on the host port before ADD.
    assert_eq!(
        tcp_answer(&format!("{GATEWAY}:7080")),
        None,
        "no mapping yet"
    );
    let r: Value = serde_json::from_str(&ct.ok_with("add", NET, &pod, &cap_env)).expect("json");
    check_add_result(&r, &pod, "1.0.0");
    let ip = ipv4_of(&r);
    let id = container_id(&pod.path);
    let dnat = firewall_lines_with("CNI-DN-");
    assert!(
        dnat.iter().any(|l| l.contains(&format!("{ip}:8080"))),
        "no DNAT to {ip}:8080: {dnat:?}"
    );
    // From the node to its address on the bridge (DNAT in OUTPUT), and
    // through 127.0.0.1 (route_localnet + masquerade).
    assert_eq!(
        tcp_answer(&format!("{GATEWAY}:7080")).as_deref(),
        Some(GATEWAY),
        "node → {GATEWAY}:7080 → pod {ip}:8080"
    );
    assert!(
        tcp_answer("127.0.0.1:7080").is_some(),
        "node → 127.0.0.1:7080 → pod"
    );
    // CHECK with the cached result as prevResult. (Debian's 1.1.1 portmap
    // fails CHECK of an IPv4-only pod: upstream bug #819, fixed in 1.3.0.)
    if plugins != Path::new(REFERENCE_CNI_PATH) {
        ct.ok_with("check", NET, &pod, &cap_env);
        ct.ok_with("check", LOOPBACK_NET, &pod, &lo_env);
    }

    // DEL, then DEL again without CAP_ARGS and without a cache (as a
    // runtime repeats it).
    ct.ok_with("del", NET, &pod, &cap_env);
    ct.ok_with("del", NET, &pod, &[]);
    assert_eq!(
        tcp_answer(&format!("{GATEWAY}:7080")),
        None,
        "host port still open after DEL"
    );
    assert!(
        firewall_lines_with("CNI-DN-").is_empty(),
        "DNAT chains left: {:?}",
        firewall_lines_with("CNI-DN-")
    );
    assert!(
        firewall_lines_with(&id).is_empty(),
        "rules of {id} left: {:?}",
        firewall_lines_with(&id)
    );
    assert_eq!(leases(&ct.store()), Vec::<String>::new(), "leases left");
    assert_eq!(veth_names(), Vec::<String>::new(), "veths left on the node");
    assert!(!eth0_exists(&pod), "DEL left eth0 in the pod");
    drop(server);

    ct.ok_with("del", LOOPBACK_NET, &pod, &lo_env);
    assert!(!lo_is_up(&pod), "loopback DEL left lo up");
    let cached = cache_entries(ct.cache.path());
    assert!(cached.is_empty(), "libcni cache entries left: {cached:?}");
}
