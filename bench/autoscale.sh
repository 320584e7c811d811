#!/usr/bin/env bash
# The autoscaling benchmark: a load step from 1× to 10× and back through the
# endpoint, with the hello demo autoscaled on requests in flight.
#
# The demo runs `instances = 1` with
#   autoscale { min = 1, max = MAX, metric = in_flight, target = TARGET, window = WINDOW }
# behind its endpoint. Every request is `GET /sleep/SLEEP_MS`, so a client
# keeps about one request in flight: BASE clients are 1×, 10 × BASE clients
# are 10×. Phases: `before` (1×, BEFORE seconds), `step` (10×, STEP seconds),
# `after` (1×, until the count is back at `min`, at most WINDOW + 120 s).
# Measured:
#   first_scale_s - from the step to the first `autoscale.scaled` event;
#   serving_s     - from the step to the first response of the last instance
#                   that was started for it (glint-load's per-instance `seen`);
#   peak          - the most instances alive at once (status every 0.5 s),
#                   which must never exceed MAX;
#   p99_step_ms   - p99 latency of the 10× phase (both load generators);
#   scale_in_s    - from the end of the step to the count back at `min`
#                   (at least the window: scale-down waits for it);
#   failed        - failed requests over the whole run (scale-in drains).
#
#   bash bench/autoscale.sh [--max 6] [--target 4] [--base 2] [--sleep-ms 50]
#                           [--before 20] [--step 60] [--window 120s]
#
# Ends with: autoscale max=6 target=4 window=120s first_scale_s=… serving_s=… peak=… p99_step_ms=… scale_in_s=… requests=… failed=…
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

MAX=6 TARGET=4 BASE=2 SLEEP_MS=50 BEFORE=20 STEP=60 WINDOW=120s
while (( $# )); do
  case $1 in
    --max) MAX=$2; shift 2 ;;
    --target) TARGET=$2; shift 2 ;;
    --base) BASE=$2; shift 2 ;;
    --sleep-ms) SLEEP_MS=$2; shift 2 ;;
    --before) BEFORE=$2; shift 2 ;;
    --step) STEP=$2; shift 2 ;;
    --window) WINDOW=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
window_s=$(python3 -c 'import re,sys; m=re.fullmatch(r"(\d+)(ms|s|m|h)", sys.argv[1]) or sys.exit("bad --window"); n=int(m[1]); print({"ms":n//1000,"s":n,"m":n*60,"h":n*3600}[m[2]])' "$WINDOW")

bench_build
bench_init
PORT=$(free_port)
demo "$WORK/demo.glint" instances=1 port="$PORT" greeting=hello
python3 - "$WORK/demo.glint" "$MAX" "$TARGET" "$WINDOW" <<'EOF'
import sys
path, mx, target, window = sys.argv[1:]
text = open(path).read()
block = (f"  autoscale {{\n    min    = 1\n    max    = {mx}\n    metric = in_flight\n"
         f"    target = {target}\n    window = {window}\n  }}\n")
new = text.replace("  instances = 1\n", "  instances = 1\n" + block, 1)
if new == text:
    sys.exit("cannot place the autoscale block in the demo")
open(path, "w").write(new)
EOF
start_glint "$WORK/demo.glint"
wait_converged 1 180
start_events

# The instance count, every 0.5 s: (ms since the epoch, alive, desired).
: > "$WORK/counts.tsv"
( while :; do
    if "$GLINT" status -o json > "$WORK/count.json.tmp" 2>/dev/null; then
      python3 - "$WORK/count.json.tmp" >> "$WORK/counts.tsv" <<'EOF' || true
import json, sys, time
s = json.load(open(sys.argv[1]))
web = next(x for x in s["services"] if x["name"] == "web")
print(int(time.time() * 1000), len(web["instances"]), web["desired"], sep="\t")
EOF
    fi
    sleep 0.5
  done ) &
COUNT_PID=$!
trap 'kill $COUNT_PID 2>/dev/null || true; bench_cleanup' EXIT

