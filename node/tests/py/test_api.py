"""The server API (`POST /api/<method>`, `X-API-Key`) through the official `cent` SDK, plus
raw HTTP for what `cent` cannot send (bad keys, bad bodies)."""

from __future__ import annotations

import asyncio
import re

import cent
import pytest
from cent import (
    BroadcastRequest,
    ChannelsRequest,
    Disconnect,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    StreamPosition,
    SubscribeRequest,
    UnsubscribeRequest,
)

from harness import T, api_post

# -- authentication and bad requests ---------------------------------------------------


async def test_wrong_api_key_is_401_for_cent(node, cent_api):
    api = cent_api(node, api_key="wrong-key")
    with pytest.raises(cent.CentUnauthorizedError):
        await api.publish(PublishRequest(channel="x", data={}))
    # The synchronous client (requests) too.
    sync = cent.Client(node.api_url, "wrong-key", timeout=T)
    try:
        with pytest.raises(cent.CentUnauthorizedError):
            await asyncio.to_thread(sync.info, InfoRequest())
    finally:
        sync.close()


@pytest.mark.parametrize("key", [None, "", "wrong"])
async def test_missing_or_wrong_api_key_is_401(node, key):
    r = await api_post(node, "info", {}, key=key)
    assert r.status == 401, (r.status, r.text)


async def test_api_key_is_checked_before_the_body(node):
    r = await api_post(node, "publish", "not json", key="wrong")
    assert r.status == 401, (r.status, r.text)


async def test_invalid_json_body_is_400_with_a_json_reason(node):
    r = await api_post(node, "publish", '{"channel": "x", "data": ')
    assert r.status == 400, (r.status, r.text)
    body = r.json()
    message = body.get("error", {}).get("message", "")
    assert isinstance(body["error"].get("code"), int), body
    # Names the problem: the parser's complaint and where, not just "bad request".
    assert re.search(r"json|line \d+|column \d+", message, re.I), body


async def test_missing_required_field_is_400_naming_it(node):
    r = await api_post(node, "publish", {"data": {"x": 1}})
    assert r.status == 400, (r.status, r.text)
    r.json()  # a JSON body
    assert "channel" in r.text, f"the reason should name the missing field: {r.text}"
    r2 = await api_post(node, "disconnect", {})
    assert r2.status == 400 and "user" in r2.text, (r2.status, r2.text)


async def test_valid_key_with_valid_body_is_200_result(node):
    r = await api_post(node, "publish", {"channel": "raw-http", "data": {"x": 1}})
    assert r.status == 200, (r.status, r.text)
    body = r.json()
    assert set(body) == {"result"}, body
    assert body["result"].get("offset") == 1 and body["result"].get("epoch"), body


# -- every method through cent ---------------------------------------------------------


async def test_publish_returns_offset_and_epoch_and_is_delivered(node, raw, cent_api):
    c = await raw(node)
    sub = await c.subscribe("pub")
    api = cent_api(node)
    res = await api.publish(PublishRequest(channel="pub", data={"v": 1}))
    assert res.offset == 1 and res.epoch == sub["epoch"], res
    pub = await c.next_pub("pub")
    assert pub["data"] == {"v": 1} and int(pub["offset"]) == res.offset


async def test_api_error_reply_shape_unknown_namespace(node, cent_api):
    with pytest.raises(cent.CentApiResponseError) as e:
        await cent_api(node).publish(PublishRequest(channel="ghost:room", data={}))
    assert e.value.code == 102, e.value


async def test_broadcast_publishes_to_every_channel(node, raw, cent_api):
    c = await raw(node)
    await c.subscribe("bc-1")
    await c.subscribe("bc-2")
    res = await cent_api(node).broadcast(BroadcastRequest(channels=["bc-1", "bc-2"], data={"all": 1}))
    assert len(res.responses) == 2, res
    assert all(r.error is None and r.result.offset == 1 for r in res.responses), res
    assert (await c.next_pub("bc-1"))["data"] == {"all": 1}
    assert (await c.next_pub("bc-2"))["data"] == {"all": 1}


async def test_subscribe_and_unsubscribe_a_user_server_side(node, raw, cent_api):
    c = await raw(node, user="alice")
    other = await raw(node, user="bob")
    api = cent_api(node)
    await api.subscribe(SubscribeRequest(user="alice", channel="srv"))
    push = await c.next_push(lambda p: "subscribe" in p, what="subscribe push")
    assert push.get("channel") == "srv", push
    await api.publish(PublishRequest(channel="srv", data={"n": 1}))
    assert (await c.next_pub("srv"))["data"] == {"n": 1}
    await api.unsubscribe(UnsubscribeRequest(user="alice", channel="srv"))
    push = await c.next_push(lambda p: "unsubscribe" in p, what="unsubscribe push")
    assert push.get("channel") == "srv", push
    unsub = push["unsubscribe"]
    assert isinstance(unsub.get("code"), int) and isinstance(unsub.get("reason"), str), unsub
    # No longer delivered: a publication to srv would arrive before the one to marker.
    await c.subscribe("marker")
    await api.publish(PublishRequest(channel="srv", data={"n": 2}))
    await api.publish(PublishRequest(channel="marker", data={}))
    await c.next_pub("marker")
    assert [p["data"] for p in c.pubs_taken_or_pending("srv")] == [{"n": 1}]
    assert not [p for p in other.all_pushes if "subscribe" in p], "bob was not the target"


