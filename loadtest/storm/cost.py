#!/usr/bin/env python3
"""The reconnect storm in a sampler.py file, and what each kind of process spent in it.

The storm starts with the busy tenths that lead up to the tenth in which a node died
(the node count went from 3 to 2) and ends at the first tenth after it below 50 % busy.
For each kind: CPU seconds in the storm, and its steady rate over the 3 s before (the
fan-out's share, which goes on during the storm).

usage: cost.py SAMPLES
"""
import sys

# Sample fields that are not a kind of process's CPU seconds.
MACHINE = ("t", "busy", "steal", "nodes")


def main():
    rows = []
    for line in open(sys.argv[1]):
        t, *fields = line.split()
        row = {"t": float(t)}
        for kv in fields:
            k, v = kv.split("=")
            row[k] = float(v)
        rows.append(row)
    death = next(i for i in range(1, len(rows)) if rows[i - 1]["nodes"] == 3 and rows[i]["nodes"] == 2)
    start = death - 1
    while start > 0 and rows[start - 1]["busy"] >= 85:
        start -= 1
    end = death
    while end < len(rows) - 1 and rows[end]["busy"] >= 50:
        end += 1
    before = max(0, start - 30)
    steal = sum(r["steal"] for r in rows[start:end]) / max(1, end - start)
    print(f"storm {rows[start]['t']:.1f}-{rows[end]['t']:.1f} s: {rows[end]['t'] - rows[start]['t']:.1f} s busy, steal {steal:.0f} %")
    span = rows[start - 1]["t"] - rows[before]["t"]
    kinds = sorted({k for r in rows for k in r if k not in MACHINE})
    for k in kinds:
        storm = rows[end].get(k, 0) - rows[start].get(k, 0)
        steady = (rows[start - 1].get(k, 0) - rows[before].get(k, 0)) / span
        print(f"  {k:15} {storm:5.2f} CPU-s in the storm; steady {steady:.2f} CPU-s/s")


if __name__ == "__main__":
    main()
