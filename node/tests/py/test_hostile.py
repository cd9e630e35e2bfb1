"""Hostile clients against a node and against the router in front of it.

Every attack gets its documented answer (an error reply, a close code, an HTTP status, or
the socket closed after a timeout), and after each one the process still serves everyone
else: a fresh client connects, subscribes and gets a publication (`assert_serving`).
Bad input already covered by test_errors.py (malformed JSON, invalid UTF-8 through a
library client, one oversized message, the basic token cases) is not repeated here.

Frame-level abuse goes through `rawws.RawWs`, a WebSocket client built by hand on a
plain socket, since no library sends unmasked frames or lies about lengths.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import time
import urllib.request
from pathlib import Path

import jwt
import pytest
import websockets

from harness import REPO_ROOT, T, Node, RawClient, api_post, http
from rawws import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, RawWs, close_payload, frame, tcp

KEYS = REPO_ROOT / "shared" / "tests" / "keys"
_probe = 0


async def assert_serving(node: Node, ws_url: str | None = None) -> None:
    """A fresh client connects (through `ws_url` when given, e.g. the router), subscribed
    server-side by its token's `channels` claim (so even where client subscribes are
    off), and receives a publication made through the node's server API."""
    global _probe
    _probe += 1
    channel = f"alive-{_probe}"
    c = await RawClient.open(ws_url or node.ws_url)
    try:
        connected = await c.connect(node.token(f"probe-{_probe}", channels=[channel]))
        assert channel in connected.get("subs", {}), connected
        r = await api_post(node, "publish", {"channel": channel, "data": {"alive": _probe}})
        assert r.status == 200, r.text
        assert (await c.next_pub(channel))["data"] == {"alive": _probe}
    finally:
        await c.close()


async def wait_metric(node: Node, line: str, timeout: float = 30) -> None:
    """Waits until the node's /metrics has exactly this line (polled, bounded)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = (await http("GET", f"{node.http_url}/metrics")).text
        if line in text.splitlines():
            return
        await asyncio.sleep(0.05)
    shown = [l for l in text.splitlines() if l.split("{")[0].split(" ")[0] in line]
    raise AssertionError(f"no {line!r} in /metrics within {timeout}s: {shown}")


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Whether the server ends the connection within `timeout`: EOF or reset, after at
    most an error response (hyper may answer 408 before closing)."""
    try:
        data = await asyncio.wait_for(reader.read(), timeout)
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
    return True


