#!/usr/bin/env bash
# Times `weft analyze` and `weft validate` over 1,000 VirtualServices + 1,000 DestinationRules +
# 1,000 ServiceEntries (release build). Prints each of RUNS timings and the median.
# Usage: bench/analyze.sh [N=1000] [RUNS=7]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"
runs="${2:-7}"
. scripts/target-dir.sh
cargo build -q --release -p weft-cli
weft="$CARGO_TARGET_DIR/release/weft"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 bench/analyze/gen.py "$n" > "$dir/mesh.yaml"
echo "input: $(grep -c '^kind:' "$dir/mesh.yaml") resources, $(du -h "$dir/mesh.yaml" | cut -f1)"
for cmd in "analyze -A $dir/mesh.yaml" "validate -f $dir/mesh.yaml"; do
  times=()
  for _ in $(seq "$runs"); do
    start=$(date +%s%N)
    rc=0
    $weft $cmd > "$dir/out.txt" 2>&1 || rc=$?
    end=$(date +%s%N)
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 79 ]; then
      echo "weft $cmd failed (exit $rc):"; head -20 "$dir/out.txt"; exit 1
    fi
    times+=($(( (end - start) / 1000000 )))
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
  echo "weft ${cmd%% *}: runs ${times[*]} ms; median ${median} ms"
done
