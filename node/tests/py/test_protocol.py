"""The client protocol (Centrifugo v2, JSON) as a raw WebSocket client sees it: connect
reply, pings, batching, offsets and epochs, recovery, join/leave, `info`, tokens and
namespaces. Exact shapes here; the official SDK's view is in test_sdk.py."""

from __future__ import annotations

import time

import pytest
from cent import PresenceRequest, PublishRequest

from harness import T

# -- connect ---------------------------------------------------------------------------


async def test_connect_reply_carries_client_version_ping_pong_node_and_expiry(node_factory, raw):
    node = node_factory(HERALD_NODE_ID="herald-test-node-1")
    c = await raw(node, connect=False)
    res = await c.connect(node.token("alice", exp_in=600))
    assert isinstance(res.get("client"), str) and res["client"], res
    assert isinstance(res.get("version"), str) and res["version"], res
    assert res.get("ping") == 25, f"default ping interval should be 25 s: {res}"
    assert res.get("pong") is True, res
    assert res.get("node") == "herald-test-node-1", res
    assert res.get("expires") is True, res
    assert 590 <= res.get("ttl", 0) <= 600, f"ttl should be ~600 s: {res}"


async def test_connect_without_exp_claim_has_no_expiry(node, raw):
    c = await raw(node, connect=False)
    res = await c.connect(node.token("alice", exp_in=None))
    assert res.get("client"), res
    assert not res.get("expires", False), res
    assert not res.get("ttl", 0), res


async def test_every_connection_gets_its_own_client_id(node, raw):
    a = await raw(node)
    b = await raw(node)
    assert a.client_id and b.client_id and a.client_id != b.client_id


async def test_ping_interval_setting_is_told_in_connect_reply(node_factory, raw):
    node = node_factory(HERALD_PING_INTERVAL=7)
    c = await raw(node, connect=False)
    res = await c.connect(node.token("alice"))
    assert res.get("ping") == 7, res


# -- pings -----------------------------------------------------------------------------


async def test_server_pings_and_a_client_that_answers_stays_connected(node_factory, raw):
    node = node_factory(HERALD_PING_INTERVAL=1, HERALD_PONG_TIMEOUT=1)
    c = await raw(node, connect=False, auto_pong=True)
    res = await c.connect(node.token("alice"))
    assert res.get("ping") == 1 and res.get("pong") is True, res
    # Four pings answered span more than ping + pong timeout several times over.
    await c.wait_until(lambda: c.pings >= 4 or c.closed.done(), 15, "4 pings")
    assert not c.closed.done(), f"closed although every ping was answered: {c.closed.result()}"
    # And the connection still works.
    await c.subscribe("still-here")


@pytest.mark.parametrize("pong_timeout", [1, 3], ids=["shorter", "longer-than-ping"])
async def test_client_that_never_answers_pings_is_closed_3012(node_factory, raw, pong_timeout):
    """A pong timeout longer than the ping interval still ends a silent client: the
    later pings do not move the first unanswered one's deadline."""
    node = node_factory(HERALD_PING_INTERVAL=1, HERALD_PONG_TIMEOUT=pong_timeout)
    c = await raw(node, connect=False, auto_pong=False)
    await c.connect(node.token("alice"))
    await c.expect_disconnect(3012, timeout=15)
    assert c.pings >= 1, "closed for no pong without ever being pinged"


# -- batching --------------------------------------------------------------------------


async def test_several_commands_in_one_frame_get_several_replies(node, raw):
    c = await raw(node)
    await c.send_json(
        {"id": 101, "subscribe": {"channel": "batch-a"}},
        {"id": 102, "subscribe": {"channel": "batch-b"}},
        {"id": 103, "history": {"channel": "batch-a", "limit": 10}},
    )
    r1, r2, r3 = [await c.reply(i) for i in (101, 102, 103)]
    assert "subscribe" in r1 and "error" not in r1, r1
    assert "subscribe" in r2 and "error" not in r2, r2
    assert "history" in r3 and "error" not in r3, r3


async def test_connect_and_subscribe_in_the_first_frame(node, raw):
    c = await raw(node, connect=False)
    await c.send_json(
        {"id": 1, "connect": {"token": node.token("alice")}},
        {"id": 2, "subscribe": {"channel": "first-frame"}},
    )
    r1, r2 = await c.reply(1), await c.reply(2)
    assert r1.get("connect", {}).get("client"), r1
    assert "subscribe" in r2 and "error" not in r2, r2


