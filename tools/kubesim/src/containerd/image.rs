//! The two images a containerd node needs, built offline from Debian's
//! static busybox (no registry is reachable): a pause image for sandboxes
//! and an app image whose containers serve HTTP on a port and answer
//! `GET /cgi-bin/id` with `<who> <client address>` (so the server side
//! reports the source IP it saw: the no-NAT proof). Both share one layer.
//! Packed as one OCI archive, imported with `ctr images import` into the
//! CRI namespace `k8s.io`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::error::{io, NodeError, Result};

/// The sandbox ("pause") image: sleeps until killed.
pub const PAUSE_IMAGE: &str = "localhost/kubesim/pause:3.9";
/// The app image: busybox plus `kubesim-serve` / `kubesim-get`.
pub const APP_IMAGE: &str = "localhost/kubesim/busybox:1.35";
/// Where the static busybox comes from (`busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// PID 1 of every sandbox: exits on TERM/INT, otherwise sleeps.
const PAUSE_SCRIPT: &str =
    "#!/bin/sh\ntrap 'exit 0' TERM INT\nwhile :; do sleep 3600 & wait $!; done\n";

/// `kubesim-serve PORT WHO`: busybox httpd on PORT whose CGI answers
/// `WHO <REMOTE_ADDR>`.
const SERVE_SCRIPT: &str = r#"#!/bin/sh
set -e
www=/tmp/www-$1
mkdir -p "$www/cgi-bin"
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\necho "%s $REMOTE_ADDR"\n' "$2" > "$www/cgi-bin/id"
chmod 755 "$www/cgi-bin/id"
exec httpd -f -p "$1" -h "$www"
"#;

/// `kubesim-get HOST PORT`: one request to a `kubesim-serve`; prints its
/// answer line.
const GET_SCRIPT: &str =
    "#!/bin/sh\nprintf 'GET /cgi-bin/id HTTP/1.0\\r\\n\\r\\n' | nc -w 3 \"$1\" \"$2\" | tail -n 1\n";

fn run(cmd: &mut Command) -> Result<std::process::Output> {
    let out = cmd.output().map_err(io(format!("run {cmd:?}")))?;
    if !out.status.success() {
        return Err(NodeError::Command {
            command: format!("{cmd:?}"),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Builds the archive under `dir` (once; reused if present) and returns it.
pub fn build(dir: &Path) -> Result<PathBuf> {
    let archive = dir.join("kubesim-images.tar");
    if archive.is_file() {
        return Ok(archive);
    }
    if !Path::new(BUSYBOX).is_file() {
        return Err(NodeError::Missing(format!(
            "{BUSYBOX} (apt-get install busybox-static) to build the pod images"
        )));
    }
    let work = dir.join("image-build");
    let _ = std::fs::remove_dir_all(&work);
    let rootfs = work.join("rootfs");
    write_rootfs(&rootfs)?;
    let layout = work.join("oci");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io("mkdir blobs"))?;
    let layer = work.join("layer.tar");
    run(Command::new("tar")
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
        .args(["--mtime=2024-01-01 00:00:00Z", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg("."))?;
    let blob = |bytes: &[u8]| -> Result<(String, usize)> {
        let digest = format!("{:x}", Sha256::digest(bytes));
        std::fs::write(blobs.join(&digest), bytes).map_err(io("write blob"))?;
        Ok((format!("sha256:{digest}"), bytes.len()))
    };
    let layer_bytes = std::fs::read(&layer).map_err(io("read layer"))?;
    let (layer_digest, layer_size) = blob(&layer_bytes)?;
    let mut manifests = Vec::new();
    for (name, process) in [
        (PAUSE_IMAGE, json!({"Entrypoint": ["/bin/pause"]})),
        (APP_IMAGE, json!({"Cmd": ["/bin/sh"]})),
    ] {
        let mut cfg = json!({"Env": ["PATH=/bin"], "WorkingDir": "/"});
        if let (Some(c), Some(p)) = (cfg.as_object_mut(), process.as_object()) {
            c.extend(p.clone());
        }
        let config = json!({
            "architecture": "amd64", "os": "linux", "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        });
        let (config_digest, config_size) = blob(config.to_string().as_bytes())?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest, "size": layer_size}],
        });
        let (digest, size) = blob(manifest.to_string().as_bytes())?;
        let tag = name.rsplit(':').next().unwrap_or("latest");
        manifests.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": tag},
        }));
    }
    let index = json!({"schemaVersion": 2, "manifests": manifests});
    std::fs::write(layout.join("index.json"), index.to_string()).map_err(io("write index.json"))?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .map_err(io("write oci-layout"))?;
    let partial = dir.join("kubesim-images.tar.partial");
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&partial)
        .args(["oci-layout", "index.json", "blobs"]))?;
    std::fs::rename(&partial, &archive).map_err(io("rename image archive"))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(archive)
}

/// busybox with its applet links, our three scripts, passwd and group.
fn write_rootfs(rootfs: &Path) -> Result<()> {
    for d in [
        "bin", "etc", "proc", "sys", "dev", "tmp", "root", "run", "var",
    ] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(io(format!("mkdir rootfs/{d}")))?;
    }
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .map_err(io("chmod rootfs/tmp"))?;
    let bin = rootfs.join("bin");
    std::fs::copy(BUSYBOX, bin.join("busybox")).map_err(io(format!("copy {BUSYBOX}")))?;
    let list = run(Command::new(BUSYBOX).arg("--list"))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            std::os::unix::fs::symlink("busybox", bin.join(applet))
                .map_err(io(format!("applet link {applet}")))?;
        }
    }
    for (name, text) in [
        ("pause", PAUSE_SCRIPT),
        ("kubesim-serve", SERVE_SCRIPT),
        ("kubesim-get", GET_SCRIPT),
    ] {
        let path = bin.join(name);
        std::fs::write(&path, text).map_err(io(format!("write {name}")))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(io(format!("chmod {name}")))?;
    }
    let etc = rootfs.join("etc");
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n")
        .map_err(io("write passwd"))?;
    std::fs::write(etc.join("group"), "root:x:0:\n").map_err(io("write group"))
}

/// Imports the archive into the CRI namespace of the containerd at `socket`.
pub fn import(socket: &Path, archive: &Path) -> Result<()> {
    run(Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io", "images", "import"])
        .arg(archive))
    .map(drop)
}
