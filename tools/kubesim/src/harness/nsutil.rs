//! Network namespaces held by helper processes, and the two ways the harness
//! acts inside one: spawning a command whose child `setns`es before exec, or
//! running a closure on a short-lived thread that `setns`es first (both
//! from `cni::netns`).
//!
//! Safety: every [`Netns`] is checked on creation to differ from the netns
//! kubesim itself runs in (and from PID 1's when readable), so no harness
//! command can ever change the machine's own network.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cni::netns::{enter_on_exec, NetNs};

use super::error::{HarnessError, Result};

/// Inode of the netns file at `path`.
pub fn netns_inode(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(HarnessError::io(format!("stat {}", path.display())))
}

/// Inode of the netns kubesim runs in (its main thread never changes netns).
pub fn own_netns_inode() -> Result<u64> {
    netns_inode(Path::new("/proc/self/ns/net"))
}

/// A network namespace the harness created (node, underlay or pod).
#[derive(Clone, Debug)]
pub struct Netns {
    /// `/proc/<holder pid>/ns/net`.
    pub path: PathBuf,
    /// Its inode, checked against the machine's.
    pub inode: u64,
}

impl Netns {
    /// The netns held by `pid`, refusing the machine's own namespace.
    pub fn of_pid(pid: i32) -> Result<Netns> {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        let inode = netns_inode(&path)?;
        if inode == own_netns_inode()? {
            return Err(HarnessError::Safety(format!(
                "netns of pid {pid} is kubesim's own netns (inode {inode})"
            )));
        }
        if let Ok(init) = netns_inode(Path::new("/proc/1/ns/net")) {
            if inode == init {
                return Err(HarnessError::Safety(format!(
                    "netns of pid {pid} is PID 1's netns (inode {inode})"
                )));
            }
        }
        Ok(Netns { path, inode })
    }

    /// A command that runs inside this netns (the child calls setns(2)).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command> {
        let ns = self.open()?;
        let mut cmd = Command::new(program);
        enter_on_exec(&mut cmd, ns);
        Ok(cmd)
    }

    /// Runs `program args…` inside this netns; returns stdout or a
    /// [`HarnessError::Command`] with stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let out = self
            .command(program)?
            .args(args)
            .output()
            .map_err(HarnessError::io(format!("run {program}")))?;
        if !out.status.success() {
            return Err(HarnessError::Command {
                command: format!("{program} {}", args.join(" ")),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `f` on a fresh thread that first joins this netns (for
    /// `/proc/sys/net` writes, which follow the calling thread's netns).
    pub fn with<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        Ok(self.open()?.run(f)?)
    }

    /// Writes a sysctl under `/proc/sys` inside this netns.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.with(move || std::fs::write(&path, value))?
            .map_err(HarnessError::io(format!("write sysctl {key}")))
    }

    /// Opens the netns, re-checking its inode; the fd can name it in
    /// netlink requests (`IFLA_NET_NS_FD`).
    pub fn open(&self) -> Result<NetNs> {
        let ns = NetNs::open(&self.path).map_err(|e| {
            HarnessError::io(format!("open {}", self.path.display()))(std::io::Error::other(e))
        })?;
        // Re-check through the fd we will actually use: the holder could
        // have died and its pid been reused since we checked.
        let inode = ns.inode().map_err(HarnessError::io("stat netns fd"))?;
        if inode != self.inode {
            return Err(HarnessError::Safety(format!(
                "{} now refers to another netns (inode {inode}, expected {})",
                self.path.display(),
                self.inode
            )));
        }
        Ok(ns)
    }
}

/// Brings `lo` up in the calling thread's netns (SIOCSIFFLAGS): the node
/// and underlay netns get the working 127.0.0.1 a booted machine has.
pub fn loopback_up() -> std::io::Result<()> {
    use nix::libc;
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq we own; the fd is
    // closed on every path by OwnedFd.
    unsafe {
        let raw = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let sock = <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