async def test_write_interval_gathers_what_is_queued_meanwhile_into_one_frame(
    node_factory, raw, cent_api
):
    # One second between writes to a connection: publications sent one after another
    # within it reach the client in one frame; without the setting each publish (a
    # separate HTTP round trip) is written on its own.
    node = node_factory(HERALD_WRITE_INTERVAL=1)
    c = await raw(node)
    await c.subscribe("gather")
    api = cent_api(node)
    await api.publish(PublishRequest(channel="gather", data={"n": 0}))
    await c.next_pub("gather")
    seen = len(c.frames)
    for i in (1, 2, 3):
        await api.publish(PublishRequest(channel="gather", data={"n": i}))
    pubs = [await c.next_pub("gather") for _ in range(3)]
    assert [p["data"] for p in pubs] == [{"n": 1}, {"n": 2}, {"n": 3}], pubs
    frames = c.frames[seen:]
    assert len(frames) == 1, f"expected the three publications in one frame: {frames}"
    assert len(frames[0].splitlines()) == 3, frames


# -- publications, offsets, epochs -----------------------------------------------------


async def test_publications_carry_increasing_offsets_matching_publish_results(node, raw, cent_api):
    c = await raw(node)
    sub = await c.subscribe("news")
    epoch = sub.get("epoch")
    assert isinstance(epoch, str) and epoch, f"subscribe reply must carry an epoch: {sub}"
    start = int(sub.get("offset", 0))
    api = cent_api(node)
    results = [await api.publish(PublishRequest(channel="news", data={"n": i})) for i in range(5)]
    pubs = [await c.next_pub("news") for _ in range(5)]
    offsets = [int(p.get("offset", 0)) for p in pubs]
    assert offsets == list(range(start + 1, start + 6)), offsets
    assert offsets == [r.offset for r in results], (offsets, results)
    assert all(r.epoch == epoch for r in results), (epoch, results)
    assert [p["data"] for p in pubs] == [{"n": i} for i in range(5)]
    # A later subscriber sees the stream's top position and the same epoch.
    d = await raw(node, user="bob")
    sub2 = await d.subscribe("news")
    assert sub2.get("epoch") == epoch and int(sub2.get("offset", 0)) == offsets[-1], sub2


async def test_channels_have_independent_offsets(node, raw, cent_api):
    c = await raw(node)
    await c.subscribe("ofs-a")
    await c.subscribe("ofs-b")
    api = cent_api(node)
    for _ in range(3):
        await api.publish(PublishRequest(channel="ofs-a", data={}))
    await api.publish(PublishRequest(channel="ofs-b", data={}))
    a = [int((await c.next_pub("ofs-a"))["offset"]) for _ in range(3)]
    b = int((await c.next_pub("ofs-b"))["offset"])
    assert a == [1, 2, 3] and b == 1, (a, b)


# -- recovery --------------------------------------------------------------------------


async def _subscribe_and_publish(node, raw, cent_api, channel: str, n: int):
    """A subscriber that saw `n` publications; returns (epoch, last offset)."""
    c = await raw(node, user="watcher")
    sub = await c.subscribe(channel)
    api = cent_api(node)
    for i in range(n):
        await api.publish(PublishRequest(channel=channel, data={"i": i}))
    last = None
    for _ in range(n):
        last = await c.next_pub(channel)
    await c.close()
    return sub["epoch"], int(last["offset"]) if last else int(sub.get("offset", 0))


async def test_recover_returns_exactly_the_missed_publications(node, raw, cent_api):
    epoch, seen = await _subscribe_and_publish(node, raw, cent_api, "rec", 3)
    api = cent_api(node)
    missed = [await api.publish(PublishRequest(channel="rec", data={"missed": i})) for i in range(4)]
    c = await raw(node, user="watcher")
    res = await c.subscribe("rec", recover=True, epoch=epoch, offset=seen)
    assert res.get("recovered") is True, res
    assert res.get("epoch") == epoch, res
    pubs = res.get("publications", [])
    assert [int(p["offset"]) for p in pubs] == [r.offset for r in missed], pubs
    assert [p["data"] for p in pubs] == [{"missed": i} for i in range(4)]
    assert int(res.get("offset", 0)) == missed[-1].offset, res
    # Live delivery continues right after, with no duplicate of what was recovered.
    nxt = await api.publish(PublishRequest(channel="rec", data={"live": True}))
    live = await c.next_pub("rec")
    assert int(live["offset"]) == nxt.offset == missed[-1].offset + 1, live
    assert c.pubs_taken_or_pending("rec") == [live], "a recovered publication was also pushed live"