async def raw_ws(node_or_addr, **kw) -> RawWs:
    host, port = (node_or_addr.host, node_or_addr.port) if isinstance(node_or_addr, Node) else node_or_addr
    return await RawWs.open(host, port, **kw)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_jwt(header: dict, payload: dict, key: bytes | None, digest=hashlib.sha256) -> str:
    """A JWT signed (HMAC) with any bytes as the key, or unsigned when `key` is None."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    if key is None:
        return signing_input + "."
    sig = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(sig)}"


# == frame level (RFC 6455) ============================================================

M = b'{"id":1,"connect":{"token":"x"}}'

# (name, bytes sent right after the upgrade, expected close code)
FRAME_CASES = [
    ("unmasked text frame", frame(TEXT, M, mask=False), 1002),
    ("unmasked ping", frame(PING, b"hi", mask=False), 1002),
    ("unmasked close", frame(CLOSE, close_payload(1000), mask=False), 1002),
    ("ping of 126 bytes", frame(PING, b"p" * 126), 1002),
    ("pong of 200 bytes", frame(PONG, b"p" * 200), 1002),
    ("close with a 200-byte reason", frame(CLOSE, close_payload(1000, b"r" * 198)), 1002),
    ("reserved bit 1 set", frame(TEXT, b"{}", rsv=4), 1002),
    ("reserved bit 3 set", frame(TEXT, b"{}", rsv=1), 1002),
    ("reserved opcode 0x3", frame(0x3, b"{}"), 1002),
    ("reserved control opcode 0xB", frame(0xB, b""), 1002),
    ("fragmented ping", frame(PING, b"x", fin=False), 1002),
    ("continuation without a start", frame(CONTINUATION, b"{}"), 1002),
    ("new message inside a fragmented one", frame(TEXT, b"{", fin=False) + frame(TEXT, b"}"), 1002),
    ("close with a 1-byte payload", frame(CLOSE, b"\x03"), 1002),
    ("close code 1005 (reserved)", frame(CLOSE, close_payload(1005)), 1002),
    ("close code 999", frame(CLOSE, close_payload(999)), 1002),
    ("close reason not UTF-8", frame(CLOSE, close_payload(1000, b"\xff\xfe")), 1007),
    # A frame type of the other encoding: 3501, as Centrifugo answers a JSON text frame
    # on a Protobuf connection (more in the Protobuf section below).
    ("binary frame", frame(BINARY, M), 3501),
    ("binary message in fragments", frame(BINARY, b"{", fin=False) + frame(CONTINUATION, b"}"), 3501),
    ("overlong UTF-8", frame(TEXT, b'{"id":1,"x":"\xc0\xaf"}'), 1007),
    ("UTF-16 surrogate encoded in UTF-8", frame(TEXT, b'{"id":1,"x":"\xed\xa0\x80"}'), 1007),
    ("invalid UTF-8 across fragments", frame(TEXT, b'{"id":1,"x":"\xe2', fin=False) + frame(CONTINUATION, b'\x28"}'), 1007),
    ("length field of 2^63 - 1", frame(TEXT, b"", length=2**63 - 1), 1009),
    ("length field of 16 MiB", frame(TEXT, b"", length=16 << 20), 1009),
    ("fragments adding up past the limit", b"".join(
        [frame(TEXT, b"[" + b" " * 16383, fin=False)] + [frame(CONTINUATION, b" " * 16384, fin=False)] * 4
    ), 1009),
]


@pytest.mark.parametrize("name,data,code", FRAME_CASES, ids=[c[0] for c in FRAME_CASES])
async def test_frame_level_violation_gets_its_close_code(node, name, data, code):
    ws = await raw_ws(node)
    assert ws.status == 101
    await ws.send(data)
    assert await ws.close_code() == code, name
    assert not any('"connect"' in t for t in ws.texts), f"{name}: a command was executed"
    await ws.close()
    await assert_serving(node)


async def test_frame_violation_after_connect_also_closes(node):
    ws = await raw_ws(node)
    await ws.connect(node.token("alice"))
    await ws.send(frame(TEXT, b'{"id":2,"ping":{}}', mask=False))
    assert await ws.close_code() == 1002


async def test_close_frames_are_echoed_and_pings_answered(node):
    """The node handles pings and closes itself (to check masks and sizes): a valid
    ping gets its pong, a valid close its echo."""
    ws = await raw_ws(node)
    await ws.send(frame(PING, b"are you there"))
    f = await ws.recv()
    assert f is not None and (f.opcode, f.payload) == (PONG, b"are you there"), f
    await ws.connect(node.token("alice"))
    await ws.send(frame(CLOSE, close_payload(4000, b"bye")))
    assert await ws.close_code() == 4000
    ws2 = await raw_ws(node)
    await ws2.send(frame(CLOSE, b""))
    assert await ws2.close_code() == 1000


async def test_ping_flood_does_not_stop_the_connection_working(node):
    """2000 pings in one write: answered from a bounded list (at most 8 owed at a time,
    never one queued per ping), and the connection keeps serving commands."""
    ws = await raw_ws(node)
    await ws.send(b"".join(frame(PING, b"%d" % i) for i in range(2000)))
    await ws.connect(node.token("alice"))
    await ws.send_text(json.dumps({"id": 2, "ping": {}}))
    await ws.until_reply(2)
    assert 1 <= len(ws.pongs) <= 2000, len(ws.pongs)
    await ws.close()
    await assert_serving(node)


# == never-ending messages ==============================================================


async def test_fragmented_message_that_grows_forever_is_closed_1009(node_factory):
    node = node_factory(HERALD_MAX_MESSAGE_SIZE=4096)
    ws = await raw_ws(node)
    await ws.connect(node.token("alice"))
    await ws.send(frame(TEXT, b"[", fin=False))
    for _ in range(100):  # 100 x 1 KiB: far past the 4 KiB limit
        try:
            await ws.send(frame(CONTINUATION, b" " * 1024, fin=False))
        except ConnectionError:
            break
    assert await ws.close_code() == 1009
    await assert_serving(node)


async def test_fragmented_message_that_never_ends_is_closed_by_the_ping_timeout(node_factory):
    """Empty continuation frames forever: the message never grows, but while it is open
    the client cannot answer pings (a data frame cannot interleave), so the pong timeout
    ends it: 3012."""
    node = node_factory(HERALD_PING_INTERVAL=1, HERALD_PONG_TIMEOUT=1)
    ws = await raw_ws(node)
    await ws.connect(node.token("alice"))
    await ws.send(frame(TEXT, b"{", fin=False))

    async def trickle():
        try:
            while True:
                await ws.send(frame(CONTINUATION, b"", fin=False))
                await asyncio.sleep(0.1)
        except (ConnectionError, RuntimeError):
            pass

    t = asyncio.create_task(trickle())
    try:
        assert await ws.close_code(timeout=15) == 3012
    finally:
        t.cancel()
    await assert_serving(node)


async def test_fragmented_message_before_connect_is_closed_by_the_handshake_timeout(node_factory):
    node = node_factory(HERALD_HANDSHAKE_TIMEOUT=1)
    ws = await raw_ws(node)
    await ws.send(frame(TEXT, b"{", fin=False))
    for _ in range(5):
        await ws.send(frame(CONTINUATION, b" ", fin=False))
    assert await ws.close_code(timeout=15) == 3502


# == malformed and hostile JSON =========================================================

DEEP = 30_000  # levels; the frame stays under the 64 KiB message limit

# (name, frame text sent after connect, ("close", code) or ("error", code) or ("ok", None))
JSON_CASES = [
    ("deep nesting in publish data", '{"id":2,"publish":{"channel":"c","data":' + "[" * DEEP + "]" * DEEP + "}}", ("close", 3501)),
    ("deep nesting in an ignored field", '{"id":2,"zzz":' + "[" * DEEP + "]" * DEEP + "}", ("error", 104)),
    ("deep nesting unclosed", '{"id":2,"history":' + "{\"a\":" * 10_000, ("close", 3501)),
    ("id above u32", '{"id":4294967296,"ping":{}}', ("close", 3501)),
    ("negative id", '{"id":-1,"ping":{}}', ("close", 3501)),
    ("id 1e999", '{"id":1e999,"ping":{}}', ("close", 3501)),
    ("offset above u64", '{"id":2,"subscribe":{"channel":"c","recover":true,"offset":"18446744073709551616","epoch":"e"}}', ("close", 3501)),
    ("limit above i32", '{"id":2,"history":{"channel":"c","limit":2147483648}}', ("close", 3501)),
    ("lone surrogate in a channel", '{"id":2,"subscribe":{"channel":"\\ud800"}}', ("close", 3501)),
    ("NUL in a channel", '{"id":2,"subscribe":{"channel":"a\\u0000b"}}', ("ok", None)),
    ("channel of 256 bytes", '{"id":2,"subscribe":{"channel":"' + "c" * 256 + '"}}', ("error", 107)),
    # As Centrifugo: an empty channel is a malformed command.
    ("empty channel", '{"id":2,"subscribe":{"channel":""}}', ("close", 3501)),
    ("huge number in data", '{"id":2,"publish":{"channel":"c","data":1e999999}}', ("error", 103)),
    ("top-level array", "[1,2,3]", ("close", 3501)),
    ("top-level string", '"connect"', ("close", 3501)),
    ("null", "null", ("close", 3501)),
    ("two methods", '{"id":2,"presence":{"channel":"c"},"history":{"channel":"c"}}', ("close", 3501)),
    ("duplicate method key", '{"id":2,"ping":{},"ping":{}}', ("close", 3501)),
    ("101 commands in one frame", "\n".join(['{"id":%d,"ping":{}}' % (i + 2) for i in range(101)]), ("close", 3501)),
    ("trailing garbage", '{"id":2,"ping":{}} x', ("close", 3501)),
    ("raw NUL byte", '{"id":2,"ping":{}}\x00', ("close", 3501)),
]


@pytest.mark.parametrize("name,text,expect", JSON_CASES, ids=[c[0] for c in JSON_CASES])
async def test_hostile_json_gets_its_documented_answer(node_factory, raw, name, text, expect):
    node = node_factory(HERALD_COMMANDS_PER_SECOND=0)
    c = await raw(node)
    await c.send_raw(text)
    kind, code = expect
    if kind == "close":
        await c.expect_disconnect(code)
        assert 2 not in c.replies, c.replies
    else:
        reply = await c.reply(2)
        if kind == "error":
            assert reply.get("error", {}).get("code") == code, reply
        else:
            assert "error" not in reply, reply
        assert not c.closed.done()
    await assert_serving(node)


async def test_deep_nesting_before_connect_is_closed_3501(node, raw):
    c = await raw(node, connect=False)
    await c.send_raw('{"id":1,"connect":{"token":"x","data":' + "[" * DEEP + "]" * DEEP + "}}")
    await c.expect_disconnect(3501)
    await assert_serving(node)


# == slow handshakes and floods =========================================================


async def test_slowloris_headers_are_cut_off_after_the_handshake_timeout(node_factory):
    node = node_factory(HERALD_HANDSHAKE_TIMEOUT=1)
    reader, writer = await tcp(node.host, node.port)
    writer.write(b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()

    async def trickle():
        try:
            while True:
                writer.write(b"X")  # one byte of a header name every 100 ms
                await writer.drain()
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass

    t = asyncio.create_task(trickle())
    try:
        assert await closed_by_peer(reader, 15), "the trickle kept the connection open"
    finally:
        t.cancel()
    writer.close()
    await assert_serving(node)


async def test_silent_tcp_connections_are_closed_after_the_handshake_timeout(node_factory):
    node = node_factory(HERALD_HANDSHAKE_TIMEOUT=1)
    conns = [await tcp(node.host, node.port) for _ in range(20)]
    for reader, writer in conns:
        assert await closed_by_peer(reader, 15), "a silent connection was kept open"
        writer.close()
    await assert_serving(node)


async def test_idle_keepalive_http_connection_is_closed(node_factory):
    """A connection that made one request and then idles must not hold its socket
    forever: the next request's header timeout closes it."""
    node = node_factory(HERALD_HANDSHAKE_TIMEOUT=1)
    reader, writer = await tcp(node.host, node.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    await asyncio.wait_for(reader.readexactly(length), T)
    assert await closed_by_peer(reader, 15), "an idle keep-alive connection was kept open"
    writer.close()


@pytest.mark.parametrize("size", [70 * 1024, 500 * 1024])
async def test_oversized_upgrade_headers_are_refused_431(node, size):
    ws = await raw_ws(node, headers={"Cookie": "a=" + "x" * size})
    assert ws.status == 431, (ws.status, ws.headers)
    await ws.close()
    await assert_serving(node)


async def test_too_many_upgrade_headers_are_refused_431(node):
    ws = await raw_ws(node, headers={f"X-H{i}": "v" for i in range(200)})
    assert ws.status == 431, (ws.status, ws.headers)
    await ws.close()
    await assert_serving(node)


async def test_connection_flood_past_max_connections_gets_503(node_factory, raw):
    node = node_factory(HERALD_MAX_CONNECTIONS=4)
    held = [await raw(node, user=f"u{i}") for i in range(4)]
    await held[0].subscribe("flood")
    refused = await asyncio.gather(*[raw_ws(node) for _ in range(30)])
    for ws in refused:
        assert ws.status == 503, ws.status
        assert ws.headers.get("retry-after"), ws.headers
        assert json.loads(ws.body) == {"error": "connection limit reached"}
        await ws.close()
    # The connections already open are unaffected.
    r = await api_post(node, "publish", {"channel": "flood", "data": {"n": 1}})
    assert r.status == 200, r.text
    assert (await held[0].next_pub("flood"))["data"] == {"n": 1}
    # A freed slot takes a new connection (the count is released on close).
    await held[3].close()
    deadline = time.monotonic() + T
    while True:
        ws = await raw_ws(node)
        if ws.status == 101:
            await ws.close()
            break
        await ws.close()
        assert time.monotonic() < deadline, "the closed connection's slot was never released"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", ["commands", "pongs", "blank frames"])
async def test_flood_in_separate_frames_is_closed_3013(node_factory, raw, kind):
    node = node_factory(HERALD_COMMANDS_PER_SECOND=5)
    bystander = await raw(node, user="calm")
    await bystander.subscribe("calm")
    c = await raw(node)
    for i in range(60):
        try:
            if kind == "commands":
                await c.send_json({"id": 10 + i, "history": {"channel": "x", "limit": 0}})
            elif kind == "pongs":
                await c.send_raw("{}")
            else:
                await c.send_raw("\n")
        except websockets.ConnectionClosed:
            break
    await c.expect_disconnect(3013)
    r = await api_post(node, "publish", {"channel": "calm", "data": {"ok": True}})
    assert r.status == 200
    assert (await bystander.next_pub("calm"))["data"] == {"ok": True}
    assert not bystander.closed.done()


async def test_commands_within_the_rate_are_all_answered(node_factory, raw):
    node = node_factory(HERALD_COMMANDS_PER_SECOND=20)
    c = await raw(node)  # connect used 1 token of the burst of 20
    await c.send_json(*[{"id": 10 + i, "ping": {}} for i in range(19)])
    for i in range(19):
        assert "ping" in await c.reply(10 + i)
    assert not c.closed.done()


# == permissions and tokens =============================================================


async def test_channel_permissions_cannot_be_forged(node_factory, raw):
    node = node_factory(HERALD_ALLOW_SUBSCRIBE=False, HERALD_ALLOW_PUBLISH=True)
    c = await raw(node, connect=False)
    connected = await c.connect(node.token("alice", channels=["granted"]))
    # The claim subscribes server-side; it grants no client subscribe to anything else.
    assert set(connected.get("subs", {})) == {"granted"}, connected
    cases = {
        "not in the channels claim": {"channel": "other"},
        "private, no token": {"channel": "$p"},
        "token signed with another key": {"channel": "$p", "token": node.sub_token("alice", "$p", key="x" * 32)},
        "alg none": {"channel": "$p", "token": hand_made_jwt({"alg": "none"}, {"sub": "alice", "channel": "$p"}, None)},
    }
    for name, params in cases.items():
        reply = await c.request("subscribe", params)
        assert reply.get("error", {}).get("code") == 103, (name, reply)
    # A good token meant for someone else closes 3500 invalid token, as in Centrifugo.
    foreign = {
        "token for another user": {"channel": "$p", "token": node.sub_token("mallory", "$p")},
        "token for another channel": {"channel": "$p", "token": node.sub_token("alice", "$q")},
        "token bound to another client": {"channel": "$p", "token": node.sub_token("alice", "$p", client="someone-else")},
    }
    for name, params in foreign.items():
        other = await raw(node, user="alice")
        await other.send_json({"id": other.next_id(), "subscribe": params})
        closed = await other.wait_closed()
        assert closed.code == 3500, (name, closed)
    reply = await c.request("subscribe", {"channel": "$p", "token": node.sub_token("alice", "$p", exp_in=-60)})
    assert reply.get("error", {}).get("code") == 109, reply
    # Publishing needs a subscription (allow_publish is on here).
    reply = await c.request("publish", {"channel": "other", "data": {"x": 1}})
    assert reply.get("error", {}).get("code") == 103, reply
    reply = await c.request("publish", {"channel": "$p", "data": {"x": 1}})
    assert reply.get("error", {}).get("code") == 103, reply
    await c.call("publish", {"channel": "granted", "data": {"x": 1}})
    assert not c.closed.done()
    await assert_serving(node)


def _token_cases(node: Node) -> dict[str, str]:
    secret = node.secret.encode()
    now = int(time.time())
    ok = {"sub": "alice", "exp": now + 3600}
    valid = node.token("alice")
    head, payload, sig = valid.split(".")
    return {
        "signature stripped": f"{head}.{payload}.",
        "signature of another token": f"{head}.{b64url(json.dumps({'sub': 'admin'}).encode())}.{sig}",
        "alg none, lower case": hand_made_jwt({"alg": "none", "typ": "JWT"}, ok, None),
        "alg None": hand_made_jwt({"alg": "None"}, ok, None),
        "alg HS384 with the right secret": hand_made_jwt({"alg": "HS384"}, ok, secret, hashlib.sha384),
        "not yet valid (nbf)": node.token("alice", nbf=now + 3600),
        "exp as a string": hand_made_jwt({"alg": "HS256"}, {"sub": "alice", "exp": "never"}, secret),
        "header not JSON": f"{b64url(b'not json')}.{payload}.{sig}",
        "two dots only": "..",
        "huge token": node.token("alice", info={"pad": "x" * 40_000}, key="y" * 32),
        "NUL bytes": "\x00" * 64,
    }


async def test_token_attacks_are_closed_3500(node, raw):
    for name, token in _token_cases(node).items():
        c = await raw(node, connect=False)
        await c.send_json({"id": 1, "connect": {"token": token}})
        await c.expect_disconnect(3500)
        assert "connect" not in c.replies.get(1, {}), (name, c.replies)
    await assert_serving(node)


async def test_rs256_node_refuses_the_key_confusion_attack(node_factory, raw):
    """A node pinned to RS256 gets an HS256 token whose HMAC key is the RSA public key
    (the classic algorithm-confusion forgery): refused 3500. A real RS256 token works."""
    pub = (KEYS / "rsa_public.pem").read_bytes()
    node = node_factory(HERALD_TOKEN_HMAC_SECRET="", HERALD_TOKEN_RSA_PUBLIC_KEY=f"@{KEYS / 'rsa_public.pem'}")
    forged = hand_made_jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "admin", "exp": int(time.time()) + 60}, pub)
    c = await raw(node, connect=False)
    await c.send_json({"id": 1, "connect": {"token": forged}})
    await c.expect_disconnect(3500)
    good = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 60},
        (KEYS / "rsa_private.pem").read_bytes(),
        algorithm="RS256",
    )
    c2 = await raw(node, token=good)
    assert c2.client_id


