# shellcheck shell=bash
# Shared by the bench/*.sh scripts (sourced, not run). Each script:
#   bench_build; bench_init; PORT=$(free_port); demo FILE key=value...;
#   start_glint FILE; wait_converged N; start_events; start_load; ... ; report
# and everything it started is stopped by the EXIT trap (bench_cleanup):
# the load generator, the event follower, whatever BENCH_EXTRA_CLEANUP (a
# function name) stops, `glint up` (SIGTERM: drains and stops every instance,
# then the data plane process), and, as a last resort, any instance process
# (or container, labelled dev.glint.instance) and data plane process of this
# run that is still alive. The work directory (logs, JSON) is kept when the
# script fails, or always with KEEP=1.
#
# Environment: NO_BUILD=1 skips `cargo build --release`; KEEP=1 keeps the
# work directory; LOAD_ARGS adds glint-load options (`--no-keepalive`).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BENCH_BIN:-$ROOT/target/x86_64-unknown-linux-gnu/release}
GLINT=$BIN/glint
LOAD=$BIN/glint-load
PY=(python3 "$ROOT/bench/lib.py")
SERVICE=web
PROVIDER=${PROVIDER:-process}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
# Milliseconds since the epoch, without starting a process (bash 5).
now_ms() { local t=${EPOCHREALTIME/./}; echo $(( t / 1000 )); }
free_port() { "${PY[@]}" free-port; }

bench_build() {
  if [[ ${NO_BUILD:-0} != 1 ]]; then
    log "building glint, glint-hello and glint-load (release)"
    (cd "$ROOT" && cargo build --release -q -p glint-cli -p glint-bench)
  fi
  for b in "$GLINT" "$BIN/glint-hello" "$LOAD"; do
    [[ -x $b ]] || die "missing $b (build with: cargo build --release -p glint-cli -p glint-bench)"
  done
}

bench_init() {
  WORK=$(mktemp -d -t glint-bench.XXXXXX)
  export GLINT_DATA_DIR=$WORK/data
  export NO_COLOR=1
  GLINT_PID='' EVENTS_PID='' LOAD_PID=''
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  log "work directory $WORK"
}

# Stops $1 (a pid we started) with signal $2 and waits up to $3 seconds, then SIGKILL.
stop_pid() {
  local pid=$1 sig=$2 wait_s=$3
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for _ in $(seq $((wait_s * 10))); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  log "pid $pid did not stop within ${wait_s}s after SIG$sig: killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [[ -n ${LOAD_PID:-} ]] && { touch "$WORK/load.stop"; stop_pid "$LOAD_PID" TERM 15; }
  stop_pid "${EVENTS_PID:-}" TERM 5
  [[ -n ${BENCH_EXTRA_CLEANUP:-} ]] && "$BENCH_EXTRA_CLEANUP"
  if [[ -n ${GLINT_PID:-} ]]; then
    log "stopping glint up (drains and stops every instance)"
    stop_pid "$GLINT_PID" TERM 90
  fi
  # Last resort: instance processes of this run still alive (never anything
  # else: a pid is killed only if its environment names one of our instances).
  if [[ -s $WORK/instances.seen && $PROVIDER == process ]]; then
    sort -u "$WORK/instances.seen" | while read -r id handle; do
      pid=$("${PY[@]}" pid-of "$handle" 2>/dev/null) || continue
      if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "GLINT_INSTANCE_ID=$id"; then
        log "instance $id (pid $pid) still running after glint stopped: killing it"
        kill -KILL "$pid" 2>/dev/null
      fi
    done
  fi
  # Data plane processes of this run (a pid is signalled only if its
  # environment carries this run's store label).
  if [[ -s $WORK/dataplanes.seen ]]; then
    sort -u "$WORK/dataplanes.seen" | while read -r pid store; do
      if { tr '\0' '\n' < "/proc/$pid/environ"; } 2>/dev/null | grep -qx "GLINT_DATAPLANE_STORE=$store"; then
        log "data plane (pid $pid) still running after glint stopped: stopping it"
        stop_pid "$pid" TERM 10
      fi
    done
  fi
  if [[ -s $WORK/instances.seen && $PROVIDER == docker ]]; then
    sort -u "$WORK/instances.seen" | while read -r id _; do
      for c in $(docker ps -aq --filter "label=dev.glint.instance=$id" 2>/dev/null); do
        log "container $c of instance $id still there after glint stopped: removing it"
        docker rm -f "$c" > /dev/null 2>&1
      done
    done
    # Glint's Docker network for this store should be gone too: say so if not.
    store=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("store_id") or "")' "$WORK/status.json" 2>/dev/null)
    if [[ -n $store ]]; then
      for n in $(docker network ls -q --filter "label=dev.glint.store=$store" 2>/dev/null); do
        log "glint left network $(docker network inspect -f '{{.Name}} (created {{.Created}})' "$n" 2>/dev/null) behind: removing it"
        docker network rm "$n" > /dev/null 2>&1
      done
    fi
  fi
  if [[ $rc != 0 || ${KEEP:-0} == 1 ]]; then
    log "logs kept in $WORK (glint-up.log, events.jsonl, load.json, load.log)"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}

