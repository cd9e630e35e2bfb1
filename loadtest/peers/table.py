#!/usr/bin/env python3
"""Prints the side-by-side table of compare.sh from its result directory.

Reads <scenario>-<server>.json (herald-loadtest --json reports), <scenario>-<server>.failed
and <server>.failed (one line: why), and versions.txt. One row per scenario and server;
the last column is Herald's deliveries per server CPU-second over the peer's.
"""

import json
import os
import sys

SERVERS = ["herald", "centrifugo", "sockudo"]
SCENARIOS = [("1000x50", "1000 subs x 50/s"), ("5000x20", "5000 subs x 20/s"),
             ("1000x200", "1000 subs x 200/s")]


def read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def main(out):
    versions = read_text(os.path.join(out, "versions.txt"))
    if versions:
        print("; ".join(versions.splitlines()))
        print()
    print("| scenario | server | publications/s | deliveries/s | deliveries per server CPU-s | p50 ms | p99 ms "
          "| server RSS per connection | lost | duplicates | Herald/peer (per CPU-s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, label in SCENARIOS:
        rows = {}
        for server in SERVERS:
            why = read_text(os.path.join(out, f"{server}.failed")) or read_text(
                os.path.join(out, f"{key}-{server}.failed"))
            report = None
            if why is None:
                text = read_text(os.path.join(out, f"{key}-{server}.json"))
                if text is None:
                    continue
                report = json.loads(text)
            rows[server] = (why, report)
        herald = rows.get("herald", (None, None))[1]
        herald_per_cpu = herald and herald["metrics"].get("deliveries_per_server_cpu_s")
        for server in SERVERS:
            if server not in rows:
                continue
            why, report = rows[server]
            if why is not None:
                print(f"| {label} | {server} | failed: {why} | | | | | | | | |")
                continue
            m = report["metrics"]
            per_cpu = m.get("deliveries_per_server_cpu_s")
            mem = m.get("mem_per_conn_kb")
            ratio = ""
            if server != "herald" and herald_per_cpu and per_cpu:
                ratio = f"{herald_per_cpu / per_cpu:.2f}"
            print(f"| {label} | {server} | {m['publications_per_sec']:.1f} "
                  f"| {m['deliveries_per_sec']:.0f} | {per_cpu:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} "
                  f"| {'' if mem is None else f'{mem:.1f} KiB'} "
                  f"| {m['lost']:.0f} | {m['duplicates']:.0f} | {ratio} |"
                  if per_cpu is not None else
                  f"| {label} | {server} | {m['publications_per_sec']:.1f} "
                  f"| {m['deliveries_per_sec']:.0f} | no CPU reading | "
                  f"{m['p50_ms']:.2f} | {m['p99_ms']:.2f} | | {m['lost']:.0f} "
                  f"| {m['duplicates']:.0f} | |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/peers/results")
