#!/usr/bin/env bash
# hot-text.sh — writes plugins/hot-text.ld, the linker script that puts the
# functions the plugins' usual calls execute at the front of `.text`. Every
# plugin build links with it (plugins/hot-text.rs). Run it again after a
# change to what a call executes, or after a toolchain or dependency bump, and
# compare `cni-bench --only rss` before and after (docs/benchmarks.md, F19).
#
# Why: a plugin is a short-lived process whose peak RSS is nearly all pages of
# its own executable, and the kernel maps file pages around each fault
# (fault-around, 64 KiB; on kernels with large page-cache folios, the whole
# folio). Code a call never runs still becomes resident when it shares those
# pages with code it does run.
#
# How: builds the plugins unstripped and without the current list, runs every
# verb of every plugin on the configurations operators use (each cniVersion,
# ipMasq on and off, dual stack, portmap and loopback chained) under
# `valgrind --tool=callgrind`, and writes the functions that ran, in the order
# of the call that first ran them (a pod's bridge ADD first). Everything that
# differs between two builds of the same source is a wildcard: symbol hashes,
# v0 back-references (their offsets follow the hashes' lengths) and LLVM's
# numeric suffixes. A function the list misses is only placed later, and costs
# at most one more 64 KiB window. Needs root (it runs inside its own
# `unshare -n`), valgrind and jq.
#
# Usage: scripts/hot-text.sh            (writes plugins/hot-text.ld)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [[ "${1:-}" != --inside ]]; then
  command -v valgrind >/dev/null || { echo "hot-text.sh: needs valgrind" >&2; exit 1; }
  command -v jq >/dev/null || { echo "hot-text.sh: needs jq" >&2; exit 1; }
  TARGET=$(mktemp -d /tmp/hot-text.XXXXXX)
  trap 'rm -rf "$TARGET"' EXIT
  # Unstripped so callgrind sees names; the layout does not change code.
  # Static musl, the build we ship: its libc's functions are named too.
  CARGO_PROFILE_RELEASE_STRIP=false CNI_RS_HOT_TEXT=0 CARGO_TARGET_DIR="$TARGET/target" \
    cargo build --release --target x86_64-unknown-linux-musl \
    -p bridge -p host-local -p portmap -p loopback
  # Its own network namespace: nothing below touches the machine's.
  unshare -n "$ROOT/scripts/hot-text.sh" --inside "$TARGET"
  exit 0
fi

