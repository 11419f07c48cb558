#!/usr/bin/env bash
# weft's demo: builds weft, then
#  1. runs Istio's bookinfo as a mesh on this machine (`weft up --demo bookinfo -d`: the control
#     plane, the four bookinfo services with weft-proxy sidecars, the ingress gateway), and shows
#     the product page answering through the gateway;
#  2. validates and analyzes the example mesh in examples/shop/ (a gateway, a 90/10 canary, an
#     external API), and then the same mesh with two mistakes, showing the messages an operator
#     gets.
# Run by a person (stdout is a terminal), the bookinfo mesh keeps running at the end so that the
# page can be opened in a browser (`weft down` stops it); otherwise (CI, a pipe) it is stopped
# before the script exits. WEFT_DEMO_KEEP=1 or 0 overrides. Exits non-zero only if weft misbehaves.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/target-dir.sh
cargo build -q --release -p weft-cli -p weft-proxy -p weft-demo --bins
bin="$CARGO_TARGET_DIR/release"
weft="$bin/weft"

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

if [ -z "${WEFT_CONFORMANCE_DIR:-}" ]; then
  WEFT_CONFORMANCE_DIR="$(cd .. && pwd)/shared/conformance/istio"
fi
export WEFT_CONFORMANCE_DIR
keep="${WEFT_DEMO_KEEP:-}"
if [ -z "$keep" ]; then
  if [ -t 1 ]; then keep=1; else keep=0; fi
fi

say weft up --demo bookinfo -d
if "$weft" status >/dev/null 2>&1; then
  echo "(a mesh started earlier is running; stopping it first)"
  "$weft" down
fi
"$weft" up --demo bookinfo -d
[ "$keep" = 1 ] || trap '"$weft" down >/dev/null 2>&1 || true' EXIT
status_json="$("$weft" status -o json)"
url="$(printf '%s\n' "$status_json" | sed -n 's/^ *"gatewayUrl": "\([^"]*\)".*/\1/p')"
admin="$(printf '%s\n' "$status_json" | sed -n 's/^ *"admin": "\([^"]*\)".*/\1/p' | head -1)"

say curl -s "$url/productpage" "| grep 'Reviews served by'"
for _ in 1 2 3; do
  page="$(curl -s "$url/productpage")"
  served="$(printf '%s' "$page" | grep -o 'Reviews served by: [^<(]*' || true)"
  if [ -z "$served" ]; then
    echo "the product page did not show its reviews:" >&2
    printf '%s\n' "$page" >&2
    exit 1
  fi
  echo "$served"
done

say weft apply -f bookinfo/networking/virtual-service-all-v1.yaml
"$weft" apply --control-plane "$admin" -f "$WEFT_CONFORMANCE_DIR/bookinfo/networking/virtual-service-all-v1.yaml"
sleep 0.5
for _ in 1 2 3; do
  curl -s "$url/productpage" | grep -o 'Reviews served by: [^<(]*'
done

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

if [ "$keep" = 1 ]; then
  say "bookinfo keeps running"
  echo "Open $url/productpage in a browser. Then try (see README, \"Bookinfo\"):"
  echo "  export PATH=\"$bin:\$PATH\""
  echo "  weft apply -f $WEFT_CONFORMANCE_DIR/bookinfo/networking/virtual-service-reviews-90-10.yaml"
  echo "  weft status"
  echo "  weft down"
else
  say weft down
  trap - EXIT
  "$weft" down
fi