async def test_tokens_and_keys_never_reach_the_log(node_factory, raw):
    """At debug level, bad and good tokens, subscription tokens and API keys (right and
    wrong, in both headers) go through the node; none of them, nor the HMAC secret,
    appears in its log."""
    node = node_factory(RUST_LOG="debug", HERALD_ALLOW_PUBLISH=True)
    secrets_seen: list[str] = [node.secret, node.api_key]
    good = node.token("alice")
    secrets_seen.append(good)
    c = await raw(node, token=good)
    sub_token = node.sub_token("alice", "$p")
    secrets_seen.append(sub_token)
    await c.subscribe("$p", token=sub_token)
    refresh = node.token("alice", exp_in=7200)
    secrets_seen.append(refresh)
    await c.call("refresh", {"token": refresh})
    bad_sub = node.sub_token("alice", "$q", key="k" * 32)
    secrets_seen.append(bad_sub)
    await c.request("subscribe", {"channel": "$q", "token": bad_sub})
    for name, token in _token_cases(node).items():
        if len(token) > 20 and name != "NUL bytes":
            secrets_seen.append(token)
        b = await raw(node, connect=False)
        await b.send_json({"id": 1, "connect": {"token": token}})
        await b.wait_closed()
    expired = node.token("alice", exp_in=-60)
    secrets_seen.append(expired)
    b = await raw(node, connect=False)
    await b.request("connect", {"token": expired})
    # A token where an object belongs: serde would quote it in its error message.
    misplaced = node.token("mallory")
    secrets_seen.append(misplaced)
    b = await raw(node, connect=False)
    await b.send_raw(json.dumps({"id": 1, "connect": misplaced}))
    await b.wait_closed()
    b = await raw(node, connect=False)
    await b.send_raw(json.dumps({"id": 1, "connect": {"token": [misplaced]}}))
    await b.wait_closed()
    wrong_key = "wrong-" + node.api_key[::-1]
    secrets_seen.append(wrong_key)
    url = f"{node.api_url}/info"
    for headers in (
        {"X-API-Key": node.api_key},
        {"Authorization": f"apikey {node.api_key}"},
        {"X-API-Key": wrong_key},
        {"Authorization": f"apikey {wrong_key}"},
        {"Authorization": f"Bearer {good}"},
    ):
        r = await http("POST", url, data="{}", headers=headers)
        assert r.status in (200, 401), r
    r = await http("POST", f"{node.http_url}/admin/drain", headers={"X-API-Key": wrong_key})
    assert r.status == 401
    await c.close()
    node.stop()
    log = node.log_text()
    assert "DEBUG" in log, "the node did not log at debug level: the test proves nothing"
    for s in secrets_seen:
        for part in {s, *[p for p in s.split(".") if len(p) >= 16]}:
            assert part not in log, f"secret material in the log: {part[:24]}…"


