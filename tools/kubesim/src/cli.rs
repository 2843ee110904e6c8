//! The command line, declared with clap: every command and flag, its help
//! text, and the value checks that make a typo a usage error (exit 2)
//! instead of a silently different cluster.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::harness::cluster::{ContainerRuntime, UpOptions};
use crate::harness::hostport::HostPort;

/// Help heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// A kubelet + container runtime on one machine, for watching the CNI
/// plugins do Kubernetes pod networking
///
/// Everything happens inside network namespaces kubesim creates; the
/// machine's own network is never touched. Needs root.
#[derive(Debug, Parser)]
#[command(
    name = "kubesim",
    version,
    arg_required_else_help = true,
    // Later values win, so scripts can append to a default command line.
    args_override_self = true,
    after_help = "POD is NAME or NAMESPACE/NAME.\n\
                  Run `kubesim demo` for the whole story, or `kubesim COMMAND --help`."
)]
pub struct Cli {
    /// State dir [default: /run/kubesim; /run/kubesim-demo for demo]
    #[arg(long, global = true, value_name = "DIR", help_heading = GLOBAL)]
    pub state_dir: Option<PathBuf>,
    /// Print no progress lines
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands, plus the hidden helpers kubesim re-executes itself as.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// What users run.
    #[command(flatten)]
    User(UserCommand),
    /// What kubesim runs as its helper processes.
    #[command(flatten)]
    Helper(HelperCommand),
}

/// The commands `kubesim help` lists.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Build a cluster, run every check, tear it down
    Demo(UpArgs),
    /// Create nodes joined by an underlay
    Up(UpArgs),
    /// Many pod sandboxes through containerd while plugins are killed and
    /// containerd restarts; then check nothing leaked
    Soak(SoakArgs),
    /// Start a pod sandbox (CNI ADD) with echo-server containers
    RunPod {
        /// Pod name (NAME or NAMESPACE/NAME)
        #[arg(value_name = "POD")]
        pod: String,
        /// Kubernetes namespace (overrides NAMESPACE/ in POD)
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
        /// Node to run on [default: the node with the fewest pods]
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// A container, repeatable [default: app:8080]
        #[arg(long = "container", value_name = "NAME:PORT", value_parser = container_spec)]
        containers: Vec<(String, u16)>,
        /// Map the node's port HOST to the pod's CONTAINER (a hostPort,
        /// through the portmap plugin; proto tcp, udp or sctp, default
        /// tcp), repeatable
        #[arg(long = "host-port", value_name = "HOST:CONTAINER[/PROTO]", value_parser = HostPort::parse)]
        host_ports: Vec<HostPort>,
    },
    /// Stop containers, CNI DEL, remove the sandbox
    DeletePod {
        /// The pod
        pod: String,
    },
    /// Start one more container in a running pod (no CNI call)
    AddContainer {
        /// The pod
        pod: String,
        /// The container
        #[arg(value_name = "NAME:PORT", value_parser = container_spec)]
        container: (String, u16),
    },
    /// Kill and start a container again (no CNI call)
    Restart {
        /// The pod
        pod: String,
        /// Container name
        container: String,
    },
    /// Run a command inside the pod's netns: exec POD -- CMD [ARGS]...
    Exec {
        /// The pod
        pod: String,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "CMD")]
        argv: Vec<String>,
    },
    /// CNI CHECK of the pod's attachment
    Check {
        /// The pod
        pod: String,
    },
    /// CNI GC per node (valid = the running pods)
    Gc {
        /// Declare no attachment valid (everything is collected)
        #[arg(long)]
        none_valid: bool,
    },
    /// Nodes and pods
    Status {
        /// The whole state as JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove everything (works after a crash)
    Down,
}

/// Hidden helpers, started by kubesim with `--state-dir` so that their
/// command line names the cluster they belong to.
#[derive(Debug, Subcommand)]
pub enum HelperCommand {
    /// Creates and holds a netns until killed; ROLE only labels the process.
    #[command(name = "__pause", hide = true)]
    Pause {
        /// `underlay`, `node NAME` or `pod KEY`
        role: Vec<String>,
    },
    /// A container: echoes pings on PORT, answering as NAME.
    #[command(name = "__echo-server", hide = true)]
    EchoServer {
        /// Port to listen on
        port: u16,
        /// Name it answers with
        name: String,
    },
    /// One TCP probe (run inside a pod by `exec`).
    #[command(name = "__tcp-check", hide = true)]
    TcpCheck {
        /// Server address
        host: String,
        /// Server port
        port: u16,
        /// Fail unless the server answers with this name
        #[arg(long, value_name = "NAME")]
        expect: Option<String>,
    },
}

