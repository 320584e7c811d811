#!/usr/bin/env bash
# bench/aws-drift.sh: detect → revert time of a hand-made change to a
# Glint-owned AWS security group (the bastion case: an ingress rule for an
# unknown address authorised by hand), against moto on loopback. Each run
# lands at a random point of the re-read cycle; the time is from the
# AuthorizeSecurityGroupIngress answer to the provider's incident, sent once
# the rule is revoked.
#
#   bench/aws-drift.sh [--runs N] [--resync MS]     (defaults 20, 1000)
#
# Needs `moto_server` (pip install 'moto[server]').
# Last line: `aws-drift runs=… resync_ms=… median_ms=… p99_ms=… max_ms=…`.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=20
resync=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --resync) resync="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
cargo bench -q -p glint-aws --bench drift -- "$runs" "$resync" | tail -1
