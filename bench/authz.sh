#!/usr/bin/env bash
# Cost of the authentication and authorization filters per request: weft-proxy answering
# directly (no upstream, so only the proxy is measured) with and without the filters a sidecar
# gets from a RequestAuthentication (jwt_authn, Istio's test JWKS, an RS256 token on every
# request) and AuthorizationPolicies (a DENY and an ALLOW policy on request principal, path,
# method and header, Istio-shaped RBAC trees). One proxy worker, saturated by wrk; every
# number is the median over RUNS rounds.
#
#   cost per request (µs) = 1e6 / rps(filters) - 1e6 / rps(none)     (one saturated core)
#
# Usage: bench/authz.sh
# Environment (all optional):
#   RUNS=5 DURATION=5 CONNS=4   rounds, seconds per measurement, wrk connections
#   WEFT_PROXY_BIN=             weft-proxy binary (default: cargo build --release -p weft-proxy)
#   PORT_BASE=18700             loopback ports PORT_BASE..PORT_BASE+3
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-4}
PORT_BASE=${PORT_BASE:-18700}
. scripts/target-dir.sh

die() { echo "bench/authz.sh: error: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

command -v wrk >/dev/null || die "wrk is needed (apt-get install wrk)"
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
JWT_DIR=${WEFT_CONFORMANCE_DIR:-../shared/conformance/istio}/jwt
[ -f "$JWT_DIR/jwks.json" ] || die "Istio's JWT fixtures not found in $JWT_DIR (set WEFT_CONFORMANCE_DIR)"

BIN=${WEFT_PROXY_BIN:-}
if [ -z "$BIN" ]; then
  log "building weft-proxy (release)"
  cargo build --release -q -p weft-proxy || die "cargo build --release -p weft-proxy failed"
  BIN="$CARGO_TARGET_DIR/release/weft-proxy"
fi
[ -x "$BIN" ] || die "no weft-proxy binary at $BIN"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

TOKEN=$(tr -d '\n' < "$JWT_DIR/demo.jwt")
JWKS=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$JWT_DIR/jwks.json")

filters_yaml() {
  cat <<EOF
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                origins-0:
                  issuer: testing@secure.istio.io
                  local_jwks: {inline_string: $JWKS}
                  payload_in_metadata: payload
              rules:
              - match: {prefix: /}
                requires: {requires_any: {requirements: [{provider_name: origins-0}, {allow_missing: {}}]}}
              bypass_cors_preflight: true
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: DENY
                policies:
                  ns[foo]-policy[deny]-rule[0]:
                    permissions: [{and_rules: {rules: [{or_rules: {rules: [{url_path: {path: {prefix: /admin/}}}]}}]}}]
                    principals: [{and_ids: {ids: [{any: true}]}}]
              shadow_rules_stat_prefix: istio_dry_run_allow_
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                policies:
                  ns[foo]-policy[allow]-rule[0]:
                    permissions:
                    - and_rules:
                        rules:
                        - or_rules: {rules: [{header: {name: ":method", string_match: {exact: GET}}}]}
                        - or_rules: {rules: [{url_path: {path: {prefix: /api/}}}, {url_path: {path: {exact: /}}}]}
                    principals:
                    - and_ids:
                        ids:
                        - or_ids:
                            ids:
                            - and_ids:
                                ids:
                                - metadata: {filter: envoy.filters.http.jwt_authn, path: [{key: payload}, {key: iss}], value: {string_match: {exact: testing@secure.istio.io}}}
                                - metadata: {filter: envoy.filters.http.jwt_authn, path: [{key: payload}, {key: sub}], value: {string_match: {exact: testing@secure.istio.io}}}
                        - or_ids: {ids: [{header: {name: host, present_match: true}}]}
              shadow_rules_stat_prefix: istio_dry_run_allow_
EOF
}

bootstrap() { # $1 port, $2 admin port, $3 filters (or empty)
  cat <<EOF
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: $2}}
static_resources:
  listeners:
  - name: http
    address: {socket_address: {address: 127.0.0.1, port_value: $1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: /}
                direct_response: {status: 200, body: {inline_string: ok}}
          http_filters:
$3
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
EOF
}

bootstrap "$PORT_BASE" $((PORT_BASE + 1)) "" > "$WORK/none.yaml"
bootstrap $((PORT_BASE + 2)) $((PORT_BASE + 3)) "$(filters_yaml)" > "$WORK/authz.yaml"

start() { # $1 config, $2 admin port
  "$BIN" -c "$1" --concurrency 1 > "$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$2/ready" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  die "weft-proxy did not become ready with $1: $(tail -5 "$1.log")"
}
start "$WORK/none.yaml" $((PORT_BASE + 1))
start "$WORK/authz.yaml" $((PORT_BASE + 3))

# The filters must really be in force: a token-less request is denied, the token passes.
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((PORT_BASE + 2))/api/x")
[ "$code" = 403 ] || die "without a token the filtered proxy answered $code, not 403"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$((PORT_BASE + 2))/api/x")
[ "$code" = 200 ] || die "with Istio's token the filtered proxy answered $code, not 200"

measure() { # $1 port -> "rps p50_us p90_us p99_us"
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$1/api/x" | python3 -c '
import re, sys
t = sys.stdin.read()
def us(v):
    n, u = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p = {k: us(v) for k, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", t, re.M)}
print(rps, p["50"], p["90"], p["99"])'
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: > "$WORK/none.txt"; : > "$WORK/authz.txt"
for r in $(seq "$RUNS"); do
  log "round $r/$RUNS"
  if [ $((r % 2)) = 1 ]; then
    measure "$PORT_BASE" >> "$WORK/none.txt"; measure $((PORT_BASE + 2)) >> "$WORK/authz.txt"
  else
    measure $((PORT_BASE + 2)) >> "$WORK/authz.txt"; measure "$PORT_BASE" >> "$WORK/none.txt"
  fi
done

col() { awk -v c="$1" '{print $c}' "$2" | median; }
echo "| filters | req/s (1 worker) | p50 µs | p90 µs | p99 µs |"
echo "| --- | ---: | ---: | ---: | ---: |"
for k in none authz; do
  printf '| %s | %.0f | %.0f | %.0f | %.0f |\n' "$k" "$(col 1 "$WORK/$k.txt")" "$(col 2 "$WORK/$k.txt")" \
    "$(col 3 "$WORK/$k.txt")" "$(col 4 "$WORK/$k.txt")"
done
python3 - "$(col 1 "$WORK/none.txt")" "$(col 1 "$WORK/authz.txt")" <<'EOF'
import sys
base, authz = map(float, sys.argv[1:3])
print(f"\nfilter cost per request: {1e6 / authz - 1e6 / base:.1f} µs of one core "
      f"(jwt_authn RS256 verify + 2 RBAC filters), load average {open('/proc/loadavg').read().split()[0]}")
EOF
