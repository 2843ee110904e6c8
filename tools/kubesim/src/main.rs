//! kubesim: a kubelet + container runtime on one machine, for watching the
//! CNI plugins do Kubernetes pod networking. Everything happens inside
//! network namespaces kubesim creates; the machine's own network is never
//! touched. Run `kubesim demo` for the whole story, or `kubesim help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::harness::cluster::{self, UpOptions};
use crate::harness::pod::{self, PodSpec};
use crate::harness::state::DEFAULT_STATE_DIR;
use crate::harness::{child, demo, table, teardown, Harness, HarnessError};
use cni::runtime::Attachment;

mod args;
mod containerd;
mod cri;
mod harness;
use args::{parse, Opts};

const USAGE: &str = "\
usage: kubesim [--state-dir DIR] [--quiet] COMMAND [ARGS]

  demo                       build a 2-node cluster, run every check, tear down
                             (state dir default /run/kubesim-demo)
  up [--nodes N]             create N nodes (default 2) joined by an underlay
  run-pod NAME [--namespace NS] [--node NODE] [--container NAME:PORT]...
                             start a pod sandbox (CNI ADD) with echo-server
                             containers (default app:8080)
  delete-pod POD             stop containers, CNI DEL, remove the sandbox
  add-container POD NAME:PORT
  restart POD CONTAINER      kill and start a container again (no CNI call)
  exec POD -- CMD [ARGS]     run a command inside the pod's netns
  check POD                  CNI CHECK of the pod's attachment
  gc [--none-valid]          CNI GC per node (valid = the running pods)
  status [--json]            nodes and pods
  down                       remove everything (works after a crash)

options of up and demo:
  --cni-bin-dir DIR   plugin dir (default: kubesim's own dir if it holds bridge
                      and host-local, else /opt/cni/bin, else /usr/lib/cni)
  --conflist FILE     conflist template (default conf/10-bridge.conflist)
  --cni-version V     force the network's cniVersion (e.g. 1.0.0 for old plugins)
  --nodes N
POD is NAME or NAMESPACE/NAME. State dir default: /run/kubesim.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Helpers first: __pause must unshare before any thread exists.
    if let Some(code) = run_helper(&args) {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("kubesim: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The hidden helper subcommands (`kubesim __x --state-dir DIR …`).
fn run_helper(args: &[String]) -> Option<i32> {
    let cmd = args.first()?;
    if !cmd.starts_with("__") {
        return None;
    }
    let rest: Vec<&str> = strip_state_dir(&args[1..]);
    Some(match (cmd.as_str(), rest.as_slice()) {
        ("__pause", _) => child::pause_main(),
        ("__echo-server", [port, name]) => match port.parse() {
            Ok(p) => child::echo_server_main(p, name),
            Err(_) => bad_helper(cmd),
        },
        ("__tcp-check", [host, port, tail @ ..]) => {
            let expect = match tail {
                ["--expect", name] => Some(*name),
                [] => None,
                _ => return Some(bad_helper(cmd)),
            };
            match port.parse() {
                Ok(p) => child::tcp_check_main(host, p, expect),
                Err(_) => bad_helper(cmd),
            }
        }
        _ => bad_helper(cmd),
    })
}

fn strip_state_dir(args: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--state-dir" {
            it.next();
        } else {
            out.push(a.as_str());
        }
    }
    out
}

fn bad_helper(cmd: &str) -> i32 {
    println!("error: bad arguments for {cmd}");
    2
}

fn run(args: Vec<String>) -> Result<u8, HarnessError> {
    let opts = parse(args)?;
    let Some(command) = opts.positional.first().cloned() else {
        println!("{USAGE}");
        return Ok(2);
    };
    if command == "help" || opts.has("--help") {
        println!("{USAGE}");
        return Ok(0);
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(HarnessError::Usage(
            "kubesim needs root: it creates network namespaces (run it with sudo)".into(),
        ));
    }
    let default_dir = if command == "demo" {
        "/run/kubesim-demo"
    } else {
        DEFAULT_STATE_DIR
    };
    let state_dir = PathBuf::from(opts.get("--state-dir").unwrap_or(default_dir));
    if command != "up" && command != "demo" && !state_dir.exists() {
        if command == "down" {
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
    h.verbose = !opts.has("--quiet");
    let out = dispatch(&h, &command, &opts);
    // A failed `up` into a fresh dir leaves nothing behind, not even the dir.
    if out.is_err() && created && command == "up" {
        let _ = std::fs::remove_dir_all(&h.dir.root);
    }
    out
}

fn arg<'a>(opts: &'a Opts, i: usize, what: &str) -> Result<&'a str, HarnessError> {
    opts.positional
        .get(i)
        .map(String::as_str)
        .ok_or_else(|| HarnessError::Usage(format!("missing {what}; see `kubesim help`")))
}