# == origin allow-list ==================================================================

ORIGINS = "https://app.example.com,https://*.example.org"
ORIGIN_CASES = [
    ("https://app.example.com", 101),
    ("HTTPS://APP.EXAMPLE.COM", 101),
    ("https://a.b.example.org", 101),
    (None, 403),
    ("https://evil.com", 403),
    ("https://app.example.com.evil.com", 403),
    ("https://example.org", 403),
    ("https://evil.com/.example.org", 403),
    ("http://app.example.com", 403),
    ("null", 403),
    ("", 403),
]


@pytest.mark.parametrize("origin,status", ORIGIN_CASES)
async def test_origin_allow_list_is_enforced_on_upgrades(node_factory, origin, status):
    node = node_factory(HERALD_ALLOWED_ORIGINS=ORIGINS)
    ws = await raw_ws(node, headers={"Origin": origin})
    assert ws.status == status, (origin, ws.status, ws.body)
    if status == 403:
        assert json.loads(ws.body) == {"error": "origin not allowed"}
    await ws.close()


async def test_any_origin_without_an_allow_list(node):
    for origin in ("https://anything.example", None):
        ws = await raw_ws(node, headers={"Origin": origin})
        assert ws.status == 101
        await ws.close()


# == slow consumers and memory ==========================================================


