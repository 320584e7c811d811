#!/usr/bin/env bash
# Docker provider benchmarks, all on this machine (loopback and local Docker
# networks only; every loop is bounded):
#   1. kill_replace: `docker kill` → Exited event → replacement running and
#      serving, at the provider level;
#   2. drift_e2e: the conductor drives the provider behind an endpoint; every
#      drift case done with the docker CLI under a load loop (detected /
#      replaced / victim gone, failed requests), `docker kill` → replacement
#      serving through the endpoint, and a rolling update under load;
#   3. swarm.sh: the same app image as a Docker Swarm service, start-first
#      rollout under load (converge time, failed requests).
# Needs a Docker Engine. Figures vary with machine load (2 shared cores).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench -q -p glint-docker --bench kill_replace 2>/dev/null
echo
cargo bench -q -p glint-docker --bench drift_e2e 2>/dev/null
echo
cargo build -q -p glint-cli --bin glint-hello
HELLO=target/x86_64-unknown-linux-gnu/debug/glint-hello bench/swarm.sh
