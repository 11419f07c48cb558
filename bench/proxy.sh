#!/usr/bin/env bash
# Data-plane benchmark: the same load against a direct connection, haproxy, nginx and weft-proxy,
# side by side in one run on loopback, medians over RUNS rounds. Prints a markdown table and
# writes it (with per-run values) to bench/results/latest.md. See bench/README.md.
#
# Usage: bench/proxy.sh
# Environment (all optional):
#   RUNS=5             rounds; every number is the median over them
#   DURATION=3         seconds of each measurement window (latency, saturation, CPU)
#   TARGETS=direct,haproxy,nginx,weft
#   WEFT_PROXY_BIN=    weft-proxy binary (default: cargo build --release -p weft-proxy)
#   WEFT_PROXY_REV=    what that binary was built from, for the report;  WEFT_PROXY_ARGS= extra flags
#   WEFT_TELEMETRY=1   weft with telemetry on: Istio's stats filter, an access log, 1% tracing
#                      (WEFT_TELEMETRY=metrics: the stats filter only)
#   LAT_RPS=500        fixed rate of the single-connection latency client
#   LOAD_RPS=1000 LOAD_CONNS=4   Istio's load shape for CPU and RSS under load
#   SAT_CONNS=32       wrk connections;  WRK_THREADS=(cores the proxy does not use)
#   H2_REQUESTS=30000  h2load -n;  H2_UPSTREAM=h1|h2 (weft and haproxy; nginx proxies h2 to h1)
#   SERVICES=1000      services (clusters + routes) in the "many" configuration
#   PIN=1              pin proxies to the last CPU, backend and clients to the others
#   PORT_BASE=18600    first of the loopback ports used
#   OUT=bench/results/latest.md    KEEP=1 keeps the work directory (configs, logs, raw results)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
DURATION=${DURATION:-3}
TARGETS=${TARGETS:-direct,haproxy,nginx,weft}
LAT_RPS=${LAT_RPS:-500}
LOAD_RPS=${LOAD_RPS:-1000}
LOAD_CONNS=${LOAD_CONNS:-4}
SAT_CONNS=${SAT_CONNS:-32}
H2_REQUESTS=${H2_REQUESTS:-30000}
H2_UPSTREAM=${H2_UPSTREAM:-h1}
SERVICES=${SERVICES:-1000}
PIN=${PIN:-1}
PORT_BASE=${PORT_BASE:-18600}
OUT=${OUT:-bench/results/latest.md}
. scripts/target-dir.sh