/// Options of `up` and `demo`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of nodes
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub nodes: u8,
    /// Plugin dir [default: kubesim's own dir if it holds bridge,
    /// host-local, loopback and portmap, else /opt/cni/bin, else /usr/lib/cni]
    #[arg(long, value_name = "DIR")]
    pub cni_bin_dir: Option<PathBuf>,
    /// Conflist template [default: built-in 10-bridge.conflist]
    #[arg(long, value_name = "FILE")]
    pub conflist: Option<PathBuf>,
    /// Force the network's cniVersion (e.g. 1.0.0 for older plugins)
    #[arg(long, value_name = "V")]
    pub cni_version: Option<String>,
    /// Container runtime that makes the CNI calls
    #[arg(long, value_enum, value_name = "RUNTIME", default_value_t)]
    pub runtime: ContainerRuntime,
}

impl UpArgs {
    /// The harness options, with the plugin dir defaulted.
    pub fn to_options(&self) -> UpOptions {
        UpOptions {
            nodes: self.nodes,
            cni_bin_dir: self.cni_bin_dir.clone().unwrap_or_else(default_cni_bin_dir),
            conflist: self.conflist.clone(),
            cni_version: self.cni_version.clone(),
            runtime: self.runtime,
        }
    }
}

/// Options of `soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Pod sandboxes to run, in all
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub pods: u32,
    /// Concurrent workers (the kubelet's pod workers)
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Most sandboxes one worker keeps running at once
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub hold: u32,
    /// Share of plugin processes (bridge, host-local, portmap, loopback)
    /// SIGKILLed while they run, 0 to 1
    #[arg(long, value_name = "P", default_value_t = 0.02, value_parser = kill_rate)]
    pub kill_rate: f64,
    /// Seed of the random choices [default: from the clock, printed]
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Do not kill and restart node-1's containerd midway
    #[arg(long)]
    pub no_restart: bool,
    /// Number of nodes
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub nodes: u8,
    /// Plugin dir [default: as for `up`]
    #[arg(long, value_name = "DIR")]
    pub cni_bin_dir: Option<PathBuf>,
    /// Conflist template [default: built-in 10-bridge.conflist with ipMasq on]
    #[arg(long, value_name = "FILE")]
    pub conflist: Option<PathBuf>,
    /// Container runtime (only containerd: the soak is about a real one)
    #[arg(long, value_enum, value_name = "RUNTIME", default_value_t = ContainerRuntime::Containerd)]
    pub runtime: ContainerRuntime,
}

impl SoakArgs {
    /// The cluster options of the soak.
    pub fn up_options(&self) -> UpOptions {
        UpOptions {
            nodes: self.nodes,
            cni_bin_dir: self.cni_bin_dir.clone().unwrap_or_else(default_cni_bin_dir),
            conflist: self.conflist.clone(),
            cni_version: None,
            runtime: self.runtime,
        }
    }
}

/// A probability.
fn kill_rate(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| format!("expected a number from 0 to 1, got {s:?}"))
}

/// `NAME:PORT` of a container.
fn container_spec(spec: &str) -> Result<(String, u16), String> {
    let bad = || format!("expected NAME:PORT, got {spec:?}");
    let (name, port) = spec.split_once(':').ok_or_else(bad)?;
    if name.is_empty() {
        return Err(bad());
    }
    Ok((name.to_string(), port.parse().map_err(|_| bad())?))
}

/// The plugins the default conflist and the runtime itself (`lo`) need.
const DEFAULT_PLUGINS: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];

