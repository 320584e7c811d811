#!/usr/bin/env bash
# The endpoint against nginx and HAProxy: the same three hello instances
# (run by `glint up`) behind Glint's endpoint, behind nginx and behind
# HAProxy, measured with wrk in one run, interleaved (every round runs every
# proxy once per case, in a rotated order), several rounds.
#
# nginx and HAProxy are configured as their documentation recommends for a
# reverse proxy with keep-alive upstreams: least connections, HTTP/1.1 to
# the backends with a pool of idle connections (nginx `keepalive 64` with
# `proxy_http_version 1.1` and an empty Connection header; HAProxy `http-reuse
# always`), no access log, and as many workers as Glint's endpoint runtime
# has threads (2: nginx `worker_processes 2`, HAProxy `nbthread 2`).
#
# Cases: keep-alive and `Connection: close` clients, a small body (`/`,
# ~70 bytes) and a 64 KiB one (`/bytes/65536`). For each proxy and case it
# prints the median over rounds of requests/s, p50 and p99 latency, errors,
# and each figure's ratio to nginx's, then one line per proxy and case:
#   proxy name=glint case=keepalive-small rps=… p50_ms=… p99_ms=… errors=… rps_vs_nginx=… p99_vs_nginx=…
#
#   bash bench/proxy.sh [--rounds 3] [--duration 8] [--connections 32] [--threads 1]
#                       [--cases keepalive-small,keepalive-64k,close-small,close-64k]
#
# Needs nginx, haproxy and wrk (Debian: `apt-get install nginx-light haproxy
# wrk`); they run from the work directory and are stopped on exit.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

