//! `--runtime containerd`: kubesim as the kubelet only. Per node it runs a
//! private containerd with the CRI plugin pointed at the node's conflist and
//! our plugins ([`daemon`], [`config`]), builds and imports its own images
//! ([`image`]), and drives pods over CRI v1 exactly as the kubelet does
//! ([`kubelet`]).

pub mod cgroups;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod error;
pub mod image;
pub mod kubelet;
pub mod node;
pub mod pidfd;
pub mod soak;
pub mod story;