/// Our own plugins when they sit next to kubesim (a build or release dir),
/// else the usual install locations.
fn default_cni_bin_dir() -> PathBuf {
    let has = |d: &Path| DEFAULT_PLUGINS.iter().all(|p| d.join(p).is_file());
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubesim").chain(line.split_whitespace()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_anywhere_and_exec_command_verbatim() {
        let cli = parse("exec web --state-dir /tmp/x --quiet -- ip --json addr").expect("parse");
        assert_eq!(cli.state_dir, Some(PathBuf::from("/tmp/x")));
        assert!(cli.quiet);
        match cli.command {
            Command::User(UserCommand::Exec { pod, argv }) => {
                assert_eq!(pod, "web");
                assert_eq!(argv, ["ip", "--json", "addr"]);
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = parse("run-pod p --container a:1 --container=b:2 --host-port 5000:1/udp")
            .expect("parse");
        match cli.command {
            Command::User(UserCommand::RunPod {
                containers,
                host_ports,
                ..
            }) => {
                assert_eq!(containers, [("a".into(), 1), ("b".into(), 2)]);
                assert_eq!(host_ports.len(), 1);
                assert_eq!(host_ports[0].to_string(), "5000:1/udp");
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn a_repeated_flag_takes_its_last_value() {
        let cli = parse("--quiet up --nodes 1 --quiet --nodes 3 --cni-bin-dir /a --cni-bin-dir /b")
            .expect("parse");
        match cli.command {
            Command::User(UserCommand::Up(up)) => {
                assert_eq!(up.nodes, 3);
                assert_eq!(up.cni_bin_dir, Some(PathBuf::from("/b")));
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn soak_defaults_and_flags() {
        match parse("soak").expect("parse").command {
            Command::User(UserCommand::Soak(a)) => {
                assert_eq!((a.pods, a.workers, a.nodes), (1000, 6, 1));
                assert_eq!(a.runtime, ContainerRuntime::Containerd);
                assert!(!a.no_restart && a.seed.is_none());
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli =
            parse("soak --runtime containerd --pods 80 --seed 7 --kill-rate 0.1 --no-restart")
                .expect("parse");
        match cli.command {
            Command::User(UserCommand::Soak(a)) => {
                assert_eq!((a.pods, a.seed, a.kill_rate), (80, Some(7), 0.1));
                assert!(a.no_restart);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn typos_and_missing_values_are_usage_errors() {
        let kind = |line| parse(line).map(|_| ()).unwrap_err().kind();
        assert_eq!(kind("up --node 3"), ErrorKind::UnknownArgument);
        assert_eq!(kind("demo --anything"), ErrorKind::UnknownArgument);
        assert_eq!(kind("up --nodes"), ErrorKind::InvalidValue);
        assert_eq!(kind("up --nodes many"), ErrorKind::ValueValidation);
        assert_eq!(kind("up --runtime rkt"), ErrorKind::InvalidValue);
        assert_eq!(
            kind("run-pod p --container app"),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            kind("run-pod p --host-port 5000"),
            ErrorKind::ValueValidation
        );
        assert_eq!(kind("exec web"), ErrorKind::MissingRequiredArgument);
        assert_eq!(kind("restart web"), ErrorKind::MissingRequiredArgument);
        assert_eq!(kind("soak --kill-rate 1.5"), ErrorKind::ValueValidation);
        assert_eq!(kind("soak --pods 0"), ErrorKind::ValueValidation);
        assert_eq!(kind("soak --workers 0"), ErrorKind::ValueValidation);
    }

    #[test]
    fn helpers_parse_as_launched() {
        let cli = parse("__pause --state-dir /run/x pod default/web").expect("parse");
        assert!(
            matches!(cli.command, Command::Helper(HelperCommand::Pause { role }) if role == ["pod", "default/web"])
        );
        let cli = parse("__echo-server --state-dir /run/x 8080 default/web/app").expect("parse");
        assert!(matches!(
            cli.command,
            Command::Helper(HelperCommand::EchoServer { port: 8080, .. })
        ));
        let cli = parse("__tcp-check 10.0.0.2 80 --expect default/web/app").expect("parse");
        assert!(matches!(
            cli.command,
            Command::Helper(HelperCommand::TcpCheck {
                expect: Some(_),
                ..
            })
        ));
        let help = Cli::command().render_help().to_string();
        assert!(!help.contains("__"), "helpers stay hidden: {help}");
    }
}