async def test_recover_with_nothing_missed_is_recovered_and_empty(node, raw, cent_api):
    epoch, seen = await _subscribe_and_publish(node, raw, cent_api, "rec0", 2)
    c = await raw(node, user="watcher")
    res = await c.subscribe("rec0", recover=True, epoch=epoch, offset=seen)
    assert res.get("recovered") is True, res
    assert not res.get("publications"), res


async def test_recover_at_the_edge_of_history(node_factory, raw, cent_api):
    """History keeps 3: after 10 publications offsets 8..10 remain. From offset 7 the
    missed ones (8..10) are all there; from offset 6, offset 7 is gone."""
    node = node_factory(HERALD_HISTORY_SIZE=3)
    epoch, seen = await _subscribe_and_publish(node, raw, cent_api, "edge", 10)
    assert seen == 10
    c = await raw(node, user="watcher")
    ok = await c.subscribe("edge", recover=True, epoch=epoch, offset=7)
    assert ok.get("recovered") is True, ok
    assert [int(p["offset"]) for p in ok.get("publications", [])] == [8, 9, 10], ok
    d = await raw(node, user="watcher2")
    gone = await d.subscribe("edge", recover=True, epoch=epoch, offset=6)
    assert not gone.get("recovered", False), f"offset 7 is gone, recovery must fail: {gone}"
    assert gone.get("epoch") == epoch and int(gone.get("offset", 0)) == 10, gone


async def test_recover_with_a_wrong_epoch_is_not_recovered(node, raw, cent_api):
    epoch, seen = await _subscribe_and_publish(node, raw, cent_api, "epoch", 2)
    c = await raw(node, user="watcher")
    res = await c.subscribe("epoch", recover=True, epoch=epoch + "-not", offset=seen)
    assert not res.get("recovered", False), res
    assert res.get("epoch") == epoch, res


async def test_unrecoverable_position_with_flag_bit_2_is_error_112(node_factory, raw, cent_api):
    node = node_factory(HERALD_HISTORY_SIZE=2)
    epoch, _ = await _subscribe_and_publish(node, raw, cent_api, "strict", 6)
    c = await raw(node, user="watcher")
    reply = await c.request(
        "subscribe", {"channel": "strict", "recover": True, "epoch": epoch, "offset": 1, "flag": 2}
    )
    assert reply.get("error", {}).get("code") == 112, reply
    # An error reply leaves the connection open.
    await c.subscribe("strict-other")


async def test_recovery_off_in_namespace_does_not_recover(node_factory, raw, cent_api):
    node = node_factory(HERALD_RECOVERY=False)
    c = await raw(node, user="watcher")
    sub = await c.subscribe("norec")
    api = cent_api(node)
    await api.publish(PublishRequest(channel="norec", data={}))
    await c.next_pub("norec")
    await api.publish(PublishRequest(channel="norec", data={}))
    d = await raw(node, user="watcher")
    res = await d.subscribe("norec", recover=True, epoch=sub.get("epoch", ""), offset=1)
    assert not res.get("recovered", False), res
    assert not res.get("publications"), res


# -- join / leave ----------------------------------------------------------------------


async def test_join_and_leave_pushes(node_factory, raw):
    node = node_factory(HERALD_JOIN_LEAVE=True, HERALD_PRESENCE=True)
    a = await raw(node, user="alice")
    await a.subscribe("room", join_leave=True)
    b = await raw(node, token=node.token("bob", info={"name": "Bob"}))
    await b.subscribe("room")
    join = await a.next_push(lambda p: "join" in p, what="join push")
    assert join.get("channel") == "room", join
    info = join["join"]["info"]
    assert info.get("user") == "bob" and info.get("client") == b.client_id, info
    assert info.get("conn_info") == {"name": "Bob"}, info
    await b.call("unsubscribe", {"channel": "room"})
    leave = await a.next_push(lambda p: "leave" in p, what="leave push")
    assert leave.get("channel") == "room", leave
    assert leave["leave"]["info"].get("client") == b.client_id, leave
    # Leaving by closing the connection also sends leave.
    c = await raw(node, user="carol")
    await c.subscribe("room")
    j2 = await a.next_push(lambda p: "join" in p)
    assert j2["join"]["info"].get("user") == "carol"
    await c.close()
    l2 = await a.next_push(lambda p: "leave" in p, what="leave after close")
    assert l2["leave"]["info"].get("client") == c.client_id, l2


