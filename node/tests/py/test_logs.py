"""The JSON log format's documented fields (README, "Logs"): one line per connection
close at debug, one per drain step at info, each a JSON object with the stable fields."""

from __future__ import annotations

import json
import time

from harness import T, api_post

# The fields README documents as stable, per line kind.
EVERY_LINE = {"timestamp", "level", "target", "message"}
CONNECTION_CLOSED = {"close.code", "close.reason", "duration_s", "client.id", "user"}
DRAIN_STEPS = ["start", "disconnect", "progress", "close_rest", "broker", "done"]


def json_lines(node) -> list[dict]:
    out = []
    for line in node.log_text().splitlines():
        if not line.startswith("[err] {"):
            continue
        out.append(json.loads(line[len("[err] "):]))  # every line must parse
    return out


def wait_lines(node, pred, what: str, timeout: float = T) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        lines = json_lines(node)
        if pred(lines):
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not logged within {timeout}s:\n{node.log_text()[-4000:]}")
        time.sleep(0.05)


async def test_connection_close_line_has_the_documented_fields(node_factory, raw):
    node = node_factory(HERALD_LOG_FORMAT="json", RUST_LOG="info,herald_node::session=debug")
    c = await raw(node, user="carol")
    await c.subscribe("x")
    client_id = c.client_id if hasattr(c, "client_id") else None
    bad = await raw(node, connect=False)
    await bad.send_raw("not json")
    await bad.expect_disconnect(3501)
    await c.close()

    lines = wait_lines(
        node,
        lambda ls: sum(1 for l in ls if l.get("message") == "connection closed") >= 2,
        "two connection closed lines",
    )
    closed = [l for l in lines if l.get("message") == "connection closed"]
    for l in closed:
        missing = (EVERY_LINE | CONNECTION_CLOSED) - l.keys()
        assert not missing, (missing, l)
        assert l["level"] == "DEBUG" and l["target"].startswith("herald_node")
        assert isinstance(l["close.code"], int) and isinstance(l["duration_s"], float), l
        assert l["duration_s"] >= 0
        # The connection's span: its id and the client's address.
        assert "conn.id" in l["span"] and "client.addr" in l["span"], l
    refused = [l for l in closed if l["close.code"] == 3501]
    assert len(refused) == 1, closed
    assert refused[0]["user"] == "" and refused[0]["client.id"] == "", "never connected"
    assert refused[0]["close.reason"] == "bad request", refused[0]
    carol = [l for l in closed if l["user"] == "carol"]
    assert len(carol) == 1 and carol[0]["client.id"], closed
    if client_id:
        assert carol[0]["client.id"] == client_id


async def test_every_drain_step_is_one_info_line(node_factory, raw):
    node = node_factory(HERALD_LOG_FORMAT="json", RUST_LOG="info")
    clients = [await raw(node, user=f"u{i}") for i in range(3)]
    r = await api_post(node, "info", {})
    assert r.status == 200
    from harness import http

    r = await http("POST", f"{node.http_url}/admin/drain", headers={"X-API-Key": node.api_key})
    assert r.status == 202, r.text
    for c in clients:
        await c.expect_disconnect(3001)
    assert node.wait_exit() == 0
    lines = json_lines(node)
    steps = [l for l in lines if "drain.step" in l]
    assert all(l["level"] == "INFO" and EVERY_LINE <= l.keys() for l in steps), steps
    seen = [l["drain.step"] for l in steps]
    # In order, each once except progress (every tenth of the clients: 3 lines here).
    assert [s for s in seen if s != "progress"] == [s for s in DRAIN_STEPS if s != "progress"], seen
    assert seen.count("progress") == 3, seen
    start = steps[0]
    for f in ("grace_s", "window_s", "timeout_s", "clients"):
        assert f in start, start
    assert start["clients"] == 3
    assert "took_s" in steps[-1]
    # No connection-close lines at info.
    assert not any(l.get("message") == "connection closed" for l in lines)


async def test_router_tunnel_close_and_failover_lines(node_factory, tmp_path):
    from failover import ROUTER_BIN
    from harness import Node, RawClient

    node = node_factory()
    router = Node(
        ROUTER_BIN,
        {
            "HERALD_ROUTER_LISTEN": "127.0.0.1:0",
            "HERALD_ROUTER_NODES": f"127.0.0.1:{node.port}",
            "HERALD_ROUTER_HEALTH_INTERVAL": "0.2",
            "HERALD_ROUTER_HEALTH_RISE": "1",
            "HERALD_ROUTER_HEALTH_FALL": "1",
            "HERALD_ROUTER_LOG_FORMAT": "json",
            "RUST_LOG": "info,herald_router::proxy=debug",
            # The harness's Node reads these two; the router ignores them.
            "HERALD_TOKEN_HMAC_SECRET": node.secret,
            "HERALD_API_KEY": node.api_key,
        },
        tmp_path / "router.log",
        "router",
    )
    try:
        wait_lines(router, lambda ls: any(l.get("to") == "up" for l in ls), "the node going up")
        c = await RawClient.open(router.ws_url)
        await c.connect(node.token("dave"))
        await c.close()
        lines = wait_lines(
            router, lambda ls: any(l.get("message") == "tunnel closed" for l in ls), "tunnel closed"
        )
        t = next(l for l in lines if l.get("message") == "tunnel closed")
        assert EVERY_LINE | {"client.addr", "node", "end", "duration_s"} <= t.keys(), t
        assert t["level"] == "DEBUG" and t["client.addr"] == "127.0.0.1", t
        assert t["node"] == f"127.0.0.1:{node.port}" and t["end"] in ("closed", "error"), t
        assert isinstance(t["duration_s"], float) and t["duration_s"] >= 0
        node.kill()
        lines = wait_lines(router, lambda ls: any(l.get("to") == "down" for l in ls), "the node going down")
        down = next(l for l in lines if l.get("to") == "down")
        assert down["level"] == "INFO" and down["message"] == "node health changed", down
        assert down["from"] == "up" and down["node"] == f"127.0.0.1:{node.port}", down
    finally:
        router.stop()
