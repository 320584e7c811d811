#!/usr/bin/env bash
# Image build benchmark: builds the demo app image (the static glint-hello
# binary copied into a scratch image with an entrypoint and a test-free
# declaration) with `glint build`, cold (empty store) and warm (no change),
# then reports the store size. Also runs `glint build --verify` once (the
# immutability test: the image must pass its HTTP health check in a sandbox
# without network). Needs root for --verify.
#
#   bash bench/image-build.sh            # uses target/x86_64-unknown-linux-gnu/release
#   RUNS=20 bash bench/image-build.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}
BIN=target/x86_64-unknown-linux-gnu/release
if [[ ! -x $BIN/glint || ! -x $BIN/glint-hello || ${REBUILD:-0} == 1 ]]; then
  cargo build --release -q -p glint-cli --bin glint --bin glint-hello
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/hello"
cp "$BIN/glint-hello" "$WORK/hello/glint-hello"
# The compiled IR of a one-image, one-service environment (what `glint check
# --emit ir` prints for the hello example).
cat > "$WORK/hello/hello.json" <<'JSON'
{
  "name": "hello",
  "images": {
    "app": {
      "from": {"kind": "scratch"},
      "steps": [{"kind": "copy", "src": "glint-hello", "dst": "/app/glint-hello"}],
      "tests": [],
      "entrypoint": ["/app/glint-hello"],
      "env": {"GREETING": "hello"},
      "workdir": "/app",
      "port": 8080,
      "digest": null
    }
  },
  "services": {
    "web": {
      "image": "app", "provider": "process", "instances": 1, "args": [], "env": {}, "port": 8080,
      "health": {"probe": {"kind": "http", "path": "/healthz"}, "interval": 2000, "timeout": 1000,
                 "healthy_threshold": 1, "unhealthy_threshold": 3, "start_timeout": 30000},
      "rollout": {"strategy": {"kind": "rolling", "surge": 1, "unavailable": 0}, "min_healthy": 0,
                  "deadline": 300000, "auto_rollback": true},
      "max_age": null, "drain": 30000, "stop_grace": 10000,
      "resources": {"memory": null, "cpu_millis": null}, "on_exec": "replace",
      "autoscale": null, "mounts": []
    }
  },
  "endpoints": {}, "rules": {}, "variables": {}, "volumes": {}, "policies": {}
}
JSON
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
cold_total=0; warm_total=0; warm_min=999999
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/data"
  t=$(date +%s%N); "$BIN/glint" --data-dir "$WORK/data" build "$WORK/hello/hello.json" >/dev/null 2>&1; c=$(ms "$t")
  t=$(date +%s%N); out=$("$BIN/glint" --data-dir "$WORK/data" build "$WORK/hello/hello.json" 2>/dev/null); w=$(ms "$t")
  grep -q '(cached)' <<<"$out" || { echo "warm build was not a cache hit: $out" >&2; exit 1; }
  cold_total=$((cold_total + c)); warm_total=$((warm_total + w)); (( w < warm_min )) && warm_min=$w
done
echo "glint-hello binary:        $(du -h "$WORK/hello/glint-hello" | cut -f1)"
echo "cold build (mean of $RUNS):   $((cold_total / RUNS)) ms   (whole glint process)"
echo "no-change rebuild (mean):  $((warm_total / RUNS)) ms   (min $warm_min ms, whole glint process)"
echo "store size:                $(du -sh "$WORK/data/images" | cut -f1) ($(du -sh "$WORK/data/images/blobs" | cut -f1) blobs)"
echo "digest:                    $("$BIN/glint" --data-dir "$WORK/data" build "$WORK/hello/hello.json" 2>/dev/null)"
if [[ $(id -u) == 0 ]]; then
  t=$(date +%s%N)
  "$BIN/glint" --data-dir "$WORK/data" build --verify "$WORK/hello/hello.json" >/dev/null 2>"$WORK/verify.log" \
    && echo "build --verify:            passed in $(ms "$t") ms ($(grep -o 'healthy after [0-9]* ms' "$WORK/verify.log"))" \
    || { echo "build --verify FAILED:"; cat "$WORK/verify.log"; exit 1; }
fi
