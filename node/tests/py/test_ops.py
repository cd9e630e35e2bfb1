"""Probes, metrics and shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess

import aiohttp
import pytest
from cent import PublishRequest

from failover import ROUTER_BIN
from harness import STOP_TIMEOUT, T, http

METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def _samples(text: str) -> list[tuple[str, str, float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = METRIC_LINE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        out.append((m.group(1), m.group(2) or "", float(m.group(3))))
    return out


async def test_healthz_is_200(node):
    r = await http("GET", f"{node.http_url}/healthz")
    assert r.status == 200, (r.status, r.text)


async def test_readyz_is_200_json_when_ready(node):
    r = await http("GET", f"{node.http_url}/readyz")
    assert r.status == 200, (r.status, r.text)
    assert isinstance(r.json(), dict), r.text


async def _activity(node, raw, cent_api):
    """Something for every metric family to count."""
    c = await raw(node)
    await c.subscribe("metrics")
    await cent_api(node).publish(PublishRequest(channel="metrics", data={"m": 1}))
    await c.next_pub("metrics")
    err = await c.request("publish", {"channel": "metrics", "data": {}})  # 103
    assert "error" in err
    bad = await raw(node, connect=False)
    await bad.send_raw("not json")
    await bad.expect_disconnect(3501)
    refused = await raw(node, connect=False)
    await refused.send_json({"id": 1, "connect": {"token": "garbage"}})
    await refused.expect_disconnect(3500)


async def test_metrics_exposes_herald_node_families(node, raw, cent_api):
    await _activity(node, raw, cent_api)
    # A session counts its disconnect once it has finished closing, which may be just
    # after the client has seen the close frame: scrape until both closes are counted
    # (bounded), then check everything on that scrape.
    deadline = asyncio.get_running_loop().time() + T
    while True:
        r = await http("GET", f"{node.http_url}/metrics")
        counted = all(f'herald_node_disconnects_total{{code="{c}"}}' in r.text for c in (3500, 3501))
        if counted or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert r.status == 200, (r.status, r.text[:500])
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
    samples = _samples(r.text)
    names = {n for n, _, _ in samples}
    assert all(n.startswith("herald_node_") for n in names), sorted(
        n for n in names if not n.startswith("herald_node_")
    )
    for part in (
        "connections",
        "connects",
        "commands",
        "publications",
        "deliveries",
        "bytes_in",
        "bytes_out",
        "disconnects",
        "slow_consumer",
    ):
        assert any(part in n for n in names), f"no herald_node_*{part}* metric in {sorted(names)}"

    def value(pred) -> float:
        return sum(v for n, labels, v in samples if pred(n, labels))

    assert value(lambda n, lb: "connections" in n and "connects" not in n) >= 1
    assert value(lambda n, lb: "connects" in n and 'result="ok"' in lb) >= 1, r.text
    assert value(lambda n, lb: "connects" in n and 'result="ok"' not in lb) >= 1, (
        "a refused connect should be counted by its result"
    )
    assert value(lambda n, lb: "commands" in n and 'method="subscribe"' in lb) >= 1, r.text
    assert value(lambda n, lb: "commands" in n and 'method="publish"' in lb and 'result="ok"' not in lb) >= 1
    assert value(lambda n, lb: "publications" in n) >= 1
    assert value(lambda n, lb: "deliveries" in n) >= 1
    assert value(lambda n, lb: "bytes_in" in n) > 0 and value(lambda n, lb: "bytes_out" in n) > 0
    assert value(lambda n, lb: "disconnects" in n and 'code="3501"' in lb) >= 1, r.text
    assert value(lambda n, lb: "disconnects" in n and 'code="3500"' in lb) >= 1, r.text


async def test_metrics_pass_promtool_check(node, raw, cent_api):
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI (Debian package `prometheus`)")
        pytest.skip("promtool not installed (Debian package `prometheus`); CI runs this check")
    await _activity(node, raw, cent_api)
    r = await http("GET", f"{node.http_url}/metrics")
    assert r.status == 200
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=r.text, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, f"promtool check metrics:\n{proc.stdout}{proc.stderr}\n---\n{r.text}"


@pytest.mark.parametrize("program", ["node", "router"])
def test_sigterm_stops_a_process_whose_log_reader_is_gone(node_bin, program):
    # The process that read stdout and stderr (a log shipper, a pipe into `head`) went
    # away: every log line now fails with EPIPE. SIGTERM must still drain and stop the
    # process; the SIGTERM handler's own log line used to panic its task, so it never did.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env["RUST_LOG"] = "info"
    if program == "node":
        binary = node_bin
        env.update(
            HERALD_LISTEN="127.0.0.1:0",
            HERALD_TOKEN_HMAC_SECRET="0123456789abcdef0123456789abcdef",
            HERALD_API_KEY="an-api-key-of-thirty-two-chars--",
            HERALD_DRAIN_GRACE="0",
            HERALD_DRAIN_WINDOW="0",
        )
    else:
        binary = ROUTER_BIN
        env.update(
            HERALD_ROUTER_LISTEN="127.0.0.1:0",
            HERALD_ROUTER_NODES="127.0.0.1:9",
            HERALD_ROUTER_SHUTDOWN_GRACE="0",
        )
    proc = subprocess.Popen(
        [str(binary)], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        line = proc.stdout.readline()
        assert b"listening on" in line, line
        proc.stdout.close()
        proc.stderr.close()
        proc.terminate()
        rc = proc.wait(timeout=STOP_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, f"{binary.name} exited with {rc} after SIGTERM"


async def test_sigterm_closes_every_client_with_3001_and_exits_0(node, raw):
    clients = [await raw(node, user=f"user{i}") for i in range(3)]
    for c in clients:
        await c.subscribe("shutdown")
    probe = await raw(node, connect=False)  # not connected yet: must be closed too
    node.terminate()
    # While draining, /readyz must not say ready (the router takes the node out). The
    # signal is handled asynchronously: a probe sent in the same instant may still see
    # "ready", so ask until the node has taken it in.
    deadline = asyncio.get_running_loop().time() + T
    while True:
        try:
            r = await http("GET", f"{node.http_url}/readyz", timeout=2)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            r = None  # the listener is already closed: equally "not ready"
        if r is None or r.status != 200:
            break
        assert asyncio.get_running_loop().time() < deadline, "still ready after SIGTERM"
        await asyncio.sleep(0.01)
    if r is not None:
        assert r.status == 503, (r.status, r.text)
        assert isinstance(r.json(), dict), r.text
    for c in clients:
        await c.expect_disconnect(3001, timeout=STOP_TIMEOUT)
    closed = await probe.wait_closed(timeout=STOP_TIMEOUT)
    assert closed.code is not None, "the connection was dropped without a close frame"
    rc = await asyncio.to_thread(node.wait_exit)
    assert rc == 0, f"herald-node exited with {rc} after SIGTERM"
