"""End-to-end check of the compose cluster (deploy/compose/docker-compose.yml) once it
is up: clients through both routers, steady publications, SIGKILL of the node holding
some of them, recovery with nothing lost; Prometheus scrapes every node and router,
loads the alert rules, and every dashboard query evaluates.

Run by deploy/test/e2e.sh on a Docker engine (the kill is `docker kill`), and by
deploy/test/netns.py, which runs the same services as processes on network namespaces
(the kill is a SIGKILL of the node's process): both call `run`.

Usage: e2e.py PROJECT ROUTER1_PORT ROUTER2_PORT PROMETHEUS_PORT
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import aiohttp
import jwt

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "node" / "tests" / "py"))

from failover import Publisher, Subscriber, spread  # noqa: E402

SECRET = "compose-dev-secret-change-me-0123456789"
API_KEY = "compose-dev-api-key"
CHANNELS = [f"e2e{i}" for i in range(4)]
CLIENTS = 60


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")


async def get_json(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
            return r.status, json.loads(await r.text())


async def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = await check()
            if last:
                return last
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, OSError) as e:
            last = e
        await asyncio.sleep(1)
    raise SystemExit(f"FAIL: {what} within {timeout}s; last: {last!r}")


async def run(routers: list[str], prometheus: str, kill: Callable[[str], None]) -> None:
    """The whole check against `routers` (base URLs of the two routers) and `prometheus`
    (its base URL); `kill(service)` kills that node's container or process at once."""

    async def all_up():
        for r in routers:
            status, body = await get_json(f"{r}/readyz")
            if status != 200 or body.get("healthy") != 3:
                return None
        return True

    await wait_for(all_up, 180, "both routers ready with 3 healthy nodes")
    print("routers ready, 3 healthy nodes each")

    subs = [
        Subscriber(f"c{i}", routers[i % 2].replace("http", "ws") + "/connection/websocket",
                   token(f"c{i}"), CHANNELS[i % len(CHANNELS)])
        for i in range(CLIENTS)
    ]
    tasks = [asyncio.create_task(s.run()) for s in subs]

    async def subscribed():
        return all(s.subscribes for s in subs)

    await wait_for(subscribed, 60, "every client subscribed through the routers")
    placement = {n: sum(1 for s in subs if s.nodes[-1] == n) for n in ("node1", "node2", "node3")}
    print("placement:", placement)
    victim = max(placement, key=placement.get)

    pub = Publisher(routers[0] + "/api", API_KEY, CHANNELS, rate=10)
    pub_task = asyncio.create_task(pub.run())
    await asyncio.sleep(2)

    victims = [s for s in subs if s.nodes[-1] == victim]
    before = {s.name: len(s.reconnect_s) for s in victims}
    kill(victim)
    print(f"killed {victim} ({len(victims)} clients)")

    async def moved():
        return all(len(s.reconnect_s) > before[s.name] for s in victims)

    await wait_for(moved, 60, "the killed node's clients to reconnect")
    await asyncio.sleep(3)
    pub.stop()
    await pub_task

    async def complete():
        return all(len(set(s.received)) >= pub.sent[s.channel] for s in subs)

    await wait_for(complete, 60, "every publication delivered")
    await asyncio.sleep(1)
    for s in subs:
        s.stop()
    problems = [p for s in subs for p in s.problems(pub.sent[s.channel])]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    report = {
        "clients": CLIENTS,
        "killed": victim,
        "clients_of_killed_node": len(victims),
        "publications": sum(pub.sent.values()),
        "deliveries": sum(len(s.received) for s in subs),
        "reconnect_s": spread([s.reconnect_s[before[s.name]] for s in victims]),
        "lost_or_duplicated": len(problems),
    }
    print("report:", json.dumps(report))
    if problems:
        raise SystemExit("FAIL: " + "; ".join(problems[:10]))
    assert all(s.nodes[-1] != victim for s in victims)

    # Prometheus: every live node and router scraped, rules loaded, dashboard queries valid.
    base = f"{prometheus}/api/v1"

    async def scraped():
        _, body = await get_json(f"{base}/query?query=up")
        up = {r["metric"]["instance"]: r["value"][1] for r in body["data"]["result"]}
        live = {f"{n}:8000" for n in placement if n != victim} | {"router1:8080", "router2:8080"}
        return up if all(up.get(i) == "1" for i in live) else None

    up = await wait_for(scraped, 60, "Prometheus scraping every live node and router")
    print("prometheus up:", up)
    _, rules = await get_json(f"{base}/rules")
    names = [r["name"] for g in rules["data"]["groups"] for r in g["rules"]]
    assert len(names) >= 9 and "HeraldNodeDown" in names, names
    dash = json.loads((ROOT / "deploy/grafana/dashboards/herald.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    empty = []
    async with aiohttp.ClientSession() as s:
        for e in exprs:
            async with s.get(f"{base}/query", params={"query": e}) as r:
                body = json.loads(await r.text())
            assert body.get("status") == "success", (e, body)
            if not body["data"]["result"]:
                empty.append(e)
    # Quantiles of a histogram and rates need a few scrapes; every family must exist:
    # each herald_* name a panel queries is one Prometheus has scraped from the cluster.
    _, scraped_names = await get_json(f"{base}/label/__name__/values")
    have = set(scraped_names["data"])
    queried = {n for e in exprs for n in re.findall(r"\bherald_[a-zA-Z0-9_:]*", e)}
    # Families that exist only once their event happened or their feature is on: the
    # backend proxy's (this cluster has no proxy) and the closes by code (labelled by
    # the code, so none before a first close on a scraped node). deploy/test/
    # check_dashboard.py makes each of them happen and checks their names.
    conditional = {
        "herald_node_proxy_requests_total",
        "herald_node_proxy_duration_seconds_bucket",
        "herald_node_disconnects_total",
    }
    queried -= conditional
    assert queried <= have, f"dashboard queries metrics nobody exports: {sorted(queried - have)}"
    print(f"dashboard: {len(exprs)} queries evaluate; {len(empty)} without data yet: {empty}")
    print("PASS")


def docker_kill(project: str) -> Callable[[str], None]:
    def kill(service: str) -> None:
        cid = subprocess.run(["docker-compose", "-p", project, "-f", str(ROOT / "deploy/compose/docker-compose.yml"),
                              "ps", "-q", service], check=True, capture_output=True, text=True).stdout.strip()
        subprocess.run(["docker", "kill", cid], check=True, capture_output=True)
    return kill


if __name__ == "__main__":
    project, r1, r2, prom = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    asyncio.run(run([f"http://127.0.0.1:{r1}", f"http://127.0.0.1:{r2}"], f"http://127.0.0.1:{prom}",
                    docker_kill(project)))
