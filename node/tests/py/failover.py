"""The pieces of the rolling-restart and failover tests: a 3-node cluster on NATS behind
a real herald-router, subscribers that reconnect and recover like the SDKs do (and count
every gap and duplicate), and a publisher that keeps publishing at a steady rate.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import aiohttp
import websockets
from websockets.asyncio.client import connect as ws_connect

from harness import REPO_ROOT, T, Node, start_node
from natsutil import free_port

ROUTER_BIN = Path(
    os.environ.get("HERALD_ROUTER_BIN", str(REPO_ROOT / "target" / "debug" / "herald-router"))
)


@dataclass
class Subscriber:
    """One client through the router: connects, subscribes (recovering from its last
    position after the first time), counts what it gets, reconnects when cut off."""

    name: str
    url: str
    token: str
    channel: str
    received: list[int] = field(default_factory=list)  # publisher's seq numbers
    offsets: list[int] = field(default_factory=list)
    epoch: Optional[str] = None
    offset: int = 0
    subscribes: list[dict] = field(default_factory=list)  # subscribe results
    nodes: list[str] = field(default_factory=list)  # node of each connection
    closed_at: list[float] = field(default_factory=list)
    close_codes: list[Optional[int]] = field(default_factory=list)
    reconnect_s: list[float] = field(default_factory=list)  # close -> subscribed again
    errors: list[str] = field(default_factory=list)
    _stop: bool = False

    async def run(self) -> None:
        while not self._stop:
            try:
                await self._session()
            except (OSError, websockets.WebSocketException, asyncio.TimeoutError) as e:
                self.errors.append(repr(e))
            if self._stop:
                return
            # Jittered backoff like the SDKs (kept short for the test).
            await asyncio.sleep(random.uniform(0.05, 0.3))

    async def _session(self) -> None:
        async with ws_connect(f"{self.url}?client={self.name}", open_timeout=T, ping_interval=None,
                              max_size=None, close_timeout=1) as ws:
            sub: dict = {"channel": self.channel}
            if self.epoch is not None:
                sub.update(recover=True, epoch=self.epoch, offset=self.offset)
            await ws.send(json.dumps({"id": 1, "connect": {"token": self.token}}) + "\n"
                          + json.dumps({"id": 2, "subscribe": sub}))
            try:
                async for frame in ws:
                    for line in frame.split("\n"):
                        if line.strip():
                            self._on(json.loads(line), ws)
            except websockets.ConnectionClosed:
                pass
            finally:
                if not self._stop:
                    self.closed_at.append(time.monotonic())
                    self.close_codes.append(ws.close_code)

    def _on(self, msg: dict, ws) -> None:
        if msg == {}:
            asyncio.ensure_future(ws.send("{}"))
        elif msg.get("id") == 1:
            if "error" in msg:
                self.errors.append(f"connect: {msg}")
            else:
                self.nodes.append(msg["connect"].get("node", "?"))
        elif msg.get("id") == 2:
            if "error" in msg:
                self.errors.append(f"subscribe: {msg}")
                return
            res = msg["subscribe"]
            self.subscribes.append(res)
            if self.closed_at:
                self.reconnect_s.append(time.monotonic() - self.closed_at[-1])
            self.epoch = res.get("epoch", self.epoch)
            for p in res.get("publications", []):
                self._pub(p)
            self.offset = max(self.offset, res.get("offset", 0))
        elif "push" in msg and "pub" in msg["push"]:
            self._pub(msg["push"]["pub"])

    def _pub(self, p: dict) -> None:
        self.received.append(p["data"]["seq"])
        self.offsets.append(p["offset"])
        self.offset = max(self.offset, p["offset"])

    def stop(self) -> None:
        self._stop = True

    def problems(self, expected: int) -> list[str]:
        """Lost, duplicated or out-of-order publications, and unrecovered resubscribes."""
        out = []
        seen = set(self.received)
        lost = [s for s in range(expected) if s not in seen]
        if lost:
            out.append(f"{self.name}: lost {len(lost)} (first {lost[:5]})")
        dups = len(self.received) - len(seen)
        if dups:
            out.append(f"{self.name}: {dups} duplicates")
        if self.received != sorted(self.received):
            out.append(f"{self.name}: out of order")
        unrecovered = [r for r in self.subscribes[1:] if r.get("recovered") is not True]
        if unrecovered:
            out.append(f"{self.name}: {len(unrecovered)} resubscribes not recovered: {unrecovered[:2]}")
        return out


class Publisher:
    """Publishes `{"seq": n}` to every channel in turn through the router's /api at a
    steady rate; each publication carries an idempotency key, so a retry after an error
    (its node died mid-request) cannot publish twice."""

    def __init__(self, api_url: str, api_key: str, channels: list[str], rate: float):
        self.api_url = api_url
        self.api_key = api_key
        self.channels = channels
        self.interval = 1.0 / rate
        self.sent = {c: 0 for c in channels}
        self.retries = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as s:
            next_at = time.monotonic()
            while not self._stop.is_set():
                for c in self.channels:
                    await self._publish(s, c, self.sent[c])
                    self.sent[c] += 1
                next_at += self.interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _publish(self, s: aiohttp.ClientSession, channel: str, seq: int) -> None:
        body = {"channel": channel, "data": {"seq": seq}, "idempotency_key": f"{channel}-{seq}"}
        deadline = time.monotonic() + 60
        while True:
            try:
                async with s.post(f"{self.api_url}/publish", json=body,
                                  headers={"X-API-Key": self.api_key},
                                  timeout=aiohttp.ClientTimeout(total=T)) as r:
                    out = await r.json(content_type=None)
                    if r.status == 200 and "result" in out:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                pass
            self.retries += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"publish {channel} #{seq} failed for 60 s")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()


def spread(values: list[float]) -> dict:
    """Summary numbers of a distribution, seconds, for the report."""
    if not values:
        return {"n": 0}
    v = sorted(values)
    q = lambda p: v[min(len(v) - 1, int(p * len(v)))]  # noqa: E731
    return {
        "n": len(v),
        "min": round(v[0], 3),
        "p50": round(q(0.5), 3),
        "p95": round(q(0.95), 3),
        "max": round(v[-1], 3),
        "stdev": round(statistics.pstdev(v), 3),
    }


class Cluster:
    """nats-server + 3 nodes on fixed ports (so a restarted node comes back at the same
    address) + a herald-router in front, keyed by the `client` query parameter."""

    def __init__(self, node_bin: Path, workdir: Path, nats_url: str, nodes: int, env: dict):
        self.node_bin = node_bin
        self.workdir = workdir
        self.procs: list[Node] = []
        self.ports = [free_port() for _ in range(nodes)]
        self.nodes: list[Node] = []
        try:
            self._start_all(nats_url, nodes, env)
        except BaseException:
            # A process that failed to start (say, no router binary) must not leave the
            # ones already started running after the test.
            self.stop_all()
            raise

    def _start_all(self, nats_url: str, nodes: int, env: dict) -> None:
        first = start_node(
            self.node_bin, self.workdir, "n0-0", None, self._env(0, nats_url, env, None, None)
        )
        self.procs.append(first)
        self.nodes.append(first)
        self.secret, self.api_key = first.secret, first.api_key
        self.base = dict(nats_url=nats_url, env=env)
        for i in range(1, nodes):
            n = self._start(i)
            self.procs.append(n)
            self.nodes.append(n)
        self.router = Node(
            ROUTER_BIN,
            {
                "HERALD_ROUTER_LISTEN": "127.0.0.1:0",
                "HERALD_ROUTER_NODES": ",".join(f"127.0.0.1:{p}" for p in self.ports),
                "HERALD_ROUTER_STICKY_QUERY": "client",
                "HERALD_ROUTER_HEALTH_INTERVAL": "0.5",
                "HERALD_ROUTER_HEALTH_RISE": "1",
                "HERALD_ROUTER_HEALTH_FALL": "1",
                "HERALD_ROUTER_SHUTDOWN_GRACE": "1",
                # The harness's Node reads these two; the router ignores them.
                "HERALD_TOKEN_HMAC_SECRET": self.secret,
                "HERALD_API_KEY": self.api_key,
            },
            self.workdir / "router.log",
            "router",
        )
        self.procs.append(self.router)

    def _env(self, i: int, nats_url: str, env: dict, secret, key) -> dict:
        e = {
            "HERALD_NATS_URL": nats_url,
            "HERALD_NODE_ID": f"n{i}",
            "HERALD_LISTEN": f"127.0.0.1:{self.ports[i]}",
            "HERALD_NODE_HEARTBEAT": "0.5",
            "HERALD_NODE_TIMEOUT": "2",
            **env,
        }
        if secret:
            e.update(HERALD_TOKEN_HMAC_SECRET=secret, HERALD_API_KEY=key)
        return e

    def _start(self, i: int, generation: int = 0) -> Node:
        env = self._env(i, self.base["nats_url"], self.base["env"], self.secret, self.api_key)
        n = start_node(self.node_bin, self.workdir, f"n{i}-{generation}", None, env)
        return n

    def restart(self, i: int, generation: int) -> Node:
        n = self._start(i, generation)
        self.nodes[i] = n
        self.procs.append(n)
        return n

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.router.port}/connection/websocket"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.router.port}/api"

    def token(self, user: str) -> str:
        return self.nodes[0].token(user)

    async def wait_routed(self, i: int, timeout: float = 3 * T) -> None:
        """Waits until the router sends new connections to node `i` again."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            async with aiohttp.ClientSession() as s:
                async with s.get(f"http://127.0.0.1:{self.router.port}/readyz") as r:
                    text = await r.text()
            if _node_up(text, self.ports[i]):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"router never routed to node {i} again: {text}")

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            if p.running():
                p.terminate()
        for p in self.procs:
            if p.running():
                try:
                    p.wait_exit(timeout=15)
                except AssertionError:
                    pass


def _node_up(readyz_text: str, port: int) -> bool:
    try:
        body = json.loads(readyz_text)
    except ValueError:
        return False
    return any(
        n.get("addr") == f"127.0.0.1:{port}" and n.get("state") == "up"
        for n in body.get("nodes", [])
    )
