#!/usr/bin/env bash
# Soak: the hello demo with `max_age = 20s` and 5 instances under continuous
# load for a few minutes. Every instance should be replaced several times by
# the age replacer, with zero failed requests.
#
# Reports replacements from the event log (`glint events -f -o json`:
# instances launched, healthy, retired) and from the load generator (how
# many distinct instances answered, how long each served), then ends with:
#   soak provider=process minutes=5 instances=5 max_age=20s launched=… distinct_serving=… total=… failed=…
#
#   bash bench/soak.sh [--minutes 5] [--instances 5] [--max-age 20s] [--concurrency 16]
#                      [--provider process|docker]
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

MINUTES=5 INSTANCES=5 MAX_AGE=20s CONCURRENCY=16
while (( $# )); do
  case $1 in
    --minutes) MINUTES=$2; shift 2 ;;
    --instances) INSTANCES=$2; shift 2 ;;
    --max-age) MAX_AGE=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --provider) PROVIDER=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

bench_build
bench_init
PORT=$(free_port)
demo "$WORK/demo.glint" instances="$INSTANCES" port="$PORT" greeting=hello max_age="$MAX_AGE" provider="$PROVIDER"
start_glint "$WORK/demo.glint"
wait_converged "$INSTANCES" 180
start_events
start_load "$CONCURRENCY" --progress 30s
phase soak
since=$(now_ms)
log "soaking for $MINUTES min: $INSTANCES instances, max_age $MAX_AGE, load on http://127.0.0.1:$PORT/"
end=$(( $(date +%s) + MINUTES * 60 ))
while (( $(date +%s) < end )); do
  sleep $(( end - $(date +%s) < 30 ? end - $(date +%s) : 30 ))
  kill -0 "$GLINT_PID" 2>/dev/null || die "glint up exited: $(tail -5 "$WORK/glint-up.log")"
  if status_json; then remember_instances; fi
  launched=$("${PY[@]}" events-since "$WORK/events.jsonl" "$since" instance.launched | awk '{print $3}' | sort -u | wc -l)
  log "$launched instances launched so far; load: $(grep '^glint-load: progress' "$WORK/load.log" | tail -1 | cut -d' ' -f3-)"
done
phase drain
sleep 1
stop_load
echo
"${PY[@]}" soak-report "$WORK/events.jsonl" "$WORK/load.json" "$since" "$INSTANCES" "$MAX_AGE" "$MINUTES" "$PROVIDER"