def rss_kib(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M)}


async def test_slow_consumers_are_dropped_and_memory_stays_bounded(node_factory, raw, herald_report):
    """Two clients stop reading (one paused, one raw socket that never reads) while
    48 MiB of publications go to their channel. Each is disconnected once its 1 MiB
    queue is full (3008); two healthy subscribers get every publication; the node's
    resident memory grows by far less than what was published.

    The bound: per stalled client the node holds at most its queue (1 MiB), the batch
    its writer is pushing (<= 1 MiB) and one coalesced frame (256 KiB); publications
    are shared buffers, and socket buffers live in the kernel, not in RSS. Say 5 MiB
    for the two, plus the publications in flight to the healthy subscribers and
    allocator slack: 24 MiB is generous, and half of the 48 MiB an unbounded queue would
    keep for a client that never reads."""
    node = node_factory(HERALD_QUEUE_MAX_BYTES=1 << 20, HERALD_HISTORY_SIZE=0, HERALD_COMMANDS_PER_SECOND=0)
    channel = "firehose"
    healthy = [await raw(node, user=f"h{i}", max_queue=None) for i in range(2)]
    for h in healthy:
        await h.subscribe(channel)
    paused = await raw(node, user="paused", max_queue=1)
    await paused.subscribe(channel)
    stalled = await raw_ws(node, rcvbuf=4096)
    await stalled.connect(node.token("stalled"))
    await stalled.send_text(json.dumps({"id": 2, "subscribe": {"channel": channel}}))
    await stalled.until_reply(2)
    paused.pause_reading()  # and `stalled` is simply never read again
    base = rss_kib(node.proc.pid)

    n, size = 768, 64 * 1024
    payload = "x" * (size - 100)
    sem = asyncio.Semaphore(8)

    async def publish(i: int) -> None:
        async with sem:
            r = await api_post(node, "publish", {"channel": channel, "data": {"i": i, "p": payload}})
            assert r.status == 200, r.text

    started = time.monotonic()
    await asyncio.gather(*[publish(i) for i in range(n)])
    for h in healthy:
        await h.wait_until(lambda h=h: len(h.pubs_taken_or_pending(channel)) >= n or h.closed.done(), 60, "all publications")
    elapsed = time.monotonic() - started
    after = rss_kib(node.proc.pid)

    for h in healthy:
        got = sorted(p["data"]["i"] for p in h.pubs_taken_or_pending(channel))
        assert got == list(range(n)), f"a healthy subscriber missed {n - len(got)} publications"
        assert not h.closed.done(), h.closed.result()
    paused.resume_reading()
    await paused.expect_disconnect(3008, timeout=30)
    assert len(paused.pubs_taken_or_pending(channel)) < n
    # The socket that never reads is let go too (its close could not even be written):
    # it holds no slot. Checked on the node's side, without reading the socket.
    await wait_metric(node, 'herald_node_disconnects_total{code="3008"} 2')
    await wait_metric(node, "herald_node_connections 2")  # the healthy two
    assert await stalled.ended(timeout=T)
    growth_mib = (after["VmHWM"] - base["VmRSS"]) / 1024
    herald_report({
        "published_mib": n * size / 2**20,
        "rss_base_mib": round(base["VmRSS"] / 1024, 1),
        "rss_peak_growth_mib": round(growth_mib, 1),
        "seconds": round(elapsed, 2),
    })
    assert growth_mib < 24, f"node RSS grew by {growth_mib:.1f} MiB while publishing {n * size >> 20} MiB"
    await assert_serving(node)


