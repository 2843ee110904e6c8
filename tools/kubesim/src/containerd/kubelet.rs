//! The kubelet's side of CRI: what it sends to run, restart and delete a
//! pod, and where it reads its facts (the pod IP from `PodSandboxStatus`,
//! container state from `ContainerStatus`, pods from `ListPodSandbox`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::config::NodeDirs;
use super::error::{cri, NodeError, Result};
use super::image::APP_IMAGE;
use crate::cri::api;
use crate::cri::CriClient;
use crate::harness::hostport::HostPort;

/// Cluster DNS a kubelet puts in every pod's resolv.conf (`ClusterFirst`).
pub const CLUSTER_DNS: &str = "10.96.0.10";
/// The grace period of StopContainer in a restart (the pod's
/// terminationGracePeriodSeconds; busybox httpd exits on SIGTERM at once).
const STOP_GRACE_SECS: i64 = 2;
/// How long a started container may take to be RUNNING or EXITED.
const STATE_TIMEOUT: Duration = Duration::from_secs(20);

/// The kubelet of one node, talking to that node's containerd.
pub struct Kubelet {
    /// The node name.
    pub node: String,
    /// The CRI connection.
    pub cri: CriClient,
    /// The node's containerd dirs (pod log dirs live there).
    pub dirs: NodeDirs,
}

/// A container as the kubelet tracks it.
#[derive(Clone, Debug)]
pub struct PodContainer {
    /// Container name in the pod spec.
    pub name: String,
    /// The port its server listens on.
    pub port: u16,
    /// CRI container id.
    pub id: String,
    /// Restart count (CRI `attempt`).
    pub attempt: u32,
}

/// A running pod as the kubelet tracks it.
#[derive(Clone, Debug)]
pub struct Pod {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod UID.
    pub uid: String,
    /// The node.
    pub node: String,
    /// CRI sandbox id.
    pub sandbox_id: String,
    /// The pod IP, as `PodSandboxStatus` reported it.
    pub ip: String,
    /// The sandbox config it was created with (CreateContainer needs it).
    pub config: api::PodSandboxConfig,
    /// Its containers.
    pub containers: Vec<PodContainer>,
}

impl Pod {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
    /// The container named `name`.
    pub fn container(&self, name: &str) -> Result<&PodContainer> {
        self.containers
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                NodeError::Protocol(format!("pod {} has no container {name}", self.key()))
            })
    }
}

/// An RFC 4122-shaped random UID.
pub fn new_uid() -> String {
    let u = crate::harness::random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &u[..8],
        &u[8..12],
        &u[12..16],
        &u[16..20],
        &u[20..]
    )
}

/// The sandbox's port mappings as the kubelet lists them: every declared
/// container port, with its `hostPort` or 0 (containerd passes only those
/// with a host port on to portmap), then host ports of undeclared ports.
fn port_mappings(ports: &[u16], host_ports: &[HostPort]) -> Vec<api::PortMapping> {
    let protocol = |p: &str| match p {
        "udp" => api::Protocol::Udp,
        "sctp" => api::Protocol::Sctp,
        _ => api::Protocol::Tcp,
    } as i32;
    let mapping = |hp: &HostPort| api::PortMapping {
        protocol: protocol(&hp.protocol),
        container_port: i32::from(hp.container_port),
        host_port: i32::from(hp.host_port),
        host_ip: String::new(),
    };
    let mut out = Vec::new();
    for p in ports {
        let mapped: Vec<api::PortMapping> = host_ports
            .iter()
            .filter(|hp| hp.container_port == *p)
            .map(mapping)
            .collect();
        if mapped.is_empty() {
            out.push(api::PortMapping {
                protocol: api::Protocol::Tcp as i32,
                container_port: i32::from(*p),
                host_port: 0,
                host_ip: String::new(),
            });
        }
        out.extend(mapped);
    }
    out.extend(
        host_ports
            .iter()
            .filter(|hp| !ports.contains(&hp.container_port))
            .map(mapping),
    );
    out
}

