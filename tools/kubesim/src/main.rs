//! kubesim: a kubelet + container runtime on one machine, for watching the
//! CNI plugins do Kubernetes pod networking. Everything happens inside
//! network namespaces kubesim creates; the machine's own network is never
//! touched. Run `kubesim demo` for the whole story, or `kubesim help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::harness::cluster::{self, ContainerRuntime, UpOptions};
use crate::harness::pod::{self, PodSpec};
use crate::harness::state::DEFAULT_STATE_DIR;
use crate::harness::{child, demo, lookup, loopback, table, teardown, Harness, HarnessError};
use cli::{Cli, Command, HelperCommand, UserCommand};
use cni::runtime::Attachment;

mod cli;
mod containerd;
mod cri;
mod harness;

fn main() -> ExitCode {
    // Parsing starts no thread, so `__pause` can still unshare its netns.
    // Usage errors exit 2 with the usage on stderr; --help/--version exit 0.
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Helper(helper) => {
            return ExitCode::from(u8::try_from(run_helper(&helper)).unwrap_or(1))
        }
        Command::User(command) => command,
    };
    match run(cli.state_dir, cli.quiet, &command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("kubesim: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The hidden helper subcommands; their exit code.
fn run_helper(helper: &HelperCommand) -> i32 {
    match helper {
        HelperCommand::Pause { role } => child::pause_main(role),
        HelperCommand::EchoServer { port, name } => child::echo_server_main(*port, name),
        HelperCommand::TcpCheck { host, port, expect } => {
            child::tcp_check_main(host, *port, expect.as_deref())
        }
    }
}

fn run(state_dir: Option<PathBuf>, quiet: bool, command: &UserCommand) -> Result<u8, HarnessError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(HarnessError::Usage(
            "kubesim needs root: it creates network namespaces (run it with sudo)".into(),
        ));
    }
    let builds = matches!(
        command,
        UserCommand::Up(_) | UserCommand::Demo(_) | UserCommand::Soak(_)
    );
    let default_dir = match command {
        UserCommand::Demo(_) => "/run/kubesim-demo",
        UserCommand::Soak(_) => "/run/kubesim-soak",
        _ => DEFAULT_STATE_DIR,
    };
    let state_dir = state_dir.unwrap_or_else(|| PathBuf::from(default_dir));
    if !builds && !state_dir.exists() {
        if matches!(command, UserCommand::Down) {
            println!("nothing to do: {} does not exist", state_dir.display());
            return Ok(0);
        }
        return Err(HarnessError::Usage(format!(
            "no cluster in {}; run `kubesim up` first",
            state_dir.display()
        )));
    }
    let exe = std::env::current_exe().map_err(HarnessError::io("find kubesim executable"))?;
    let created = !state_dir.exists();
    let mut h = Harness::new(&state_dir, exe)?;
    h.verbose = !quiet;
    let out = dispatch(&h, command);
    // A failed `up` into a fresh dir leaves nothing behind, not even the dir.
    if out.is_err() && created && matches!(command, UserCommand::Up(_)) {
        let _ = std::fs::remove_dir_all(&h.dir.root);
    }
    out
}

