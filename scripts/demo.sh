#!/usr/bin/env bash
# weft's demo: builds the `weft` binary, then validates and analyzes the example mesh in
# examples/shop/ (a gateway, a 90/10 canary, an external API), and then the same mesh with two
# mistakes, showing the messages an operator gets. Exits non-zero only if weft misbehaves.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/target-dir.sh
cargo build -q --release -p weft-cli
weft="$CARGO_TARGET_DIR/release/weft"

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say weft validate -f examples/shop/mesh.yaml
"$weft" validate -f examples/shop/mesh.yaml

say weft analyze -A examples/shop/mesh.yaml
"$weft" analyze -A examples/shop/mesh.yaml

say weft analyze -A examples/shop/mesh.yaml examples/shop/broken.yaml
rc=0
"$weft" analyze -A examples/shop/mesh.yaml examples/shop/broken.yaml || rc=$?
if [ "$rc" -ne 79 ]; then
  echo "expected exit code 79 (issues found), got $rc" >&2
  exit 1
fi
echo "(exit code $rc: issues found, as istioctl analyze reports them)"

say weft analyze -A -o json examples/shop/mesh.yaml examples/shop/broken.yaml
"$weft" analyze -A -o json examples/shop/mesh.yaml examples/shop/broken.yaml