WORK=$2
BIN=$WORK/target/x86_64-unknown-linux-musl/release
OUT=$WORK/callgrind
mkdir -p "$OUT"
PODS=()
cleanup() { for p in "${PODS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
ip link set lo up

# A pod: a process holding a fresh network namespace.
new_pod() {
  unshare -n sleep 600 &
  PODS+=("$!")
  POD=/proc/$!/ns/net
  sleep 0.05
}

# call SCENARIO PLUGIN VERB CONTAINER CONFIG: one plugin call under callgrind
# (children too: host-local from bridge, the bridge's forked helpers).
SEQ=0
call() {
  local plugin=$2 verb=$3 id=$4 conf=$5 scenario
  SEQ=$((SEQ + 1))
  # Every pod's bridge ADD (and the host-local ADD it runs) sorts first: the
  # call whose peak RSS matters most keeps its code together, whatever the
  # cniVersion, ipMasq or IPAM form.
  local rank=1
  [[ $plugin == bridge && $verb == ADD ]] && rank=0
  scenario=$(printf '%d-%03d-%s' "$rank" "$SEQ" "$1")
  # What containerd sends: a 64-hex sandbox ID and the kubelet's CNI_ARGS.
  id=$(printf '%s' "$id" | sha256sum | cut -c1-64)
  echo "$conf" | CNI_COMMAND=$verb CNI_CONTAINERID=$id CNI_NETNS=$POD \
    CNI_IFNAME=eth0 CNI_PATH=$BIN \
    CNI_ARGS="K8S_POD_INFRA_CONTAINER_ID=$id;K8S_POD_UID=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0;IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-7d4b9c8f6-x2x9q" \
    valgrind -q --tool=callgrind --demangle=no --trace-children=yes \
      --callgrind-out-file="$OUT/$scenario.%p" "$BIN/$plugin" \
    >"$WORK/last.json" 2>>"$WORK/valgrind.log" \
    || { echo "hot-text.sh: $plugin $verb ($scenario) failed:" >&2; cat "$WORK/last.json" >&2; exit 1; }
}

bridge_conf() { # VERSION BRIDGE IPMASQ IPAM-FORM N
  local n=$5 ipam
  case $4 in
    ranges) ipam="{\"ranges\":[[{\"subnet\":\"10.99.$n.0/24\"}]],\"routes\":[{\"dst\":\"0.0.0.0/0\"}]}" ;;
    subnet) ipam="{\"subnet\":\"10.99.$n.0/24\",\"rangeStart\":\"10.99.$n.10\",\"gateway\":\"10.99.$n.1\"}" ;;
    dual) ipam="{\"ranges\":[[{\"subnet\":\"10.99.$n.0/24\"}],[{\"subnet\":\"fd42:$n::/64\"}]]}" ;;
  esac
  jq -cn --arg v "$1" --arg br "$2" --argjson masq "$3" --argjson ipam "$ipam" \
    --arg dir "$WORK/leases" '{cniVersion:$v, name:"hot", type:"bridge", bridge:$br,
      isGateway:true, ipMasq:$masq, hairpinMode:true,
      ipam:($ipam + {type:"host-local", dataDir:$dir})}'
}

# The usual life of a pod, in the order a runtime calls, for each cniVersion,
# ipMasq setting and form of IPAM configuration operators write.
n=0
for v in 1.0.0 0.4.0 1.1.0 0.3.1; do
  for masq in false true; do
    for form in ranges subnet dual; do
      n=$((n + 1))
      conf=$(bridge_conf "$v" "hotbr$n" "$masq" "$form" "$n")
      new_pod
      call "add-$v-$masq-$form" bridge ADD "c$n" "$conf"
      prev=$(cat "$WORK/last.json")
      with_prev=$(jq -c --argjson p "$prev" '. + {prevResult: $p}' <<<"$conf")
      pm=$(jq -c --argjson p "$prev" --arg v "$v" -n '{cniVersion:$v, name:"hot", type:"portmap",
        capabilities:{portMappings:true}, snat:true, prevResult:$p,
        runtimeConfig:{portMappings:[{hostPort:18080, containerPort:80, protocol:"tcp"},
                                     {hostPort:18053, containerPort:53, protocol:"udp"}]}}')
      lo=$(jq -cn --arg v "$v" '{cniVersion:$v, name:"hot", type:"loopback"}')
      call "portmap-add-$v" portmap ADD "c$n" "$pm"
      call "loopback-add-$v" loopback ADD "c$n" "$lo"
      if [[ $v != 0.3.1 ]]; then
        call "check-$v-$masq-$form" bridge CHECK "c$n" "$with_prev"
        call "portmap-check-$v" portmap CHECK "c$n" "$pm"
        call "loopback-check-$v" loopback CHECK "c$n" "$lo"
      fi
      call "portmap-del-$v" portmap DEL "c$n" "$pm"
      call "loopback-del-$v" loopback DEL "c$n" "$lo"
      call "del-$v-$masq-$form" bridge DEL "c$n" "$with_prev"
    done
  done
done
for p in bridge host-local portmap loopback; do
  call "version-$p" "$p" VERSION none '{"cniVersion":"1.1.0"}'
done
conf=$(bridge_conf 1.1.0 hotbr1 false ranges 1)
call status bridge STATUS none "$conf"
call gc bridge GC none "$(jq -c '. + {"cni.dev/valid-attachments": []}' <<<"$conf")"

