"""A router that runs out of its own local ports towards a node (every port of
`net.ipv4.ip_local_port_range` held by a tunnel to it: `connect` fails with
EADDRNOTAVAIL) answers new upgrades 503 with `Retry-After`, counts them in
`herald_router_local_exhaustion_total`, and does not hold it against the node: the node
stays in the ring (before, each such attempt counted as a failed check, and after
`HERALD_ROUTER_HEALTH_FALL` of them the node was taken out for every client). When a
port frees, upgrades go through again.

A real herald-router and herald-node in a network namespace whose ephemeral range is
two ports; the test reaches the router over a veth pair. Needs root and iproute2 (CI
runs it; elsewhere it is skipped unless CI is set)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from harness import T

REPO_ROOT = Path(__file__).resolve().parents[3]
NODE_BIN = Path(os.environ.get("HERALD_NODE_BIN", REPO_ROOT / "target" / "debug" / "herald-node"))
ROUTER_BIN = Path(
    os.environ.get("HERALD_ROUTER_BIN", REPO_ROOT / "target" / "debug" / "herald-router")
)

NS = f"herald-lp-{os.getpid()}"
OUTER, INNER = f"hlp{os.getpid() % 100000}o", f"hlp{os.getpid() % 100000}i"
HOST_IP, NS_IP = "198.18.9.1", "198.18.9.2"
ROUTER = f"{NS_IP}:7000"
NODE = "127.0.0.1:7001"
FALL = 2


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def _can_use_netns() -> str | None:
    if os.geteuid() != 0:
        return "needs root (ip netns, veth)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    return None


@pytest.fixture
def namespace():
    why = _can_use_netns()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs this test: it {why}")
        pytest.skip(why)
    _sh("ip", "netns", "del", NS, check=False)
    _sh("ip", "link", "del", OUTER, check=False)
    _sh("ip", "netns", "add", NS)
    try:
        _sh("ip", "link", "add", OUTER, "type", "veth", "peer", "name", INNER)
        _sh("ip", "link", "set", INNER, "netns", NS)
        _sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", OUTER)
        _sh("ip", "link", "set", OUTER, "up")
        inside = ("ip", "netns", "exec", NS)
        _sh(*inside, "ip", "addr", "add", f"{NS_IP}/30", "dev", INNER)
        _sh(*inside, "ip", "link", "set", INNER, "up")
        _sh(*inside, "ip", "link", "set", "lo", "up")
        # Two ephemeral ports: two tunnels to the node hold them all.
        _sh(*inside, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=40000 40001")
        yield inside
    finally:
        _sh("ip", "link", "del", OUTER, check=False)
        _sh("ip", "netns", "del", NS, check=False)


def _start(inside, binary: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    assert binary.is_file(), f"{binary} not found: set HERALD_NODE_BIN / HERALD_ROUTER_BIN"
    full = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    full.update(RUST_LOG="info", **env)
    out = open(log, "w")
    return subprocess.Popen([*inside, str(binary)], env=full, stdout=out, stderr=subprocess.STDOUT)


def _get(path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{ROUTER}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _readyz() -> tuple[int, dict]:
    status, body = _get("/readyz")
    return status, json.loads(body)


def _exhaustion(metrics: str) -> float:
    prefix = 'herald_router_local_exhaustion_total{during="upgrade"} '
    return sum(float(line[len(prefix):]) for line in metrics.splitlines() if line.startswith(prefix))


async def _tunnel():
    """A WebSocket through the router, or the 503 it was refused with."""
    try:
        return await connect(f"ws://{ROUTER}/connection/websocket", open_timeout=T), None
    except InvalidStatus as e:
        return None, e.response


async def _open_tunnel(deadline: float):
    """Opens a tunnel, retrying while a port is still taken (a probe's, or one in
    TIME_WAIT for the kernel's reuse delay)."""
    while True:
        ws, refused = await _tunnel()
        if ws is not None:
            return ws
        assert refused.status_code == 503, refused
        assert time.monotonic() < deadline, f"no tunnel opened: {refused.status_code} {refused.body!r}"
        await asyncio.sleep(0.2)


@pytest.fixture
def servers(namespace, tmp_path):
    node = _start(namespace, NODE_BIN, {
        "HERALD_LISTEN": NODE,
        "HERALD_TOKEN_HMAC_SECRET": "local-ports-secret",
        "HERALD_API_KEY": "local-ports-key",
        "HERALD_ALLOW_ANONYMOUS": "true",
    }, tmp_path / "node.log")
    router = _start(namespace, ROUTER_BIN, {
        "HERALD_ROUTER_LISTEN": ROUTER,
        "HERALD_ROUTER_NODES": NODE,
        # One probe at start (the node joins on it), then none during the test: the
        # two ports are the tunnels'.
        "HERALD_ROUTER_HEALTH_INTERVAL": "600",
        "HERALD_ROUTER_HEALTH_FALL": str(FALL),
        "HERALD_ROUTER_SHUTDOWN_GRACE": "1",
    }, tmp_path / "router.log")
    try:
        deadline = time.monotonic() + 3 * T
        while True:
            try:
                if _readyz()[0] == 200:
                    break
            except OSError:
                pass
            for p, name in ((node, "node"), (router, "router")):
                assert p.poll() is None, f"{name} exited:\n{(tmp_path / f'{name}.log').read_text()}"
            assert time.monotonic() < deadline, (tmp_path / "router.log").read_text()
            time.sleep(0.05)
        yield tmp_path
    finally:
        for p in (router, node):
            p.terminate()
        for p in (router, node):
            try:
                p.wait(timeout=T)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def test_out_of_local_ports_is_503_and_the_node_stays_in_the_ring(servers):
    deadline = time.monotonic() + 3 * T
    held = [await _open_tunnel(deadline), await _open_tunnel(deadline)]
    _, before = _get("/metrics")

    # Both ports are held: more upgrades than FALL, each answered 503.
    for _ in range(2 * FALL + 1):
        ws, refused = await _tunnel()
        assert ws is None, "a third tunnel opened with two local ports"
        assert refused.status_code == 503, refused
        assert int(refused.headers["Retry-After"]) >= 1
        assert b"no node took the connection" in refused.body, refused.body

    status, ready = _readyz()
    assert status == 200, ready
    assert [n["state"] for n in ready["nodes"]] == ["up"], ready
    _, after = _get("/metrics")
    assert _exhaustion(after) - _exhaustion(before) == 2 * FALL + 1, after
    log = (servers / "router.log").read_text()
    assert "out of local ports or files" in log, log[-2000:]

    # A port frees: upgrades go through again, to the same node.
    await held.pop().close()
    again = await _open_tunnel(time.monotonic() + 3 * T)
    await again.send('{"id":1,"connect":{}}')
    reply = json.loads(await asyncio.wait_for(again.recv(), T))
    assert "connect" in reply, reply
    for ws in [again, *held]:
        await ws.close()
