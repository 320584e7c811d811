#!/usr/bin/env bash
# bench/compile.sh: `glint check` on generated environments of N services +
# N endpoints + N rules (with the standard policies), for N = 10,000 and
# 100,000: wall and CPU time and peak memory of the real binary (several
# runs each), the ratio between the sizes, and, with --instructions, the
# instruction count of each (valgrind; deterministic, unlike times on a
# shared machine).
#
#   bench/compile.sh [--runs R] [--instructions] [SIZES...]
#
# Last line: `compile sizes=… cpu_s=… peak_mib=… ratio_cpu=… ratio_peak=…`.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
instructions=0
sizes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --instructions) instructions=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) sizes+=("$1"); shift ;;
  esac
done
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000)

if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release -p glint-cli >/dev/null
  cargo bench -p glint-lang --bench compile --no-run 2>/dev/null >/dev/null
fi
glint=target/x86_64-unknown-linux-gnu/release/glint
gen=$(ls -t target/x86_64-unknown-linux-gnu/release/deps/compile-* | grep -v '\.d$' | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cpus=(); peaks=()
for n in "${sizes[@]}"; do
  "$gen" --write "$n" "$work/env-$n.glint"
  best_cpu=""; best_peak=""; walls=()
  for _ in $(seq "$runs"); do
    # %e wall, %U+%S CPU, %M peak resident set (KiB)
    line=$(/usr/bin/time -f "%e %U %S %M" "$glint" check "$work/env-$n.glint" 2>&1 >/dev/null | tail -1)
    read -r wall user sys peak <<<"$line"
    cpu=$(python3 -c "print(round($user+$sys, 2))")
    walls+=("$wall")
    if [ -z "$best_cpu" ] || python3 -c "import sys; sys.exit(0 if $cpu < $best_cpu else 1)"; then best_cpu=$cpu; fi
    if [ -z "$best_peak" ] || [ "$peak" -lt "$best_peak" ]; then best_peak=$peak; fi
  done
  mib=$(python3 -c "print(round($best_peak/1024, 1))")
  extra=""
  if [ "$instructions" = 1 ]; then
    ir=$(valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$glint" check "$work/env-$n.glint" 2>&1 >/dev/null | awk '/I +refs/ {gsub(",", "", $4); print $4}')
    extra=" instructions=$ir"
  fi
  echo "N=$n: glint check wall_s=[${walls[*]}] best_cpu_s=$best_cpu peak_mib=$mib$extra"
  cpus+=("$best_cpu"); peaks+=("$best_peak")
done
last=$((${#sizes[@]} - 1))
ratio_cpu=$(python3 -c "print(round(${cpus[$last]}/max(${cpus[0]},0.01), 1))")
ratio_peak=$(python3 -c "print(round(${peaks[$last]}/${peaks[0]}, 1))")
echo "compile sizes=$(IFS=,; echo "${sizes[*]}") cpu_s=$(IFS=,; echo "${cpus[*]}") peak_mib=$(python3 -c "print(','.join(str(round(int(p)/1024,1)) for p in '${peaks[*]}'.split()))") ratio_cpu=$ratio_cpu ratio_peak=$ratio_peak"