async def test_disconnect_user_with_reconnect_code_3011(node, raw, cent_api):
    a = await raw(node, user="alice")
    b = await raw(node, user="bob")
    res = await cent_api(node).disconnect(DisconnectRequest(user="alice"))
    assert res is not None
    await a.expect_disconnect(3011)
    await b.subscribe("bob-still-here")


async def test_disconnect_one_client_of_a_user(node, raw, cent_api):
    a1 = await raw(node, user="alice")
    a2 = await raw(node, user="alice")
    await cent_api(node).disconnect(DisconnectRequest(user="alice", client=a1.client_id))
    await a1.expect_disconnect(3011)
    await a2.subscribe("a2-still-here")


async def test_disconnect_with_custom_code(node, raw, cent_api):
    a = await raw(node, user="alice")
    await cent_api(node).disconnect(
        DisconnectRequest(user="alice", disconnect=Disconnect(code=4502, reason="custom"))
    )
    closed = await a.expect_disconnect(4502)
    assert [p["disconnect"].get("reason") for p in a.all_pushes if "disconnect" in p] == ["custom"]
    assert closed.code == 4502


async def test_presence_and_presence_stats(node_factory, raw, cent_api):
    node = node_factory(HERALD_PRESENCE=True)
    a = await raw(node, token=node.token("alice", info={"a": 1}))
    b1 = await raw(node, user="bob")
    b2 = await raw(node, user="bob")
    for c in (a, b1, b2):
        await c.subscribe("pres")
    api = cent_api(node)
    pres = await api.presence(PresenceRequest(channel="pres"))
    assert set(pres.presence) == {a.client_id, b1.client_id, b2.client_id}, pres
    assert pres.presence[a.client_id].user == "alice"
    assert pres.presence[a.client_id].client == a.client_id
    assert pres.presence[a.client_id].conn_info == {"a": 1}
    stats = await api.presence_stats(PresenceStatsRequest(channel="pres"))
    assert (stats.num_clients, stats.num_users) == (3, 2), stats
    await b2.call("unsubscribe", {"channel": "pres"})
    stats = await api.presence_stats(PresenceStatsRequest(channel="pres"))
    assert (stats.num_clients, stats.num_users) == (2, 2), stats


async def test_presence_when_namespace_has_none_is_108(node, cent_api):
    with pytest.raises(cent.CentApiResponseError) as e:
        await cent_api(node).presence(PresenceRequest(channel="no-presence"))
    assert e.value.code == 108


async def test_history_and_history_remove(node, cent_api):
    api = cent_api(node)
    offsets = [(await api.publish(PublishRequest(channel="hist", data={"i": i}))).offset for i in range(5)]
    assert offsets == [1, 2, 3, 4, 5]
    full = await api.history(HistoryRequest(channel="hist", limit=100))
    assert [p.data["i"] for p in full.publications] == [0, 1, 2, 3, 4], full
    assert [p.offset for p in full.publications] == offsets
    assert full.offset == 5 and full.epoch, full
    # No limit: the position only, as in Centrifugo.
    pos = await api.history(HistoryRequest(channel="hist"))
    assert pos.publications == [] and pos.offset == 5 and pos.epoch == full.epoch, pos
    since = await api.history(
        HistoryRequest(channel="hist", limit=100, since=StreamPosition(offset=3, epoch=full.epoch))
    )
    assert [p.offset for p in since.publications] == [4, 5], since
    rev = await api.history(HistoryRequest(channel="hist", limit=2, reverse=True))
    assert [p.offset for p in rev.publications] == [5, 4], rev
    await api.history_remove(HistoryRemoveRequest(channel="hist"))
    gone = await api.history(HistoryRequest(channel="hist", limit=100))
    assert gone.publications == [], gone


async def test_channels_lists_active_channels_with_client_counts(node, raw, cent_api):
    a = await raw(node, user="alice")
    b = await raw(node, user="bob")
    await a.subscribe("news")
    await b.subscribe("news")
    await a.subscribe("sports")
    api = cent_api(node)
    res = await api.channels(ChannelsRequest())
    assert res.channels["news"].num_clients == 2 and res.channels["sports"].num_clients == 1, res
    filtered = await api.channels(ChannelsRequest(pattern="new*"))
    assert set(filtered.channels) == {"news"}, filtered
    await b.close()
    await a.call("unsubscribe", {"channel": "sports"})
    res = await api.channels(ChannelsRequest())
    assert "sports" not in res.channels, res


async def test_info_describes_the_node(node_factory, raw, cent_api):
    node = node_factory(HERALD_NODE_ID="info-node-7")
    a = await raw(node, user="alice")
    b = await raw(node, user="bob")
    await a.subscribe("i1")
    await b.subscribe("i1")
    await b.subscribe("i2")
    res = await cent_api(node).info(InfoRequest())
    assert len(res.nodes) == 1, res
    n = res.nodes[0]
    assert n.uid and n.name == "info-node-7", n
    assert n.version, n
    assert (n.num_clients, n.num_users, n.num_channels, n.num_subs) == (2, 2, 2, 3), n
    assert n.uptime >= 0
