#!/usr/bin/env bash
# The data plane outlives the control plane: continuous load through an
# endpoint while `glint conductor` is stopped, killed and upgraded, and how
# many requests fail (goal: none).
#
# Runs the hello demo (N instances) under `glint conductor` (not `glint up`)
# with glint-load on the endpoint, then, RUNS times each, in this order:
#   sigterm      - SIGTERM the conductor, start it again at once;
#   sigkill-0.5  - SIGKILL it, start it again after 0.5 s;
#   sigkill-5    - SIGKILL it, start it again after 5 s;
#   sigkill-30   - SIGKILL it, start it again after 30 s;
#   upgrade      - SIGTERM it, start a conductor of another build: a copy of
#                  the binary with its GNU build id changed (lib.py
#                  rebuilt-copy), which Glint treats as a rebuilt binary, so
#                  the data plane is replaced through the handoff of its
#                  listening sockets (each upgrade run switches between the
#                  two builds).
# Requests are counted in phase `CASE/RUN` from the stop until the new
# conductor has converged again plus SETTLE seconds, `steady/N` otherwise.
# After each case the data plane is checked: the same process (adopted) for
# the restarts, a new one of the other build for an upgrade.
#
#   bash bench/restart.sh [--runs 1] [--instances 3] [--concurrency 16] [--settle 1]
#                         [--cases sigterm,sigkill-0.5,sigkill-5,sigkill-30,upgrade]
#
# Ends with one line per case: restart case=… runs=… requests=… failed=… data_plane_as_expected=…/…
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RUNS=1 INSTANCES=3 CONCURRENCY=16 SETTLE=1
CASES=sigterm,sigkill-0.5,sigkill-5,sigkill-30,upgrade
while (( $# )); do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --instances) INSTANCES=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    --cases) CASES=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

bench_build
bench_init
PORT=$(free_port)
URL=http://127.0.0.1:$PORT/
REBUILT=$WORK/glint-rebuilt
"${PY[@]}" rebuilt-copy "$GLINT" "$REBUILT" > "$WORK/rebuilt.build"
CURRENT=$GLINT   # the binary the running conductor is from
demo "$WORK/demo.glint" instances="$INSTANCES" port="$PORT" greeting=hello

# start_conductor BINARY: `glint conductor` of BINARY in the background
# (stopped by the EXIT trap, which also stops the data plane it leaves).
start_conductor() {
  "$1" conductor >> "$WORK/conductor.log" 2>&1 &
  CONDUCTOR_PID=$!
  CURRENT=$1
}

# wait_conductor: until a conductor answers and the service converged.
wait_conductor() {
  local deadline=$(( $(date +%s) + 180 ))
  until "$GLINT" status -o json 2>/dev/null | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["conductor"]["running"] else 1)'; do
    (( $(date +%s) > deadline )) && die "no conductor answered within 180s (see $WORK/conductor.log)"
    sleep 0.05
  done
  wait_converged "$INSTANCES" 180
}

# At exit: stop the conductor (instances and the data plane keep running),
# then let `glint up` adopt them all, so that bench_cleanup's SIGTERM to it
# stops everything the way a user would.
stop_conductor_for_cleanup() {
  [[ -n ${CONDUCTOR_PID:-} ]] && stop_pid "$CONDUCTOR_PID" TERM 30
  CONDUCTOR_PID=
  [[ -f $WORK/demo.glint ]] || return 0
  "$CURRENT" up "$WORK/demo.glint" > "$WORK/glint-up.log" 2>&1 &
  GLINT_PID=$!
  local deadline=$(( $(date +%s) + 60 ))
  until "$GLINT" status -o json 2>/dev/null | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["conductor"]["running"] else 1)'; do
    kill -0 "$GLINT_PID" 2>/dev/null || break
    (( $(date +%s) > deadline )) && break
    sleep 0.1
  done
}
BENCH_EXTRA_CLEANUP=stop_conductor_for_cleanup

"$GLINT" check "$WORK/demo.glint" > "$WORK/check.log" 2>&1 || { cat "$WORK/check.log" >&2; die "the demo does not check"; }
log "glint conductor; glint apply demo.glint"
start_conductor "$GLINT"
"$GLINT" apply "$WORK/demo.glint" --wait > "$WORK/apply.log" 2>&1 || { cat "$WORK/apply.log" >&2; die "apply failed"; }
wait_conductor
status_json
remember_dataplane
start_events
start_load "$CONCURRENCY"
phase steady/0
log "load running on $URL with $INSTANCES instances"
sleep "$SETTLE"

: > "$WORK/runs.jsonl"
n=0
IFS=, read -ra case_list <<< "$CASES"
for case in "${case_list[@]}"; do
  for run in $(seq 1 "$RUNS"); do
    n=$((n + 1))
    status_json
    read -r dp_before build_before < <("${PY[@]}" data-plane "$WORK/status.json")
    phase "$case/$run"
    stopped_at=$(now_ms)
    case $case in
      sigterm|upgrade)
        kill -TERM "$CONDUCTOR_PID"
        wait "$CONDUCTOR_PID" 2>/dev/null || true ;;
      sigkill-*)
        kill -KILL "$CONDUCTOR_PID"
        wait "$CONDUCTOR_PID" 2>/dev/null || true
        sleep "${case#sigkill-}" ;;
      *) die "unknown case $case" ;;
    esac
    started_at=$(now_ms)
    if [[ $case == upgrade ]]; then
      if [[ $CURRENT == "$GLINT" ]]; then start_conductor "$REBUILT"; else start_conductor "$GLINT"; fi
    else
      start_conductor "$CURRENT"
    fi
    wait_conductor
    back_at=$(now_ms)
    sleep "$SETTLE"
    phase "steady/$n"
    status_json
    remember_dataplane
    read -r dp_after build_after < <("${PY[@]}" data-plane "$WORK/status.json")
    if [[ $case == upgrade ]]; then
      # A new data plane of the other build, and the old one gone.
      ok=false
      if [[ $dp_after != "$dp_before" && $build_after != "$build_before" ]]; then
        for _ in $(seq 100); do kill -0 "$dp_before" 2>/dev/null || { ok=true; break; }; sleep 0.1; done
      fi
      dp="replaced: pid $dp_before ($build_before) -> $dp_after ($build_after)"
    else
      ok=$([[ $dp_after == "$dp_before" ]] && echo true || echo false)
      dp="pid $dp_after $([[ $ok == true ]] && echo adopted || echo "CHANGED from $dp_before")"
    fi
    python3 -c 'import json,sys; print(json.dumps({"case": sys.argv[1], "run": int(sys.argv[2]), "down_s": (int(sys.argv[4]) - int(sys.argv[3])) / 1000, "back_s": (int(sys.argv[5]) - int(sys.argv[3])) / 1000, "data_plane": sys.argv[6], "data_plane_ok": sys.argv[7] == "true"}))' \
      "$case" "$run" "$stopped_at" "$started_at" "$back_at" "$dp" "$ok" >> "$WORK/runs.jsonl"
    log "$case/$run: conductor down $(( (started_at - stopped_at) ))ms, converged again after $(( back_at - stopped_at ))ms; data plane $dp"
  done
done
sleep "$SETTLE"
stop_load
echo
"${PY[@]}" restart-report "$WORK/runs.jsonl" "$WORK/load.json"
