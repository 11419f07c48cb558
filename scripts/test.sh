#!/usr/bin/env bash
# The whole test suite: installs what the tests need (idempotently), then runs every check.
# Usage: scripts/test.sh            (from anywhere inside the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/target-dir.sh
export CARGO_TERM_COLOR=never

# The conformance data lives beside the repository (../shared). A missing folder is a failure.
if [ -z "${WEFT_CONFORMANCE_DIR:-}" ]; then
  WEFT_CONFORMANCE_DIR="$(cd .. && pwd)/shared/conformance/istio"
fi
export WEFT_CONFORMANCE_DIR
if [ ! -f "$WEFT_CONFORMANCE_DIR/README.md" ]; then
  echo "error: Istio conformance data not found at $WEFT_CONFORMANCE_DIR (set WEFT_CONFORMANCE_DIR)" >&2
  exit 1
fi

step() { printf '\n==> %s\n' "$*"; }

step "prerequisites"
command -v cargo >/dev/null || { echo "error: cargo not found; install Rust (rustup)" >&2; exit 1; }
# Debian packages the tests drive as real peers (curl through weft-proxy; headless chromium
# rendering bookinfo's page through `weft up`; ip and iptables for its namespaces mode;
# prometheus scraping the proxies). Installed once; a machine without apt must have them already.
need_pkgs=()
command -v curl >/dev/null || need_pkgs+=(curl)
# TLS and interception tests: openssl s_client as a peer, ip netns + iptables REDIRECT.
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v chromium >/dev/null || need_pkgs+=(chromium)
# weft up --mode namespaces (run as root): network namespaces, veth pairs, iptables capture.
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v iptables >/dev/null || need_pkgs+=(iptables)
command -v prometheus >/dev/null || need_pkgs+=(prometheus)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
  else
    echo "error: missing ${need_pkgs[*]}; install them (the tests use them as real peers)" >&2
    exit 1
  fi
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy

# Python grpcio: a proxyless xDS client nobody here wrote, driven by weft-xds's tests; with
# opentelemetry-proto, the OTLP receiver weft-proxy's tracing tests export to.
venv="${WEFT_VENV:-$HOME/.cache/weft-venv}"
if ! "$venv/bin/python3" -c "import grpc, opentelemetry.proto.collector.trace.v1" 2>/dev/null; then
  [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check grpcio opentelemetry-proto
fi
export PATH="$venv/bin:$PATH"

step "format"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
out="${CARGO_TARGET_DIR}/test-output.txt"
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$out" || status=$?

step "benchmark tools' tests"
cargo test -q --locked --manifest-path bench/proxy/loadgen/Cargo.toml 2>&1 | tee -a "$out" || status=$?

step "conformance summary"
cargo test -q -p weft-config --test conformance_validation --test conformance_analyzers -- --nocapture 2>&1 \
  | grep -E '^(validation conformance|analyzer conformance)' || true
cargo test -q -p weft-control --test simulation --test authz_conformance -- --nocapture 2>&1 \
  | grep -oE '(calls passing|sidecar_routes.json|authz (http|tcp)):? .*' || true

step "summary"
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$out"
exit "$status"
