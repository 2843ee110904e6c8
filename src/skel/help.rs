//! The texts a plugin prints for a human: `--version`, `--help`, and the
//! "about" line Go's skel prints when `CNI_COMMAND` is unset.

use crate::spec::SUPPORTED_VERSIONS;

/// `--version` text: `<name> <crate version> (cni-rs)` and the versions.
pub fn version_text(name: &str) -> String {
    format!(
        "{name} {} (cni-rs)\nCNI protocol versions supported: {}\n",
        env!("CARGO_PKG_VERSION"),
        SUPPORTED_VERSIONS.join(", ")
    )
}

/// What Go's skel prints on stderr when `CNI_COMMAND` is unset.
pub fn about_text(name: &str) -> String {
    format!(
        "CNI {name} plugin v{} (cni-rs)\nCNI protocol versions supported: {}\n",
        env!("CARGO_PKG_VERSION"),
        SUPPORTED_VERSIONS.join(", ")
    )
}

/// `--help` text: how a runtime calls the plugin.
pub fn help_text(name: &str) -> String {
    format!(
        "{name} {ver} (cni-rs): a CNI plugin, normally run by a container runtime.\n\
         \n\
         Usage: {name} [--version | --help]\n\
         \n\
         A runtime sets these environment variables and writes the network\n\
         configuration (JSON) on stdin; the result or error (JSON) is printed on stdout:\n\
         \x20 CNI_COMMAND      ADD, DEL, CHECK, GC, STATUS or VERSION\n\
         \x20 CNI_CONTAINERID  container id (ADD, DEL, CHECK)\n\
         \x20 CNI_NETNS        path of the container network namespace (ADD, CHECK; optional for DEL)\n\
         \x20 CNI_IFNAME       interface name in the container (ADD, DEL, CHECK)\n\
         \x20 CNI_ARGS         optional K=V;K=V arguments\n\
         \x20 CNI_PATH         ':'-separated directories holding CNI plugins\n\
         \x20 CNI_RS_LOG       optional debug log file (appended to)\n\
         \n\
         CNI protocol versions supported: {versions}\n",
        ver = env!("CARGO_PKG_VERSION"),
        versions = SUPPORTED_VERSIONS.join(", ")
    )
}
