"""Differential: Centrifugo v6.9.1 and herald-node call the same aiohttp backend for the
same client actions (connect, rpc, subscribe, publish, refresh), and the request bodies
must carry the same fields, with the same values where they do not depend on the server
(client ids differ). Also the same headers forwarded. This is the proof that a backend
written for Centrifugo's proxy works unchanged.

Centrifugo is sent `include_connection_meta` (herald always sends the connect answer's
`meta` back: it has no switch for it). Runs with JSON and with Protobuf clients (the
`sdk` fixture): the requests name the client's protocol (`protocol`), and payloads are
JSON `data` in both.
Centrifugo comes from `centrifugo.binary()` (CENTRIFUGO_BIN, or installed under
target/peers/bin), as for the other differential test.
"""

from __future__ import annotations

import time

from centrifuge import ClientState

from backend import Backend
from centrifugo import Centrifugo
from harness import T, EventLog
from sdkutil import ClientEvents, SubEvents

HEADERS = {"Cookie": "session=abc", "Authorization": "Bearer xyz", "X-Other": "private"}


def centrifugo_config(backend: Backend) -> dict:
    proxy = {"timeout": "1s", "http_headers": ["Cookie", "Authorization"], "include_connection_meta": True}
    return {
        "log": {"level": "info"},
        "client": {
            "allowed_origins": ["*"],
            "proxy": {
                "connect": {"enabled": True, "endpoint": backend.url("connect"), **proxy},
                "refresh": {"enabled": True, "endpoint": backend.url("refresh"), **proxy},
            },
        },
        "channel": {
            "proxy": {
                "subscribe": {"endpoint": backend.url("subscribe"), **proxy},
                "publish": {"endpoint": backend.url("publish"), **proxy},
            },
            "namespaces": [
                {"name": "guarded", "subscribe_proxy_enabled": True, "publish_proxy_enabled": True}
            ],
        },
        "rpc": {
            "proxy": {"endpoint": backend.url("rpc"), **proxy},
            "without_namespace": {"proxy_enabled": True},
        },
    }


async def drive(sdk, backend: Backend, server) -> dict:
    """The same client actions against one server (Herald's node or Centrifugo, anything
    with a `ws_url`), with `sdk`'s encoding; returns the backend's requests."""
    for kind in backend.seen:
        backend.seen[kind] = []
    log = EventLog()
    client = sdk(
        server, events=ClientEvents(log), token="", headers=HEADERS, data=sdk.payload({"hello": 1}),
        name="diff", version="9.9",
    )
    try:
        await client.connect()
        await client.ready(T)
        assert sdk.data((await client.rpc("echo", sdk.payload({"q": 1}))).data) == {"answer": 42}
        slog = EventLog()
        sub = client.new_subscription("guarded:room", events=SubEvents(slog), data=sdk.payload({"join": True}))
        await sub.subscribe()
        await sub.ready(T)
        await sub.publish(sdk.payload({"text": "hi"}))
        await slog.wait(lambda: slog.of("publication"), what="the publication")
        await backend.wait_for("refresh", 1, timeout=3 * T)
        assert client.state == ClientState.CONNECTED
    finally:
        await client.disconnect()
    return {k: list(v) for k, v in backend.seen.items()}


async def test_both_servers_send_the_same_proxy_requests(node_factory, tmp_path, sdk):
    backend = await Backend().start()
    backend.answer["connect"] = lambda body: {
        "result": {"user": "bob", "expire_at": int(time.time()) + 2, "meta": {"tenant": 7}, "info": {"n": 1}}
    }
    backend.answer["refresh"] = lambda body: {"result": {"expire_at": int(time.time()) + 60}}
    backend.answer["rpc"] = {"result": {"data": {"answer": 42}}}
    backend.answer["subscribe"] = {"result": {"info": {"role": "mod"}}}
    backend.answer["publish"] = {"result": {}}
    cf = Centrifugo.start(centrifugo_config(backend), tmp_path)
    try:
        theirs = await drive(sdk, backend, cf)
        node = node_factory(
            config_toml="[namespaces.guarded]\nproxy_subscribe = true\nproxy_publish = true\n",
            **backend.env(
                "connect", "refresh", "subscribe", "publish", "rpc",
                HERALD_PROXY_HTTP_HEADERS="Cookie,Authorization",
            ),
        )
        ours = await drive(sdk, backend, node)
    finally:
        cf.stop()
        await backend.stop()

    for kind in ("connect", "rpc", "subscribe", "publish", "refresh"):
        a, b = theirs[kind][0], ours[kind][0]
        assert a.body["protocol"] == sdk.encoding, (kind, a.body)
        print(f"{kind}: centrifugo {sorted(a.body)} herald {sorted(b.body)}")
        assert sorted(b.body) == sorted(a.body), (kind, a.body, b.body)
        for field, value in a.body.items():
            if field != "client":  # each server makes its own client ids
                assert b.body[field] == value, (kind, field, a.body, b.body)
        for h in ("cookie", "authorization"):
            assert b.headers.get(h) == a.headers.get(h) == HEADERS[h.title()], (kind, h)
        assert "x-other" not in a.headers and "x-other" not in b.headers
        assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