fn ns_option(network: api::NamespaceMode, pid: api::NamespaceMode) -> api::NamespaceOption {
    api::NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ipc: api::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

impl Kubelet {
    /// Connects to the node's containerd.
    pub fn connect(node: &str, dirs: NodeDirs) -> Result<Kubelet> {
        let cri = CriClient::connect(&dirs.socket()).map_err(cri(format!("kubelet of {node}")))?;
        Ok(Kubelet {
            node: node.to_string(),
            cri,
            dirs,
        })
    }

    /// The `PodSandboxConfig` the kubelet sends: metadata, hostname, log
    /// dir (`<pods>/<ns>_<name>_<uid>`), ClusterFirst DNS, the declared
    /// container ports with their `hostPort`s (see [`port_mappings`]),
    /// pod-level network/IPC and per-container PID namespaces, and the
    /// kubelet's labels.
    pub fn sandbox_config(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        ports: &[u16],
        host_ports: &[HostPort],
    ) -> api::PodSandboxConfig {
        let labels = HashMap::from([
            ("io.kubernetes.pod.name".to_string(), name.to_string()),
            ("io.kubernetes.pod.namespace".into(), namespace.to_string()),
            ("io.kubernetes.pod.uid".into(), uid.to_string()),
        ]);
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self
                .dirs
                .pod_logs()
                .join(format!("{namespace}_{name}_{uid}"))
                .display()
                .to_string(),
            dns_config: Some(api::DnsConfig {
                servers: vec![CLUSTER_DNS.into()],
                searches: vec![
                    format!("{namespace}.svc.cluster.local"),
                    "svc.cluster.local".into(),
                    "cluster.local".into(),
                ],
                options: vec!["ndots:5".into()],
            }),
            port_mappings: port_mappings(ports, host_ports),
            labels: labels.clone(),
            annotations: HashMap::from([(
                "kubernetes.io/config.source".to_string(),
                "kubesim".to_string(),
            )]),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: self.dirs.cgroup_parent(),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(ns_option(
                        api::NamespaceMode::Pod,
                        api::NamespaceMode::Container,
                    )),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox, then PodSandboxStatus for the IP, then each container
    /// (`kubesim-serve PORT ns/pod/container`). On failure the sandbox is
    /// stopped and removed again.
    pub fn run_pod(
        &self,
        namespace: &str,
        name: &str,
        containers: &[(&str, u16)],
        host_ports: &[HostPort],
    ) -> Result<Pod> {
        let uid = new_uid();
        let ports: Vec<u16> = containers.iter().map(|(_, p)| *p).collect();
        let config = self.sandbox_config(namespace, name, &uid, &ports, host_ports);
        std::fs::create_dir_all(&config.log_directory)
            .map_err(super::error::io("create pod log dir"))?;
        let sandbox_id = self
            .cri
            .run_pod_sandbox(config.clone())
            .map_err(cri(format!(
                "RunPodSandbox {namespace}/{name} on {}",
                self.node
            )))?;
        let mut pod = Pod {
            namespace: namespace.into(),
            name: name.into(),
            uid,
            node: self.node.clone(),
            sandbox_id,
            ip: String::new(),
            config,
            containers: Vec::new(),
        };
        let ready = (|| {
            pod.ip = self.pod_ip(&pod.sandbox_id)?;
            for (cname, port) in containers {
                let c = self.start_container(&pod, cname, *port, 0)?;
                self.wait_state(&c.id, api::ContainerState::ContainerRunning)?;
                pod.containers.push(c);
            }
            Ok(())
        })();
        match ready {
            Ok(()) => Ok(pod),
            Err(e) => {
                let _ = self.delete_pod(&pod.sandbox_id);
                Err(e)
            }
        }
    }

    /// The pod IP from `PodSandboxStatus` (what the kubelet reports).
    pub fn pod_ip(&self, sandbox_id: &str) -> Result<String> {
        let st = self
            .cri
            .pod_sandbox_status(sandbox_id, false)
            .map_err(cri("PodSandboxStatus"))?;
        st.status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| NodeError::Protocol(format!("sandbox {sandbox_id} has no IP")))
    }

    /// The pod netns path containerd created and handed to the plugins
    /// (`runtimeSpec` in the verbose status); it resolves only inside
    /// containerd's mount namespace.
    pub fn sandbox_netns_path(&self, sandbox_id: &str) -> Result<String> {
        let st = self
            .cri
            .pod_sandbox_status(sandbox_id, true)
            .map_err(cri("PodSandboxStatus (verbose)"))?;
        let info = st.info.get("info").cloned().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&info).unwrap_or_default();
        v.pointer("/runtimeSpec/linux/namespaces")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .find(|n| n.get("type").and_then(serde_json::Value::as_str) == Some("network"))
            .and_then(|n| n.get("path")?.as_str())
            .map(String::from)
            .ok_or_else(|| {
                NodeError::Protocol(format!(
                    "sandbox {sandbox_id}: no netns path in status info"
                ))
            })
    }

    /// The `ContainerConfig` of a server container.
    fn container_config(pod: &Pod, name: &str, port: u16, attempt: u32) -> api::ContainerConfig {
        let who = format!("{}/{name}", pod.key());
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: name.into(),
                attempt,
            }),
            image: Some(api::ImageSpec {
                image: APP_IMAGE.into(),
                ..Default::default()
            }),
            command: vec!["/bin/kubesim-serve".into()],
            args: vec![port.to_string(), who],
            log_path: format!("{name}/{attempt}.log"),
            labels: HashMap::from([
                ("io.kubernetes.container.name".to_string(), name.to_string()),
                ("io.kubernetes.pod.name".into(), pod.name.clone()),
                ("io.kubernetes.pod.namespace".into(), pod.namespace.clone()),
                ("io.kubernetes.pod.uid".into(), pod.uid.clone()),
            ]),
            linux: Some(api::LinuxContainerConfig {
                security_context: Some(api::LinuxContainerSecurityContext {
                    namespace_options: Some(ns_option(
                        api::NamespaceMode::Pod,
                        api::NamespaceMode::Container,
                    )),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// CreateContainer + StartContainer in the pod's sandbox.
    pub fn start_container(
        &self,
        pod: &Pod,
        name: &str,
        port: u16,
        attempt: u32,
    ) -> Result<PodContainer> {
        let config = Self::container_config(pod, name, port, attempt);
        let id = self
            .cri
            .create_container(&pod.sandbox_id, config, pod.config.clone())
            .map_err(cri(format!("CreateContainer {name} in {}", pod.key())))?;
        self.cri
            .start_container(&id)
            .map_err(cri(format!("StartContainer {name} in {}", pod.key())))?;
        Ok(PodContainer {
            name: name.into(),
            port,
            id,
            attempt,
        })
    }

    /// Polls `ContainerStatus` until the container is in `want` (or has
    /// exited, which is final); returns the last status.
    pub fn wait_state(&self, id: &str, want: api::ContainerState) -> Result<api::ContainerStatus> {
        let deadline = Instant::now() + STATE_TIMEOUT;
        loop {
            let st = self
                .cri
                .container_status(id)
                .map_err(cri("ContainerStatus"))?;
            let exited = st.state == api::ContainerState::ContainerExited as i32;
            if st.state == want as i32 || exited {
                if want != api::ContainerState::ContainerExited && exited {
                    return Err(NodeError::Protocol(format!(
                        "container {id} exited (code {}, {}) instead of running; log {}",
                        st.exit_code, st.reason, st.log_path
                    )));
                }
                return Ok(st);
            }
            if Instant::now() > deadline {
                return Err(NodeError::Protocol(format!(
                    "container {id} not {want:?} within {STATE_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A container restart as the kubelet does it: StopContainer,
    /// RemoveContainer, CreateContainer with attempt+1, StartContainer, in
    /// the same sandbox. No sandbox call, so no CNI call.
    pub fn restart_container(&self, pod: &Pod, old: &PodContainer) -> Result<PodContainer> {
        self.cri
            .stop_container(&old.id, STOP_GRACE_SECS)
            .map_err(cri("StopContainer"))?;
        self.cri
            .remove_container(&old.id)
            .map_err(cri("RemoveContainer"))?;
        let fresh = self.start_container(pod, &old.name, old.port, old.attempt + 1)?;
        self.wait_state(&fresh.id, api::ContainerState::ContainerRunning)?;
        Ok(fresh)
    }

    /// StopPodSandbox (containers killed, CNI DEL) then RemovePodSandbox.
    pub fn delete_pod(&self, sandbox_id: &str) -> Result<()> {
        self.cri
            .stop_pod_sandbox(sandbox_id)
            .map_err(cri(format!("StopPodSandbox {sandbox_id}")))?;
        self.cri
            .remove_pod_sandbox(sandbox_id)
            .map_err(cri(format!("RemovePodSandbox {sandbox_id}")))
    }

    /// ExecSync in a container: (exit code, stdout, stderr).
    pub fn exec(&self, container_id: &str, cmd: &[&str]) -> Result<(i32, String, String)> {
        let r = self
            .cri
            .exec_sync(container_id, cmd, 10)
            .map_err(cri(format!("ExecSync {cmd:?}")))?;
        Ok((
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).trim().to_string(),
            String::from_utf8_lossy(&r.stderr).trim().to_string(),
        ))
    }

    /// ListPodSandbox: every sandbox this node's runtime knows.
    pub fn list(&self) -> Result<Vec<api::PodSandbox>> {
        self.cri.list_pod_sandbox().map_err(cri("ListPodSandbox"))
    }

    /// Stops and removes every sandbox (a drain); returns how many.
    pub fn drain(&self) -> Result<usize> {
        let all = self.list()?;
        for sb in &all {
            self.delete_pod(&sb.id)?;
        }
        Ok(all.len())
    }
}
