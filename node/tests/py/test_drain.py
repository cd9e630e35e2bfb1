"""Draining (SIGTERM or POST /admin/drain): readiness off at once, upgrades refused,
clients disconnected with 3001 spread over the window after the grace, exit 0 within
the timeout."""

from __future__ import annotations

import asyncio
import time

import websockets

from harness import T, http


async def test_admin_drain_needs_the_api_key(node):
    for headers in ({}, {"X-API-Key": "wrong-key"}):
        r = await http("POST", f"{node.http_url}/admin/drain", headers=headers)
        assert r.status == 401, (r.status, r.text)
        assert "X-API-Key" in r.json()["error"], r.text
    assert (await http("GET", f"{node.http_url}/readyz")).status == 200
    r = await http("GET", f"{node.http_url}/admin/drain")
    assert r.status == 405, r.text


async def test_drain_refuses_new_clients_and_spreads_disconnects_over_the_window(node_factory, raw):
    node = node_factory(HERALD_DRAIN_GRACE=1, HERALD_DRAIN_WINDOW=2, HERALD_DRAIN_TIMEOUT=8)
    clients = [await raw(node, user=f"u{i}") for i in range(20)]
    for c in clients:
        await c.subscribe("news")
    closed_at: dict[int, float] = {}

    async def watch(i, c):
        await c.wait_closed(timeout=T)
        closed_at[i] = time.monotonic()

    watchers = [asyncio.create_task(watch(i, c)) for i, c in enumerate(clients)]
    started = time.monotonic()
    r = await http("POST", f"{node.http_url}/admin/drain", headers={"X-API-Key": node.api_key})
    assert r.status == 202, r.text
    assert r.json()["clients"] == 20 and r.json()["draining"] is True, r.text

    # At once: not ready, new WebSocket upgrades refused with 503 and Retry-After.
    ready = await http("GET", f"{node.http_url}/readyz")
    assert ready.status == 503 and ready.json()["reason"] == "draining", ready.text
    try:
        await websockets.connect(node.ws_url, open_timeout=T)
        raise AssertionError("a draining node accepted a new WebSocket")
    except websockets.InvalidStatus as e:
        assert e.response.status_code == 503
        assert e.response.headers.get("Retry-After"), e.response.headers
    metrics = await http("GET", f"{node.http_url}/metrics")
    assert "herald_node_draining 1" in metrics.text

    await asyncio.gather(*watchers)
    assert node.wait_exit(timeout=T) == 0
    for c in clients:
        await c.expect_disconnect(3001)  # "shutdown": the SDKs reconnect
    times = sorted(t - started for t in closed_at.values())
    # Nobody before the grace; spread over the window, not in one burst.
    assert times[0] >= 0.9, times
    assert times[-1] - times[0] >= 1.0, f"disconnects not spread: {times}"
    assert max(b - a for a, b in zip(times, times[1:])) < 1.0, times
    assert "drain progress" in node.log_text() and "drained" in node.log_text()


async def test_sigterm_drains_the_same_way(node_factory, raw):
    node = node_factory(HERALD_DRAIN_GRACE=0.5, HERALD_DRAIN_WINDOW=0.5, HERALD_DRAIN_TIMEOUT=5)
    c = await raw(node)
    node.terminate()
    await c.expect_disconnect(3001)
    assert node.wait_exit(timeout=T) == 0
    assert "drained" in node.log_text()


async def test_drain_subcommand_drains_its_node_and_waits_for_the_end(node_factory, raw):
    """`herald-node drain` (the Kubernetes preStop hook) runs beside the node, with
    the same settings."""
    import os
    import subprocess

    node = node_factory(HERALD_DRAIN_GRACE=0.5, HERALD_DRAIN_WINDOW=0.5, HERALD_DRAIN_TIMEOUT=5)
    c = await raw(node)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(node.env)
    env["HERALD_LISTEN"] = f"127.0.0.1:{node.port}"
    hook = await asyncio.create_subprocess_exec(str(node.binary), "drain", env=env)
    assert await asyncio.wait_for(hook.wait(), T) == 0
    assert not node.running() or node.wait_exit(timeout=T) == 0
    await c.expect_disconnect(3001)
    wrong = subprocess.run([str(node.binary), "drain"], env={**env, "HERALD_API_KEY": "x" * 20},
                           capture_output=True, text=True, timeout=T)
    assert wrong.returncode != 0  # nothing answers any more
