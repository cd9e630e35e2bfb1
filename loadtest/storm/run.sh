#!/bin/bash
# Failover reconnect storms, builds compared back to back in rotating order, with the
# machine sampled (sampler.py) and each storm's CPU split by process (cost.py).
#
#   loadtest/storm/run.sh ROUNDS RATE NAME=NODE_BIN+ROUTER_BIN [NAME=...]
#
# Each run: herald-loadtest failover --local 3 --routers 2 --subscribers 15000 --rate RATE
# --publishers 1 --duration 24s --kill-at 10s (about 5,000 clients on the killed node).
# Results in $STORM_OUT (default /tmp/herald-storm): NAME-RATE-ROUND.{log,json,samples}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lt=${LOADTEST_BIN:-$root/target/release/herald-loadtest}
out=${STORM_OUT:-/tmp/herald-storm}
mkdir -p "$out"
rounds=$1 rate=$2
shift 2
for r in $(seq 1 "$rounds"); do
  for spec in "$@"; do
    name=${spec%%=*} bins=${spec#*=}
    node=${bins%%+*} router=${bins##*+}
    f=$out/$name-$rate-$r
    python3 "$here/sampler.py" "$f.samples" 48 &
    sampler=$!
    "$lt" failover --local 3 --routers 2 --subscribers 15000 --rate "$rate" --publishers 1 \
      --duration 24s --kill-at 10s --quiet --node-bin "$node" --router-bin "$router" \
      --json "$f.json" > "$f.log" 2>&1 || true
    wait "$sampler"
    echo "$name round $r: $(grep -E 'reconnects' "$f.log" | sed 's/ *reconnects *//') | $(grep integrity "$f.log" | sed 's/ *integrity *//')"
    python3 "$here/cost.py" "$f.samples"
  done
done