fn dispatch(h: &Harness, command: &UserCommand) -> Result<u8, HarnessError> {
    let pod_command = !matches!(
        command,
        UserCommand::Demo(_)
            | UserCommand::Up(_)
            | UserCommand::Soak(_)
            | UserCommand::Status { .. }
            | UserCommand::Down
    );
    if pod_command {
        if let Some(state) = h.dir.load()? {
            if containerd::node::in_use(h, &state) {
                return Err(HarnessError::Usage(
                    "this cluster runs pods through containerd: pod commands drive the builtin \
                     runtime only (use `kubesim demo --runtime containerd`, `status`, `down`)"
                        .into(),
                ));
            }
        }
    }
    match command {
        UserCommand::Demo(up) => run_demo(h, &up.to_options()),
        UserCommand::Soak(args) => run_soak(h, args),
        UserCommand::Up(up) => {
            let opts = up.to_options();
            let state = match opts.runtime {
                ContainerRuntime::Builtin => cluster::up(h, &opts)?,
                ContainerRuntime::Containerd => {
                    let kubelets = containerd::demo::up(h, &opts)?;
                    for k in &kubelets {
                        if let Ok(v) = k.cri.version() {
                            println!("{}: {} {}", k.node, v.runtime_name, v.runtime_version);
                        }
                    }
                    lookup::require_state(h)?
                }
            };
            println!(
                "cluster up in {} (runtime {})",
                h.dir.root.display(),
                opts.runtime.name()
            );
            print!("{}", table::nodes_table(&state));
            Ok(0)
        }
        UserCommand::RunPod {
            pod: key,
            namespace,
            node,
            containers,
            host_ports,
        } => {
            let (from_key, name) = pod::split_key(key);
            let mut containers = containers.clone();
            if containers.is_empty() {
                containers.push(("app".to_string(), 8080));
            }
            let spec = PodSpec {
                namespace: namespace.clone().unwrap_or(from_key),
                name,
                node: node.clone(),
                containers,
                host_ports: host_ports.clone(),
            };
            let p = pod::run_pod(h, &spec)?;
            let ports: Vec<String> = p.host_ports.iter().map(ToString::to_string).collect();
            println!(
                "{} node={} ip={} sandbox={}{}",
                p.key(),
                p.node,
                p.ips.join(","),
                p.sandbox_id,
                if ports.is_empty() {
                    String::new()
                } else {
                    format!(" host-ports={}", ports.join(","))
                }
            );
            Ok(0)
        }
        UserCommand::DeletePod { pod } => {
            let p = pod::delete_pod(h, pod)?;
            println!("deleted {} (sandbox {})", p.key(), p.short_id());
            Ok(0)
        }
        UserCommand::AddContainer {
            pod,
            container: (name, port),
        } => {
            let c = pod::add_container(h, pod, name, *port)?;
            println!("started {} on :{}", c.name, c.port);
            Ok(0)
        }
        UserCommand::Restart { pod, container } => {
            let c = pod::restart_container(h, pod, container)?;
            println!("restarted {} (restarts {})", c.name, c.restarts);
            Ok(0)
        }
        UserCommand::Exec { pod, argv } => {
            let status = pod::exec(h, pod, argv)?;
            Ok(status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1))
        }
        UserCommand::Check { pod } => {
            pod::cni_check(h, pod)?;
            println!("CHECK ok");
            Ok(0)
        }
        UserCommand::Gc { none_valid } => run_gc(h, *none_valid),
        UserCommand::Status { json } => status(h, *json),
        UserCommand::Down => {
            let r = teardown::down(h)?;
            for w in &r.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "down: {} pods deleted, {} processes stopped",
                r.pods_deleted, r.processes_killed
            );
            Ok(0)
        }
    }
}

fn run_demo(h: &Harness, up: &UpOptions) -> Result<u8, HarnessError> {
    println!(
        "kubesim demo: runtime {}, plugins from {}, state in {}",
        up.runtime.name(),
        up.cni_bin_dir.display(),
        h.dir.root.display()
    );
    println!(
        "(if interrupted, clean up with: kubesim down --state-dir {})",
        h.dir.root.display()
    );
    let report = match up.runtime {
        ContainerRuntime::Builtin => demo::run(h, up)?,
        ContainerRuntime::Containerd => containerd::demo::run(h, up)?,
    };
    println!("\nNODES\n{}", report.nodes);
    println!("PODS (before the final cleanup)\n{}", report.pods);
    println!("CHECKS\n{}", report.checks_table());
    if !report.notes.is_empty() {
        println!("WHAT IT SHOWS");
        for n in &report.notes {
            println!("  {n}");
        }
        println!();
    }
    let passed = report.checks.iter().filter(|c| c.ok).count();
    println!("{passed}/{} checks passed", report.checks.len());
    Ok(if report.all_ok() { 0 } else { 1 })
}