fn dispatch(h: &Harness, command: &str, opts: &Opts) -> Result<u8, HarnessError> {
    match command {
        "demo" => run_demo(h, opts),
        "up" => {
            let state = cluster::up(h, &up_options(opts, 2)?)?;
            println!("cluster up in {}", h.dir.root.display());
            print!("{}", table::nodes_table(&state));
            Ok(0)
        }
        "run-pod" => {
            let (namespace, name) = pod::split_key(arg(opts, 1, "pod name")?);
            let namespace = opts
                .get("--namespace")
                .map(String::from)
                .unwrap_or(namespace);
            let mut containers = Vec::new();
            for spec in opts.all("--container") {
                containers.push(container_spec(spec)?);
            }
            if containers.is_empty() {
                containers.push(("app".to_string(), 8080));
            }
            let spec = PodSpec {
                namespace,
                name,
                node: opts.get("--node").map(String::from),
                containers,
            };
            let p = pod::run_pod(h, &spec)?;
            println!(
                "{} node={} ip={} sandbox={}",
                p.key(),
                p.node,
                p.ips.join(","),
                p.sandbox_id
            );
            Ok(0)
        }
        "delete-pod" => {
            let p = pod::delete_pod(h, arg(opts, 1, "pod")?)?;
            println!("deleted {} (sandbox {})", p.key(), p.short_id());
            Ok(0)
        }
        "add-container" => {
            let (name, port) = container_spec(arg(opts, 2, "NAME:PORT")?)?;
            let c = pod::add_container(h, arg(opts, 1, "pod")?, &name, port)?;
            println!("started {} on :{}", c.name, c.port);
            Ok(0)
        }
        "restart" => {
            let c = pod::restart_container(h, arg(opts, 1, "pod")?, arg(opts, 2, "container")?)?;
            println!("restarted {} (restarts {})", c.name, c.restarts);
            Ok(0)
        }
        "exec" => {
            let status = pod::exec(h, arg(opts, 1, "pod")?, &opts.after_dashes)?;
            Ok(status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1))
        }
        "check" => {
            pod::cni_check(h, arg(opts, 1, "pod")?)?;
            println!("CHECK ok");
            Ok(0)
        }
        "gc" => run_gc(h, opts.has("--none-valid")),
        "status" => status(h, opts.has("--json")),
        "down" => {
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
        other => Err(HarnessError::Usage(format!(
            "unknown command {other:?}; see `kubesim help`"
        ))),
    }
}

fn container_spec(spec: &str) -> Result<(String, u16), HarnessError> {
    let bad = || HarnessError::Usage(format!("container must be NAME:PORT, got {spec:?}"));
    let (name, port) = spec.split_once(':').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    Ok((name.to_string(), port.parse().map_err(|_| bad())?))
}

fn default_cni_bin_dir() -> PathBuf {
    let has = |d: &Path| d.join("bridge").is_file() && d.join("host-local").is_file();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        if has(&dir) {
            return dir;
        }
    }
    let opt = PathBuf::from("/opt/cni/bin");
    if has(&opt) {
        return opt;
    }
    PathBuf::from("/usr/lib/cni")
}

fn up_options(opts: &Opts, default_nodes: u8) -> Result<UpOptions, HarnessError> {
    let nodes = match opts.get("--nodes") {
        Some(n) => n
            .parse()
            .map_err(|_| HarnessError::Usage(format!("--nodes: not a number: {n}")))?,
        None => default_nodes,
    };
    Ok(UpOptions {
        nodes,
        cni_bin_dir: opts
            .get("--cni-bin-dir")
            .map(PathBuf::from)
            .unwrap_or_else(default_cni_bin_dir),
        conflist: opts.get("--conflist").map(PathBuf::from),
        cni_version: opts.get("--cni-version").map(String::from),
    })
}

fn run_demo(h: &Harness, opts: &Opts) -> Result<u8, HarnessError> {
    let up = up_options(opts, 2)?;
    println!(
        "kubesim demo: plugins from {}, state in {}",
        up.cni_bin_dir.display(),
        h.dir.root.display()
    );
    println!(
        "(if interrupted, clean up with: kubesim down --state-dir {})",
        h.dir.root.display()
    );
    let report = demo::run(h, &up)?;
    println!("\nNODES\n{}", report.nodes);
    println!("PODS (before the final cleanup)\n{}", report.pods);
    println!("CHECKS\n{}", report.checks_table());
    let passed = report.checks.iter().filter(|c| c.ok).count();
    println!("{passed}/{} checks passed", report.checks.len());
    Ok(if report.all_ok() { 0 } else { 1 })
}

fn run_gc(h: &Harness, none_valid: bool) -> Result<u8, HarnessError> {
    let _lock = h.dir.lock()?;
    let state = cluster::require_state(h)?;
    let mut failed = false;
    for node in &state.nodes {
        let valid: Vec<Attachment> = if none_valid {
            Vec::new()
        } else {
            state
                .pods
                .iter()
                .filter(|p| p.node == node.name)
                .map(|p| Attachment {
                    container_id: p.sandbox_id.clone(),
                    ifname: pod::POD_IFNAME.into(),
                })
                .collect()
        };
        let (rt, list) = cluster::node_runtime(h, &state, node)?;
        match rt.gc_network_list(&list, Some(&valid)) {
            Ok(r) => println!(
                "{}: {} valid, {} stale attachments deleted, GC sent to {} plugins",
                node.name,
                valid.len(),
                r.stale_deleted.len(),
                r.plugins_collected
            ),
            Err(e) => {
                failed = true;
                eprintln!("{}: GC failed: {e}", node.name);
            }
        }
    }
    Ok(u8::from(failed))
}

fn status(h: &Harness, json: bool) -> Result<u8, HarnessError> {
    let state = cluster::require_state(h)?;
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
