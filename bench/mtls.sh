#!/usr/bin/env bash
# mTLS between two weft-proxy sidecars versus plaintext, on loopback (issue 5's benchmark):
#   client -> [client sidecar] -> (mTLS with SPIFFE certificates | plaintext) -> [server sidecar]
#   -> backend (nginx, 1 KB responses)
# Reports, as medians over RUNS rounds: latency p50/p90 at Istio's load shape (RPS requests/s
# over CONNS keep-alive connections) for direct, two sidecars in plaintext and two sidecars with
# mTLS, the latency mTLS adds over plaintext, and new mTLS handshakes per second that one
# server-sidecar worker completes (openssl s_time -new, full handshakes with client certificate).
#
# Usage: bench/mtls.sh
# Environment (all optional): RUNS=5 DURATION=5 RPS=1000 CONNS=4 PORT_BASE=18700
#   WEFT_PROXY_BIN= (default: cargo build --release -p weft-proxy)  LOADGEN_BIN=
#   OUT=bench/results/mtls.md  KEEP=1 keeps the work directory
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
DURATION=${DURATION:-5}
RPS=${RPS:-1000}
CONNS=${CONNS:-4}
PORT_BASE=${PORT_BASE:-18700}
OUT=${OUT:-bench/results/mtls.md}
. scripts/target-dir.sh

die() { echo "bench/mtls.sh: error: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }
for n in RUNS DURATION RPS CONNS PORT_BASE; do
  [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a whole number >= 1, got '${!n}'"
done
for tool in openssl nginx curl python3; do
  command -v "$tool" >/dev/null || die "$tool is required (apt-get install -y $tool)"
done

PROXY=${WEFT_PROXY_BIN:-}
if [ -z "$PROXY" ]; then
  log "building weft-proxy (release)"
  cargo build -q --release --locked -p weft-proxy || die "building weft-proxy failed"
  PROXY=$CARGO_TARGET_DIR/release/weft-proxy
fi
LOADGEN=${LOADGEN_BIN:-}
if [ -z "$LOADGEN" ]; then
  log "building bench/proxy/loadgen (release)"
  cargo build -q --release --locked --manifest-path bench/proxy/loadgen/Cargo.toml \
    || die "building bench/proxy/loadgen failed"
  LOADGEN=$CARGO_TARGET_DIR/release/loadgen
fi

work=$(mktemp -d /tmp/weft-mtls-bench.XXXXXX)
declare -A PID=()
cleanup() {
  for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then log "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

BACKEND=$PORT_BASE
SERVER_MTLS=$((PORT_BASE + 1)) SERVER_PLAIN=$((PORT_BASE + 2))
CLIENT_MTLS=$((PORT_BASE + 3)) CLIENT_PLAIN=$((PORT_BASE + 4))
ADMIN_S=$((PORT_BASE + 5)) ADMIN_C=$((PORT_BASE + 6))

# ---------------------------------------------------------------- certificates (SPIFFE ids)
(
  cd "$work"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
    -days 2 -subj /CN=weft-bench-ca 2>/dev/null
  for who in client server; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$who.key" -out "$who.csr" \
      -subj "/CN=$who" 2>/dev/null
    printf 'subjectAltName=URI:spiffe://cluster.local/ns/default/sa/%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n' \
      "$who" >"$who.ext"
    openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$who.pem" \
      -days 1 -extfile "$who.ext" 2>/dev/null
  done
)

# ---------------------------------------------------------------- configurations
body=$(head -c 1024 /dev/zero | tr '\0' x)
cat >"$work/nginx.conf" <<EOF
worker_processes 1;
daemon off;
error_log stderr;
pid $work/nginx.pid;
events {}
http {
  access_log off;
  client_body_temp_path $work/nginx-body;
  server { listen 127.0.0.1:$BACKEND; location / { return 200 "$body"; } }
}
EOF

hcm() { # stat cluster
  cat <<EOF
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          route_config:
            name: $1
            virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: $2}}]}]
          http_filters:
          - {name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
EOF
}
common_tls() { # alpn
  cat <<EOF
              alpn_protocols: [$1]
              tls_certificates: [{certificate_chain: {filename: CERT}, private_key: {filename: KEY}}]
              combined_validation_context:
                default_validation_context: {match_subject_alt_names: [{prefix: "spiffe://cluster.local/"}]}
                validation_context_sds_secret_config: {name: "file-root:$work/ca.pem", sds_config: {ads: {}}}
EOF
}
cluster() { # name port [transport socket yaml]
  cat <<EOF
  - name: $1
    type: STATIC
    connect_timeout: 1s
    load_assignment: {cluster_name: $1, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $2}}}}]}]}
