//! Placeholder until the host-local owner lands the real plugin: answers the
//! protocol (VERSION, validation, errors) through cni::skel, and fails
//! every verb that would need the real implementation.

use cni::error::{CniError, Result};
use cni::skel::{CmdArgs, Plugin};
use cni::spec::CniResult;

struct Placeholder;

fn unimplemented_verb(a: &CmdArgs) -> CniError {
    CniError::internal(format!("host-local: {} is not implemented yet", a.command))
}

impl Plugin for Placeholder {
    fn name(&self) -> &'static str {
        "host-local"
    }
    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        Err(unimplemented_verb(a))
    }
    fn del(&self, a: &CmdArgs) -> Result<()> {
        Err(unimplemented_verb(a))
    }
    fn check(&self, a: &CmdArgs) -> Result<()> {
        Err(unimplemented_verb(a))
    }
    fn gc(&self, a: &CmdArgs) -> Result<()> {
        Err(unimplemented_verb(a))
    }
    fn status(&self, a: &CmdArgs) -> Result<()> {
        Err(unimplemented_verb(a))
    }
}

fn main() {
    cni::skel::run(&Placeholder)
}
