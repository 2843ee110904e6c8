#!/usr/bin/env bash
# test.sh — the project's one test command (README "Test"; .ci/run runs it).
#
# 1. The whole suite on the host's default target (glibc, dynamic).
# 2. The whole suite again with every test and plugin built for static musl,
#    the build we ship (README "Build", deploy/Dockerfile), when that Rust
#    target is installed (`rustup target add x86_64-unknown-linux-musl`);
#    otherwise this pass is skipped with a message saying so.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --all-targets

MUSL=x86_64-unknown-linux-musl
if rustup target list --installed 2>/dev/null | grep -qx "$MUSL"; then
  echo "test.sh: second pass, everything built for $MUSL" >&2
  cargo test --workspace --target "$MUSL" --all-targets
else
  echo "test.sh: skipping the $MUSL pass: that Rust target is not installed" \
       "(rustup target add $MUSL)" >&2
fi
