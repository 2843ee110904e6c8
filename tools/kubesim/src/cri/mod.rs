//! A CRI v1 client: kubesim talks to containerd exactly as the kubelet
//! does, over gRPC on the runtime's unix socket.
//!
//! The messages and the client stub in `runtime.v1.rs` are generated from
//! the CRI `api.proto` vendored in `tools/kubesim/proto` (Apache-2.0, see
//! its LICENSE) and checked in, so building kubesim needs no `protoc`;
//! `tools/kubesim/proto/regen.sh` regenerates them.
//!
//! The rest of kubesim is synchronous: [`CriClient`] owns a current-thread
//! tokio runtime and blocks on each call, with a deadline per call.

pub mod client;

/// The generated CRI v1 messages and `RuntimeService`/`ImageService` clients.
#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod api {
    include!("runtime.v1.rs");
}

pub use client::{CriClient, CriError};
