#!/usr/bin/env bash
# Control-plane benchmark: SERVICES services, CLIENTS lightweight xDS clients in one process
# (weft-xds AdsClients), and the time from a config change to every affected proxy having the
# new config (received and ACKed), p50/p99/max, for a VirtualService change (all proxies, RDS)
# and an endpoint change (all proxies, EDS); control-plane RSS and CPU from /proc.
#
# Usage: bench/control-plane.sh
# Environment (all optional):
#   SERVICES=1000 CLIENTS=2000 ROUNDS=5   size and repetitions (each round: one change of each kind)
#   DISTINCT=0     1: every client is the sidecar of a different pod (own IP and labels, so its
#                  own translation); 0: clients of client-only workloads (one shared translation)
#   DELTA=0        1: the clients speak delta xDS (default: state of the world)
#   DEBOUNCE_MS=100                       the control plane's --debounce-ms
#   WEFT_BIN=      weft binary (default: cargo build --release -p weft-cli)
#   BENCH_BIN=     the driver, cp-bench (default: built from bench/control-plane); with WEFT_BIN,
#                  this runs an older build side by side with the current one
#   OUT=bench/results/control-plane.md    KEEP=1 keeps the work directory (config, logs)
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=${SERVICES:-1000}
CLIENTS=${CLIENTS:-2000}
ROUNDS=${ROUNDS:-5}
DISTINCT=${DISTINCT:-0}
DEBOUNCE_MS=${DEBOUNCE_MS:-100}
DELTA=${DELTA:-0}
OUT=${OUT:-bench/results/control-plane.md}
. scripts/target-dir.sh

if [ -z "${WEFT_BIN:-}" ]; then
  echo "building weft (release)..." >&2
  cargo build --release -q -p weft-cli
  WEFT_BIN="$CARGO_TARGET_DIR/release/weft"
fi
if [ -z "${BENCH_BIN:-}" ]; then
  echo "building the bench driver (release)..." >&2
  cargo build --release -q --manifest-path bench/control-plane/Cargo.toml
  BENCH_BIN="$CARGO_TARGET_DIR/release/cp-bench"
fi

# One connection per client, and as many on the control plane's side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CLIENTS + 256)) ]; then
  echo "error: open-file limit $(ulimit -n) is below $((CLIENTS + 256)); raise it (ulimit -n)" >&2
  exit 1
fi

work=$(mktemp -d)
cp_pid=""
cleanup() {
  if [ -n "$cp_pid" ]; then kill "$cp_pid" 2>/dev/null || true; wait "$cp_pid" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

"$BENCH_BIN" gen "$work/config" "$SERVICES"
RUST_LOG=${RUST_LOG:-info} "$WEFT_BIN" control-plane --config-dir "$work/config" --xds-addr 127.0.0.1:0 \
  --admin-addr 127.0.0.1:0 --debounce-ms "$DEBOUNCE_MS" >"$work/cp.out" 2>"$work/cp.log" &
cp_pid=$!
for _ in $(seq 1 600); do
  grep -q "admin http://" "$work/cp.out" 2>/dev/null && break
  kill -0 "$cp_pid" 2>/dev/null || { echo "error: the control plane exited:" >&2; cat "$work/cp.log" >&2; exit 1; }
  sleep 0.1
done
line=$(head -n1 "$work/cp.out")
xds=$(echo "$line" | awk '{for(i=1;i<=NF;i++) if ($i=="xds") print $(i+1)}')
admin=$(echo "$line" | awk '{for(i=1;i<=NF;i++) if ($i=="admin") print $(i+1)}')
[ -n "$xds" ] && [ -n "$admin" ] || { echo "error: no addresses in: $line" >&2; exit 1; }

flags=()
[ "$DISTINCT" = 1 ] && flags+=(--distinct)
[ "$DELTA" = 1 ] && flags+=(--delta)
mkdir -p "$(dirname "$OUT")"
{
  echo "# Control plane: $SERVICES services, $CLIENTS xDS clients ($( [ "$DISTINCT" = 1 ] && echo "distinct proxies" || echo "one shared translation" ), $( [ "$DELTA" = 1 ] && echo delta || echo SotW ) xDS)"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, debounce ${DEBOUNCE_MS} ms, weft $(git rev-parse --short HEAD 2>/dev/null || echo '?'). Latency: from the apply request to each proxy's callback for the new config (which ACKs it)."
  echo
  "$BENCH_BIN" run --xds "$xds" --admin "$admin" --clients "$CLIENTS" --rounds "$ROUNDS" \
    --cp-pid "$cp_pid" --clk-tck "$(getconf CLK_TCK)" "${flags[@]}"
} | tee "$OUT"
# The control plane's own view: time from a change being seen to the snapshots being stored.
grep -o 'elapsed_ms=[0-9.]*' "$work/cp.log" | sed 's/elapsed_ms=//' | sort -n | awk '
  { v[NR]=$1 } END { if (NR) printf "\nControl-plane push (model rebuild + translation + cache update), %d pushes: median %.0f ms, max %.0f ms.\n", NR, v[int((NR+1)/2)], v[NR] }' | tee -a "$OUT"
