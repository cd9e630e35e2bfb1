"""Deploys and crashes lose nothing: a rolling restart (every node drained and restarted
in turn) and a SIGKILLed node, with hundreds of clients subscribed through the router,
the official SDK among them, while publications flow at a steady rate. Every client gets
every publication exactly once, and every resubscribe recovers."""

from __future__ import annotations

import asyncio
import json
import time

import centrifuge
import aiohttp
import pytest

from failover import ROUTER_BIN, Cluster, Publisher, Subscriber, spread
from harness import T, EventLog, http
from sdkutil import ClientEvents, SubEvents

CLIENTS = 240
CHANNELS = [f"feed{i}" for i in range(8)]
RATE = 10  # rounds per second: one publication to every channel each round
SDK_CLIENTS = 3
DRAIN = {"HERALD_DRAIN_GRACE": "1", "HERALD_DRAIN_WINDOW": "2", "HERALD_DRAIN_TIMEOUT": "8"}


@pytest.fixture
def cluster_behind_router(nats, tmp_path, node_bin, request):
    if not ROUTER_BIN.is_file():
        pytest.fail(f"herald-router not built at {ROUTER_BIN}: cargo build --workspace")
    c = Cluster(node_bin, tmp_path, nats.url, 3, {"HERALD_HISTORY_SIZE": "1000", **DRAIN})
    request.node._herald_nodes = c.procs
    yield c
    c.stop_all()


class SdkClient:
    """The official centrifuge-python client through the router, recording what its
    subscription gets."""

    def __init__(self, cluster: Cluster, name: str, channel: str):
        self.log = EventLog()
        self.slog = EventLog()
        self.client = centrifuge.Client(
            f"{cluster.ws_url}?client={name}",
            token=cluster.token(name),
            events=ClientEvents(self.log),
            timeout=T,
            min_reconnect_delay=0.1,
            max_reconnect_delay=1.0,
        )
        self.sub = self.client.new_subscription(channel, events=SubEvents(self.slog))
        self.name = name

    async def start(self) -> None:
        await self.client.connect()
        await self.sub.subscribe()
        await self.sub.ready(T)

    def seqs(self) -> list[int]:
        return [c.pub.data["seq"] for c in self.slog.of("publication")]

    def problems(self, expected: int) -> list[str]:
        seqs = self.seqs()
        out = []
        if seqs != list(range(expected)):
            missing = sorted(set(range(expected)) - set(seqs))
            out.append(f"{self.name}: {len(seqs)} pubs, {len(missing)} missing, "
                       f"{len(seqs) - len(set(seqs))} dups")
        later = self.slog.of("subscribed")[1:]
        if any(not (s.was_recovering and s.recovered) for s in later):
            out.append(f"{self.name}: unrecovered resubscribe {later}")
        return out


async def _run_load(cluster: Cluster, disrupt) -> dict:
    subs = [
        Subscriber(f"c{i}", cluster.ws_url, cluster.token(f"c{i}"), CHANNELS[i % len(CHANNELS)])
        for i in range(CLIENTS)
    ]
    tasks = [asyncio.create_task(s.run()) for s in subs]
    deadline = time.monotonic() + 3 * T
    while not all(s.subscribes for s in subs):
        assert time.monotonic() < deadline, [s.errors for s in subs if not s.subscribes][:3]
        await asyncio.sleep(0.1)
    sdks = [SdkClient(cluster, f"sdk{i}", CHANNELS[i]) for i in range(SDK_CLIENTS)]
    for c in sdks:
        await c.start()
    placement = {n: sum(1 for s in subs if s.nodes[-1] == n) for n in ("n0", "n1", "n2")}

    pub = Publisher(cluster.api_url, cluster.api_key, CHANNELS, RATE)
    pub_task = asyncio.create_task(pub.run())
    await asyncio.sleep(1)
    report = await disrupt(subs)
    await asyncio.sleep(1)
    pub.stop()
    await pub_task

    def complete():
        return all(len(set(s.received)) >= pub.sent[s.channel] for s in subs) and all(
            len(set(c.seqs())) >= pub.sent[c.sub.channel] for c in sdks
        )

    deadline = time.monotonic() + 3 * T
    while not complete() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # a late duplicate would show up now
    for s in subs:
        s.stop()
    problems = [p for s in subs for p in s.problems(pub.sent[s.channel])]
    problems += [p for c in sdks for p in c.problems(pub.sent[c.sub.channel])]
    for c in sdks:
        await c.client.disconnect()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    report.update(
        clients=CLIENTS + SDK_CLIENTS,
        placement_before=placement,
        publications=sum(pub.sent.values()),
        deliveries=sum(len(s.received) for s in subs),
        publish_retries=pub.retries,
        lost_or_duplicated=len(problems),
    )
    assert not problems, problems[:10]
    return report