${3:-}
EOF
}

{
  echo "admin: {address: {socket_address: {address: 127.0.0.1, port_value: $ADMIN_S}}}"
  echo "static_resources:"
  echo "  listeners:"
  echo "  - name: inbound_mtls"
  echo "    address: {socket_address: {address: 127.0.0.1, port_value: $SERVER_MTLS}}"
  echo "    filter_chains:"
  echo "    - transport_socket:"
  echo "        name: envoy.transport_sockets.tls"
  echo "        typed_config:"
  echo "          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
  echo "          require_client_certificate: true"
  echo "          common_tls_context:"
  common_tls 'istio-peer-exchange, h2, http/1.1' | sed "s#CERT#$work/server.pem#; s#KEY#$work/server.key#" | sed 's/^  //'
  echo "      filters:"
  hcm inbound_mtls backend
  echo "  - name: inbound_plain"
  echo "    address: {socket_address: {address: 127.0.0.1, port_value: $SERVER_PLAIN}}"
  echo "    filter_chains:"
  echo "    - filters:"
  hcm inbound_plain backend
  echo "  clusters:"
  cluster backend "$BACKEND"
} >"$work/server.yaml"

upstream_tls=$(
  cat <<EOF
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: outbound_.9080_._.server.default.svc.cluster.local
        common_tls_context:
$(common_tls 'istio-peer-exchange, istio-http/1.1' | sed "s#CERT#$work/client.pem#; s#KEY#$work/client.key#" | sed 's/^    //')
EOF
)
{
  echo "admin: {address: {socket_address: {address: 127.0.0.1, port_value: $ADMIN_C}}}"
  echo "static_resources:"
  echo "  listeners:"
  echo "  - name: outbound_mtls"
  echo "    address: {socket_address: {address: 127.0.0.1, port_value: $CLIENT_MTLS}}"
  echo "    filter_chains:"
  echo "    - filters:"
  hcm outbound_mtls to_server_mtls
  echo "  - name: outbound_plain"
  echo "    address: {socket_address: {address: 127.0.0.1, port_value: $CLIENT_PLAIN}}"
  echo "    filter_chains:"
  echo "    - filters:"
  hcm outbound_plain to_server_plain
  echo "  clusters:"
  cluster to_server_mtls "$SERVER_MTLS" "$upstream_tls"
  cluster to_server_plain "$SERVER_PLAIN"
} >"$work/client.yaml"

