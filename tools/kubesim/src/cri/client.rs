//! The blocking CRI client on a unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use super::api;
use super::api::image_service_client::ImageServiceClient;
use super::api::runtime_service_client::RuntimeServiceClient;

/// Failures of the CRI layer.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The tokio runtime could not be created.
    #[error("start the CRI client runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The socket could not be reached.
    #[error("connect to CRI socket {}: {source}", .socket.display())]
    Connect {
        /// The runtime's socket.
        socket: PathBuf,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The runtime answered a call with an error status.
    #[error("CRI {call}: {code:?}: {message}")]
    Call {
        /// The RPC (`RunPodSandbox`, …).
        call: &'static str,
        /// gRPC status code.
        code: tonic::Code,
        /// The runtime's message.
        message: String,
    },
    /// A call did not finish within its deadline.
    #[error("CRI {call}: no answer within {timeout:?}")]
    Timeout {
        /// The RPC.
        call: &'static str,
        /// The deadline.
        timeout: Duration,
    },
}

/// Deadline of ordinary calls (RunPodSandbox includes the CNI ADD).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to one runtime's CRI socket.
pub struct CriClient {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
}

impl CriClient {
    /// Connects to the CRI socket at `socket`.
    pub fn connect(socket: &Path) -> Result<CriClient, CriError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(CriError::Runtime)?;
        let path = socket.to_path_buf();
        // The URI is required by tonic but unused: the connector dials the socket.
        let channel = rt
            .block_on(async {
                Endpoint::from_static("http://[::]:50051")
                    .connect_with_connector(tower::service_fn(move |_| {
                        let path = path.clone();
                        async move { UnixStream::connect(path).await.map(TokioIo::new) }
                    }))
                    .await
            })
            .map_err(|source| CriError::Connect {
                socket: socket.to_path_buf(),
                source,
            })?;
        Ok(CriClient {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            image: ImageServiceClient::new(channel),
        })
    }

    /// Runs one RPC with a deadline, mapping its status to [`CriError`].
    fn call<T, F>(&self, call: &'static str, timeout: Duration, fut: F) -> Result<T, CriError>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.rt.block_on(async {
            match tokio::time::timeout(timeout, fut).await {
                Err(_) => Err(CriError::Timeout { call, timeout }),
                Ok(Err(status)) => Err(CriError::Call {
                    call,
                    code: status.code(),
                    message: status.message().to_string(),
                }),
                Ok(Ok(resp)) => Ok(resp.into_inner()),
            }
        })
    }

    /// `Version`: the runtime's name and version, and the CRI version.
    pub fn version(&self) -> Result<api::VersionResponse, CriError> {
        let mut c = self.runtime.clone();
        let req = api::VersionRequest {
            version: "v1".into(),
        };
        self.call("Version", CALL_TIMEOUT, c.version(req))
    }

    /// `Status`: runtime and network readiness conditions.
    pub fn status(&self) -> Result<api::StatusResponse, CriError> {
        let mut c = self.runtime.clone();
        let req = api::StatusRequest { verbose: false };
        self.call("Status", CALL_TIMEOUT, c.status(req))
    }

    /// `RunPodSandbox`: returns the sandbox id.
    pub fn run_pod_sandbox(&self, config: api::PodSandboxConfig) -> Result<String, CriError> {
        let mut c = self.runtime.clone();
        let req = api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        self.call("RunPodSandbox", CALL_TIMEOUT, c.run_pod_sandbox(req))
            .map(|r| r.pod_sandbox_id)
    }

    /// `PodSandboxStatus` (verbose: with the runtime's `info` map).
    pub fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<api::PodSandboxStatusResponse, CriError> {
        let mut c = self.runtime.clone();
        let req = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose,
        };
        self.call("PodSandboxStatus", CALL_TIMEOUT, c.pod_sandbox_status(req))
    }

    /// `StopPodSandbox`: containers killed, network torn down (CNI DEL).
    pub fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let mut c = self.runtime.clone();
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call("StopPodSandbox", CALL_TIMEOUT, c.stop_pod_sandbox(req))
            .map(drop)
    }

    /// `RemovePodSandbox`.
    pub fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let mut c = self.runtime.clone();
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call("RemovePodSandbox", CALL_TIMEOUT, c.remove_pod_sandbox(req))
            .map(drop)
    }

    /// `ListPodSandbox` (all states).
    pub fn list_pod_sandbox(&self) -> Result<Vec<api::PodSandbox>, CriError> {
        let mut c = self.runtime.clone();
        let req = api::ListPodSandboxRequest { filter: None };
        self.call("ListPodSandbox", CALL_TIMEOUT, c.list_pod_sandbox(req))
            .map(|r| r.items)
    }

    /// `CreateContainer` in a sandbox; returns the container id.
    pub fn create_container(
        &self,
        sandbox_id: &str,
        config: api::ContainerConfig,
        sandbox_config: api::PodSandboxConfig,
    ) -> Result<String, CriError> {
        let mut c = self.runtime.clone();
        let req = api::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        self.call("CreateContainer", CALL_TIMEOUT, c.create_container(req))
            .map(|r| r.container_id)
    }

    /// `StartContainer`.
    pub fn start_container(&self, id: &str) -> Result<(), CriError> {
        let mut c = self.runtime.clone();
        let req = api::StartContainerRequest {
            container_id: id.into(),
        };
        self.call("StartContainer", CALL_TIMEOUT, c.start_container(req))
            .map(drop)
    }

    /// `StopContainer` with a grace period in seconds.
    pub fn stop_container(&self, id: &str, grace: i64) -> Result<(), CriError> {
        let mut c = self.runtime.clone();
        let req = api::StopContainerRequest {
            container_id: id.into(),
            timeout: grace,
        };
        let limit = CALL_TIMEOUT + Duration::from_secs(grace.max(0).unsigned_abs());
        self.call("StopContainer", limit, c.stop_container(req))
            .map(drop)
    }

    /// `RemoveContainer`.
    pub fn remove_container(&self, id: &str) -> Result<(), CriError> {
        let mut c = self.runtime.clone();
        let req = api::RemoveContainerRequest {
            container_id: id.into(),
        };
        self.call("RemoveContainer", CALL_TIMEOUT, c.remove_container(req))
            .map(drop)
    }

    /// `ListContainers` of one sandbox (all states).
    pub fn list_containers(&self, sandbox_id: &str) -> Result<Vec<api::Container>, CriError> {
        let mut c = self.runtime.clone();
        let req = api::ListContainersRequest {
            filter: Some(api::ContainerFilter {
                pod_sandbox_id: sandbox_id.into(),
                ..Default::default()
            }),
        };
        self.call("ListContainers", CALL_TIMEOUT, c.list_containers(req))
            .map(|r| r.containers)
    }

    /// `ContainerStatus`.
    pub fn container_status(&self, id: &str) -> Result<api::ContainerStatus, CriError> {
        let mut c = self.runtime.clone();
        let req = api::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        self.call("ContainerStatus", CALL_TIMEOUT, c.container_status(req))?
            .status
            .ok_or(CriError::Call {
                call: "ContainerStatus",
                code: tonic::Code::NotFound,
                message: format!("no status for container {id}"),
            })
    }

    /// `ExecSync`: runs `cmd` in a container, returns its output and exit code.
    pub fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout_secs: i64,
    ) -> Result<api::ExecSyncResponse, CriError> {
        let mut c = self.runtime.clone();
        let req = api::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_secs,
        };
        let limit = CALL_TIMEOUT + Duration::from_secs(timeout_secs.max(0).unsigned_abs());
        self.call("ExecSync", limit, c.exec_sync(req))
    }

    /// `ImageStatus`: whether the runtime has `image` (no pull ever happens).
    pub fn image_present(&self, image: &str) -> Result<bool, CriError> {
        let mut c = self.image.clone();
        let req = api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        self.call("ImageStatus", CALL_TIMEOUT, c.image_status(req))
            .map(|r| r.image.is_some())
    }
}
