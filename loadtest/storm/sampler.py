#!/usr/bin/env python3
"""Samples the machine every 100 ms while a failover run goes on.

Each line: seconds since start, the machine's busy and steal percentages over the last
tenth, how many herald-node processes are alive, and the cumulative CPU seconds
(utime + stime from /proc/PID/stat) of each kind of process: herald-router,
herald-node, nats-server, herald-loadtest (a process that died keeps its last reading).

usage: sampler.py OUT SECONDS
"""
import os
import sys
import time

KINDS = ("herald-node", "herald-router", "nats-server", "herald-loadtes")  # comm is cut at 15
HZ = os.sysconf("SC_CLK_TCK")


def machine():
    v = list(map(int, open("/proc/stat").readline().split()[1:]))
    return sum(v), v[3] + v[4], v[7]  # total, idle + iowait, steal


def processes():
    alive, cpu = 0, {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        kind = next((k for k in KINDS if comm.startswith(k)), None)
        if kind is None:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        alive += kind == "herald-node"
        cpu[pid] = (kind, (int(fields[11]) + int(fields[12])) / HZ)
    return alive, cpu


def main():
    out, seconds = open(sys.argv[1], "w"), float(sys.argv[2])
    start, last, seen = time.time(), machine(), {}
    while time.time() - start < seconds:
        time.sleep(0.1)
        cur = machine()
        total = max(cur[0] - last[0], 1)
        busy = 100 * (1 - (cur[1] - last[1]) / total)
        steal = 100 * (cur[2] - last[2]) / total
        last = cur
        nodes, cpu = processes()
        seen.update(cpu)
        sums = {}
        for kind, t in seen.values():
            sums[kind] = sums.get(kind, 0) + t
        kinds = " ".join(f"{k}={v:.2f}" for k, v in sorted(sums.items()))
        out.write(f"{time.time() - start:.1f} busy={busy:.0f} steal={steal:.0f} nodes={nodes} {kinds}\n")
        out.flush()


if __name__ == "__main__":
    main()