async def test_no_join_leave_pushes_unless_asked(node_factory, raw, cent_api):
    """A subscriber without join_leave gets no join push; it would arrive before the
    publication sent after the join, since one connection's messages keep their order."""
    node = node_factory(HERALD_JOIN_LEAVE=True)
    a = await raw(node, user="alice")
    await a.subscribe("quiet")
    watcher = await raw(node, user="w")
    await watcher.subscribe("quiet", join_leave=True)
    b = await raw(node, user="bob")
    await b.subscribe("quiet")
    await watcher.next_push(lambda p: "join" in p and p["join"]["info"].get("user") == "bob")
    await cent_api(node).publish(PublishRequest(channel="quiet", data={"marker": 1}))
    await a.next_pub("quiet")
    assert not [p for p in a.all_pushes if "join" in p], a.all_pushes


async def test_join_leave_off_in_namespace_sends_none(node, raw, cent_api):
    a = await raw(node, user="alice")
    await a.subscribe("jl-off", join_leave=True)
    b = await raw(node, user="bob")
    await b.subscribe("jl-off")
    await cent_api(node).publish(PublishRequest(channel="jl-off", data={"marker": 1}))
    await a.next_pub("jl-off")
    assert not [p for p in a.all_pushes if "join" in p], a.all_pushes


# -- info claim ------------------------------------------------------------------------


async def test_info_claim_in_presence_and_in_client_publications(node_factory, raw, cent_api):
    node = node_factory(HERALD_PRESENCE=True, HERALD_ALLOW_PUBLISH=True)
    listener = await raw(node, user="listener")
    await listener.subscribe("chat")
    bob = await raw(node, token=node.token("bob", info={"name": "Bob", "role": "admin"}))
    await bob.subscribe("chat")
    pres = await listener.call("presence", {"channel": "chat"})
    entry = pres.get("presence", {}).get(bob.client_id)
    assert entry, f"bob's client {bob.client_id} not in presence {pres}"
    assert entry.get("user") == "bob" and entry.get("client") == bob.client_id, entry
    assert entry.get("conn_info") == {"name": "Bob", "role": "admin"}, entry
    api_pres = await cent_api(node).presence(PresenceRequest(channel="chat"))
    assert api_pres.presence[bob.client_id].conn_info == {"name": "Bob", "role": "admin"}
    await bob.call("publish", {"channel": "chat", "data": {"text": "hi"}})
    pub = await listener.next_pub("chat")
    assert pub["data"] == {"text": "hi"}
    info = pub.get("info", {})
    assert info.get("user") == "bob" and info.get("client") == bob.client_id, pub
    assert info.get("conn_info") == {"name": "Bob", "role": "admin"}, pub


async def test_server_api_publications_carry_no_client_info(node, raw, cent_api):
    c = await raw(node)
    await c.subscribe("srvpub")
    await cent_api(node).publish(PublishRequest(channel="srvpub", data={"x": 1}))
    pub = await c.next_pub("srvpub")
    assert not pub.get("info"), pub


# -- anonymous -------------------------------------------------------------------------


async def test_anonymous_connect_refused_by_default(node, raw):
    c = await raw(node, connect=False)
    cid = c.next_id()
    await c.send_json({"id": cid, "connect": {}})
    await c.wait_until(lambda: cid in c.replies or c.closed.done(), T, "refusal")
    reply = c.replies.get(cid)
    if reply is not None:
        assert "connect" not in reply and "error" in reply, f"anonymous connect should be refused: {reply}"
        assert reply["error"]["code"] in (101, 103, 109), reply
    else:
        closed = c.closed.result()
        assert closed.code is not None and 3500 <= closed.code < 4000, f"anonymous connect should be refused: {closed}"