ROUNDS=3 DURATION=8 CONNECTIONS=32 THREADS=1
CASES=keepalive-small,keepalive-64k,close-small,close-64k
while (( $# )); do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --cases) CASES=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
for tool in nginx haproxy wrk; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install nginx-light haproxy wrk)"
done

NGINX_PID='' HAPROXY_PID=''
stop_peers() {
  stop_pid "${NGINX_PID:-}" QUIT 10
  stop_pid "${HAPROXY_PID:-}" USR1 10
}
BENCH_EXTRA_CLEANUP=stop_peers

bench_build
bench_init
PORT=$(free_port)
demo "$WORK/demo.glint" instances=3 port="$PORT" greeting=hello
start_glint "$WORK/demo.glint"
wait_converged 3 120
mapfile -t BACKENDS < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for s in d["services"]:
    if s["name"] == "web":
        for i in s["instances"]:
            print(i["address"])
' "$WORK/status.json")
(( ${#BACKENDS[@]} == 3 )) || die "expected 3 backend addresses, got ${BACKENDS[*]}"
log "backends: ${BACKENDS[*]}"

NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs"
{
  echo "worker_processes 2;"
  echo "pid $WORK/nginx/nginx.pid;"
  echo "error_log $WORK/nginx/logs/error.log warn;"
  echo "daemon off;"
  echo "events { worker_connections 4096; }"
  echo "http {"
  echo "  access_log off;"
  echo "  upstream web {"
  echo "    least_conn;"
  for b in "${BACKENDS[@]}"; do echo "    server $b;"; done
  echo "    keepalive 64;"
  echo "  }"
  echo "  server {"
  echo "    listen 127.0.0.1:$NGINX_PORT backlog=4096;"
  echo "    keepalive_requests 100000;"
  echo "    location / {"
  echo "      proxy_pass http://web;"
  echo "      proxy_http_version 1.1;"
  echo "      proxy_set_header Connection \"\";"
  echo "      proxy_buffers 16 16k;"
  echo "    }"
  echo "  }"
  echo "}"
} > "$WORK/nginx/nginx.conf"
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" > "$WORK/nginx/stdout.log" 2>&1 &
NGINX_PID=$!

HAPROXY_PORT=$(free_port)
{
  echo "global"
  echo "  nbthread 2"
  echo "  maxconn 8192"
  echo "defaults"
  echo "  mode http"
  echo "  timeout connect 5s"
  echo "  timeout client 30s"
  echo "  timeout server 30s"
  echo "  option http-keep-alive"
  echo "  http-reuse always"
  echo "frontend web"
  echo "  bind 127.0.0.1:$HAPROXY_PORT"
  echo "  default_backend web"
  echo "backend web"
  echo "  balance leastconn"
  n=0
  for b in "${BACKENDS[@]}"; do echo "  server s$n $b"; n=$((n + 1)); done
} > "$WORK/haproxy.cfg"
haproxy -f "$WORK/haproxy.cfg" -db > "$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!

declare -A URL=([glint]="http://127.0.0.1:$PORT" [nginx]="http://127.0.0.1:$NGINX_PORT" [haproxy]="http://127.0.0.1:$HAPROXY_PORT")
for p in glint nginx haproxy; do
  ok=0
  for _ in $(seq 50); do
    if curl -fsS -o /dev/null "${URL[$p]}/"; then ok=1; break; fi
    sleep 0.1
  done
  (( ok )) || die "$p does not answer on ${URL[$p]}"
done
log "glint ${URL[glint]}, nginx ${URL[nginx]}, haproxy ${URL[haproxy]}"

IFS=, read -ra CASE_LIST <<< "$CASES"
PROXIES=(glint nginx haproxy)
RESULTS=$WORK/results.tsv
: > "$RESULTS"
for round in $(seq "$ROUNDS"); do
  for c in "${CASE_LIST[@]}"; do
    case $c in
      *-small) path=/ ;;
      *-64k) path=/bytes/65536 ;;
      *) die "unknown case $c" ;;
    esac
    header=()
    [[ $c == close-* ]] && header=(-H "Connection: close")
    # Rotate the order every round so that no proxy always goes first.
    for k in 0 1 2; do
      p=${PROXIES[$(( (k + round) % 3 ))]}
      out=$WORK/wrk-$p-$c-$round.txt
      wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "${header[@]}" "${URL[$p]}$path" > "$out" 2>&1 \
        || die "wrk failed against $p: $(tail -3 "$out")"
      printf '%s\t%s\t%s\t%s\n' "$p" "$c" "$round" "$out" >> "$RESULTS"
      log "round $round $c $p: $(grep -E 'Requests/sec' "$out" | awk '{print $2}') req/s"
    done
  done
  kill -0 "$GLINT_PID" 2>/dev/null || die "glint up exited"
done

echo
python3 - "$RESULTS" <<'PY'
import re, statistics, sys

def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    if not m:
        return float("nan")
    x, u = float(m.group(1)), m.group(2)
    return x / 1000 if u == "us" else x * 1000 if u == "s" else x

def parse(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    return rps, ms(lat.get("50", "nan")), ms(lat.get("99", "nan")), errors

runs = {}
for line in open(sys.argv[1]):
    p, c, _, path = line.rstrip("\n").split("\t")
    runs.setdefault((p, c), []).append(parse(path))

cases = []
for (_, c) in runs:
    if c not in cases:
        cases.append(c)
med = {}
for k, rs in runs.items():
    med[k] = (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs),
              statistics.median(r[2] for r in rs), sum(r[3] for r in rs), len(rs))
print(f"{'case':<16} {'proxy':<8} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'rps/nginx':>9} {'p99/nginx':>9}")
for c in cases:
    base = med[("nginx", c)]
    for p in ("glint", "nginx", "haproxy"):
        rps, p50, p99, err, n = med[(p, c)]
        print(f"{c:<16} {p:<8} {rps:>9.0f} {p50:>7.2f} {p99:>7.2f} {err:>6} {rps / base[0]:>9.2f} {p99 / base[2]:>9.2f}")
print()
for c in cases:
    base = med[("nginx", c)]
    for p in ("glint", "nginx", "haproxy"):
        rps, p50, p99, err, n = med[(p, c)]
        print(f"proxy name={p} case={c} rounds={n} rps={rps:.0f} p50_ms={p50:.2f} p99_ms={p99:.2f} errors={err} "
              f"rps_vs_nginx={rps / base[0]:.2f} p99_vs_nginx={p99 / base[2]:.2f}")
PY
