#!/usr/bin/env bash
# check.sh — what to run before pushing: formatting, lints, then README's test
# command. CI (.ci/run) runs only the test command; see README "Test".
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets -- -D warnings
scripts/test.sh