async def test_anonymous_connect_allowed_when_enabled(node_factory, raw, cent_api):
    node = node_factory(HERALD_ALLOW_ANONYMOUS=True, HERALD_PRESENCE=True)
    c = await raw(node, connect=False)
    res = await c.call("connect", {})
    assert res.get("client"), res
    await c.subscribe("anon")
    pres = await cent_api(node).presence(PresenceRequest(channel="anon"))
    assert pres.presence[res["client"]].user == "", pres


# -- channels and tokens ---------------------------------------------------------------


async def test_private_channel_with_subscription_token(node, raw, cent_api):
    c = await raw(node, user="alice")
    res = await c.subscribe("$secret", token=node.sub_token("alice", "$secret"))
    assert "epoch" in res, res
    await cent_api(node).publish(PublishRequest(channel="$secret", data={"s": 1}))
    assert (await c.next_pub("$secret"))["data"] == {"s": 1}


@pytest.mark.parametrize("case", ["other_channel", "other_user"])
async def test_a_subscription_token_for_someone_else_closes_3500(node, raw, case):
    # As Centrifugo: a valid token for another channel or user is an invalid token.
    c = await raw(node, user="alice")
    channel = "$other" if case == "other_channel" else "$vault"
    user = "alice" if case == "other_channel" else "mallory"
    await c.send_json({"id": c.next_id(), "subscribe": {"channel": "$vault", "token": node.sub_token(user, channel)}})
    await c.expect_disconnect(3500)


@pytest.mark.parametrize(
    "case",
    ["no_token", "bad_signature"],
)
async def test_private_channel_without_a_valid_subscription_token_is_103(node, raw, case):
    c = await raw(node, user="alice")
    params: dict = {"channel": "$vault"}
    if case == "other_channel":
        params["token"] = node.sub_token("alice", "$other")
    elif case == "other_user":
        params["token"] = node.sub_token("mallory", "$vault")
    elif case == "bad_signature":
        params["token"] = node.sub_token("alice", "$vault", key="not-the-secret-not-the-secret-xx")
    reply = await c.request("subscribe", params)
    if case == "bad_signature" and c.closed.done():
        pytest.fail(f"a bad subscription token closed the connection: {c.closed.result()}")
    assert reply.get("error", {}).get("code") == 103, reply
    await c.subscribe("public-after-error")  # still open


async def test_expired_subscription_token_is_109(node, raw):
    c = await raw(node, user="alice")
    reply = await c.request(
        "subscribe", {"channel": "$late", "token": node.sub_token("alice", "$late", exp_in=-3600)}
    )
    assert reply.get("error", {}).get("code") == 109, reply


async def test_channels_claim_subscribes_server_side_at_connect(node, raw, cent_api):
    c = await raw(node, connect=False)
    connected = await c.connect(node.token("alice", channels=["$listed", "plain"]))
    # Centrifugo's meaning: the claim's channels (private ones too, the token is trusted)
    # are subscribed server-side and answered in the connect reply's `subs`.
    subs = connected.get("subs", {})
    assert set(subs) == {"$listed", "plain"}, connected
    assert subs["plain"].get("recoverable") is True and subs["plain"].get("positioned") is True, subs
    reply = await c.request("subscribe", {"channel": "$listed"})
    assert reply.get("error", {}).get("code") == 105, reply
    await cent_api(node).publish(PublishRequest(channel="$listed", data={"ok": 1}))
    assert (await c.next_pub("$listed"))["data"] == {"ok": 1}
    denied = await c.request("subscribe", {"channel": "$unlisted"})
    assert denied.get("error", {}).get("code") == 103, denied


async def test_channels_claim_recovers_from_the_connect_subs_position(node, raw, cent_api):
    first = await raw(node, connect=False)
    epoch = (await first.connect(node.token("alice", channels=["claimed"])))["subs"]["claimed"]["epoch"]
    await first.close()
    for n in range(3):
        await cent_api(node).publish(PublishRequest(channel="claimed", data={"n": n}))
    c = await raw(node, connect=False)
    since = {"recover": True, "offset": 1, "epoch": epoch}
    connected = await c.connect(node.token("alice", channels=["claimed"]), subs={"claimed": since})
    sub = connected["subs"]["claimed"]
    assert sub.get("recovered") is True and sub.get("was_recovering") is True, sub
    assert [p["data"]["n"] for p in sub.get("publications", [])] == [1, 2], sub


async def test_an_unknown_namespace_in_the_channels_claim_refuses_the_connect(node, raw):
    c = await raw(node, connect=False)
    reply = await c.request("connect", {"token": node.token("alice", channels=["nope:x"])})
    assert reply.get("error", {}).get("code") == 102, reply


