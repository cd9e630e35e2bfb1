#!/usr/bin/env bash
# The compose cluster for real, on this machine's Docker engine: build the images,
# stand in for third-party images no registry can give us, `up`, run e2e.py (clients
# through the routers, docker kill of a node, nothing lost, Prometheus and alert rules),
# then `down -v` whatever happened.
#
#   deploy/test/e2e.sh        (needs docker, docker-compose, cargo; python venv from .ci/test)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
PY="${HERALD_PY:-$ROOT/target/py-venv/bin/python}"
COMPOSE_FILE=deploy/compose/docker-compose.yml
PROJECT=herald-e2e-$$

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export HERALD_ROUTER1_PORT=$(free_port) HERALD_ROUTER2_PORT=$(free_port)
export HERALD_PROMETHEUS_PORT=$(free_port) HERALD_GRAFANA_PORT=$(free_port)

[[ -n "${HERALD_E2E_SKIP_BUILD:-}" ]] || deploy/build-images.sh
services=(nats1 nats2 nats3 node1 node2 node3 router1 router2 prometheus grafana)
if ! deploy/test/standins.sh; then
    echo "error: a required image is missing" >&2
    exit 1
fi
if ! docker image inspect grafana/grafana:10.4.2 >/dev/null 2>&1; then
    echo "    (grafana cannot run here: every other service is tested, the dashboard's queries against Prometheus)"
    unset 'services[9]'
fi

compose() { docker-compose -p "$PROJECT" -f "$COMPOSE_FILE" "$@"; }
cleanup() {
    local rc=$?
    if ((rc != 0)); then
        echo "==> logs (failure)"
        compose logs --no-color --tail=40 2>&1 | tail -n 200 || true
    fi
    echo "==> docker-compose down -v"
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    exit $rc
}
trap cleanup EXIT

echo "==> docker-compose up -d ${services[*]}"
compose up -d "${services[@]}" 2>&1 | grep -v -i "deprecat" || true
compose ps

echo "==> waiting for the containers' HEALTHCHECKs"
deadline=$((SECONDS + 180))
for svc in node1 node2 node3 router1 router2; do
    id=$(compose ps -q "$svc")
    until [[ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" == healthy ]]; do
        ((SECONDS < deadline)) || { echo "error: $svc not healthy" >&2; exit 1; }
        sleep 1
    done
    echo "    $svc healthy"
done
[[ "$(docker inspect -f '{{.Config.User}}' "$(compose ps -q node1)")" == 10001:10001 ]] \
    || { echo "error: node container does not run as uid 10001" >&2; exit 1; }

echo "==> e2e.py"
"$PY" deploy/test/e2e.py "$PROJECT" "$HERALD_ROUTER1_PORT" "$HERALD_ROUTER2_PORT" "$HERALD_PROMETHEUS_PORT"