# demo OUT key=value...: the hello example adjusted (see lib.py write-demo).
demo() {
  local out=$1; shift
  "${PY[@]}" write-demo "$ROOT/examples/hello/hello.glint" "$out" "binary=$BIN/glint-hello" "$@"
}

status_json() { "$GLINT" status -o json > "$WORK/status.json.tmp" && mv "$WORK/status.json.tmp" "$WORK/status.json"; }

# Records the data plane's pid (and the store label it carries) so that
# cleanup can find it.
remember_dataplane() {
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); p=(d.get("data_plane") or {}).get("pid"); p and print(p, d.get("store_id"))' "$WORK/status.json" >> "$WORK/dataplanes.seen" || true
}

# Records the live instances (id handle) so that cleanup can find stragglers.
remember_instances() {
  "${PY[@]}" instances "$WORK/status.json" "$SERVICE" | awk '$5 != "-" {print $1, $5}' >> "$WORK/instances.seen" || true
}

start_glint() {
  local file=$1
  "$GLINT" check "$file" > "$WORK/check.log" 2>&1 || { cat "$WORK/check.log" >&2; die "$file does not check"; }
  log "glint up $(basename "$file")"
  "$GLINT" up "$file" > "$WORK/glint-up.log" 2>&1 &
  GLINT_PID=$!
}

# try_converged N [TIMEOUT_S]: waits until every instance is healthy and
# current, and there are N of them; returns 1 (printing why) on timeout.
try_converged() {
  local want=$1 timeout_s=${2:-120} why=""
  local deadline=$(( $(date +%s) + timeout_s ))
  while :; do
    [[ -n ${GLINT_PID:-} ]] && ! kill -0 "$GLINT_PID" 2>/dev/null && { tail -20 "$WORK/glint-up.log" >&2; die "glint up exited"; }
    if status_json 2>/dev/null; then
      remember_instances
      remember_dataplane
      why=$("${PY[@]}" converged "$WORK/status.json" "$SERVICE" "$want") && return 0
    fi
    if (( $(date +%s) > deadline )); then
      "$GLINT" status >&2 || true
      tail -20 "$WORK/glint-up.log" >&2
      log "not converged to $want healthy current instances within ${timeout_s}s: $why"
      return 1
    fi
    sleep 0.2
  done
}

# wait_converged N [TIMEOUT_S]: try_converged, or stop the script.
wait_converged() { try_converged "$@" || die "giving up"; }

start_events() {
  "$GLINT" events -f -o json > "$WORK/events.jsonl" 2> "$WORK/events.err" &
  EVENTS_PID=$!
}

# start_load CONCURRENCY [extra glint-load args]; LOAD_ARGS (words) adds
# more, e.g. LOAD_ARGS="--no-keepalive --rate 2000".
start_load() {
  local c=$1; shift
  local extra=()
  read -ra extra <<< "${LOAD_ARGS:-}"
  rm -f "$WORK/load.stop"
  "$LOAD" --url "http://127.0.0.1:$PORT/" --concurrency "$c" --until-file "$WORK/load.stop" \
    --phase-file "$WORK/load.phase" --phase warmup --json "$@" "${extra[@]}" > "$WORK/load.json" 2> "$WORK/load.log" &
  LOAD_PID=$!
}

# phase NAME: switches the load generator's phase and waits until it took effect.
phase() {
  printf '%s\n' "$1" > "$WORK/load.phase.tmp" && mv "$WORK/load.phase.tmp" "$WORK/load.phase"
  local deadline=$(( $(date +%s) + 10 ))
  until grep -q "^glint-load: phase $1 at " "$WORK/load.log" 2>/dev/null; do
    kill -0 "$LOAD_PID" 2>/dev/null || { cat "$WORK/load.log" >&2; die "glint-load exited"; }
    (( $(date +%s) > deadline )) && die "glint-load did not take phase $1"
    sleep 0.02
  done
}

stop_load() {
  touch "$WORK/load.stop"
  wait "$LOAD_PID" || die "glint-load failed: $(tail -5 "$WORK/load.log")"
  LOAD_PID=
}

# served_by URL: the instance that answered one GET (empty on failure).
served_by() {
  curl -s -m 2 -o /dev/null -D - "$1" 2>/dev/null | tr -d '\r' | awk -F': ' 'tolower($1) == "x-glint-instance" {print $2}'
}

# body_of URL: the body of one GET.
body_of() { curl -s -m 2 "$1" 2>/dev/null || true; }
