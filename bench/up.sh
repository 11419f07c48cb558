#!/usr/bin/env bash
# Start-up time of `weft up --demo bookinfo`: from the start of `weft up` to every proxy SYNCED
# (control plane's view), every proxy /ready and the gateway serving /productpage with 200, as
# `weft up` measures it (readyAfterMs in `weft status -o json`), plus the wall time of `weft up
# -d` as a user sees it. Release binaries; RUNS runs (default 7), median printed.
# Usage: bench/up.sh [RUNS] [loopback|namespaces]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/target-dir.sh
runs="${1:-7}"
mode="${2:-loopback}"
cargo build -q --release -p weft-cli -p weft-proxy -p weft-demo --bins
weft="$CARGO_TARGET_DIR/release/weft"
if [ -z "${WEFT_CONFORMANCE_DIR:-}" ]; then
  WEFT_CONFORMANCE_DIR="$(cd .. && pwd)/shared/conformance/istio"
fi
export WEFT_CONFORMANCE_DIR
state="$(mktemp -d)"
trap '"$weft" down --state-dir "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
ready=()
wall=()
for _ in $(seq "$runs"); do
  t0=$(date +%s%N)
  "$weft" up --demo bookinfo --mode "$mode" -d --state-dir "$state" --xds-port 0 --admin-port 0 >/dev/null
  t1=$(date +%s%N)
  ms="$("$weft" status -o json --state-dir "$state" | sed -n 's/^ *"readyAfterMs": \([0-9]*\).*/\1/p')"
  ready+=("$ms")
  wall+=($(( (t1 - t0) / 1000000 )))
  "$weft" down --state-dir "$state" >/dev/null
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "weft up --demo bookinfo ($mode, release, $runs runs; $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg))"
echo "  ready (every proxy SYNCED and /ready, gateway 200): median $(median "${ready[@]}") ms  runs: ${ready[*]}"
echo "  weft up -d wall time:                              median $(median "${wall[@]}") ms  runs: ${wall[*]}"
