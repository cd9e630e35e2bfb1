"""Bad input gets the documented error reply (connection stays open) or close code
(with a `disconnect` push first for protocol codes)."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cent import PublishRequest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from harness import T


def _b64url(obj) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _alg_none_token(sub: str) -> str:
    header = {"alg": "none", "typ": "JWT"}
    payload = {"sub": sub, "exp": int(time.time()) + 3600}
    return f"{_b64url(header)}.{_b64url(payload)}."


def _rs256_token(sub: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, pem, algorithm="RS256")


async def _still_open(c) -> None:
    """The connection still answers commands."""
    res = await c.request("history", {"channel": "probe", "limit": 0})
    assert "history" in res or "error" in res, res
    assert not c.closed.done()


# -- close codes -----------------------------------------------------------------------


async def test_malformed_json_before_connect_is_closed_3501(node, raw):
    c = await raw(node, connect=False)
    await c.send_raw('{"id":1,"connect":{"token":')
    await c.expect_disconnect(3501)


async def test_malformed_json_after_connect_is_closed_3501(node, raw):
    c = await raw(node)
    await c.send_raw("this is not json")
    await c.expect_disconnect(3501)


async def test_first_command_not_connect_is_closed_3501(node, raw):
    c = await raw(node, connect=False)
    await c.send_json({"id": 1, "subscribe": {"channel": "news"}})
    await c.expect_disconnect(3501)
    assert 1 not in c.replies or "subscribe" not in c.replies[1], c.replies


@pytest.mark.parametrize("kind", ["bad_signature", "alg_none", "garbage", "wrong_alg_rs256", "wrong_alg_hs512"])
async def test_invalid_connection_token_is_closed_3500(node, raw, kind):
    if kind == "bad_signature":
        token = node.token("alice", key="another-secret-another-secret-xx")
    elif kind == "alg_none":
        token = _alg_none_token("alice")
    elif kind == "garbage":
        token = "definitely.not.a-jwt"
    elif kind == "wrong_alg_rs256":
        token = _rs256_token("alice")
    else:
        token = node.token("alice", algorithm="HS512")
    c = await raw(node, connect=False)
    await c.send_json({"id": 1, "connect": {"token": token}})
    await c.expect_disconnect(3500)
    assert "connect" not in c.replies.get(1, {}), f"connected with a {kind} token: {c.replies}"


@pytest.mark.parametrize("limit", [None, 1024])
async def test_oversize_message_is_closed_1009(node_factory, raw, limit):
    node = node_factory(HERALD_MAX_MESSAGE_SIZE=limit)
    size = limit or 65536
    c = await raw(node)
    cmd = {"id": 2, "publish": {"channel": "big", "data": {"pad": ""}}}
    overhead = len(json.dumps(cmd))
    # Exactly at the limit: accepted (answered, here with "permission denied").
    cmd["publish"]["data"]["pad"] = "x" * (size - overhead)
    frame = json.dumps(cmd)
    assert len(frame.encode()) == size
    await c.send_raw(frame)
    at_limit = await c.reply(2)
    assert "error" in at_limit or "publish" in at_limit, at_limit
    # One byte more: closed with 1009 (message too big).
    cmd["id"] = 3
    cmd["publish"]["data"]["pad"] += "x"
    await c.send_raw(json.dumps(cmd))
    await c.expect_disconnect(1009)
    assert 3 not in c.replies


async def test_invalid_utf8_in_text_frame_is_closed_1007(node, raw):
    c = await raw(node)
    await c.send_raw(b'{"id":2,"subscribe":{"channel":"\xff\xfe"}}', text=True)
    await c.expect_disconnect(1007)
    assert 2 not in c.replies


async def test_no_connect_within_handshake_timeout_is_closed_3502(node_factory, raw):
    node = node_factory(HERALD_HANDSHAKE_TIMEOUT=1)
    c = await raw(node, connect=False)
    await c.expect_disconnect(3502, timeout=10)


async def test_handshake_timeout_does_not_touch_connected_clients(node_factory, raw):
    node = node_factory(HERALD_HANDSHAKE_TIMEOUT=1, HERALD_PING_INTERVAL=1)
    c = await raw(node)
    # Three answered pings take > 2 s: well past the 1 s handshake timeout.
    await c.wait_until(lambda: c.pings >= 3 or c.closed.done(), 15, "3 pings")
    assert not c.closed.done(), c.closed.result()


async def test_too_many_commands_per_second_is_closed_3013(node_factory, raw):
    node = node_factory(HERALD_COMMANDS_PER_SECOND=5)
    c = await raw(node)
    await c.send_json(
        *[{"id": 100 + i, "history": {"channel": "flood", "limit": 0}} for i in range(40)]
    )
    await c.expect_disconnect(3013)


async def test_slow_consumer_is_closed_3008(node_factory, raw, cent_api):
    """The client stops reading; the node's bounded queue for it fills and the node
    closes it with 3008 instead of buffering without bound."""
    node = node_factory(HERALD_QUEUE_MAX_BYTES=256 * 1024, HERALD_HISTORY_SIZE=0)
    c = await raw(node, max_queue=1)
    await c.subscribe("firehose")
    bystander = await raw(node, user="bob")
    c.pause_reading()
    api = cent_api(node)
    payload = "x" * (64 * 1024)
    # ~20 MB: far more than the socket buffers and the queue bound hold together.
    for i in range(320):
        await api.publish(PublishRequest(channel="firehose", data={"i": i, "p": payload}))
    c.resume_reading()
    await c.expect_disconnect(3008, timeout=30)
    received = len(c.pubs_taken_or_pending("firehose"))
    assert received < 320, "every publication was delivered: the client was never slow"
    await _still_open(bystander)


# -- error replies ---------------------------------------------------------------------


async def test_unknown_method_is_error_104_and_connection_stays_open(node, raw):
    c = await raw(node)
    reply = await c.request("frobnicate", {"x": 1})
    assert reply.get("error", {}).get("code") == 104, reply
    assert isinstance(reply["error"].get("message"), str)
    await _still_open(c)


async def test_expired_connection_token_is_error_109_and_connection_stays_open(node, raw):
    c = await raw(node, connect=False)
    reply = await c.request("connect", {"token": node.token("alice", exp_in=-3600)})
    assert reply.get("error", {}).get("code") == 109, reply
    assert not c.closed.done()
    res = await c.connect(node.token("alice"))
    assert res.get("client"), res


async def test_subscribe_to_forbidden_channel_is_error_103(node, raw):
    c = await raw(node)
    reply = await c.request("subscribe", {"channel": "$staff"})
    assert reply.get("error", {}).get("code") == 103, reply
    await _still_open(c)


async def test_subscribe_when_namespace_disallows_subscribe_is_error_103(node_factory, raw):
    node = node_factory(HERALD_ALLOW_SUBSCRIBE=False)
    c = await raw(node)
    reply = await c.request("subscribe", {"channel": "closed"})
    assert reply.get("error", {}).get("code") == 103, reply


async def test_subscribe_to_unknown_namespace_is_error_102(node, raw):
    c = await raw(node)
    reply = await c.request("subscribe", {"channel": "nosuchns:room"})
    assert reply.get("error", {}).get("code") == 102, reply
    await _still_open(c)


async def test_already_subscribed_is_error_105(node, raw):
    c = await raw(node)
    await c.subscribe("twice")
    reply = await c.request("subscribe", {"channel": "twice"})
    assert reply.get("error", {}).get("code") == 105, reply
    await _still_open(c)


async def test_publish_without_permission_is_error_103(node, raw):
    c = await raw(node)
    await c.subscribe("ro")
    reply = await c.request("publish", {"channel": "ro", "data": {"x": 1}})
    assert reply.get("error", {}).get("code") == 103, reply
    await _still_open(c)


async def test_publish_allowed_when_namespace_allows(node_factory, raw):
    node = node_factory(HERALD_ALLOW_PUBLISH=True)
    c = await raw(node)
    await c.subscribe("rw")
    await c.call("publish", {"channel": "rw", "data": {"x": 1}})
    assert (await c.next_pub("rw"))["data"] == {"x": 1}


async def test_presence_without_presence_in_namespace_is_error_108(node, raw):
    c = await raw(node)
    await c.subscribe("nopres")
    for method in ("presence", "presence_stats"):
        reply = await c.request(method, {"channel": "nopres"})
        assert reply.get("error", {}).get("code") == 108, (method, reply)
    await _still_open(c)


async def test_too_many_channels_is_error_106(node_factory, raw):
    node = node_factory(HERALD_MAX_CHANNELS_PER_CONNECTION=2)
    c = await raw(node)
    await c.subscribe("one")
    await c.subscribe("two")
    reply = await c.request("subscribe", {"channel": "three"})
    assert reply.get("error", {}).get("code") == 106, reply
    await _still_open(c)
    # Unsubscribing frees a slot.
    await c.call("unsubscribe", {"channel": "one"})
    await c.subscribe("three")


async def test_error_replies_do_not_disturb_other_clients(node, raw, cent_api):
    good = await raw(node, user="good")
    await good.subscribe("calm")
    bad = await raw(node, user="bad")
    await bad.send_raw("{{{{")
    await bad.expect_disconnect(3501)
    await cent_api(node).publish(PublishRequest(channel="calm", data={"ok": True}))
    assert (await good.next_pub("calm", timeout=T))["data"] == {"ok": True}
