#!/usr/bin/env bash
# profile-plugin.sh — where does one bridge (+ host-local) ADD / DEL spend its
# time?  strace -c -f summaries and a timestamped trace of one pod, for the
# plugins in DIR, inside throwaway network namespaces.
#
# Usage: sudo benches/profile-plugin.sh [DIR] [OUT]
#   DIR  plugin dir (default target/release); compare with /usr/lib/cni
#   OUT  output dir (default /tmp/cni-profile-<basename DIR>)
# Env:   IPMASQ=true|false (default false), DUAL=1 for a dual-stack config
#
# Output in OUT: add-summary.txt / del-summary.txt (strace -c -f),
# add-trace.txt / del-trace.txt (strace -f -tt -T), and a digest on stdout:
# wall time, execve count (which programs), netlink sendmsg/recvmsg count,
# /proc/sys opens, sleeps.
#
# Safety: the node and the pod are `unshare --net` sleep processes started
# here and killed by PID at exit; every command runs via nsenter into the
# node netns, which is checked not to be PID 1's.
set -euo pipefail

DIR=$(realpath "${1:-target/release}")
OUT=${2:-/tmp/cni-profile-$(basename "$DIR")}
IPMASQ=${IPMASQ:-false}
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for t in strace nsenter unshare ip jq; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
for p in bridge host-local; do [ -x "$DIR/$p" ] || { echo "no $DIR/$p" >&2; exit 1; }; done
mkdir -p "$OUT"
DATA=$(mktemp -d /dev/shm/cni-profile-data.XXXXXX)

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$DATA"
}
trap cleanup EXIT INT TERM

MYNS=$(readlink /proc/self/ns/net)
# spawn_ns: a process parked in a fresh netns; sets NS_PID.
spawn_ns() {
  unshare --net sleep 3600 < /dev/null > /dev/null 2>&1 &
  NS_PID=$!
  PIDS+=("$NS_PID")
  # wait until the child has actually unshared (then it runs sleep)
  local ns=""
  for _ in $(seq 100); do
    ns=$(readlink /proc/$NS_PID/ns/net 2>/dev/null || true)
    [ -n "$ns" ] && [ "$ns" != "$MYNS" ] && return 0
    sleep 0.02
  done
  echo "netns of $NS_PID never appeared" >&2; exit 1
}
spawn_ns; NODE=$NS_PID
# PID 1's link may be unreadable in a sandbox; then only our own is compared.
[ "$(readlink /proc/$NODE/ns/net)" != "$(readlink /proc/1/ns/net 2>/dev/null || true)" ] || { echo "node netns is PID 1's" >&2; exit 1; }
innode() { nsenter --net=/proc/$NODE/ns/net "$@"; }
innode ip link set lo up

if [ "${DUAL:-0}" = 1 ]; then
  RANGES='[[{"subnet":"10.244.3.0/24"}],[{"subnet":"fd10:244:3::/64"}]]'; ROUTES='[{"dst":"0.0.0.0/0"},{"dst":"::/0"}]'
else
  RANGES='[[{"subnet":"10.244.1.0/24"}]]'; ROUTES='[{"dst":"0.0.0.0/0"}]'
fi
CONF=$OUT/conf.json
jq -cn --argjson masq "$IPMASQ" --argjson ranges "$RANGES" --argjson routes "$ROUTES" --arg data "$DATA" '{
  cniVersion: "1.0.0", name: "profnet", type: "bridge", bridge: "cnib0", isGateway: true,
  ipMasq: $masq, ipam: {type: "host-local", ranges: $ranges, routes: $routes, dataDir: $data}}' > "$CONF"

# call CMD ID POD STDIN [strace args...] -> stdout of the plugin
call() {
  local cmd=$1 id=$2 pod=$3 stdin=$4; shift 4
  innode env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CNI_COMMAND=$cmd CNI_CONTAINERID=$id CNI_NETNS=/proc/$pod/ns/net CNI_IFNAME=eth0 CNI_PATH=$DIR \
    "$@" "$DIR/bridge" < "$stdin"
}

# warm-up pod: creates the bridge
spawn_ns; POD=$NS_PID
call ADD warm "$POD" "$CONF" > "$OUT/warm-add.json"
jq -c --slurpfile pr "$OUT/warm-add.json" '. + {prevResult: $pr[0]}' "$CONF" > "$OUT/warm-del.json"
call DEL warm "$POD" "$OUT/warm-del.json" > /dev/null