fn run_soak(h: &Harness, args: &cli::SoakArgs) -> Result<u8, HarnessError> {
    if args.runtime != ContainerRuntime::Containerd {
        return Err(HarnessError::Usage(
            "soak drives a real runtime: use --runtime containerd".into(),
        ));
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default()
    });
    let opts = containerd::soak::SoakOptions {
        up: args.up_options(),
        pods: args.pods as usize,
        workers: args.workers as usize,
        hold: args.hold as usize,
        seed,
        kill_rate: args.kill_rate,
        restart: !args.no_restart,
    };
    println!(
        "kubesim soak: {} sandboxes, runtime containerd, plugins from {}, seed {seed}, state in {}",
        opts.pods,
        opts.up.cni_bin_dir.display(),
        h.dir.root.display()
    );
    println!(
        "(if interrupted, clean up with: kubesim down --state-dir {})",
        h.dir.root.display()
    );
    let report = containerd::soak::run(h, &opts)?;
    println!("\nSOAK");
    for line in report.lines() {
        println!("  {line}");
    }
    if !report.samples.is_empty() {
        println!("FAILURE MESSAGES SEEN (a sample)");
        for s in &report.samples {
            println!("  {s}");
        }
    }
    if report.ok() {
        println!("PASS: no IP held by two live pods; nothing left after GC");
        Ok(0)
    } else {
        for f in &report.failures {
            println!("FAIL: {f}");
        }
        Ok(1)
    }
}

/// GC per node of both networks the runtime attaches: the node's conflist
/// (`eth0`) and the loopback network (`lo`).
fn run_gc(h: &Harness, none_valid: bool) -> Result<u8, HarnessError> {
    let _lock = h.dir.lock()?;
    let state = lookup::require_state(h)?;
    let mut failed = false;
    for node in &state.nodes {
        let pods: Vec<&str> = state
            .pods
            .iter()
            .filter(|p| p.node == node.name && !none_valid)
            .map(|p| p.sandbox_id.as_str())
            .collect();
        let (rt, main) = lookup::node_runtime(h, &state, node)?;
        let networks = [
            (main, pod::POD_IFNAME),
            (loopback::network()?, loopback::IFNAME),
        ];
        for (list, ifname) in &networks {
            let valid: Vec<Attachment> = pods
                .iter()
                .map(|id| Attachment {
                    container_id: id.to_string(),
                    ifname: ifname.to_string(),
                })
                .collect();
            match rt.gc_network_list(list, Some(&valid)) {
                Ok(r) => println!(
                    "{} network {}: {} valid, {} stale attachments deleted, GC sent to {} plugins",
                    node.name,
                    list.name,
                    valid.len(),
                    r.stale_deleted.len(),
                    r.plugins_collected
                ),
                Err(e) => {
                    failed = true;
                    eprintln!("{} network {}: GC failed: {e}", node.name, list.name);
                }
            }
        }
    }
    Ok(u8::from(failed))
}

fn status(h: &Harness, json: bool) -> Result<u8, HarnessError> {
    let state = lookup::require_state(h)?;
    if json {
        let text =
            serde_json::to_string_pretty(&state).map_err(|e| HarnessError::Usage(e.to_string()))?;
        println!("{text}");
        return Ok(0);
    }
    println!(
        "state dir {} (plugins from {})",
        h.dir.root.display(),
        state.cni_bin_dir.display()
    );
    if containerd::node::in_use(h, &state) {
        println!("\nNODES\n{}", table::nodes_table(&state));
        println!(
            "PODS (ListPodSandbox)\n{}",
            containerd::node::pods_table(h, &state)?
        );
        return Ok(0);
    }
    println!("\nNODES\n{}", table::nodes_table(&state));
    println!("PODS\n{}", table::pods_table(&state));
    // After a crash or a manual kill, say what is gone.
    let root = &h.dir.root;
    let holders = state
        .nodes
        .iter()
        .map(|n| (format!("node {}", n.name), &n.holder))
        .chain(
            state
                .pods
                .iter()
                .map(|p| (format!("pod {}", p.key()), &p.pause)),
        );
    for (what, rec) in holders {
        if !rec.is_ours(root) {
            println!(
                "warning: {what}: its netns holder (pid {}) is gone; run `kubesim down`",
                rec.pid
            );
        }
    }
    Ok(0)
}
