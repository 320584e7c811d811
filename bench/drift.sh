#!/usr/bin/env bash
# Firewall drift: how long from a hand-made change to Glint's nftables table
# until the declared ruleset is back, and whether declared flows notice.
#
# Runs `web` (2 instances, behind the endpoint, under continuous load) and
# `api` with the rule web → api, as root with nft. Then RUNS times, in turn:
#   insert  - `nft insert rule inet T forward ip saddr 203.0.113.N accept`
#             (the bastion case: an undeclared address let in),
#   output  - `nft add rule inet T output tcp dport 22 accept`,
#   flush   - `nft flush chain inet T forward` (every rule gone: all closed),
#   delete  - `nft delete table inet T` (the whole table gone: all open),
# and measures from right before the `nft` command until `nft list table`
# equals what it was before the change (polled without pause). Each change
# must give one `drift` incident. Then the cost of a ruleset for 1,000
# instances: the whole table (a new version) and a set update (instances
# replaced), as `nft -f` transactions of the same shape as Glint's, on a
# throwaway table.
#
#   sudo bash bench/drift.sh [--runs 20] [--concurrency 8]
#
# Ends with: drift runs=20 median_ms=… p99_ms=… max_ms=… incidents=… failed=… ruleset_1000_ms=… sets_1000_ms=…
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

RUNS=20 CONCURRENCY=8
while (( $# )); do
  case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
(( EUID == 0 )) || die "needs root (instances' own networks, nftables)"
command -v nft > /dev/null || die "needs nft (apt-get install nftables)"

bench_build
bench_init
PORT=$(free_port)
mkdir -p "$WORK/app"
cp "$BIN/glint-hello" "$WORK/app/hello"
service() {
  cat <<EOF
service $1 {
  image     = image.hello
  instances = $2
  health {
    http     = "/healthz"
    interval = 1s
    timeout  = 500ms
  }
}
EOF
}
{
  cat <<EOF
image hello {
  from = scratch
  copy "app/hello" to "/bin/hello"
  entrypoint = ["/bin/hello"]
  port = 8080
}
EOF
  service web 2
  service api 1
  cat <<EOF
endpoint public {
  listen  = 127.0.0.1:$PORT
  service = service.web
}

rule web_to_api {
  from = service.web
  to   = service.api
}
EOF
} > "$WORK/drift.glint"
start_glint "$WORK/drift.glint"
wait_converged 2 180
status_json
STORE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["store_id"])' "$WORK/status.json")
TABLE=$(python3 - "$STORE" <<'EOF'
import sys
h = 0xcbf29ce484222325
for b in sys.argv[1].encode():
    h ^= b
    h = (h * 0x100000001b3) & 0xffffffffffffffff
print("glint_%s" % ("%012x" % (h & 0xffffffffffff))[:8])
EOF
)
deadline=$(( $(date +%s) + 30 ))
until nft list table inet "$TABLE" > "$WORK/baseline.nft" 2>/dev/null && grep -q 'rule web_to_api' "$WORK/baseline.nft"; do
  (( $(date +%s) > deadline )) && die "table inet $TABLE not applied within 30s"
  sleep 0.1
done
start_events
start_load "$CONCURRENCY"
phase steady
log "table inet $TABLE; load on :$PORT; $RUNS changes follow"
sleep 1

kinds=(insert output flush delete)
: > "$WORK/runs.txt"
for run in $(seq 1 "$RUNS"); do
  kind=${kinds[$(( (run - 1) % 4 ))]}
  sleep 0.3
  start=$(now_ms)
  case $kind in
    insert) nft insert rule inet "$TABLE" forward ip saddr "203.0.113.$run" accept ;;
    output) nft add rule inet "$TABLE" output tcp dport 22 accept ;;
    flush) nft flush chain inet "$TABLE" forward ;;
    delete) nft delete table inet "$TABLE" ;;
  esac
  deadline=$(( $(date +%s) + 30 ))
  until nft list table inet "$TABLE" 2>/dev/null | cmp -s - "$WORK/baseline.nft"; do
    (( $(date +%s) > deadline )) && die "run $run ($kind): not reverted within 30s"
  done
  end=$(now_ms)
  echo "$kind $(( end - start ))" >> "$WORK/runs.txt"
  log "run $run: $kind reverted in $(( end - start )) ms"
