//! The hidden helper subcommands kubesim re-executes itself as:
//! `__pause` (creates and holds a netns), `__echo-server` (a container),
//! `__tcp-check` (a one-shot client run inside a pod). They print one
//! `ready…` (or `error: …`) line on stdout for the launcher.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::nsutil::loopback_up;
use super::random_hex;

/// Exit code of an echo server whose port is taken (the errno).
pub const EXIT_ADDR_IN_USE: i32 = 98;

/// `__pause ROLE…`: unshare a new netns, report ready, then sleep until
/// killed. Must run before any thread exists (unshare of CLONE_NEWNET only
/// moves the calling thread). A node's (or the underlay's) `lo` is brought
/// up here, as a booted machine has it (containerd binds its stream server
/// to 127.0.0.1 there); a pod's `lo` stays down: the runtime's `loopback`
/// plugin brings it up, as with containerd.
pub fn pause_main(role: &[String]) -> i32 {
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
        println!("error: unshare(CLONE_NEWNET): {e}");
        return 1;
    }
    let pod = role.first().is_some_and(|r| r == "pod");
    if !pod {
        if let Err(e) = loopback_up() {
            println!("error: bring lo up: {e}");
            return 1;
        }
    }
    let inode = std::fs::metadata("/proc/self/ns/net")
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap_or_default();
    println!("ready netns {inode}");
    let _ = std::io::stdout().flush();
    loop {
        nix::unistd::pause();
    }
}

/// `__echo-server PORT NAME`: listen on `[::]:PORT` (which also accepts
/// IPv4), or `0.0.0.0:PORT` when the pod has no IPv6; answer each
/// `ping <token>` line with `pong <token> <NAME> <peer address>`.
pub fn echo_server_main(port: u16, name: &str) -> i32 {
    let bound = TcpListener::bind(("::", port)).or_else(|e| {
        if e.raw_os_error() == Some(nix::libc::EADDRINUSE) {
            Err(e)
        } else {
            TcpListener::bind(("0.0.0.0", port))
        }
    });
    let listener = match bound {
        Ok(l) => l,
        Err(e) => {
            let in_use = e.raw_os_error() == Some(nix::libc::EADDRINUSE);
            let tag = if in_use { "EADDRINUSE" } else { "bind failed" };
            println!("error: {tag}: bind port {port}: {e}");
            let _ = std::io::stdout().flush();
            return if in_use { EXIT_ADDR_IN_USE } else { 1 };
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("ready listening {local}");
    let _ = std::io::stdout().flush();
    for stream in listener.incoming().flatten() {
        let name = name.to_string();
        std::thread::spawn(move || serve(stream, &name));
    }
    0
}

fn serve(stream: TcpStream, name: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; show them plainly.
    let peer = stream
        .peer_addr()
        .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()).to_string())
        .unwrap_or_else(|_| "?".into());
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut line = String::new();
    let mut reader = BufReader::new(stream).take(4096);
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let token = line.trim().strip_prefix("ping ").unwrap_or("").to_string();
    let _ = writeln!(writer, "pong {token} {name} {peer}");
}

/// Outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pong {
    /// Who answered (`ns/pod/container`).
    pub server: String,
    /// Our address as the server saw it (shows NAT).
    pub seen_as: String,
}

/// Connects to `addr`, sends a ping, checks the pong echoes our token.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<Pong, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let token = random_hex(8);
    writeln!(stream, "ping {token}").map_err(|e| format!("send: {e}"))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| format!("read: {e}"))?;
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("pong"), Some(t), Some(server), Some(seen)) if t == token => Ok(Pong {
            server: server.to_string(),
            seen_as: seen.to_string(),
        }),
        _ => Err(format!("bad reply {:?}", line.trim())),
    }
}

/// `__tcp-check HOST PORT [--expect NAME]`: one probe; prints the reply and
/// exits 0 on success.
pub fn tcp_check_main(host: &str, port: u16, expect: Option<&str>) -> i32 {
    let addr = match (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    {
        Some(a) => a,
        None => {
            println!("error: cannot resolve {host}");
            return 2;
        }
    };
    match probe(addr, Duration::from_secs(3)) {
        Ok(p) if expect.is_none_or(|e| e == p.server) => {
            println!("ok {} answered; it saw us as {}", p.server, p.seen_as);
            0
        }
        Ok(p) => {
            println!(
                "error: {} answered, expected {}",
                p.server,
                expect.unwrap_or_default()
            );
            1
        }
        Err(e) => {
            println!("error: {e}");
            1
        }
    }
}