async def test_a_client_that_never_reads_is_let_go_before_its_queue_fills(node_factory):
    """The queue (64 MiB here) never fills, and the client even keeps sending pongs, but
    it reads nothing: the node's write to it cannot finish, and after ping_interval +
    pong_timeout the writer gives up (3008) and the connection is closed, instead of
    holding its slot and socket for as long as the client likes."""
    node = node_factory(
        HERALD_PING_INTERVAL=1, HERALD_PONG_TIMEOUT=1, HERALD_HISTORY_SIZE=0,
        HERALD_QUEUE_MAX_BYTES="64MiB",
    )
    ws = await raw_ws(node, rcvbuf=4096)
    await ws.connect(node.token("stuck"))
    await ws.send_text(json.dumps({"id": 2, "subscribe": {"channel": "big"}}))
    await ws.until_reply(2)

    async def keep_ponging():
        try:
            while True:
                await ws.send_text("{}")
                await asyncio.sleep(0.3)
        except (ConnectionError, RuntimeError):
            pass

    t = asyncio.create_task(keep_ponging())
    try:
        # 24 x 512 KiB: more than the socket buffers on both sides take, far less
        # than the queue bound.
        for _ in range(24):
            r = await api_post(node, "publish", {"channel": "big", "data": {"p": "y" * (512 * 1024 - 100)}})
            assert r.status == 200
        # Waited for on the node's side: reading the socket would unstall the writer.
        await wait_metric(node, 'herald_node_disconnects_total{code="3008"} 1')
        await wait_metric(node, "herald_node_connections 0")
    finally:
        t.cancel()
    assert await ws.ended(timeout=T)
    await assert_serving(node)


# == through the router =================================================================

ROUTER_BIN = Path(
    os.environ.get("HERALD_ROUTER_BIN", str(REPO_ROOT / "target" / "debug" / "herald-router"))
)


