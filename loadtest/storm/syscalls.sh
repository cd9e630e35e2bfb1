#!/bin/bash
# System calls per reconnect in a failover storm, for the routers and the nodes: counts
# every call over a steady 4 s window before the kill and a 4 s window over it, and
# prints the difference per reconnected client.
#
#   loadtest/storm/syscalls.sh NODE_BIN ROUTER_BIN [RATE]
#
# Runs herald-loadtest failover --local 3 --routers 2 --subscribers 15000 --rate RATE
# (default 0.5) --publishers 1 --duration 20s --kill-at 10s. Needs perf (linux-perf) and
# root. Processes are found by name (herald-router, herald-node), so run nothing else
# that carries those names meanwhile.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
lt=${LOADTEST_BIN:-$root/target/release/herald-loadtest}
node=$1 router=$2 rate=${3:-0.5}
out=$(mktemp -d)
ev=recvfrom,sendto,epoll_wait,epoll_ctl,shutdown,close,connect,accept4,futex,writev,write,read,setsockopt,getsockopt,socket,sched_yield,mmap,munmap,madvise
ev=$(echo "$ev" | sed 's/\([a-z0-9_]*\)/syscalls:sys_enter_\1/g')
"$lt" failover --local 3 --routers 2 --subscribers 15000 --rate "$rate" --publishers 1 \
  --duration 20s --kill-at 10s --node-bin "$node" --router-bin "$router" > "$out/log" 2>&1 &
run=$!
# The progress lines: "[   8s]" is well after the ramp, "[  13s]" just before the kill
# (10 s into the measurement, which starts after the ramp).
window() {
  until grep -q "$1" "$out/log" 2>/dev/null; do sleep 0.05; done
  perf stat -e "$ev" -p "$(pgrep -d, -x herald-router)" -o "$out/router.$2" -- sleep 4 &
  perf stat -e "$ev" -p "$(pgrep -d, -x herald-node)" -o "$out/node.$2" -- sleep 4 &
}
window '\[   8s\]' steady
window '\[  13s\]' storm
wait "$run" || true
wait
grep -E 'reconnects|killed' "$out/log"
n=$(grep -oP 'reconnects +\K[0-9]+' "$out/log")
python3 - "$out" "$n" <<'PY'
import re, sys
out, n = sys.argv[1], int(sys.argv[2])
def counts(f):
    d = {}
    for line in open(f):
        m = re.match(r"\s*([\d,]+)\s+syscalls:sys_enter_(\w+)", line)
        if m:
            d[m.group(2)] = int(m.group(1).replace(",", ""))
    return d
for kind in ("router", "node"):
    a, b = counts(f"{out}/{kind}.steady"), counts(f"{out}/{kind}.storm")
    per = {k: (b.get(k, 0) - a.get(k, 0)) / n for k in b}
    shown = sorted((k for k in per if abs(per[k]) >= 0.05), key=lambda k: -per[k])
    print(f"{kind}: {sum(v for v in per.values() if v > 0):.1f} calls per reconnect:",
          " ".join(f"{k} {per[k]:.2f}" for k in shown))
PY
rm -rf "$out"
