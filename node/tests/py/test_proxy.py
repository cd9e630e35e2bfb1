"""The backend proxy: a real aiohttp backend (backend.py) answers the node's connect,
refresh, subscribe, publish, sub_refresh and rpc requests in Centrifugo's proxy JSON,
and the official centrifuge-python SDK is the client, with no token.

Every case runs with JSON and with Protobuf clients (the `sdk` fixture): the request
names the client's protocol and carries its payloads as JSON `data` either way.

Each failure of the backend (slow, down, garbage, HTTP 500, a disconnect answer) must
reach the client as the protocol says (error 100 temporary, or the close code), never
as a hang, and leave the node serving.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from centrifuge import ClientState, ReplyError, SubscriptionState

from backend import Backend, Garbage, Slow, Status
from harness import NodeStartError, T, EventLog, http
from sdkutil import ClientEvents, SubEvents

COOKIE = "session=s3cr3t-cookie"
AUTH = "Bearer s3cr3t-bearer"


@pytest.fixture
async def backend():
    b = await Backend().start()
    yield b
    await b.stop()


def proxied_node(node_factory, backend, *kinds, config_toml=None, **env):
    settings = backend.env(*kinds, HERALD_PROXY_HTTP_HEADERS="Cookie,Authorization")
    settings.update(env)
    return node_factory(config_toml=config_toml, **settings)


async def connect(sdk, node, ready=True, **kwargs):
    log = EventLog()
    kwargs.setdefault("headers", {"Cookie": COOKIE, "Authorization": AUTH, "X-Other": "private"})
    kwargs.setdefault("token", "")
    client = sdk(node, events=ClientEvents(log), **kwargs)
    await client.connect()
    if ready:
        await client.ready(T)
    return client, log


async def subscribe(client, channel):
    log = EventLog()
    sub = client.new_subscription(channel, events=SubEvents(log))
    await sub.subscribe()
    return sub, log


async def metric_lines(node, name):
    r = await http("GET", f"{node.http_url}/metrics")
    return [line for line in r.text.splitlines() if line.startswith(name)]


async def test_connect_proxy_gives_the_identity_a_token_would(node_factory, backend, sdk):
    backend.answer["connect"] = {
        "result": {
            "user": "bob",
            "info": {"name": "Bob"},
            "data": {"welcome": True},
            "channels": ["news"],
            "subs": {"vip": {"info": {"tier": "gold"}, "data": {"seat": 1}}},
            "meta": {"tenant": 7},
        }
    }
    backend.answer["rpc"] = lambda body: {"result": {"data": {"echo": body.get("data")}}}
    node = proxied_node(node_factory, backend, "connect", "rpc", HERALD_PRESENCE=True)
    client, log = await connect(sdk, node, data=sdk.payload({"hello": "backend"}), name="py-test", version="1.2")
    connected = log.of("connected")[0]
    assert sdk.data(connected.data) == {"welcome": True}, connected
    await log.wait(lambda: len(log.of("server_subscribed")) == 2, what="the server-side subscriptions")
    assert sorted(c.channel for c in log.of("server_subscribed")) == ["news", "vip"]

    [seen] = backend.seen["connect"]
    assert seen.body == {
        "client": client.client_id,
        "transport": "websocket",
        "protocol": sdk.encoding,
        "encoding": "json",
        "data": {"hello": "backend"},
        "name": "py-test",
        "version": "1.2",
    }, seen.body
    assert seen.headers["cookie"] == COOKIE and seen.headers["authorization"] == AUTH
    assert "x-other" not in seen.headers, seen.headers
    assert seen.headers["content-type"] == "application/json"

    # The presence of the server-side channel shows the backend's user and info.
    r = await http(
        "POST", f"{node.http_url}/api/presence", data='{"channel":"news"}',
        headers={"X-API-Key": node.api_key},
    )
    [me] = r.json()["result"]["presence"].values()
    assert me["user"] == "bob" and me["conn_info"] == {"name": "Bob"}, me
    assert "chan_info" not in me, me
    r = await http(
        "POST", f"{node.http_url}/api/presence", data='{"channel":"vip"}',
        headers={"X-API-Key": node.api_key},
    )
    [me] = r.json()["result"]["presence"].values()
    assert me["chan_info"] == {"tier": "gold"}, me

    # Later requests carry the user, the meta and the same forwarded headers.
    res = await client.rpc("sum", sdk.payload({"a": 1}))
    assert sdk.data(res.data) == {"echo": {"a": 1}}, res
    [rpc] = backend.seen["rpc"]
    assert rpc.body == {
        "client": client.client_id,
        "transport": "websocket",
        "protocol": sdk.encoding,
        "encoding": "json",
        "user": "bob",
        "method": "sum",
        "data": {"a": 1},
        "meta": {"tenant": 7},
    }, rpc.body
    assert rpc.headers["cookie"] == COOKIE and "x-other" not in rpc.headers
    lines = await metric_lines(node, "herald_node_proxy_requests_total")
    assert any('type="connect"' in x and 'result="ok"' in x and x.endswith(" 1") for x in lines), lines
    assert await metric_lines(node, 'herald_node_proxy_duration_seconds_count{type="rpc"}')


async def test_a_token_skips_the_connect_proxy(node_factory, backend, sdk):
    node = proxied_node(node_factory, backend, "connect")
    client, log = await connect(sdk, node, token=node.token("alice"))
    assert client.state == ClientState.CONNECTED
    assert backend.seen["connect"] == []


async def test_connect_refused_or_disconnected_by_the_backend(node_factory, backend, sdk):
    node = proxied_node(node_factory, backend, "connect")
    backend.answer["connect"] = {"error": {"code": 4403, "message": "no session"}}
    client, log = await connect(sdk, node, ready=False)
    await log.wait(lambda: log.of("disconnected"), what="the refusal")
    d = log.of("disconnected")[0]
    assert (d.code, d.reason) == (4403, "no session"), d

    backend.answer["connect"] = {"disconnect": {"code": 4501, "reason": "banned"}}
    client, log = await connect(sdk, node, ready=False)
    await log.wait(lambda: log.of("disconnected"), what="the disconnect")
    d = log.of("disconnected")[0]
    assert (d.code, d.reason) == (4501, "banned"), d
    assert client.state == ClientState.DISCONNECTED


@pytest.mark.parametrize(
    "failure",
    [Slow(3, {"result": {"user": "late"}}), Status(500), Garbage("<html>oops</html>"), "down"],
    ids=["slow", "http500", "garbage", "down"],
)
async def test_connect_proxy_failures_are_a_temporary_error_100(node_factory, backend, sdk, failure):
    env = {"HERALD_PROXY_TIMEOUT": "0.5"}
    if failure == "down":
        await backend.stop()  # nothing listens on its port any more
    else:
        backend.answer["connect"] = failure
    node = proxied_node(node_factory, backend, "connect", **env)
    client, log = await connect(sdk, node, ready=False)
    await log.wait(lambda: log.of("error"), what="the connect error")
    err = log.of("error")[0].error
    assert isinstance(err, ReplyError) and (err.code, err.temporary) == (100, True), err
    # The SDK keeps trying: temporary means "reconnect", not "give up".
    assert client.state == ClientState.CONNECTING
    await log.wait(lambda: len(log.of("error")) >= 2, what="a second attempt")
    if failure != "down":
        backend.answer["connect"] = {"result": {"user": "carol"}}
        await client.ready(T)
        assert client.state == ClientState.CONNECTED
    assert "s3cr3t" not in node.log_text(), "a header value reached the log"


async def test_rpc_failures_and_answers(node_factory, backend, sdk):
    backend.answer["connect"] = {"result": {"user": "bob"}}
    node = proxied_node(node_factory, backend, "connect", "rpc", HERALD_PROXY_TIMEOUT="0.5")
    client, log = await connect(sdk, node)
    for failure in [Slow(3, {"result": {}}), Status(503), Garbage('{"result": '), Garbage("[1,2]")]:
        backend.answer["rpc"] = failure
        with pytest.raises(ReplyError) as e:
            await client.rpc("m", sdk.payload({}))
        assert (e.value.code, e.value.temporary) == (100, True), (failure, e.value)
        assert client.state == ClientState.CONNECTED
    backend.answer["rpc"] = {"error": {"code": 1007, "message": "bad input", "temporary": False}}
    with pytest.raises(ReplyError) as e:
        await client.rpc("m", sdk.payload({}))
    assert (e.value.code, e.value.message) == (1007, "bad input")
    backend.answer["rpc"] = {"result": {"b64data": "eyJvayI6dHJ1ZX0="}}  # {"ok":true}
    assert sdk.data((await client.rpc("m", sdk.payload(None))).data) == {"ok": True}
    # A disconnect answer closes with its code; 4000-4499 lets the SDK reconnect.
    backend.answer["rpc"] = {"disconnect": {"code": 4001, "reason": "rotate"}}
    with pytest.raises(Exception):
        await client.rpc("m", sdk.payload({}))
    await log.wait(lambda: log.of("disconnected") or len(log.of("connected")) >= 2, what="the close")
    await log.wait(lambda: len(log.of("connected")) >= 2, what="the reconnect")
    lines = await metric_lines(node, 'herald_node_proxy_requests_total{type="rpc"')
    for result in ("timeout", "status", "parse", "error", "ok", "disconnect"):
        assert any(f'result="{result}"' in x for x in lines), (result, lines)


async def test_rpc_without_its_proxy_is_method_not_found(node_factory, backend, sdk):
    backend.answer["connect"] = {"result": {"user": "bob"}}
    node = proxied_node(node_factory, backend, "connect")
    client, _ = await connect(sdk, node)
    with pytest.raises(ReplyError) as e:
        await client.rpc("m", sdk.payload({}))
    assert e.value.code == 104
    assert backend.seen["rpc"] == []


NAMESPACES = """
[namespaces.guarded]
proxy_subscribe = true
proxy_publish = true