# Every function that ran, in the order of the scenario that first ran it
# (every bridge ADD first: the call whose memory matters most), with what
# differs between two builds of the same source wildcarded: hashes, v0
# back-references, LLVM's numeric suffixes.
# Rust merges identical functions into aliases, and callgrind reports any one
# of a code address's names while the section carries the original's, so
# every name at an address that ran is listed.
for p in bridge host-local portmap loopback; do
  nm --defined-only "$BIN/$p" | awk -v b="$BIN/$p" '$2 ~ /^[tTwW]$/ { print "nm\t" b "\t" $1 "\t" $3 }'
done >"$WORK/symbols.tsv"
for f in "$OUT"/*; do
  bin=$(sed -n 's/^cmd: *\([^ ]*\).*/\1/p' "$f")
  sed -nE 's/^c?fn=\([0-9]+\) (.+)$/\1/p' "$f" | sed -E "s/'[0-9]+\$//" \
    | awk -v b="$bin" '{ print "ran\t" b "\t" $0 }'
done | cat "$WORK/symbols.tsv" - | awk -F'\t' '
  $1 == "nm" { addr[$2, $4] = $3; names[$2, $3] = names[$2, $3] "\t" $4; next }
  !(($2, $3) in addr) { next }
  { n = split(substr(names[$2, addr[$2, $3]], 2), alias, "\t")
    for (i = 1; i <= n; i++) {
      name = alias[i]
      gsub(/17h[0-9a-f]+E/, "17h*E", name)
      gsub(/Cs[0-9A-Za-z]+_/, "Cs*_", name)
      if (name ~ /^_R/) gsub(/B[0-9A-Za-z]*_/, "B*_", name)
      sub(/\.llvm\.[0-9]+$/, "*", name)
      sub(/\.[0-9]+$/, "*", name)
      if (!(name in seen)) { seen[name] = 1; print name } } }
' >"$WORK/hot.txt"

{
  cat <<'EOF'
/* plugins/hot-text.ld — written by scripts/hot-text.sh; do not edit by hand.
 * Every plugin links with it (plugins/hot-text.rs; docs/benchmarks.md, F19).
 *
 * Places the functions that the plugins' usual calls execute at the front of
 * the executable code, in the order of the call that first ran them (a pod's
 * bridge ADD first), so that a call keeps few pages of the binary resident.
 * Hashes, v0 back-references and LLVM's numeric suffixes are wildcards: the
 * list survives rebuilds; a function it misses is only placed later.
 * INSERT BEFORE .text works with GNU ld (the musl build) and lld (the glibc
 * build); `.init` and `.fini` join the region where no earlier rule of the
 * linker's own layout takes them. musl's start files and its libc (memcpy,
 * posix_spawn's child, ...) follow, with __libc_start_main, which valgrind
 * calls "(below main)", and the exit path, which callgrind does not record.
 * The CPU-feature paths of sha2 and memchr and the `core::arch` intrinsics
 * they call go first whole: valgrind does not emulate SHA-NI or AVX2, so it
 * only ever sees the portable code. `#[cold]` functions that ran are in
 * `.text.unlikely.*`.
 */
SECTIONS
{
  .text.hot :
  {
    KEEP (*(SORT_NONE(.init)))
    KEEP (*(SORT_NONE(.fini)))
    *crt1.o(.text)
    *libc.a:*(.text .text.*)
    *(.text.__libc_start_main .text.exit .text._Exit)
    *(.text._ZN4sha2* .text._ZN6memchr4arch* .text._ZN4core9core_arch* .text._RNv*4core9core_arch*)
EOF
  sed -E 's/^(.*)$/    *(.text.\1 .text.unlikely.\1)/' "$WORK/hot.txt"
  cat <<'EOF'
  }
}
INSERT BEFORE .text;
EOF
} >"$ROOT/plugins/hot-text.ld"
echo "hot-text.sh: wrote plugins/hot-text.ld ($(wc -l <"$WORK/hot.txt") functions)" >&2
