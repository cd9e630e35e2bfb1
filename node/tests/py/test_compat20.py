"""Issue #20 features through the official server SDK (cent 5.2.0) and raw clients:
`batch`, `refresh`, `b64data`, the per-user connection limit, the connection rate
limit, and the previous HMAC secret of a key rotation. (Answers are also compared
with Centrifugo in test_differential.py.)"""

from __future__ import annotations

import base64
import json
import time

import websockets
from cent import BatchRequest, PublishRequest, RefreshRequest

from harness import RawClient, T, api_post


async def test_batch_through_cent(node, raw, cent_api):
    c = await raw(node, user="alice")
    await c.subscribe("b")
    api = cent_api(node)
    result = await api.batch(
        BatchRequest(
            requests=[
                PublishRequest(channel="b", data={"n": 1}),
                PublishRequest(channel="b", data={"n": 2}),
            ]
        )
    )
    assert len(result.replies) == 2, result
    assert [(await c.next_pub("b"))["data"]["n"] for _ in range(2)] == [1, 2], "in order"
    # One bad command is its own reply and stops nothing; raw bodies show the shape.
    r = await api_post(
        node,
        "batch",
        {"commands": [None, {"nope": {}}, {"publish": {"channel": "nope:x", "data": 1}}, {"publish": {"channel": "b", "data": 3}}], "parallel": True},
    )
    assert r.status == 200, r.text
    codes = [x.get("error", {}).get("code") for x in r.json()["replies"]]
    assert codes == [107, 104, 102, None], r.text
    assert (await c.next_pub("b"))["data"] == 3
    r = await api_post(node, "batch", {"commands": [{}] * 1001})
    assert r.status == 400, r.text
    r = await api_post(node, "batch", {"commands": "not a list"})
    assert r.status == 400, r.text


async def test_refresh_through_cent(node, raw, cent_api):
    c = await raw(node, token=node.token("alice", exp_in=60))
    api = cent_api(node)
    await api.refresh(RefreshRequest(user="alice", expire_at=int(time.time()) + 3600))
    push = await c.next_push(lambda p: "refresh" in p)
    assert push["refresh"]["expires"] is True and 3500 < push["refresh"]["ttl"] <= 3600, push
    await api.refresh(RefreshRequest(user="alice", expire_at=0))
    push = await c.next_push(lambda p: "refresh" in p)
    assert not push["refresh"].get("expires"), push
    await api.refresh(RefreshRequest(user="alice", session="no-such-session", expired=True))
    await api.refresh(RefreshRequest(user="alice", expired=True))
    await c.expect_disconnect(3005)


async def test_b64data_must_be_base64_json(node, raw, cent_api):
    c = await raw(node, user="alice")
    await c.subscribe("b64")
    r = await api_post(node, "publish", {"channel": "b64", "b64data": base64.b64encode(b'{"k":1}').decode()})
    assert r.status == 200 and "result" in r.json(), r.text
    assert (await c.next_pub("b64"))["data"] == {"k": 1}
    for bad in ["%%%", base64.b64encode(b"\xff\x00raw").decode()]:
        r = await api_post(node, "publish", {"channel": "b64", "b64data": bad})
        assert r.json() == {"error": {"code": 107, "message": "bad request"}}, r.text
    await c.subscribe("still-open")


async def test_user_connection_limit_closes_3504(node_factory, raw):
    node = node_factory(HERALD_USER_CONNECTION_LIMIT=2)
    await raw(node, user="alice")
    await raw(node, user="alice")
    await raw(node, user="bob")  # other users are not counted
    third = await raw(node, connect=False)
    await third.send_json({"id": 1, "connect": {"token": node.token("alice")}})
    await third.expect_disconnect(3504)


async def test_connection_rate_limit_answers_503(node_factory):
    node = node_factory(HERALD_CONNECTION_RATE_LIMIT=3)
    statuses = []
    for _ in range(6):
        try:
            ws = await websockets.connect(node.ws_url, open_timeout=T)
            statuses.append(101)
            await ws.close()
        except websockets.InvalidStatus as e:
            statuses.append(e.response.status_code)
    # A burst of 3 passes; the rest within the same second are refused.
    assert statuses[:3] == [101, 101, 101] and 503 in statuses[3:], statuses


async def test_previous_hmac_secret_until_valid_until(node_factory, raw):
    old = "the-old-secret-of-32-characters!"
    node = node_factory(HERALD_TOKEN_HMAC_PREVIOUS_SECRET=old)
    c = await raw(node, token=node.token("alice", key=old))
    assert c.client_id
    expired = node_factory(
        HERALD_TOKEN_HMAC_PREVIOUS_SECRET=old,
        HERALD_TOKEN_HMAC_PREVIOUS_SECRET_VALID_UNTIL="2020-01-01T00:00:00Z",
    )
    c = await raw(expired, connect=False)
    await c.send_json({"id": 1, "connect": {"token": expired.token("alice", key=old)}})
    await c.expect_disconnect(3500)
    await raw(expired, user="bob")  # the current secret still works


async def test_claims_meta_is_never_sent_and_subs_data_is(node, raw, cent_api):
    tok = node.token("alice", meta={"secret": "server-only"}, subs={"m": {"data": {"hello": 1}}})
    c = await raw(node, token=tok)
    b = await raw(node, user="bob")
    await b.subscribe("m")
    await cent_api(node).publish(PublishRequest(channel="m", data={}))
    await c.next_pub("m")
    seen = json.dumps(c.messages) + json.dumps(b.messages)
    assert "server-only" not in seen
    assert any(m.get("connect", {}).get("subs", {}).get("m", {}).get("data") == {"hello": 1} for m in c.messages), c.messages