# ---------------------------------------------------------------- processes
start() { # name command...
  local name=$1
  shift
  "$@" >"$work/$name.log" 2>&1 &
  PID[$name]=$!
}
wait_ok() { # name url
  local i
  for i in $(seq 300); do
    curl -fsS -o /dev/null --max-time 1 "$2" 2>/dev/null && return 0
    kill -0 "${PID[$1]}" 2>/dev/null || { tail -n 20 "$work/$1.log" >&2; die "$1 exited during startup"; }
    sleep 0.05
  done
  tail -n 20 "$work/$1.log" >&2
  die "$1 did not answer 200 on $2 within 15 s"
}
mkdir -p "$work/nginx-body"
start backend nginx -c "$work/nginx.conf" -e stderr
start server "$PROXY" -c "$work/server.yaml" --concurrency 1 --log-level warn
start client "$PROXY" -c "$work/client.yaml" --concurrency 1 --log-level warn
wait_ok backend "http://127.0.0.1:$BACKEND/"
wait_ok server "http://127.0.0.1:$SERVER_PLAIN/"
wait_ok client "http://127.0.0.1:$CLIENT_PLAIN/"
wait_ok client "http://127.0.0.1:$CLIENT_MTLS/"
[ "$(curl -fsS "http://127.0.0.1:$CLIENT_MTLS/" | wc -c)" = 1024 ] || die "the mTLS path does not return the 1 KB body"
handshakes_before=$(curl -fsS "http://127.0.0.1:$ADMIN_S/stats" | awk -F': ' '/listener.127.0.0.1_'"$SERVER_MTLS"'.ssl.handshake/ {print $2}')
[ "${handshakes_before:-0}" -ge 1 ] || die "no TLS handshake seen by the server sidecar"

# ---------------------------------------------------------------- measurements
results="$work/results.txt"
: >"$results"
for run in $(seq "$RUNS"); do
  for target in direct:$BACKEND plain:$CLIENT_PLAIN mtls:$CLIENT_MTLS; do
    name=${target%%:*} port=${target##*:}
    out=$("$LOADGEN" --url "http://127.0.0.1:$port/" --connections "$CONNS" --rps "$RPS" \
      --duration "$DURATION" --warmup 1) || die "loadgen failed against $name"
    echo "$run $name $out" >>"$results"
    log "run $run $name: $out"
  done
  hs=$(openssl s_time -connect "127.0.0.1:$SERVER_MTLS" -new -time "$DURATION" \
    -cert "$work/client.pem" -key "$work/client.key" -CAfile "$work/ca.pem" 2>/dev/null \
    | awk '/connections in .* real seconds/ {print $1 / $4; exit}')
  echo "$run handshakes {\"per_s\":${hs:-0}}" >>"$results"
  log "run $run new mTLS connections/s: ${hs:-0}"
done

python3 - "$results" "$OUT" "$RUNS" "$RPS" "$CONNS" <<'EOF'
import json, statistics, sys
path, out, runs, rps, conns = sys.argv[1:]
rows = {}
for line in open(path):
    run, name, js = line.split(" ", 2)
    rows.setdefault(name, []).append(json.loads(js))
med = lambda name, key: statistics.median(r[key] for r in rows[name])
lines = [
    f"# mTLS between two weft-proxy sidecars (medians of {runs} runs)",
    "",
    f"Load: {rps} requests/s over {conns} keep-alive connections, 1 KB responses, loopback;"
    " each sidecar with one worker (`--concurrency 1`).",
    "",
    "| path | p50 (µs) | p90 (µs) |",
    "| --- | ---: | ---: |",
]
for name, label in [("direct", "direct to the backend"), ("plain", "two sidecars, plaintext"),
                    ("mtls", "two sidecars, mTLS")]:
    lines.append(f"| {label} | {med(name, 'p50_us'):.0f} | {med(name, 'p90_us'):.0f} |")
lines += [
    "",
    f"- two sidecars add (over direct): p50 {med('plain','p50_us') - med('direct','p50_us'):.0f} µs plaintext,"
    f" {med('mtls','p50_us') - med('direct','p50_us'):.0f} µs mTLS;"
    f" p90 {med('plain','p90_us') - med('direct','p90_us'):.0f} µs plaintext,"
    f" {med('mtls','p90_us') - med('direct','p90_us'):.0f} µs mTLS (target: mTLS adds at most 100 µs p90)",
    f"- mTLS over plaintext: p50 +{med('mtls','p50_us') - med('plain','p50_us'):.0f} µs,"
    f" p90 +{med('mtls','p90_us') - med('plain','p90_us'):.0f} µs",
    f"- new mTLS connections per second on one server-sidecar worker (openssl s_time -new):"
    f" {statistics.median(r['per_s'] for r in rows['handshakes']):.0f}",
]
text = "\n".join(lines) + "\n"
open(out, "w").write(text)
print(text)
EOF
