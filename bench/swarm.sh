#!/usr/bin/env bash
# Prototype of the Docker Swarm side of the side-by-side rollout comparison.
#
# What it does, on this machine only (no registry; traffic stays on a local
# Docker network):
#   1. builds a local image from the static demo app, plus a static busybox
#      for the health check and the load client (scratch images have no
#      shell or HTTP client);
#   2. `docker swarm init` if the engine is not in a swarm (and leaves it at
#      the end, so the engine is returned as found);
#   3. creates a 3-replica service from the local image (--no-resolve-image:
#      nothing is pulled) with a health check and --update-order start-first;
#   4. runs a bounded request loop while `docker service update` rolls out a
#      new setting, and reports failed requests and seconds to converge.
#
# Found on this machine: Swarm runs services from a locally loaded image
# fine, but the kernel has no IPVS, so neither the routing mesh (published
# ports) nor VIP service addresses work. The service therefore uses
# `--endpoint-mode dnsrr` on an attachable overlay network, and the load
# client is a container on that network resolving the service name (Docker's
# DNS round robin) for every request. (Debian's static busybox `wget -T`
# crashes; the client uses `timeout 2 wget` instead.)
#
# Usage: bench/swarm.sh  (needs `cargo build --release -p glint-cli --bin glint-hello`,
#        or HELLO=path/to/glint-hello;
#        and busybox-static)
# Env:   REPLICAS (3), MAX_SECONDS (120: hard bound of the load loop)
set -euo pipefail
cd "$(dirname "$0")/.."

REPLICAS=${REPLICAS:-3}
MAX_SECONDS=${MAX_SECONDS:-120}
NAME=glint-swarm-bench
IMAGE=glint-bench/hello:swarm
HELLO=${HELLO:-target/x86_64-unknown-linux-gnu/release/glint-hello}
BUSYBOX=${BUSYBOX:-/bin/busybox}

[ -x "$HELLO" ] || { echo "missing $HELLO: cargo build --release -p glint-cli --bin glint-hello" >&2; exit 1; }
file -L "$BUSYBOX" | grep -q 'statically linked' || { echo "need a static busybox (apt-get install busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
we_started_swarm=0
loadpid=
cleanup() {
    [ -n "$loadpid" ] && kill "$loadpid" 2>/dev/null || true
    docker rm -f "$NAME-load" >/dev/null 2>&1 || true
    docker service rm "$NAME" >/dev/null 2>&1 || true
    # Tasks go away asynchronously; wait for them before leaving the swarm.
    for _ in $(seq 50); do
        [ -z "$(docker ps -q --filter "label=com.docker.swarm.service.name=$NAME")" ] && break
        sleep 0.2
    done
    docker ps -aq --filter "label=com.docker.swarm.service.name=$NAME" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker network rm "$NAME-net" >/dev/null 2>&1 || true
    if [ "$we_started_swarm" = 1 ]; then
        docker swarm leave --force >/dev/null 2>&1 || true
        docker network rm docker_gwbridge >/dev/null 2>&1 || true
    fi
    docker rmi "$IMAGE" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# 1. The image: the demo app and a static busybox (health check only).
mkdir -p "$work/root/bin" "$work/root/tmp"
cp "$HELLO" "$work/root/bin/hello"
cp "$BUSYBOX" "$work/root/bin/busybox"
ln -s busybox "$work/root/bin/sh"
ln -s busybox "$work/root/bin/wget"
tar -C "$work/root" -cf "$work/root.tar" .
docker import --change 'ENTRYPOINT ["/bin/hello"]' "$work/root.tar" "$IMAGE" >/dev/null
echo "image: $IMAGE ($(docker image inspect -f '{{.Id}}' "$IMAGE"))"

# 2. A single-node swarm.
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
    we_started_swarm=1
    echo "swarm: initialised (will leave at the end)"
fi

# 3. The service.
docker network create --driver overlay --attachable "$NAME-net" >/dev/null
t0=$(date +%s.%N)
docker service create --detach=false --quiet --no-resolve-image \
    --name "$NAME" --replicas "$REPLICAS" \
    --network "$NAME-net" --endpoint-mode dnsrr \
    --env GREETING=v1 \
    --health-cmd 'wget -q -O /dev/null http://127.0.0.1:8080/healthz || exit 1' \
    --health-interval 1s --health-timeout 1s --health-retries 1 --health-start-period 1s \
    --update-order start-first --update-parallelism 1 --update-delay 0s \
    --update-failure-action rollback \
    --stop-grace-period 5s \
    "$IMAGE" >/dev/null
echo "service: $REPLICAS replicas running after $(echo "$(date +%s.%N) - $t0" | bc) s"

# 4. Load during a rollout: a client container on the service's network,
#    one request after another, until told to stop (or MAX_SECONDS).
docker run -d --name "$NAME-load" --network "$NAME-net" --tmpfs /tmp \
    --entrypoint /bin/busybox "$IMAGE" sh -c "
        ok=0; fail=0; end=\$((\$(date +%s) + $MAX_SECONDS))
        while [ ! -e /tmp/stop ] && [ \$(date +%s) -lt \$end ]; do
            if timeout 2 wget -q -O /dev/null http://$NAME:8080/; then ok=\$((ok+1)); else fail=\$((fail+1)); fi
        done
        echo \$ok \$fail; sleep 3600" >/dev/null
sleep 2
t0=$(date +%s.%N)
docker service update --detach=false --quiet --env-add GREETING=v2 "$NAME" >/dev/null
converge=$(echo "$(date +%s.%N) - $t0" | bc)
sleep 1
docker exec "$NAME-load" /bin/busybox touch /tmp/stop
for _ in $(seq 50); do
    result=$(docker logs "$NAME-load" 2>/dev/null | tail -1)
    [ -n "$result" ] && break
    sleep 0.2
done
read -r ok fail <<< "$result"
echo "swarm start-first rollout of $REPLICAS replicas: converged in ${converge} s; requests ok=$ok failed=$fail"