done
sleep 1
stop_load

# The cost of a ruleset for 1,000 instances (a throwaway table).
python3 - "$WORK" <<'EOF'
import sys
work = sys.argv[1]
t = "glint_bench"
def addrs(n, first):
    return ", ".join("10.89.%d.%d" % divmod(first + i, 250) for i in range(n))
svcs = ["svc%d" % i for i in range(10)]
full = ["table inet %s {}" % t, "delete table inet %s" % t, "table inet %s {" % t,
        "  set links {", "    type ifname",
        "    elements = { %s }" % ", ".join('"gl%012x"' % i for i in range(1000)), "  }"]
for i, s in enumerate(svcs):
    full += ["  set svc_%s {" % s, "    type ipv4_addr", "    elements = { %s }" % addrs(100, i * 100), "  }"]
for chain in ("forward", "output"):
    full += ["  chain %s {" % chain, "    type filter hook %s priority filter; policy accept;" % chain,
             "    oifname != @links accept", "    ct state established,related accept"]
    for i in range(9):
        full.append('    ip saddr @svc_%s ip daddr @svc_%s tcp dport 8080 accept comment "rule r%d"' % (svcs[i], svcs[i + 1], i))
    full += ["    drop", "  }"]
full.append("}")
open(work + "/full.nft", "w").write("\n".join(full) + "\n")
sets = []
for i, s in enumerate(svcs):
    sets += ["flush set inet %s svc_%s" % (t, s), "add element inet %s svc_%s { %s }" % (t, s, addrs(100, i * 100 + 1))]
open(work + "/sets.nft", "w").write("\n".join(sets) + "\n")
EOF
time_ms() { local a b; a=$(now_ms); nft -f "$1"; b=$(now_ms); echo $(( b - a )); }
full_ms=() sets_ms=()
for _ in 1 2 3 4 5; do
  full_ms+=("$(time_ms "$WORK/full.nft")")
  sets_ms+=("$(time_ms "$WORK/sets.nft")")
done
nft delete table inet glint_bench
"$GLINT" events -o json -n 1000 > "$WORK/events.json"

python3 - "$WORK" "$RUNS" "${full_ms[*]}" "${sets_ms[*]}" <<'EOF'
import json, sys
work, runs = sys.argv[1], int(sys.argv[2])
full = sorted(int(x) for x in sys.argv[3].split())
sets = sorted(int(x) for x in sys.argv[4].split())
ms = sorted(int(l.split()[1]) for l in open(work + "/runs.txt"))
def pct(v, q):
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]
text = open(work + "/events.json").read()
try:
    evs = json.loads(text)
    evs = evs if isinstance(evs, list) else evs.get("events", [])
except ValueError:
    evs = [json.loads(l) for l in text.splitlines() if l.strip()]
incidents = sum(1 for e in evs if "firewall drift" in (e.get("message") or ""))
load = json.load(open(work + "/load.json"))
failed = sum(p.get("failed", 0) for p in load.get("phases", []))
per_kind = {}
for l in open(work + "/runs.txt"):
    k, v = l.split()
    per_kind.setdefault(k, []).append(int(v))
for k, v in per_kind.items():
    v.sort()
    print("  %-6s median_ms=%d max_ms=%d" % (k, pct(v, 0.5), v[-1]))
print("drift runs=%d median_ms=%d p99_ms=%d max_ms=%d incidents=%d failed=%s ruleset_1000_ms=%d sets_1000_ms=%d"
      % (runs, pct(ms, 0.5), pct(ms, 0.99), ms[-1], incidents, failed, pct(full, 0.5), pct(sets, 0.5)))
EOF