@pytest.fixture
def router_factory(request, node_factory, tmp_path):
    """`router_factory(node, **env)`: a herald-router in front of `node`, ready (the node
    is in its ring). Stopped, and its exit code checked, with the nodes."""

    def start(node: Node, **env) -> Node:
        if not ROUTER_BIN.is_file():
            pytest.fail(f"herald-router binary not found at {ROUTER_BIN}: set HERALD_ROUTER_BIN")
        settings = {
            "HERALD_ROUTER_LISTEN": "127.0.0.1:0",
            "HERALD_ROUTER_NODES": f"127.0.0.1:{node.port}",
            "HERALD_ROUTER_HEALTH_INTERVAL": "0.2",
            "HERALD_ROUTER_HEALTH_RISE": "1",
            "HERALD_ROUTER_SHUTDOWN_GRACE": "1",
            # The harness's Node reads these two; the router ignores them.
            "HERALD_TOKEN_HMAC_SECRET": node.secret,
            "HERALD_API_KEY": node.api_key,
        }
        settings.update({k: str(v) for k, v in env.items()})
        nodes = request.node._herald_nodes
        name = f"router{len(nodes)}"
        router = Node(ROUTER_BIN, settings, tmp_path / f"{name}.log", name)
        nodes.append(router)  # node_factory's teardown stops it and checks its exit code
        deadline = time.monotonic() + 3 * T
        while True:
            try:
                with urllib.request.urlopen(f"{router.http_url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return router
            except OSError:
                pass
            assert time.monotonic() < deadline, f"router not ready:\n{router.log_text()}"
            time.sleep(0.05)

    return start


@pytest.mark.parametrize(
    "headers",
    [{"Cookie": "a=" + "x" * 70 * 1024}, {"Cookie": "a=" + "x" * 500 * 1024}, {f"X-H{i}": "v" for i in range(200)}],
    ids=["70 KiB header", "500 KiB header", "200 headers"],
)
async def test_router_refuses_oversized_upgrade_headers_431(node, router_factory, headers):
    router = router_factory(node)
    ws = await raw_ws(router, headers=headers)
    assert ws.status == 431, (ws.status, ws.headers)
    await ws.close()
    await assert_serving(node, router.ws_url)


async def test_router_cuts_off_slowloris_and_silent_connections(node, router_factory):
    router = router_factory(node, HERALD_ROUTER_HANDSHAKE_TIMEOUT=1)
    silent = [await tcp(router.host, router.port) for _ in range(10)]
    # And one that made a request, then idles on its keep-alive connection.
    idle_r, idle_w = await tcp(router.host, router.port)
    idle_w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(idle_r.readuntil(b"\r\n\r\n"), T)
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    await asyncio.wait_for(idle_r.readexactly(length), T)
    silent.append((idle_r, idle_w))
    reader, writer = await tcp(router.host, router.port)
    writer.write(b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\n")

    async def trickle():
        try:
            while True:
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass

    t = asyncio.create_task(trickle())
    try:
        for r, _ in [*silent, (reader, writer)]:
            assert await closed_by_peer(r, 15), "the router kept a slow or silent client"
    finally:
        t.cancel()
    for _, w in [*silent, (reader, writer)]:
        w.close()
    await assert_serving(node, router.ws_url)


async def test_router_connection_flood_past_its_limit_gets_503(node, router_factory):
    router = router_factory(node, HERALD_ROUTER_MAX_CONNECTIONS=3)
    held = []
    for i in range(3):
        c = await RawClient.open(router.ws_url)
        held.append(c)
        await c.connect(node.token(f"u{i}"))
    await held[0].subscribe("flood")
    try:
        refused = await asyncio.gather(*[raw_ws(router) for _ in range(30)])
        for ws in refused:
            assert ws.status == 503, ws.status
            assert ws.headers.get("retry-after"), ws.headers
            await ws.close()
        # The tunnels already open are unaffected.
        r = await api_post(node, "publish", {"channel": "flood", "data": {"n": 1}})
        assert r.status == 200, r.text
        assert (await held[0].next_pub("flood"))["data"] == {"n": 1}
        # A closed tunnel frees its slot.
        await held[2].close()
        deadline = time.monotonic() + T
        while True:
            try:
                await assert_serving(node, router.ws_url)
                break
            except websockets.InvalidStatus as e:
                assert e.response.status_code == 503, e
                assert time.monotonic() < deadline, "the closed tunnel's slot was never released"
                await asyncio.sleep(0.05)
    finally:
        for c in held:
            await c.close()


ROUTER_FRAME_CASES = [
    ("unmasked text frame", frame(TEXT, M, mask=False), 1002),
    ("ping of 126 bytes", frame(PING, b"p" * 126), 1002),
    ("invalid UTF-8", frame(TEXT, b'{"x":"\xff"}'), 1007),
    ("length field of 2^63 - 1", frame(TEXT, b"", length=2**63 - 1), 1009),
    ("binary frame", frame(BINARY, M), 3501),
]


@pytest.mark.parametrize("name,data,code", ROUTER_FRAME_CASES, ids=[c[0] for c in ROUTER_FRAME_CASES])
async def test_frame_violations_through_the_router_get_the_nodes_close_code(node, router_factory, name, data, code):
    router = router_factory(node)
    ws = await raw_ws(router)
    assert ws.status == 101
    await ws.send(data)
    assert await ws.close_code() == code, name
    await ws.close()
    await assert_serving(node, router.ws_url)


async def test_command_flood_through_the_router_is_closed_3013(node_factory, router_factory):
    node = node_factory(HERALD_COMMANDS_PER_SECOND=5)
    router = router_factory(node)
    c = await RawClient.open(router.ws_url)
    try:
        await c.connect(node.token("alice"))
        await c.send_json(*[{"id": 10 + i, "ping": {}} for i in range(40)])
        await c.expect_disconnect(3013)
    finally:
        await c.close()
    await assert_serving(node, router.ws_url)


@pytest.mark.parametrize("origin,status", [("https://app.example.com", 101), ("https://evil.com", 403), (None, 403)])
async def test_origin_allow_list_through_the_router(node_factory, router_factory, origin, status):
    node = node_factory(HERALD_ALLOWED_ORIGINS=ORIGINS)
    router = router_factory(node)
    ws = await raw_ws(router, headers={"Origin": origin})
    assert ws.status == status, (ws.status, ws.body)
    await ws.close()


# == the Protobuf encoding =============================================================
#
# The same hostile input as for JSON, on connections that chose Protobuf (the
# `centrifuge-protobuf` subprotocol or `?cf_protocol=protobuf`), sent with `websockets`.
# Commands are built with the Protobuf messages that centrifuge-python ships (the
# protocol's own generated code, not Herald's). Each answer is compared in the comment
# with Centrifugo v6.9.1's for the same bytes.

from centrifuge.protocol import client_pb2 as pb  # noqa: E402


def varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb_frame(*commands) -> bytes:
    """Commands, each prefixed with its length as a varint, back to back."""
    out = b""
    for c in commands:
        body = c.SerializeToString()
        out += varint(len(body)) + body
    return out


def pb_replies(data: bytes) -> list:
    out, pos = [], 0
    while pos < len(data):
        n, shift = 0, 0
        while True:
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        r = pb.Reply()
        r.ParseFromString(data[pos:pos + n])
        out.append(r)
        pos += n
    return out


async def pb_open(node: Node, query: bool = False):
    if query:
        return await websockets.connect(node.ws_url + "?cf_protocol=protobuf", max_size=None)
    ws = await websockets.connect(node.ws_url, subprotocols=["centrifuge-protobuf"], max_size=None)
    assert ws.subprotocol == "centrifuge-protobuf"
    return ws


async def pb_call(ws, command) -> "pb.Reply":
    await ws.send(pb_frame(command))
    async with asyncio.timeout(T):
        while True:
            data = await ws.recv()
            assert isinstance(data, bytes), f"a text frame on a Protobuf connection: {data!r}"
            for r in pb_replies(data):
                if r.id == command.id:
                    return r


async def pb_connected(node: Node, user: str = "alice", query: bool = False):
    ws = await pb_open(node, query)
    r = await pb_call(ws, pb.Command(id=1, connect=pb.ConnectRequest(token=node.token(user))))
    assert r.HasField("connect") and r.connect.client, r
    return ws


async def pb_close_code(ws) -> tuple[int, str, list]:
    """Reads until the close; returns its code, its reason and the replies seen."""
    seen = []
    try:
        async with asyncio.timeout(T):
            while True:
                data = await ws.recv()
                seen.extend(pb_replies(data) if isinstance(data, bytes) else [data])
    except websockets.ConnectionClosed as e:
        return (e.rcvd.code, e.rcvd.reason, seen) if e.rcvd else (None, "", seen)


def ping(cid: int):
    return pb.Command(id=cid, ping=pb.PingRequest())


PING2 = pb_frame(ping(2))

# (name, bytes of one binary frame after connect, close code). Centrifugo v6.9.1 closes
# every one of these with 3501 too, except where noted.
PROTOBUF_CASES = [
    # A field with wire type 7, which does not exist.
    ("message that does not decode", b"\x02\x0f\x00", 3501),
    ("length prefix past the end of the frame", varint(50) + PING2[1:], 3501),
    ("second command cut short", PING2 + PING2[:-1], 3501),
    ("length prefix that never ends", b"\x80" * 12, 3501),
    ("length prefix over 64 bits", b"\xff" * 10 + b"\x01", 3501),
    ("nested message past its parent", varint(4) + b"\x08\x02\x5a\x09", 3501),
    # Centrifugo passes any bytes through; Herald's channels carry JSON (README).
    ("publish data that is not JSON", pb_frame(pb.Command(
        id=2, publish=pb.PublishRequest(channel="c", data=b"\xff\x00binary"))), 3501),
    ("two methods in one command", pb_frame(pb.Command(
        id=2, ping=pb.PingRequest(), presence=pb.PresenceRequest(channel="c"))), 3501),
]


@pytest.mark.parametrize("name,data,code", PROTOBUF_CASES, ids=[c[0] for c in PROTOBUF_CASES])
async def test_bad_protobuf_input_gets_its_close_code(node, name, data, code):
    ws = await pb_connected(node)
    await ws.send(data)
    got, reason, seen = await pb_close_code(ws)
    assert got == code, (name, got, reason)
    # A protocol close comes with a disconnect push the SDK can read: Protobuf too.
    pushes = [r.push.disconnect for r in seen if isinstance(r, pb.Reply) and r.HasField("push")]
    assert [(d.code, d.reconnect) for d in pushes] == [(code, False)], (name, seen)
    await assert_serving(node)


async def test_a_json_text_frame_on_a_protobuf_connection_is_refused(node):
    """Centrifugo reads the text as Protobuf and fails (3501); Herald refuses the frame
    type itself, before decoding, with the same code and a reason that says why."""
    for query in (False, True):
        ws = await pb_connected(node, query=query)
        await ws.send('{"id":2,"ping":{}}')
        code, reason, _ = await pb_close_code(ws)
        assert (code, reason) == (3501, "bad request: text frame on a Protobuf connection")
    # Even before connect, and even when the text would decode as Protobuf (Centrifugo
    # executes that one).
    ws = await pb_open(node)
    await ws.send(PING2.decode("latin-1"))
    code, _, _ = await pb_close_code(ws)
    assert code == 3501
    await assert_serving(node)


async def test_a_binary_frame_on_a_json_connection_is_refused(node):
    """The reverse: a JSON connection takes text frames only (Centrifugo executes JSON
    sent in a binary frame, and closes 3501 for anything else)."""
    c = await websockets.connect(node.ws_url)
    await c.send('{"id":1,"connect":{"token":"%s"}}' % node.token("alice"))
    assert "connect" in json.loads(await c.recv())
    await c.send(b'{"id":2,"ping":{}}')
    with pytest.raises(websockets.ConnectionClosed) as e:
        async with asyncio.timeout(T):
            while True:
                await c.recv()
    assert (e.value.rcvd.code, e.value.rcvd.reason) == (3501, "bad request: binary frame on a JSON connection")
    await assert_serving(node)


async def test_protobuf_limits_are_the_json_ones(node_factory):
    """Message size (1009, fragments included), command rate (3013), commands before
    connect (3501), the commands-per-frame bound (3501): as for JSON."""
    node = node_factory(HERALD_MAX_MESSAGE_SIZE=4096, HERALD_COMMANDS_PER_SECOND=20)
    ws = await pb_connected(node)
    await ws.send(pb_frame(pb.Command(id=2, publish=pb.PublishRequest(channel="c", data=b"1" * 5000))))
    assert (await pb_close_code(ws))[0] == 1009

    # Fragments adding up past the limit: a raw client, binary first fragment.
    raw = await raw_ws(node, headers={"Sec-WebSocket-Protocol": "centrifuge-protobuf"})
    assert raw.headers.get("sec-websocket-protocol") == "centrifuge-protobuf"
    await raw.send(frame(BINARY, PING2, fin=False) + frame(CONTINUATION, b"\x00" * 3000, fin=False)
                   + frame(CONTINUATION, b"\x00" * 3000))
    assert await raw.close_code() == 1009
    await raw.close()

    # A fragmented binary message is one message: reassembled, then decoded.
    raw = await raw_ws(node, headers={"Sec-WebSocket-Protocol": "centrifuge-protobuf"})
    connect = pb_frame(pb.Command(id=1, connect=pb.ConnectRequest(token=node.token("frag"))))
    await raw.send(frame(BINARY, connect[:5], fin=False) + frame(CONTINUATION, connect[5:]))
    f = await raw.recv()
    assert f is not None and f.opcode == BINARY, f
    assert pb_replies(f.payload)[0].connect.client
    await raw.close()

    ws = await pb_connected(node)
    await ws.send(pb_frame(*[ping(10 + i) for i in range(30)]))
    assert (await pb_close_code(ws))[0] == 3013

    ws = await pb_open(node)
    await ws.send(pb_frame(ping(1)))
    assert (await pb_close_code(ws))[0] == 3501, "a command before connect"

    ws = await pb_connected(node, "many")
    await ws.send(pb_frame(*[pb.Command() for _ in range(101)]))
    assert (await pb_close_code(ws))[0] == 3501, "more than 100 commands in a frame"
    await assert_serving(node)


async def test_a_protobuf_client_keeps_the_ping_pong_contract(node_factory):
    """The server's ping is an empty Reply; the client's pong an empty Command. One who
    never answers is closed 3012 (no pong), as in JSON."""
    node = node_factory(HERALD_PING_INTERVAL=1, HERALD_PONG_TIMEOUT=1)
    ws = await pb_connected(node)
    quiet = await pb_connected(node, "quiet")
    pings = 0

    async def answer_pings():
        nonlocal pings
        while True:
            data = await ws.recv()
            if data == b"\x00":
                pings += 1
                await ws.send(b"\x00")  # the pong

    answering = asyncio.create_task(answer_pings())
    code, _, _ = await pb_close_code(quiet)
    answering.cancel()
    try:
        await answering
    except asyncio.CancelledError:
        pass
    assert code == 3012
    assert pings >= 1
    r = await pb_call(ws, ping(5))
    assert r.HasField("ping"), r
