"""Differential: Centrifugo v6.9.1 and herald-node call the same aiohttp backend for the
same client actions (connect, rpc, subscribe, publish, refresh), and the request bodies
must carry the same fields, with the same values where they do not depend on the server
(client ids differ). Also the same headers forwarded. This is the proof that a backend
written for Centrifugo's proxy works unchanged.

Centrifugo is sent `include_connection_meta` (herald always sends the connect answer's
`meta` back: it has no switch for it). Skipped when the binary is absent
(CENTRIFUGO_BIN, default /work/peers/bin/centrifugo).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from centrifuge import ClientState

from backend import Backend
from harness import T, EventLog
from sdkutil import ClientEvents, SubEvents

CENTRIFUGO = Path(os.environ.get("CENTRIFUGO_BIN", "/work/peers/bin/centrifugo"))
HEADERS = {"Cookie": "session=abc", "Authorization": "Bearer xyz", "X-Other": "private"}

pytestmark = pytest.mark.skipif(not CENTRIFUGO.is_file(), reason=f"no Centrifugo at {CENTRIFUGO}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Centrifugo:
    def __init__(self, tmp: Path, backend: Backend):
        self.port = free_port()
        proxy = {"timeout": "1s", "http_headers": ["Cookie", "Authorization"], "include_connection_meta": True}
        config = {
            "http_server": {"address": "127.0.0.1", "port": self.port},
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
        path = tmp / "centrifugo.json"
        path.write_text(json.dumps(config))
        self.log = open(tmp / "centrifugo.log", "w")
        self.proc = subprocess.Popen(
            [str(CENTRIFUGO), "--config", str(path)], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp / "centrifugo.log").read_text())
                time.sleep(0.05)
        self.ws_url = f"ws://127.0.0.1:{self.port}/connection/websocket"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def drive(backend: Backend, url: str) -> dict:
    """The same client actions against one server; returns the backend's requests."""
    import centrifuge

    for kind in backend.seen:
        backend.seen[kind] = []
    log = EventLog()
    client = centrifuge.Client(
        url, events=ClientEvents(log), token="", headers=HEADERS, data={"hello": 1},
        name="diff", version="9.9", timeout=T, proxy=None,
    )
    try:
        await client.connect()
        await client.ready(T)
        assert (await client.rpc("echo", {"q": 1})).data == {"answer": 42}
        slog = EventLog()
        sub = client.new_subscription("guarded:room", events=SubEvents(slog), data={"join": True})
        await sub.subscribe()
        await sub.ready(T)
        await sub.publish({"text": "hi"})
        await slog.wait(lambda: slog.of("publication"), what="the publication")
        await backend.wait_for("refresh", 1, timeout=3 * T)
        assert client.state == ClientState.CONNECTED
    finally:
        await client.disconnect()
    return {k: list(v) for k, v in backend.seen.items()}


async def test_both_servers_send_the_same_proxy_requests(node_factory, tmp_path):
    backend = await Backend().start()
    backend.answer["connect"] = lambda body: {
        "result": {"user": "bob", "expire_at": int(time.time()) + 2, "meta": {"tenant": 7}, "info": {"n": 1}}
    }
    backend.answer["refresh"] = lambda body: {"result": {"expire_at": int(time.time()) + 60}}
    backend.answer["rpc"] = {"result": {"data": {"answer": 42}}}
    backend.answer["subscribe"] = {"result": {"info": {"role": "mod"}}}
    backend.answer["publish"] = {"result": {}}
    cf = Centrifugo(tmp_path, backend)
    try:
        theirs = await drive(backend, cf.ws_url)
        node = node_factory(
            config_toml="[namespaces.guarded]\nproxy_subscribe = true\nproxy_publish = true\n",
            **backend.env(
                "connect", "refresh", "subscribe", "publish", "rpc",
                HERALD_PROXY_HTTP_HEADERS="Cookie,Authorization",
            ),
        )
        ours = await drive(backend, node.ws_url)
    finally:
        cf.stop()
        await backend.stop()

    for kind in ("connect", "rpc", "subscribe", "publish", "refresh"):
        a, b = theirs[kind][0], ours[kind][0]
        print(f"{kind}: centrifugo {sorted(a.body)} herald {sorted(b.body)}")
        assert sorted(b.body) == sorted(a.body), (kind, a.body, b.body)
        for field, value in a.body.items():
            if field != "client":  # each server makes its own client ids
                assert b.body[field] == value, (kind, field, a.body, b.body)
        for h in ("cookie", "authorization"):
            assert b.headers.get(h) == a.headers.get(h) == HEADERS[h.title()], (kind, h)
        assert "x-other" not in a.headers and "x-other" not in b.headers
        assert a.headers["content-type"] == b.headers["content-type"] == "application/json"