run_pod() {  # run_pod ID MODE(summary|trace)
  local id=$1 mode=$2 pod args
  spawn_ns; pod=$NS_PID
  case $mode in
    summary) args=(strace -f -c -o) ;;
    trace) args=(strace -f -tt -T -o) ;;
    # low overhead: only process events stop the tracee (seccomp-bpf filter)
    light) args=(strace -f --seccomp-bpf -ttt -e trace=execve,exit_group -o) ;;
  esac
  call ADD "$id" "$pod" "$CONF" "${args[@]}" "$OUT/add-$mode.txt" > "$OUT/$id-add.json"
  jq -c --slurpfile pr "$OUT/$id-add.json" '. + {prevResult: $pr[0]}' "$CONF" > "$OUT/$id-del.json"
  call DEL "$id" "$pod" "$OUT/$id-del.json" "${args[@]}" "$OUT/del-$mode.txt" > /dev/null
}
run_pod p1 summary
run_pod p2 trace
for i in 1 2 3; do run_pod "l$i" light; cp "$OUT/add-light.txt" "$OUT/add-light-$i.txt"; cp "$OUT/del-light.txt" "$OUT/del-light-$i.txt"; done

timeline() {  # timeline TRACE: when each process ran, ms from the plugin's exec
  local - ; set +e +o pipefail
  awk '/execve\(/ && !/ENOENT/ { if (!($1 in st)) { match($0, /execve\("[^"]*"/); n=split(substr($0, RSTART+8, RLENGTH-9), a, "/"); name[$1]=a[n] }
                                   if (!($1 in st) || /resumed/) st[$1]=$2 }
       /exit_group|\+\+\+ exited/ { en[$1]=$2 }
       NR==1 {t0=$2}
       END { for (p in st) printf "%8.2f %8.2f  %6.2f ms  %s\n", (st[p]-t0)*1000, (en[p]-t0)*1000, (en[p]-st[p])*1000, name[p] }' "$1" | sort -n
}

digest() {  # digest TRACE
  local - f=$1
  set +e +o pipefail
  local t0 t1
  t0=$(head -1 "$f" | awk '{print $2}'); t1=$(tail -1 "$f" | awk '{print $2}')
  awk -v a="$t0" -v b="$t1" 'function s(t){split(t,x,":");return x[1]*3600+x[2]*60+x[3]}
       BEGIN{printf "  wall under strace: %.1f ms\n",(s(b)-s(a))*1000}'
  # the last execve a PID attempted is the one that worked (PATH lookups fail first)
  echo "  processes: $(awk '/execve\("/ {match($0, /execve\("[^"]*"/); p[$1]=substr($0, RSTART+8, RLENGTH-9)} END {for (k in p) {n=split(p[k], a, "/"); print a[n]}}' "$f" | sort | uniq -c | awk '{t+=$1; s=s" "$1"x "$2} END {print t " execs:" s}')"
  echo "  netlink-ish sendmsg/sendto: $(grep -cE 'sendmsg\(|sendto\(' "$f" || true)  recvmsg/recvfrom: $(grep -cE 'recvmsg\(|recvfrom\(' "$f" || true)"
  echo "  /proc/sys opens: $(grep -c 'openat(.*"/proc/sys' "$f" || true)"
  echo "  sleeps (nanosleep/clock_nanosleep/epoll waits): $(grep -cE 'nanosleep\(|epoll_pwait\(|epoll_wait\(' "$f" || true)"
  echo "  slowest syscalls:"
  { grep -E '^[0-9]+ +[0-9:.]+ .*<[0-9.]+>$' "$f" || true; } |
    awk '{d=$NF; gsub(/[<>]/,"",d); printf "%8.2f ms  [%s] %s\n", d*1000, $1, substr($0, index($0,$3), 100)}' |
    sort -rn | head -10 | sed 's/^/    /'
}
echo "== $DIR  ipMasq=$IPMASQ dual=${DUAL:-0}  (strace inflates absolute times; compare shapes)"
echo "-- ADD"; digest "$OUT/add-trace.txt"
echo "-- DEL"; digest "$OUT/del-trace.txt"
for k in 1 2 3; do echo "-- light trace $k (start, end, duration from the bridge exec; only execve/exit traced)"; echo "ADD:"; timeline "$OUT/add-light-$k.txt"; echo "DEL:"; timeline "$OUT/del-light-$k.txt"; done
echo "-- summaries: $OUT/add-summary.txt $OUT/del-summary.txt"
head -12 "$OUT/add-summary.txt"