URL_PATH=/sleep/$SLEEP_MS
LOAD_URL="http://127.0.0.1:$PORT$URL_PATH"
rm -f "$WORK/load.stop" "$WORK/step.stop"
"$LOAD" --url "$LOAD_URL" --concurrency "$BASE" --until-file "$WORK/load.stop" \
  --phase-file "$WORK/load.phase" --phase warmup --json > "$WORK/load.json" 2> "$WORK/load.log" &
LOAD_PID=$!
phase before
log "1×: $BASE clients on $URL_PATH for ${BEFORE}s"
sleep "$BEFORE"

phase step
step_at=$(now_ms)
burst=$(( BASE * 9 ))
log "10×: $burst more clients for ${STEP}s"
"$LOAD" --url "$LOAD_URL" --concurrency "$burst" --until-file "$WORK/step.stop" \
  --phase step --json > "$WORK/step.json" 2> "$WORK/step.log" &
STEP_PID=$!
sleep "$STEP"
touch "$WORK/step.stop"
wait "$STEP_PID" || die "the step's glint-load failed: $(tail -5 "$WORK/step.log")"
phase after
after_at=$(now_ms)
log "1× again: waiting for the count to come back to 1 (window $WINDOW)"
deadline=$(( $(date +%s) + window_s + 120 ))
back_at=
while (( $(date +%s) <= deadline )); do
  line=$(tail -1 "$WORK/counts.tsv" 2>/dev/null || true)
  if [[ -n $line ]] && awk -F'\t' '$2 == 1 && $3 == 1 { ok = 1 } END { exit !ok }' <<< "$line"; then
    back_at=$(cut -f1 <<< "$line")
    break
  fi
  sleep 1
done
[[ -n $back_at ]] || log "the count did not come back to 1 within the window + 120 s"
stop_load
kill "$COUNT_PID" 2>/dev/null || true

python3 - "$WORK" "$step_at" "$after_at" "${back_at:-0}" "$MAX" "$TARGET" "$WINDOW" <<'EOF'
import json, sys
work, step_at, after_at, back_at, mx, target, window = sys.argv[1:]
step_at, after_at, back_at, mx = int(step_at), int(after_at), int(back_at), int(mx)
base = json.load(open(f"{work}/load.json"))
step = json.load(open(f"{work}/step.json"))
events = [json.loads(l) for l in open(f"{work}/events.jsonl") if l.strip()]
scaled = [e for e in events if e.get("kind") == "autoscale.scaled"]
ups = [e for e in scaled if e["at"] >= step_at and (e.get("details") or {}).get("to", 0) > (e.get("details") or {}).get("from", 0)]
first_scale = (ups[0]["at"] - step_at) / 1000 if ups else None
counts = [tuple(map(int, l.split("\t"))) for l in open(f"{work}/counts.tsv") if l.strip()]
peak = max((c[1] for c in counts), default=0)
# Instances first seen after the step started: when the last of them first served.
seen = {}
for r in (base, step):
    for inst, s in r.get("seen", {}).items():
        seen[inst] = min(seen.get(inst, s["first_at_ms"]), s["first_at_ms"])
new = sorted(v for v in seen.values() if v >= step_at)
serving = (new[-1] - step_at) / 1000 if new else None
def phase(r, name):
    return next((p for p in r.get("phases", []) if p["name"] == name), None)
p_step = [p for p in (phase(base, "step"), phase(step, "step")) if p]
p99 = max((p["latency"]["p99_ms"] for p in p_step if p["ok"]), default=None)
requests = base["total"]["requests"] + step["total"]["requests"]
failed = base["total"]["failed"] + step["total"]["failed"]
scale_in = (back_at - after_at) / 1000 if back_at else None
for e in scaled:
    print(f"  {(e['at'] - step_at) / 1000:+8.1f}s  {e['message']}", file=sys.stderr)
for f in (base.get("failures", []) + step.get("failures", []))[:20]:
    print(f"  failed: {f}", file=sys.stderr)
fmt = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
print(f"autoscale max={mx} target={target} window={window} first_scale_s={fmt(first_scale)} "
      f"serving_s={fmt(serving)} peak={peak} p99_step_ms={fmt(p99)} scale_in_s={fmt(scale_in)} "
      f"requests={requests} failed={failed}")
if peak > mx:
    sys.exit(f"the count went above max {mx}: {peak}")
if failed:
    sys.exit(f"{failed} requests failed")
EOF
