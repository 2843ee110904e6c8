#!/usr/bin/env bash
# Regenerates tools/kubesim/src/cri/runtime.v1.rs (the CRI v1 messages and
# the RuntimeService/ImageService client stubs) from runtime/v1/api.proto.
# The output is checked in, so building kubesim needs no protoc; only this
# script does (apt-get install protobuf-compiler). The generator is a
# throwaway crate in a temp dir (tonic-prost-build 0.14, client only), so
# no code generator enters the workspace's dependency tree.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/../src/cri
command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/out"
cat > "$work/Cargo.toml" <<'EOF'
[package]
name = "cri-gen"
version = "0.0.0"
edition = "2021"
publish = false
[dependencies]
tonic-prost-build = "0.14"
[workspace]
EOF
cat > "$work/src/main.rs" <<'EOF'
fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    tonic_prost_build::configure()
        .build_server(false)
        .out_dir(&a[2])
        .compile_protos(&[&a[0]], &[&a[1]])
        .expect("generate CRI client");
}
EOF
cargo run -q --manifest-path "$work/Cargo.toml" -- \
  "$here/runtime/v1/api.proto" "$here" "$work/out"
cp "$work/out/runtime.v1.rs" "$out/runtime.v1.rs"
echo "wrote $out/runtime.v1.rs"
