#!/usr/bin/env bash
# The spine benchmark: how long from an instance's death to its replacement
# serving, and whether a client under load notices.
#
# Runs the hello demo with N instances behind its endpoint under continuous
# load (glint-load), then RUNS times: picks a healthy instance, `kill -9`s its
# process (pid = `handle` in `glint status -o json`), and measures, from the
# kill:
#   detect  - the conductor's `instance.exited` event for the victim,
#   launch  - the `instance.launching` event of its replacement (the decision),
#   healthy - the replacement's `instance.healthy` event (`glint events -f`),
#   serving - the first 2xx response from the replacement that the load
#             generator received through the endpoint (the figure reported).
# Each replacement is also confirmed to serve through the endpoint with curl
# before the next kill. Requests are counted in phases `steady/i` and
# `kill/i` (from the kill until the replacement serves).
#
#   bash bench/replace.sh [--runs 20] [--instances 5] [--concurrency 16] [--settle 1]
#                         [--provider process|docker]
#
# Ends with: replace provider=process runs=20 instances=5 median_ms=… p90_ms=… max_ms=… failed=…
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RUNS=20 INSTANCES=5 CONCURRENCY=16 SETTLE=1
while (( $# )); do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --instances) INSTANCES=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    --provider) PROVIDER=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ $PROVIDER == process || $PROVIDER == docker ]] || die "--provider is process or docker"

bench_build
bench_init
PORT=$(free_port)
URL=http://127.0.0.1:$PORT/
demo "$WORK/demo.glint" instances="$INSTANCES" port="$PORT" greeting=hello provider="$PROVIDER"
start_glint "$WORK/demo.glint"
wait_converged "$INSTANCES" 180
start_events
start_load "$CONCURRENCY"
phase steady/0
log "load running on $URL with $INSTANCES instances; $RUNS kills follow"

: > "$WORK/runs.jsonl"
for run in $(seq 1 "$RUNS"); do
  wait_converged "$INSTANCES" 180
  sleep "$SETTLE"
  status_json
  read -r victim handle < <("${PY[@]}" pick-victim "$WORK/status.json" "$SERVICE" "$run") || true
  [[ -n ${handle:-} ]] || die "no instance to kill (see $WORK/status.json)"
  ids=$("${PY[@]}" instances "$WORK/status.json" "$SERVICE" | awk '{print $1}' | paste -sd, -)
  [[ $PROVIDER == docker ]] || pid=$("${PY[@]}" pid-of "$handle")
  phase "kill/$run"
  # The clock is read right before the kill (no process started in between).
  if [[ $PROVIDER == docker ]]; then
    killed_at=$(now_ms)
    docker kill --signal KILL "$handle" > /dev/null
  else
    killed_at=$(now_ms)
    kill -KILL "$pid"
  fi
  found=$("${PY[@]}" wait-replacement "$WORK/events.jsonl" "$victim" "$killed_at" "$ids" 120)
  new=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["new"])' "$found")
  # Confirm through the endpoint that the replacement serves.
  confirmed_at=
  deadline=$(( $(date +%s) + 30 ))
  while (( $(date +%s) <= deadline )); do
    if [[ $(served_by "$URL") == "$new" ]]; then confirmed_at=$(now_ms); break; fi
    sleep 0.01
  done
  [[ -n $confirmed_at ]] || log "run $run: replacement $new not seen through the endpoint within 30s"
  phase "steady/$run"
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(run=int(sys.argv[2]), victim=sys.argv[3], killed_at=int(sys.argv[4]), confirmed_at=int(sys.argv[5]) if sys.argv[5] else None); print(json.dumps(d))' \
    "$found" "$run" "$victim" "$killed_at" "$confirmed_at" >> "$WORK/runs.jsonl"
  log "run $run/$RUNS: killed $victim, replaced by $new, healthy after $(( $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["healthy_at"])' "$found") - killed_at )) ms"
done
wait_converged "$INSTANCES" 180
sleep "$SETTLE"
stop_load
echo
"${PY[@]}" replace-report "$WORK/runs.jsonl" "$WORK/load.json" "$PROVIDER" "$INSTANCES"