async def test_refresh_command_extends_the_session(node, raw):
    c = await raw(node, connect=False)
    first = await c.connect(node.token("alice", exp_in=30))
    assert first.get("expires") is True
    res = await c.call("refresh", {"token": node.token("alice", exp_in=900)})
    assert res.get("expires") is True, res
    assert 890 <= res.get("ttl", 0) <= 900, res


async def test_expired_session_without_refresh_is_closed_3005(node_factory, raw):
    node = node_factory(HERALD_EXPIRY_GRACE=1)
    c = await raw(node, connect=False)
    res = await c.connect(node.token("alice", exp_in=2))
    assert res.get("expires") is True
    # Expiry (2 s) + grace (1 s, or the 5 s default if the setting were ignored) + margin.
    await c.expect_disconnect(3005, timeout=15)


# -- namespaces ------------------------------------------------------------------------

NAMESPACES_TOML = """
[namespaces.chat]
presence = true
join_leave = true
allow_publish = true
history_size = 0

[namespaces.feed]
history_size = 5
history_ttl = 60
presence = false
"""


async def test_namespaces_from_config_file(node_factory, raw, cent_api):
    node = node_factory(config_toml=NAMESPACES_TOML)
    c = await raw(node, user="alice")
    # chat: presence and publish on, no history (so no offsets).
    chat = await c.subscribe("chat:lobby")
    assert not chat.get("epoch") and not chat.get("offset"), f"chat keeps no history: {chat}"
    pres = await c.call("presence", {"channel": "chat:lobby"})
    assert c.client_id in pres.get("presence", {}), pres
    await c.call("publish", {"channel": "chat:lobby", "data": {"m": 1}})
    pub = await c.next_pub("chat:lobby")
    assert pub["data"] == {"m": 1} and not pub.get("offset"), pub
    # feed: history, no presence.
    feed = await c.subscribe("feed:news")
    assert feed.get("epoch"), feed
    no_pres = await c.request("presence", {"channel": "feed:news"})
    assert no_pres.get("error", {}).get("code") == 108, no_pres
    denied = await c.request("publish", {"channel": "feed:news", "data": {}})
    assert denied.get("error", {}).get("code") == 103, denied
    # Default namespace: presence off by default.
    default = await c.request("presence", {"channel": "plain"})
    assert default.get("error", {}).get("code") == 108, default
    # Unknown namespace.
    unknown = await c.request("subscribe", {"channel": "nope:x"})
    assert unknown.get("error", {}).get("code") == 102, unknown
    # feed keeps 5.
    api = cent_api(node)
    for i in range(8):
        await api.publish(PublishRequest(channel="feed:news", data={"i": i}))
    hist = await c.call("history", {"channel": "feed:news", "limit": 100})
    assert [p["data"]["i"] for p in hist.get("publications", [])] == [3, 4, 5, 6, 7], hist


async def test_client_history_command(node, raw, cent_api):
    c = await raw(node)
    await c.subscribe("h")
    api = cent_api(node)
    for i in range(4):
        await api.publish(PublishRequest(channel="h", data={"i": i}))
    for _ in range(4):
        await c.next_pub("h")
    res = await c.call("history", {"channel": "h", "limit": 10})
    assert [int(p["offset"]) for p in res.get("publications", [])] == [1, 2, 3, 4], res
    assert res.get("epoch") and int(res.get("offset", 0)) == 4, res
    since = await c.call(
        "history", {"channel": "h", "limit": 10, "since": {"offset": 2, "epoch": res["epoch"]}}
    )
    assert [int(p["offset"]) for p in since.get("publications", [])] == [3, 4], since
    rev = await c.call("history", {"channel": "h", "limit": 2, "reverse": True})
    assert [int(p["offset"]) for p in rev.get("publications", [])] == [4, 3], rev


async def test_client_presence_stats(node_factory, raw):
    node = node_factory(HERALD_PRESENCE=True)
    a1 = await raw(node, user="alice")
    a2 = await raw(node, user="alice")
    b = await raw(node, user="bob")
    for c in (a1, a2, b):
        await c.subscribe("stats")
    res = await a1.call("presence_stats", {"channel": "stats"})
    assert res.get("num_clients") == 3 and res.get("num_users") == 2, res
