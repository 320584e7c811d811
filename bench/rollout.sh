#!/usr/bin/env bash
# Rollout benchmark: the hello demo with 10 instances under continuous HTTP
# load (glint-load); RUNS times a new version is applied (a new GREETING)
# with `glint apply --wait`, and the script prints seconds to converge,
# requests, failed requests and p50/p99 latency before and during each
# rollout (phases `before/i`, `during/i`, `after/i`). converge_s is the time
# `glint apply --wait` takes; the `during` phase runs from the apply until the
# service has settled (only N healthy current instances left: with
# blue_green, after `keep`; with --failing, after the rollback).
#
# With --failing, each new version also sets HEALTHY=false (the demo then
# answers 503 on /healthz), so its instances never pass their health check:
# the rollout must fail and end rolled back automatically, with the old
# version still serving and no request failed. `glint apply --wait` must exit
# non-zero.
#
#   bash bench/rollout.sh [--strategy rolling|blue_green|canary] [--provider process|docker]
#                         [--failing] [--runs 3] [--instances 10] [--concurrency 16]
#                         [--before 5] [--after 3] [--deadline 60s] [--apply-timeout 600]
#                         [--result FILE] [--compare FILE] [--swarm]
#
# --result FILE writes the figures as JSON; --compare FILE prints them side
# by side with another result file, e.g. Docker Swarm's (bench/swarm.sh is
# being written on branch `docker`). A result file is JSON; every key but
# `label` is optional:
#   {"label": "swarm start-first", "runs": [{"converge_s": 12.3, ...}, ...],
#    "outcomes_ok": "3/3", "converge_s_median": 12.3, "converge_s_max": 13.0,
#    "total": 51234, "failed": 0, "p50_ms_before": 0.9, "p99_ms_before": 3.1,
#    "p50_ms_during": 1.0, "p99_ms_during": 4.2}
# glint-load's --json report has all of these (`groups` before/during and
# `total`, with phases before/i, during/i): see rollout-report in bench/lib.py.
#
# --swarm then runs bench/swarm.sh (Docker Swarm, `--update-order
# start-first`, same demo binary, a health check every 1s) RUNS times with
# REPLICAS=INSTANCES, after Glint has been stopped, and prints both side by
# side. swarm.sh's load is its own (one busybox wget after another inside the
# swarm network: no published ports without IPVS here), so compare failed
# requests and time to converge, not volumes or latency.
# Ends with one line:
#   rollout strategy=rolling provider=process converge_s=4.2 total=51234 failed=0 p99_ms=3.1
# (converge_s is the median over the runs, failed counts every phase, p99_ms
# is the latency of successful requests during the rollouts.)
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

STRATEGY=rolling FAILING=0 RUNS=3 INSTANCES=10 CONCURRENCY=16 BEFORE=5 AFTER=3
DEADLINE=60s APPLY_TIMEOUT=600 RESULT='' COMPARE='' SWARM=0
while (( $# )); do
  case $1 in
    --strategy) STRATEGY=$2; shift 2 ;;
    --provider) PROVIDER=$2; shift 2 ;;
    --failing) FAILING=1; shift ;;
    --runs) RUNS=$2; shift 2 ;;
    --instances) INSTANCES=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --before) BEFORE=$2; shift 2 ;;
    --after) AFTER=$2; shift 2 ;;
    --deadline) DEADLINE=$2; shift 2 ;;
    --apply-timeout) APPLY_TIMEOUT=$2; shift 2 ;;
    --result) RESULT=$(realpath -m "$2"); shift 2 ;;
    --compare) COMPARE=$(realpath "$2"); shift 2 ;;
    --swarm) SWARM=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case $STRATEGY in
  rolling) STRATEGY_EXPR="rolling { surge = 1, unavailable = 0 }" ;;
  blue_green) STRATEGY_EXPR="blue_green { keep = 5s }" ;;
  canary) STRATEGY_EXPR="canary { steps = [1, $(( (INSTANCES + 1) / 2 ))], pause = 2s }" ;;
  *) die "--strategy is rolling, blue_green or canary" ;;
esac
[[ $PROVIDER == process || $PROVIDER == docker ]] || die "--provider is process or docker"

bench_build
bench_init
PORT=$(free_port)
URL=http://127.0.0.1:$PORT/
FILE=$WORK/demo.glint
# write_version GREETING HEALTHY: the demo file of one version (only the env differs).
write_version() {
  demo "$FILE" instances="$INSTANCES" port="$PORT" greeting="$1" healthy="$2" provider="$PROVIDER" \
    strategy="$STRATEGY_EXPR" deadline="$DEADLINE" start_timeout=15s
}

