"""Traces through the router: each proxied upgrade or request is a `herald.router.*` span
of herald-router, and the node's span of the same request (`herald.connect` for an
upgrade, `herald.api` for the server API) is its child, the context carried in the
forwarded request's `traceparent`. Both export to one real OTLP receiver (`otlp.py`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import urllib.request

import pytest

from failover import ROUTER_BIN
from harness import T, Node, http
from otlp import OtlpReceiver
from rawws import RawWs

FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
TRACE_ID, CLIENT_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.fixture
async def otlp():
    r = await OtlpReceiver().start()
    yield r
    await r.stop()


@pytest.fixture
def router_for(request, tmp_path):
    """`router_for(node, **env)`: a herald-router in front of `node`, ready."""
    started: list[Node] = []

    def start(node: Node, wait_ready: bool = True, **env) -> Node:
        settings = {
            "HERALD_ROUTER_LISTEN": "127.0.0.1:0",
            "HERALD_ROUTER_NODES": f"127.0.0.1:{node.port}",
            "HERALD_ROUTER_HEALTH_INTERVAL": "0.2",
            "HERALD_ROUTER_HEALTH_RISE": "1",
            "HERALD_ROUTER_SHUTDOWN_GRACE": "1",
            # The harness's Node reads these two; the router ignores them.
            "HERALD_TOKEN_HMAC_SECRET": node.secret,
            "HERALD_API_KEY": node.api_key,
            **FAST_EXPORT,
        }
        settings.update({k: str(v) for k, v in env.items()})
        router = Node(ROUTER_BIN, settings, tmp_path / f"router{len(started)}.log", "router")
        started.append(router)
        deadline = time.monotonic() + 3 * T
        while wait_ready:
            try:
                with urllib.request.urlopen(f"{router.http_url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"router not ready:\n{router.log_text()}"
            time.sleep(0.05)
        return router

    yield start
    for r in started:
        r.stop()


def _named(spans, name):
    return [s for s in spans if s.name == name]


async def _upgrade(router: Node, **headers) -> RawWs:
    return await RawWs.open("127.0.0.1", router.port, headers=headers)


async def test_an_upgrade_and_an_api_call_through_the_router_are_traces_across_both(
    node_factory, router_for, otlp
):
    node = node_factory(HERALD_OTEL_ENDPOINT=otlp.endpoint, **FAST_EXPORT)
    router = router_for(node, HERALD_ROUTER_OTEL_ENDPOINT=otlp.endpoint)
    ws = await _upgrade(router)
    assert ws.status == 101, ws.status
    await ws.close()
    r = await http(
        "POST", f"{router.http_url}/api/info", data=b"{}", headers={"X-API-Key": node.api_key}
    )
    assert r.status == 200, r.text

    spans = await otlp.wait_for(
        lambda s: _named(s, "herald.connect") and _named(s, "herald.api")
        and _named(s, "herald.router.upgrade") and _named(s, "herald.router.http"),
        "the router's and the node's spans of both requests",
    )
    (up,) = _named(spans, "herald.router.upgrade")
    assert (up.service, up.parent_id) == ("herald-router", ""), up
    assert up.attributes["result"] == "tunnelled" and up.attributes["http.status_code"] == 101, up
    assert up.attributes["node"] == f"127.0.0.1:{node.port}", up
    assert up.attributes["sticky.source"] == "random", up  # no key: the default fallback
    (conn,) = _named(spans, "herald.connect")
    assert conn.service == "herald-node" and conn.attributes["result"] == "switched", conn
    assert (conn.trace_id, conn.parent_id) == (up.trace_id, up.span_id), (conn, up)

    (rh,) = _named(spans, "herald.router.http")
    assert rh.attributes["result"] == "ok" and rh.attributes["http.path"] == "/api/info", rh
    (api,) = _named(spans, "herald.api")
    assert (api.trace_id, api.parent_id) == (rh.trace_id, rh.span_id), (api, rh)
    assert otlp.rejected == 0


async def test_a_clients_traceparent_is_the_routers_parent_and_the_cookie_is_the_key(
    node_factory, router_for, otlp
):
    node = node_factory(HERALD_OTEL_ENDPOINT=otlp.endpoint, **FAST_EXPORT)
    # Ratio 0: only a caller's sampled trace is recorded.
    router = router_for(
        node, HERALD_ROUTER_OTEL_ENDPOINT=otlp.endpoint, HERALD_ROUTER_OTEL_SAMPLE_RATIO=0
    )
    first = await _upgrade(router)
    cookie = first.headers["set-cookie"].split(";")[0]
    await first.close()
    ws = await _upgrade(router, traceparent=f"00-{TRACE_ID}-{CLIENT_SPAN}-01", Cookie=cookie)
    assert ws.status == 101
    await ws.close()
    spans = await otlp.wait_for(lambda s: _named(s, "herald.connect"), "the node's span")
    await asyncio.sleep(0.5)  # an unsampled first upgrade's spans would have come by now
    (up,) = _named(otlp.spans, "herald.router.upgrade")
    assert (up.trace_id, up.parent_id) == (TRACE_ID, CLIENT_SPAN), up
    assert up.attributes["sticky.source"] == "cookie", up
    conn = _named(spans, "herald.connect")
    assert [(c.trace_id, c.parent_id) for c in conn] == [(TRACE_ID, up.span_id)], conn


async def test_with_router_traces_off_a_clients_traceparent_reaches_the_node(
    node_factory, router_for, otlp
):
    node = node_factory(HERALD_OTEL_ENDPOINT=otlp.endpoint, **FAST_EXPORT)
    router = router_for(node)
    ws = await _upgrade(router, traceparent=f"00-{TRACE_ID}-{CLIENT_SPAN}-01")
    assert ws.status == 101
    await ws.close()
    spans = await otlp.wait_for(lambda s: _named(s, "herald.connect"), "the node's span")
    (conn,) = _named(spans, "herald.connect")
    assert (conn.trace_id, conn.parent_id) == (TRACE_ID, CLIENT_SPAN), conn
    assert not [s for s in otlp.spans if s.service == "herald-router"]


async def test_refusals_say_why_admission_connect_failure_and_no_node(
    node_factory, router_for, otlp
):
    node = node_factory(HERALD_OTEL_ENDPOINT=otlp.endpoint, **FAST_EXPORT)
    router = router_for(
        node,
        HERALD_ROUTER_OTEL_ENDPOINT=otlp.endpoint,
        HERALD_ROUTER_NODE_CONNECT_RATE=1,
        HERALD_ROUTER_NODE_CONNECT_BURST=1,
        # Probes slow enough that the killed node is still in the ring for one upgrade.
        HERALD_ROUTER_HEALTH_INTERVAL=60,
        HERALD_ROUTER_HEALTH_FALL=1,
    )
    ok = await _upgrade(router)
    over = await _upgrade(router)
    assert (ok.status, over.status) == (101, 503), (ok.status, over.status)
    await ok.close()
    await over.close()
    # Exported before the node is killed (a SIGKILL loses the batch not sent yet).
    await otlp.wait_for(lambda s: _named(s, "herald.connect"), "the node's span")
    node.kill()
    await asyncio.sleep(1.1)  # the budget refills
    dead = await _upgrade(router)
    assert dead.status == 503
    gone = await _upgrade(router)  # the refused connect took the node out at once
    assert gone.status == 503

    def results(spans):
        return [s.attributes.get("result") for s in _named(spans, "herald.router.upgrade")]

    spans = await otlp.wait_for(lambda s: len(results(s)) >= 4, "four upgrade spans")
    assert sorted(results(spans)) == sorted(["tunnelled", "throttled", "failed", "no_node"]), spans
    by = {s.attributes["result"]: s for s in _named(spans, "herald.router.upgrade")}
    assert by["throttled"].attributes["http.status_code"] == 503
    assert "refused" in by["failed"].attributes["error"], by["failed"].attributes
    assert "node" not in by["no_node"].attributes
    # Only the upgrade that reached the node has a node span.
    conn = _named(spans, "herald.connect")
    assert [c.parent_id for c in conn] == [by["tunnelled"].span_id], conn


@pytest.mark.parametrize(
    "setting,value",
    [
        ("HERALD_ROUTER_OTEL_ENDPOINT", "https://collector:4318"),
        ("HERALD_ROUTER_OTEL_ENDPOINT", "collector:4318"),
        ("HERALD_ROUTER_OTEL_SAMPLE_RATIO", "-1"),
        ("HERALD_ROUTER_OTEL_SAMPLE_RATIO", "all"),
    ],
)
def test_bad_router_trace_settings_exit_64(setting, value):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update({"HERALD_ROUTER_NODES": "127.0.0.1:1", setting: value})
    p = subprocess.run([str(ROUTER_BIN)], env=env, capture_output=True, text=True, timeout=T)
    assert p.returncode == 64, (p.returncode, p.stderr)
    assert setting in p.stderr, p.stderr
