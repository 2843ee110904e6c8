#!/usr/bin/env bash
# install.sh — install our `bridge`, `host-local`, `loopback` and `portmap` CNI plugins and the example
# conflist where CNI clients (containerd, CRI-O, podman, cnitool) look for them.
#
#   scripts/install.sh [--force] [--no-build] [--no-conf] [--conflist FILE]
#                      [--musl | --glibc]
#
# Destinations (DESTDIR is prepended to both, for packaging and tests):
#   binaries  ${DESTDIR}${PREFIX:-/opt/cni/bin}/{bridge,host-local,loopback,portmap}
#   conflist  ${DESTDIR}${CNI_CONF_DIR:-/etc/cni/net.d}/<basename of the conflist>
# Source binaries: ${CNI_RS_BUILD_DIR} if set; otherwise the static musl build
# (recommended: ${CARGO_TARGET_DIR:-target}/<arch>-unknown-linux-musl/release) when it
# is built or buildable (that rustup target installed), else the glibc build
# (${CARGO_TARGET_DIR:-target}/release); --musl / --glibc choose. Missing
# binaries are built with `cargo build --release [--target ...]` unless --no-build.
# The script says which build it installed. The conflist defaults to
# conf/10-bridge.conflist of this repository.
#
# An operator's files are never overwritten silently: a destination that already
# exists with different content is left alone (and named on stderr) unless
# --force is given; identical files are skipped. Files are written to a temp
# name in the destination directory and renamed into place, so a client that
# runs a plugin during the install sees either the old or the new binary,
# never a half-written one (libcni retries "text file busy", not ENOEXEC).
#
# Exit status: 0 all installed or already identical; 2 usage/source error;
# 3 at least one differing destination was left alone (rerun with --force).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FORCE=0 BUILD=1 CONF=1 FLAVOR=auto
CONFLIST=$ROOT/conf/10-bridge.conflist

usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "install.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case $1 in
    --force) FORCE=1 ;;
    --no-build) BUILD=0 ;;
    --no-conf) CONF=0 ;;
    --musl) FLAVOR=musl ;;
    --glibc) FLAVOR=glibc ;;
    --conflist) [ $# -ge 2 ] || usage; CONFLIST=$2; shift ;;
    --conflist=*) CONFLIST=${1#--conflist=} ;;
    -h|--help) usage ;;
    *) echo "install.sh: unknown argument '$1'" >&2; usage ;;
  esac
  shift
done

BIN_DST=${DESTDIR:-}${PREFIX:-/opt/cni/bin}
CONF_DST=${DESTDIR:-}${CNI_CONF_DIR:-/etc/cni/net.d}
PLUGINS=(bridge host-local loopback portmap)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MUSL_TARGET=$(uname -m)-unknown-linux-musl
MUSL_DIR=$TARGET_DIR/$MUSL_TARGET/release
GLIBC_DIR=$TARGET_DIR/release

# has_bins DIR: every plugin is there and executable.
has_bins() { local p; for p in "${PLUGINS[@]}"; do [ -x "$1/$p" ] || return 1; done; }
# musl_buildable: the toolchain can build the musl target.
musl_buildable() {
  command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$MUSL_TARGET"
}
# build FLAVOR: cargo build of the plugins for FLAVOR (musl or glibc).
build() {
  local target=()
  [ "$1" = musl ] && target=(--target "$MUSL_TARGET")
  echo "install.sh: building the $1 release binaries (cargo build --release ${target[*]})" >&2
  (cd "$ROOT" && cargo build --release "${target[@]}" --bin bridge --bin host-local --bin loopback --bin portmap) >&2
}

if [ -n "${CNI_RS_BUILD_DIR:-}" ]; then
  BIN_SRC=$CNI_RS_BUILD_DIR
  has_bins "$BIN_SRC" || die "CNI_RS_BUILD_DIR=$BIN_SRC lacks one of ${PLUGINS[*]}"
else
  if [ "$FLAVOR" = auto ]; then
    if has_bins "$MUSL_DIR" || { [ "$BUILD" = 1 ] && musl_buildable; }; then
      FLAVOR=musl
    else
      FLAVOR=glibc
    fi
  fi
  if [ "$FLAVOR" = musl ]; then BIN_SRC=$MUSL_DIR; else BIN_SRC=$GLIBC_DIR; fi
  if ! has_bins "$BIN_SRC"; then
    [ "$BUILD" = 1 ] || die "$BIN_SRC lacks one of ${PLUGINS[*]} and --no-build was given"
    if [ "$FLAVOR" = musl ] && ! musl_buildable; then
      die "the $MUSL_TARGET target is not installed (rustup target add $MUSL_TARGET), or use --glibc"
    fi
    build "$FLAVOR"
  fi
fi
for p in "${PLUGINS[@]}"; do [ -x "$BIN_SRC/$p" ] || die "$BIN_SRC/$p is missing or not executable"; done
# What is installed, from the binary itself: a dynamic build names its loader.
if grep -qa 'ld-linux' "$BIN_SRC/bridge"; then
  LINKAGE="dynamic (needs the node's glibc)"
else
  LINKAGE="static"
fi
case $BIN_SRC in
  "$MUSL_DIR") BUILD_NAME="the static musl build" ;;
  "$GLIBC_DIR") BUILD_NAME="the glibc build" ;;
  *) BUILD_NAME="CNI_RS_BUILD_DIR" ;;
esac
echo "build      $BUILD_NAME, $LINKAGE: $BIN_SRC"
if [ "$CONF" = 1 ]; then
  [ -f "$CONFLIST" ] || die "conflist $CONFLIST not found (use --conflist FILE or --no-conf)"
  if command -v jq >/dev/null; then
    jq -e '.cniVersion and .name and (.plugins|length>0)' "$CONFLIST" >/dev/null \
      || die "$CONFLIST is not a conflist (needs cniVersion, name, plugins)"
  fi
fi

LEFT_ALONE=()
TMPF=
trap '[ -z "$TMPF" ] || rm -f "$TMPF"' EXIT
# place SRC DSTDIR NAME MODE: install SRC as DSTDIR/NAME unless a different file is there.
place() {
  local src=$1 dir=$2 name=$3 mode=$4 dst
  dst=$dir/$name
  mkdir -p "$dir"
  if [ -e "$dst" ] || [ -L "$dst" ]; then
    if [ -f "$dst" ] && cmp -s "$src" "$dst"; then
      echo "unchanged  $dst"
      return 0
    fi
    if [ "$FORCE" != 1 ]; then
      echo "install.sh: $dst exists and differs; left alone (use --force to replace)" >&2
      LEFT_ALONE+=("$dst")
      return 0
    fi
  fi
  TMPF=$(mktemp "$dir/.$name.XXXXXX")
  cp "$src" "$TMPF"
  chmod "$mode" "$TMPF"
  mv -f "$TMPF" "$dst"
  TMPF=
  echo "installed  $dst"
}

for p in "${PLUGINS[@]}"; do place "$BIN_SRC/$p" "$BIN_DST" "$p" 0755; done
if [ "$CONF" = 1 ]; then place "$CONFLIST" "$CONF_DST" "$(basename "$CONFLIST")" 0644; fi

if [ "${#LEFT_ALONE[@]}" -gt 0 ]; then
  echo "install.sh: ${#LEFT_ALONE[@]} file(s) left alone: ${LEFT_ALONE[*]}" >&2
  exit 3
fi