die() { echo "bench/proxy.sh: error: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

# ---------------------------------------------------------------- arguments
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a whole number >= 1, got '$RUNS'"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be whole seconds >= 1 (wrk's unit), got '$DURATION'"
[[ $H2_UPSTREAM == h1 || $H2_UPSTREAM == h2 ]] || die "H2_UPSTREAM must be h1 or h2, got '$H2_UPSTREAM'"
for n in LAT_RPS LOAD_RPS LOAD_CONNS SAT_CONNS H2_REQUESTS SERVICES PORT_BASE; do
  [[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a whole number >= 1, got '${!n}'"
done
IFS=, read -r -a targets <<<"$TARGETS"
for t in "${targets[@]}"; do
  case $t in direct | haproxy | nginx | weft) ;; *) die "unknown target '$t' in TARGETS (known: direct,haproxy,nginx,weft)" ;; esac
done
has() { [[ ",$TARGETS," == *",$1,"* ]]; }
proxies=()
for t in haproxy nginx weft; do has "$t" && proxies+=("$t"); done

# ---------------------------------------------------------------- tools
# Debian package per command; nginx-light where the release still has it, nginx otherwise.
nginx_pkg=nginx-light
if command -v apt-cache >/dev/null && ! apt-cache policy nginx-light 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  nginx_pkg=nginx
fi
declare -A pkg_of=([wrk]=wrk [h2load]=nghttp2-client [haproxy]=haproxy [nginx]=$nginx_pkg
  [curl]=curl [taskset]=util-linux [getconf]=libc-bin)
missing=()
for cmd in wrk h2load nginx curl taskset getconf; do command -v "$cmd" >/dev/null || missing+=("${pkg_of[$cmd]}"); done
has haproxy && { command -v haproxy >/dev/null || missing+=(haproxy); }
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (run as root, or: sudo apt-get install -y ${missing[*]})"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; } \
    || die "apt-get install ${missing[*]} failed"
fi
command -v python3 >/dev/null || die "python3 is needed for config generation and the report"
command -v cargo >/dev/null || die "cargo is needed to build the load generator (install Rust with rustup)"

# ---------------------------------------------------------------- binaries
WEFT=""
if has weft; then
  if [ -n "${WEFT_PROXY_BIN:-}" ]; then
    [ -x "$WEFT_PROXY_BIN" ] || die "WEFT_PROXY_BIN=$WEFT_PROXY_BIN is not an executable file"
    WEFT=$WEFT_PROXY_BIN
    weft_source=${WEFT_PROXY_REV:-binary $WEFT_PROXY_BIN}
  else
    [ -f crates/weft-proxy/Cargo.toml ] \
      || die "this tree has no crates/weft-proxy yet, so there is no weft-proxy to build. Point WEFT_PROXY_BIN at a weft-proxy binary, or leave it out: TARGETS=direct,haproxy,nginx bench/proxy.sh"
    log "building weft-proxy (cargo build --release -p weft-proxy, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    if ! cargo build -q --release --locked -p weft-proxy 2>/tmp/weft-proxy-build.$$.log; then
      tail -n 20 /tmp/weft-proxy-build.$$.log >&2
      rm -f /tmp/weft-proxy-build.$$.log
      die "cargo build --release -p weft-proxy failed (above). Fix the build, set WEFT_PROXY_BIN, or run TARGETS=direct,haproxy,nginx"
    fi
    rm -f /tmp/weft-proxy-build.$$.log
    WEFT=$CARGO_TARGET_DIR/release/weft-proxy
    weft_source="built from $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    [ -z "$(git status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null)" ] || weft_source+=" with local changes"
  fi
fi


LOADGEN=${LOADGEN_BIN:-}
if [ -z "$LOADGEN" ]; then
  log "building bench/proxy/loadgen (release)"
  cargo build -q --release --locked --manifest-path bench/proxy/loadgen/Cargo.toml \
    || die "building bench/proxy/loadgen failed"
  LOADGEN=$CARGO_TARGET_DIR/release/loadgen
fi
[ -x "$LOADGEN" ] || die "load generator $LOADGEN is not executable"

# ---------------------------------------------------------------- machine, ports, CPUs
ncpu=$(nproc)
CLK_TCK=$(getconf CLK_TCK)
if [ "$PIN" = 1 ] && [ "$ncpu" -ge 2 ]; then
  proxy_cpu=$((ncpu - 1))
  client_cpus="0-$((ncpu - 2))"
  pinning="proxies pinned to CPU $proxy_cpu, backend and clients to CPU $client_cpus"
  pin_proxy=(taskset -c "$proxy_cpu")
  pin_client=(taskset -c "$client_cpus")
  client_cores=$((ncpu - 1))
else
  pinning="no CPU pinning"
  pin_proxy=()
  pin_client=()
  client_cores=$((ncpu > 1 ? ncpu - 1 : 1))
fi
WRK_THREADS=${WRK_THREADS:-$client_cores}

declare -A H1 H2
BACKEND_H1=$PORT_BASE BACKEND_H2=$((PORT_BASE + 1))
H1[direct]=$BACKEND_H1 H2[direct]=$BACKEND_H2
H1[haproxy]=$((PORT_BASE + 10)) H2[haproxy]=$((PORT_BASE + 11))
H1[nginx]=$((PORT_BASE + 20)) H2[nginx]=$((PORT_BASE + 21))
H1[weft]=$((PORT_BASE + 30)) H2[weft]=$((PORT_BASE + 31))
WEFT_ADMIN=$((PORT_BASE + 32))
MANY_H1=$((PORT_BASE + 40)) MANY_ADMIN=$((PORT_BASE + 41))
for p in $BACKEND_H1 $BACKEND_H2 "${H1[@]}" "${H2[@]}" $WEFT_ADMIN $MANY_H1 $MANY_ADMIN; do
  if [ -n "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
    die "port 127.0.0.1:$p is in use; choose other ports with PORT_BASE=N (uses N..N+41)"
  fi
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- processes
work=$(mktemp -d /tmp/weft-bench.XXXXXX)
results=$work/results.jsonl
: >"$results"
notes=()
declare -A PID     # name -> pid of each process this script started (and still owns)

stop() { # name: stops that process (TERM, then KILL after 3 s) and any children it left
  local name=$1 pid=${PID[$1]:-} kids i
  [ -n "$pid" ] || return 0
  kids=$(pgrep -P "$pid" 2>/dev/null || true)
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
  unset "PID[$name]"
}
cleanup() {
  local name
  for name in "${!PID[@]}"; do stop "$name"; done
  if [ "${KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # name pin(proxy|client) command...: starts in the background, output to $work/name.log
  local name=$1 where=$2
  shift 2
  if [ "$where" = proxy ]; then set -- "${pin_proxy[@]}" "$@"; else set -- "${pin_client[@]}" "$@"; fi
  "$@" >"$work/$name.log" 2>&1 &
  PID[$name]=$!
}

fail_start() { # name message
  local name=$1
  echo "---- last lines of $work/$name.log" >&2
  tail -n 20 "$work/$name.log" >&2 || true
  KEEP=1
  die "$2"
}

wait_ok() { # name url [curl options]: waits until url answers 200, or the process dies, or 15 s
  local name=$1 url=$2 i
  shift 2
  for i in $(seq 300); do
    curl -fsS -o /dev/null --max-time 1 "$@" "$url" 2>/dev/null && return 0
    kill -0 "${PID[$name]}" 2>/dev/null || fail_start "$name" "$name exited during startup"
    sleep 0.05
  done
  fail_start "$name" "$name did not answer 200 on $url within 15 s"
}

check_body() { # name url [curl options]: the target must return 200 with the 1,024-byte body
  local name=$1 url=$2 got
  shift 2
  got=$(curl -sS -o /dev/null -w '%{http_code} %{size_download}' --max-time 2 "$@" "$url" 2>&1) || true
  [ "$got" = "200 1024" ] || fail_start "$name" "$name: GET $url ${*:+($*) }returned '$got', expected '200 1024'"
}

pids_of() { # name: the process and its children (nginx master + worker), comma separated
  local pid=${PID[$1]}
  { echo "$pid"; pgrep -P "$pid" || true; } | paste -sd, -
}
cpu_ticks() { # comma-separated pids: utime + stime, all threads
  local t=0 p
  for p in ${1//,/ }; do
    t=$((t + $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat")))
  done
  echo "$t"
}
rss_kib() { # comma-separated pids [field]: summed VmRSS (or another kB field of /proc/PID/status)
  local t=0 p
  for p in ${1//,/ }; do t=$((t + $(awk -v f="${2:-VmRSS}:" '$1 == f { print $2 }' "/proc/$p/status"))); done
  echo "$t"
}
rss_json() { # comma-separated pids: {"rss_kib":VmRSS,"anon_kib":RssAnon}
  printf '{"rss_kib":%s,"anon_kib":%s}' "$(rss_kib "$1")" "$(rss_kib "$1" RssAnon)"
}
now_ns() { date +%s%N; }

record() { # round target test json
  printf '{"round":%s,"target":"%s","test":"%s","data":%s}\n' "$1" "$2" "$3" "$4" >>"$results"
}
note() { log "problem: $*"; notes+=("$*"); }

gen() { python3 bench/proxy/gen.py "$@"; }

# ---------------------------------------------------------------- configuration
gen backend "$work" h1="$BACKEND_H1" h2="$BACKEND_H2"
gen haproxy "$work" h1="${H1[haproxy]}" h2="${H2[haproxy]}" backend="$BACKEND_H1" backend_h2="$BACKEND_H2" h2_upstream="$H2_UPSTREAM"
gen nginx "$work" h1="${H1[nginx]}" h2="${H2[nginx]}" backend="$BACKEND_H1"
gen weft "$work" admin="$WEFT_ADMIN" h1="${H1[weft]}" h2="${H2[weft]}" backend="$BACKEND_H1" backend_h2="$BACKEND_H2" h2_upstream="$H2_UPSTREAM" telemetry="${WEFT_TELEMETRY:-0}"
gen haproxy "$work" name=haproxy-many h1="$MANY_H1" backend="$BACKEND_H1" services="$SERVICES"
gen nginx "$work" name=nginx-many h1="$MANY_H1" backend="$BACKEND_H1" services="$SERVICES"
gen weft "$work" name=weft-many admin="$MANY_ADMIN" h1="$MANY_H1" backend="$BACKEND_H1" services="$SERVICES"

nginx_args() { # dir: the command line of an nginx instance in the foreground, in NGINX_ARGS
  NGINX_ARGS=(nginx -p "$1/" -e "$1/error.log" -c "$1/nginx.conf" -g "daemon off;")
}
start_proxy() { # kind(haproxy|nginx|weft) name: starts it and waits until it serves
  local kind=$1 name=$2 url
  case $kind in
    haproxy) start "$name" proxy haproxy -db -f "$work/$name.cfg" ;;
    nginx)
      nginx_args "$work/$name"
      start "$name" proxy "${NGINX_ARGS[@]}"
      ;;
    weft)
      # shellcheck disable=SC2086 # WEFT_PROXY_ARGS is a list of extra arguments
      start "$name" proxy "$WEFT" -c "$work/$name.yaml" --concurrency 1 ${WEFT_PROXY_ARGS:-}
      ;;
  esac
  if [ "$kind" = weft ]; then
    local admin=$WEFT_ADMIN
    [ "$name" = weft ] || admin=$MANY_ADMIN
    wait_ok "$name" "http://127.0.0.1:$admin/ready"
  fi
}

# ---------------------------------------------------------------- the run
log "work directory $work; targets: $TARGETS; $RUNS runs of ${DURATION}s windows; $pinning"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
nginx_args "$work/backend"
start backend client "${NGINX_ARGS[@]}"
wait_ok backend "http://127.0.0.1:$BACKEND_H1/"
check_body backend "http://127.0.0.1:$BACKEND_H1/"
curl -V | grep -q HTTP2 || die "this curl has no HTTP/2 support; cannot check the h2c ports"
check_body backend "http://127.0.0.1:$BACKEND_H2/" --http2-prior-knowledge

latency() { # round target
  local out
  if out=$("${pin_client[@]}" "$LOADGEN" --url "http://127.0.0.1:${H1[$2]}/" --connections 1 \
    --rps "$LAT_RPS" --duration "$DURATION" --warmup 1 2>"$work/err"); then
    record "$1" "$2" latency "$out"
  else note "round $1, $2, latency: $(tail -n1 "$work/err")"; fi
}

saturation() { # round target
  local pids="" c0=0 c1 t0 t1 out rps errs
  [ "$2" = direct ] || { pids=$(pids_of "$2"); c0=$(cpu_ticks "$pids"); }
  t0=$(now_ns)
  if ! out=$("${pin_client[@]}" wrk -t"$WRK_THREADS" -c"$SAT_CONNS" -d"${DURATION}s" "http://127.0.0.1:${H1[$2]}/" 2>&1); then
    note "round $1, $2, saturation: wrk failed: $(echo "$out" | tail -n1)"
    return
  fi
  t1=$(now_ns)
  c1=0
  [ "$2" = direct ] || c1=$(cpu_ticks "$pids")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  errs=$(awk '/^  Non-2xx/ { n += $NF } /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' <<<"$out")
  [ -n "$rps" ] || { note "round $1, $2, saturation: cannot parse wrk output"; return; }
  [ "$errs" = 0 ] || note "round $1, $2, saturation: $errs errors (non-2xx or socket errors)"
  record "$1" "$2" saturation "$(awk -v r="$rps" -v e="$errs" -v c=$((c1 - c0)) -v hz="$CLK_TCK" -v dt=$((t1 - t0)) \
    'BEGIN { printf "{\"rps\":%s,\"errors\":%d,\"cpu_s\":%.3f,\"vcpu\":%.4f}", r, e, c / hz, (c / hz) / (dt / 1e9) }')"
}

load() { # round target: Istio's shape, with CPU and RSS of the proxy over the window
  local out
  if out=$("${pin_client[@]}" "$LOADGEN" --url "http://127.0.0.1:${H1[$2]}/" --connections "$LOAD_CONNS" \
    --rps "$LOAD_RPS" --duration "$DURATION" --warmup 1 --watch "$(pids_of "$2")" --clk-tck "$CLK_TCK" 2>"$work/err"); then
    record "$1" "$2" load "$out"
  else note "round $1, $2, load: $(tail -n1 "$work/err")"; fi
}

h2() { # round target
  local pids="" c0=0 c1=0 t0 t1 out rps failed
  [ "$2" = direct ] || { pids=$(pids_of "$2"); c0=$(cpu_ticks "$pids"); }
  t0=$(now_ns)
  if ! out=$("${pin_client[@]}" h2load -n "$H2_REQUESTS" -c 4 -m 25 "http://127.0.0.1:${H2[$2]}/" 2>&1); then
    note "round $1, $2, h2: h2load failed: $(echo "$out" | tail -n1)"
    return
  fi
  t1=$(now_ns)
  [ "$2" = direct ] || c1=$(cpu_ticks "$pids")
  rps=$(awk '/^finished in/ { print $4 }' <<<"$out")
  # "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
  failed=$(awk '/^requests:/ { print $10 + $12 + $14 }' <<<"$out")
  local ok
  ok=$(awk '/^requests:/ { print $8 }' <<<"$out")
  [ -n "$rps" ] || { note "round $1, $2, h2: cannot parse h2load output"; return; }
  if [ "$ok" != "$H2_REQUESTS" ]; then
    note "round $1, $2, h2: only ${ok:-0} of $H2_REQUESTS requests succeeded"
    return
  fi
  record "$1" "$2" h2 "$(awk -v r="$rps" -v f="${failed:-0}" -v c=$((c1 - c0)) -v hz="$CLK_TCK" -v dt=$((t1 - t0)) \
    'BEGIN { printf "{\"rps\":%s,\"failed\":%d,\"cpu_s\":%.3f,\"vcpu\":%.4f}", r, f, c / hz, (c / hz) / (dt / 1e9) }')"
}

many() { # round kind: the proxy with SERVICES services, idle and after traffic to every host
  local name=$2-many out
  start_proxy "$2" "$name"
  wait_ok "$name" "http://127.0.0.1:$MANY_H1/" -H "Host: svc-0.bench.svc.cluster.local"
  check_body "$name" "http://127.0.0.1:$MANY_H1/" -H "Host: svc-$((SERVICES - 1)).bench.svc.cluster.local"
  record "$1" "$2" many_idle "$(rss_json "$(pids_of "$name")")"
  # At LOAD_RPS for DURATION (at least SERVICES requests), rotating over every service's Host.
  local secs=$(((SERVICES + LOAD_RPS - 1) / LOAD_RPS))
  [ "$secs" -ge "$DURATION" ] || secs=$DURATION
  if out=$("${pin_client[@]}" "$LOADGEN" --url "http://127.0.0.1:$MANY_H1/" --connections "$LOAD_CONNS" \
    --rps "$LOAD_RPS" --duration "$secs" --warmup 0 --host 'svc-{i}.bench.svc.cluster.local' \
    --host-count "$SERVICES" --watch "$(pids_of "$name")" --clk-tck "$CLK_TCK" 2>"$work/err"); then
    record "$1" "$2" many_load "$out"
    grep -q '"errors":0,' <<<"$out" || note "round $1, $2 with $SERVICES services: errors: $out"
  else note "round $1, $2 with $SERVICES services: $(tail -n1 "$work/err")"; fi
  stop "$name"
}

for round in $(seq "$RUNS"); do
  # A different target goes first in each round, so that drifts in machine load spread evenly.
  order=()
  for i in "${!targets[@]}"; do order+=("${targets[$(((i + round - 1) % ${#targets[@]}))]}"); done
  log "round $round/$RUNS: order ${order[*]}"
  for p in "${proxies[@]}"; do start_proxy "$p" "$p"; done
  for p in "${proxies[@]}"; do
    wait_ok "$p" "http://127.0.0.1:${H1[$p]}/"
    check_body "$p" "http://127.0.0.1:${H1[$p]}/"
    check_body "$p" "http://127.0.0.1:${H2[$p]}/" --http2-prior-knowledge
    record "$round" "$p" idle "$(rss_json "$(pids_of "$p")")"
  done
  for t in "${order[@]}"; do latency "$round" "$t"; done
  for t in "${order[@]}"; do saturation "$round" "$t"; done
  for t in "${order[@]}"; do [ "$t" = direct ] || load "$round" "$t"; done
  for t in "${order[@]}"; do h2 "$round" "$t"; done
  for p in "${proxies[@]}"; do
    kill -0 "${PID[$p]}" 2>/dev/null || note "round $round: $p died during the round (see its log)"
    stop "$p"
  done
  for p in "${proxies[@]}"; do many "$round" "$p"; done
done

# ---------------------------------------------------------------- report
versions="nginx $(nginx -v 2>&1 | sed 's|.*nginx/||')"
has haproxy && versions+=", haproxy $(haproxy -v | awk 'NR == 1 { print $3 }')"
versions+=", wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }'), h2load $(h2load --version | awk '{ print $NF }')"
if [ -n "$WEFT" ]; then
  wv=$("$WEFT" --version 2>/dev/null | head -n1 || true)
  [ "${WEFT_TELEMETRY:-0}" != 1 ] || weft_source+="; telemetry on: istio.stats, access log, tracing at 1%"
  [ "${WEFT_TELEMETRY:-0}" != metrics ] || weft_source+="; telemetry on: istio.stats only"
  versions+=", ${wv:-weft-proxy (no --version)} ($weft_source)"
fi
versions+=", $(rustc --version | awk '{ print $1, $2 }')"
export META_date META_nproc META_cpu META_kernel META_versions META_pinning META_loadavg
META_date=$(date -u '+%Y-%m-%d %H:%M UTC')
META_nproc=$ncpu
META_cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
META_kernel=$(uname -r)
META_versions=$versions
META_pinning=$pinning
META_loadavg="$load_before at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
meta=$work/meta.json
NOTES=$(printf '%s\n' "${notes[@]+"${notes[@]}"}") RUNS=$RUNS DURATION=$DURATION TARGETS=$TARGETS \
  LAT_RPS=$LAT_RPS LOAD_RPS=$LOAD_RPS LOAD_CONNS=$LOAD_CONNS SAT_CONNS=$SAT_CONNS WRK_THREADS=$WRK_THREADS \
  H2_UPSTREAM=$H2_UPSTREAM SERVICES=$SERVICES python3 - >"$meta" <<'PY'
import json, os
e = os.environ
meta = {k[5:]: v for k, v in e.items() if k.startswith("META_")}
meta.update(runs=e["RUNS"], duration=e["DURATION"], targets=e["TARGETS"], lat_rps=e["LAT_RPS"],
            load_rps=e["LOAD_RPS"], load_conns=e["LOAD_CONNS"], sat_conns=e["SAT_CONNS"],
            wrk_threads=e["WRK_THREADS"], h2_upstream=e["H2_UPSTREAM"], services=e["SERVICES"],
            notes=[n for n in e["NOTES"].split("\n") if n])
print(json.dumps(meta))
PY
mkdir -p "$(dirname "$OUT")"
python3 bench/proxy/report.py "$results" "$meta" --runs >"$OUT"
python3 bench/proxy/report.py "$results" "$meta"
log "written to $OUT"
[ ${#notes[@]} -eq 0 ] || exit 1