[namespaces.leased]
proxy_subscribe = true
proxy_sub_refresh = true
"""


async def test_subscribe_and_publish_decided_by_the_backend(node_factory, backend, sdk):
    backend.answer["connect"] = {"result": {"user": "bob"}}

    def decide(body):
        if body["channel"] == "guarded:closed":
            return {"error": {"code": 4030, "message": "not your room"}}
        return {"result": {"info": {"role": "mod"}, "data": {"motd": "hi"}}}

    backend.answer["subscribe"] = decide
    node = proxied_node(
        node_factory, backend, "connect", "subscribe", "publish", "sub_refresh",
        config_toml=NAMESPACES,
    )
    client, _ = await connect(sdk, node)
    sub, slog = await subscribe(client, "guarded:room")
    await sub.ready(T)
    assert sdk.data(slog.of("subscribed")[0].data) == {"motd": "hi"}
    seen = backend.seen["subscribe"][0]
    assert seen.body == {
        "client": client.client_id,
        "transport": "websocket",
        "protocol": sdk.encoding,
        "encoding": "json",
        "user": "bob",
        "channel": "guarded:room",
    }, seen.body
    assert seen.headers["cookie"] == COOKIE

    closed, clog = await subscribe(client, "guarded:closed")
    await clog.wait(lambda: clog.of("unsubscribed"), what="the refusal")
    u = clog.of("unsubscribed")[0]
    assert (u.code, u.reason) == (4030, "not your room"), u
    assert closed.state == SubscriptionState.UNSUBSCRIBED
    # Namespaces without the switch do not ask.
    plain, plog = await subscribe(client, "plain")
    await plain.ready(T)
    assert len(backend.seen["subscribe"]) == 2

    # Publish: the backend rewrites the data (Centrifugo's result.data), or refuses.
    backend.answer["publish"] = lambda body: {"result": {"data": {"clean": body["data"]["text"].upper()}}}
    await sub.publish(sdk.payload({"text": "hello"}))
    await slog.wait(lambda: slog.of("publication"), what="the rewritten publication")
    pub = slog.of("publication")[0].pub
    assert sdk.data(pub.data) == {"clean": "HELLO"}, pub
    assert pub.info and pub.info.user == "bob" and sdk.data(pub.info.chan_info) == {"role": "mod"}, pub.info
    assert backend.seen["publish"][0].body["data"] == {"text": "hello"}
    assert backend.seen["publish"][0].body["channel"] == "guarded:room"
    backend.answer["publish"] = {"error": {"code": 4031, "message": "muted"}}
    with pytest.raises(ReplyError) as e:
        await sub.publish(sdk.payload({"text": "again"}))
    assert (e.value.code, e.value.message) == (4031, "muted")
    # `plain` keeps the namespace rule (no allow_publish): refused without asking.
    with pytest.raises(ReplyError) as e:
        await plain.publish(sdk.payload({"x": 1}))
    assert e.value.code == 103
    assert len(backend.seen["publish"]) == 2


async def test_refresh_proxy_extends_then_expires_the_connection(node_factory, backend, sdk):
    now = int(time.time())
    backend.answer["connect"] = {"result": {"user": "bob", "expire_at": now + 2}}
    refreshes = iter(
        [{"result": {"expire_at": now + 4}}, {"result": {"expired": True}}]
    )
    backend.answer["refresh"] = lambda body: next(refreshes)
    node = proxied_node(node_factory, backend, "connect", "refresh")
    client, log = await connect(sdk, node)
    [first] = await backend.wait_for("refresh", 1, timeout=2 * T)
    assert first.body == {
        "client": client.client_id,
        "transport": "websocket",
        "protocol": sdk.encoding,
        "encoding": "json",
        "user": "bob",
    }, first.body
    assert first.headers["authorization"] == AUTH
    assert client.state == ClientState.CONNECTED
    await backend.wait_for("refresh", 2, timeout=2 * T)
    await log.wait(
        lambda: log.of("disconnected") or len(log.of("connecting")) >= 2, what="the expiry"
    )
    codes = [c.code for c in log.of("connecting") + log.of("disconnected")]
    assert 3005 in codes, log.events


async def test_sub_refresh_proxy_keeps_or_ends_a_subscription(node_factory, backend, sdk):
    backend.answer["connect"] = {"result": {"user": "bob"}}
    backend.answer["subscribe"] = lambda body: {"result": {"expire_at": int(time.time()) + 1}}
    answers = iter([{"result": {"expire_at": int(time.time()) + 3}}, {"result": {"expired": True}}])
    backend.answer["sub_refresh"] = lambda body: next(answers, {"result": {}})
    node = proxied_node(
        node_factory, backend, "connect", "subscribe", "publish", "sub_refresh",
        config_toml=NAMESPACES,
    )
    client, _ = await connect(sdk, node)
    sub, slog = await subscribe(client, "leased:a")
    await sub.ready(T)
    [first] = await backend.wait_for("sub_refresh", 1, timeout=2 * T)
    assert first.body == {
        "client": client.client_id,
        "transport": "websocket",
        "protocol": sdk.encoding,
        "encoding": "json",
        "user": "bob",
        "channel": "leased:a",
    }, first.body
    await backend.wait_for("sub_refresh", 2, timeout=2 * T)
    # Expired: unsubscribed with 2501, which the SDK answers by subscribing again
    # (asking the subscribe proxy again).
    await backend.wait_for("subscribe", 2, timeout=2 * T)
    await slog.wait(lambda: len(slog.of("subscribed")) >= 2, what="the resubscribe")
    assert client.state == ClientState.CONNECTED


async def test_proxy_switch_without_its_endpoint_refuses_to_start(node_factory, backend):
    with pytest.raises(NodeStartError) as e:
        node_factory(config_toml=NAMESPACES)
    text = str(e.value)
    assert "exited with 64" in text, text
    assert "HERALD_PROXY_SUBSCRIBE_ENDPOINT" in text and "namespaces.guarded.proxy_subscribe" in text
    with pytest.raises(NodeStartError) as e:
        node_factory(HERALD_PROXY_CONNECT_ENDPOINT="https://backend/connect")
    assert "HERALD_PROXY_CONNECT_ENDPOINT" in str(e.value)