async def test_rolling_restart_loses_nothing(cluster_behind_router, herald_report):
    cluster = cluster_behind_router

    async def roll(subs):
        per_node = {}
        for i in range(3):
            node_id = f"n{i}"
            victims = [s for s in subs if s.nodes and s.nodes[-1] == node_id]
            before = {s.name: len(s.closed_at) for s in victims}
            started = time.monotonic()
            r = await http("POST", f"{cluster.nodes[i].http_url}/admin/drain",
                           headers={"X-API-Key": cluster.api_key})
            assert r.status == 202, r.text
            # (In a thread: the clients' event loop must keep running meanwhile.)
            assert await asyncio.to_thread(cluster.nodes[i].wait_exit, 15) == 0
            await asyncio.sleep(0.5)  # the last clients see their close
            cuts = [
                s.closed_at[before[s.name]] - started
                for s in victims if len(s.closed_at) > before[s.name]
            ]
            codes = {s.close_codes[before[s.name]] for s in victims if len(s.close_codes) > before[s.name]}
            assert len(cuts) == len(victims), f"{node_id}: {len(cuts)} of {len(victims)} disconnected"
            assert codes <= {3001}, codes
            stats = spread(cuts)
            # After the 1 s grace, over the 2 s window: never one burst.
            if len(cuts) > 5:
                assert stats["min"] >= 0.9 and stats["max"] - stats["min"] >= 1.0, stats
            per_node[node_id] = {"clients": len(victims), "disconnect_s": stats}
            await asyncio.to_thread(cluster.restart, i, 1)
            await cluster.wait_routed(i)
        return {"scenario": "rolling", "drain": DRAIN, "nodes": per_node}

    report = await _run_load(cluster, roll)
    herald_report(report)


async def test_sigkill_of_a_node_loses_nothing(cluster_behind_router, herald_report):
    cluster = cluster_behind_router

    async def kill(subs):
        victims = [s for s in subs if s.nodes and s.nodes[-1] == "n1"]
        before = {s.name: len(s.reconnect_s) for s in victims}
        await asyncio.to_thread(cluster.nodes[1].kill)
        deadline = time.monotonic() + 3 * T
        while any(len(s.reconnect_s) <= before[s.name] for s in victims):
            assert time.monotonic() < deadline, "clients of the killed node did not come back"
            await asyncio.sleep(0.1)
        moved = {s.nodes[-1] for s in victims}
        assert "n1" not in moved, moved
        return {
            "scenario": "failover",
            "killed": "n1",
            "clients_of_killed_node": len(victims),
            "reconnect_s": spread([s.reconnect_s[before[s.name]] for s in victims]),
        }

    report = await _run_load(cluster, kill)
    herald_report(report)


async def test_router_sends_no_new_client_to_a_draining_node_while_its_own_carry_on(
    nats, tmp_path, node_bin, request
):
    """Issue 4, with real nodes: a node drains (grace 5 s); the router takes it out of
    the ring for new connections at once, and its open tunnel keeps working."""
    c = Cluster(node_bin, tmp_path, nats.url, 2,
                {"HERALD_DRAIN_GRACE": "5", "HERALD_DRAIN_WINDOW": "1", "HERALD_DRAIN_TIMEOUT": "10"})
    request.node._herald_nodes = c.procs
    try:
        await c.wait_routed(0)
        await c.wait_routed(1)
        # A client on node 0 (keys are tried until one lands there).
        old = None
        for i in range(50):
            s = Subscriber(f"k{i}", c.ws_url, c.token(f"k{i}"), "live")
            task = asyncio.create_task(s.run())
            deadline = time.monotonic() + T
            while not s.subscribes and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if s.nodes and s.nodes[-1] == "n0":
                old = (s, task)
                break
            s.stop()
            task.cancel()
        assert old is not None, "no key landed on node 0"
        s, task = old

        r = await http("POST", f"{c.nodes[0].http_url}/admin/drain", headers={"X-API-Key": c.api_key})
        assert r.status == 202, r.text
        # The same key now goes to node 1 at once (the router saw the 503 / draining).
        async def fresh_lands_elsewhere():
            probe = Subscriber(s.name, c.ws_url, s.token, "probe")
            t = asyncio.create_task(probe.run())
            deadline = time.monotonic() + T
            while not probe.nodes and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            probe.stop()
            t.cancel()
            return probe.nodes[:1]

        landed = await fresh_lands_elsewhere()
        assert landed == ["n1"], landed
        # The old tunnel still carries publications during the grace.
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{c.api_url}/publish", headers={"X-API-Key": c.api_key},
                                    json={"channel": "live", "data": {"seq": 0}}) as resp:
                assert resp.status == 200, await resp.text()
        deadline = time.monotonic() + T
        while not s.received and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert s.received == [0] and len(s.closed_at) == 0, (s.received, s.closed_at)
        s.stop()
        task.cancel()
    finally:
        c.stop_all()