good=v0
write_version "$good" true
start_glint "$FILE"
wait_converged "$INSTANCES" 180
start_events
start_load "$CONCURRENCY"
log "load running on $URL; strategy $STRATEGY, provider $PROVIDER, $INSTANCES instances, $RUNS runs$([[ $FAILING == 1 ]] && echo ', failing versions')"

: > "$WORK/runs.jsonl"
for run in $(seq 1 "$RUNS"); do
  wait_converged "$INSTANCES" 180
  phase "before/$run"
  sleep "$BEFORE"
  if [[ $FAILING == 1 ]]; then greeting=broken$run healthy=false; else greeting=v$run healthy=true; fi
  write_version "$greeting" "$healthy"
  phase "during/$run"
  t0=$(now_ms)
  set +e
  timeout "$APPLY_TIMEOUT" "$GLINT" apply --wait "$FILE" > "$WORK/apply-$run.log" 2>&1
  rc=$?
  set -e
  t1=$(now_ms)
  converge_s=$(python3 -c "print(($t1 - $t0) / 1000)")
  version=$(grep -o 'Recorded version [0-9]*' "$WORK/apply-$run.log" | grep -o '[0-9]*$' || true)
  [[ $rc == 124 ]] && log "run $run: glint apply --wait did not return within ${APPLY_TIMEOUT}s"
  # Wait for the service to settle (after a rollback: the old version again).
  settled=1
  try_converged "$INSTANCES" 300 || settled=0
  rolled_back=$("${PY[@]}" events-since "$WORK/events.jsonl" "$t0" version.rolled_back rollout.failed | wc -l)
  body=$(body_of "$URL")
  if [[ $FAILING == 1 ]]; then
    if [[ $settled == 1 && $rc != 0 && $rc != 124 && $rolled_back -gt 0 && $body == "$good from "* ]]; then
      outcome=rolled_back
    else
      outcome="not_rolled_back"
    fi
  else
    if [[ $settled == 1 && $rc == 0 && $body == "$greeting from "* ]]; then outcome=live; good=$greeting; else outcome=failed; fi
  fi
  phase "after/$run"
  log "run $run/$RUNS: apply --wait exit $rc after ${converge_s}s; outcome $outcome; the endpoint answers: ${body%%$'\n'*}"
  sed 's/^/    /' "$WORK/apply-$run.log" | tail -5 >&2
  python3 -c 'import json,sys; print(json.dumps({"run": int(sys.argv[1]), "version": sys.argv[2] or None, "apply_rc": int(sys.argv[3]), "converge_s": float(sys.argv[4]), "outcome": sys.argv[5], "started_at": int(sys.argv[6])}))' \
    "$run" "$version" "$rc" "$converge_s" "$outcome" "$t0" >> "$WORK/runs.jsonl"
  sleep "$AFTER"
  if [[ $settled == 0 ]]; then
    log "the service did not settle after run $run: stopping here (events in $WORK/events.jsonl)"
    export KEEP=1
    break
  fi
done
stop_load
echo
"${PY[@]}" events-since "$WORK/events.jsonl" 0 rollout.started rollout.completed rollout.failed version.rolled_back > "$WORK/rollout-events.txt" || true
if [[ -s $WORK/rollout-events.txt ]]; then
  echo "rollout events:"; sed 's/^/  /' "$WORK/rollout-events.txt"; echo
fi
RESULT=${RESULT:-$WORK/result.json}
"${PY[@]}" rollout-report "$WORK/runs.jsonl" "$WORK/load.json" "$STRATEGY" "$PROVIDER" "$FAILING" "$RESULT" > "$WORK/report.txt"
if [[ $SWARM == 1 ]]; then
  log "stopping Glint before the Swarm runs"
  stop_pid "$GLINT_PID" TERM 90
  GLINT_PID=''
  logs=()
  for run in $(seq 1 "$RUNS"); do
    log "swarm run $run/$RUNS: REPLICAS=$INSTANCES bench/swarm.sh"
    REPLICAS=$INSTANCES HELLO=$BIN/glint-hello timeout 600 bash "$ROOT/bench/swarm.sh" > "$WORK/swarm-$run.log" 2>&1 \
      || log "swarm run $run failed: $(tail -3 "$WORK/swarm-$run.log")"
    tail -1 "$WORK/swarm-$run.log" >&2
    logs+=("$WORK/swarm-$run.log")
  done
  "${PY[@]}" swarm-result "$WORK/swarm.json" "${logs[@]}"
  COMPARE=$WORK/swarm.json
fi
if [[ -n $COMPARE ]]; then
  echo "side by side:"
  "${PY[@]}" compare "$RESULT" "$COMPARE" | sed 's/^/  /'
  echo
fi
cat "$WORK/report.txt"
