#!/usr/bin/env bash
# install-cni.sh — entry point of the DaemonSet's init container (deploy/daemonset.yaml):
# render this node's conflist from the template and install it with our plugins.
#
# The node's pod CIDRs come from (first that is set):
#   POD_CIDRS   comma-separated, e.g. "10.244.3.0/24,fd10:244:3::/64"
#   NODE_JSON   path of a Node object (JSON), e.g. saved with `kubectl get node -o json`
#   NODE_NAME   (downward API spec.nodeName) -> GET /api/v1/nodes/$NODE_NAME on the API
#               server with the pod's service-account token
# The template (CNI_CONF_TEMPLATE, default conf/10-bridge.conflist next to install.sh)
# gets, in every host-local IPAM block, one range set per CIDR; a "::/0" route is added
# when an IPv6 CIDR is present. The rendered file is installed by scripts/install.sh
# (same DESTDIR/PREFIX/CNI_CONF_DIR env; extra flags from INSTALL_FLAGS, e.g. --force).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The image keeps the repository layout (deploy/, scripts/, conf/, target/release/).
ROOT=$(cd "$HERE/.." && pwd)
INSTALL=$ROOT/scripts/install.sh
TEMPLATE=${CNI_CONF_TEMPLATE:-$ROOT/conf/10-bridge.conflist}
die() { echo "install-cni.sh: $*" >&2; exit 2; }
[ -x "$INSTALL" ] || die "$INSTALL not found"
[ -f "$TEMPLATE" ] || die "template $TEMPLATE not found"

node_json() {
  if [ -n "${NODE_JSON:-}" ]; then cat "$NODE_JSON"; return; fi
  [ -n "${NODE_NAME:-}" ] || die "set POD_CIDRS, NODE_JSON or NODE_NAME"
  local sa=/var/run/secrets/kubernetes.io/serviceaccount
  [ -r "$sa/token" ] || die "no service-account token in $sa"
  curl -fsS --cacert "$sa/ca.crt" -H "Authorization: Bearer $(cat "$sa/token")" \
    "https://${KUBERNETES_SERVICE_HOST:?}:${KUBERNETES_SERVICE_PORT:-443}/api/v1/nodes/$NODE_NAME"
}

if [ -n "${POD_CIDRS:-}" ]; then
  CIDRS=$(jq -cn --arg s "$POD_CIDRS" '$s | split(",") | map(select(length > 0))')
else
  CIDRS=$(node_json | jq -c '.spec.podCIDRs // ([.spec.podCIDR] | map(select(. != null)))')
fi
[ "$(jq 'length' <<<"$CIDRS")" -gt 0 ] || die "this node has no podCIDR (is --allocate-node-cidrs on?)"
echo "install-cni.sh: pod CIDRs $CIDRS" >&2

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
OUT=$WORK/$(basename "$TEMPLATE")
jq --argjson cidrs "$CIDRS" '
  def v6: test(":");
  .plugins |= map(
    if (.ipam.type? // "") == "host-local" then
      .ipam |= (del(.subnet, .rangeStart, .rangeEnd, .gateway)
        | .ranges = [$cidrs[] | [{subnet: .}]]
        | if any($cidrs[]; v6) and ((.routes // []) | any(.dst == "::/0") | not)
          then .routes = ((.routes // []) + [{dst: "::/0"}]) else . end)
    else . end)' "$TEMPLATE" > "$OUT"
jq -e '[.plugins[] | select(.ipam.type? == "host-local")] | length > 0' "$OUT" >/dev/null \
  || die "template $TEMPLATE has no host-local IPAM block to fill"

rc=0
# shellcheck disable=SC2086 # INSTALL_FLAGS is a word list on purpose
"$INSTALL" --no-build --conflist "$OUT" ${INSTALL_FLAGS:-} || rc=$?
exit "$rc"
