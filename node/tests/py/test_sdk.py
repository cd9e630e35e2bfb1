"""The official SDKs, unchanged: centrifuge-python as the client, cent as the backend.
If these pass, real applications built on those SDKs work against a herald node.

Every test runs twice, with the SDK's JSON and Protobuf encodings (the `sdk` fixture,
see conftest.SdkFactory): the same cases, the same assertions on the same values."""

from __future__ import annotations

import asyncio
import time

from cent import (
    Disconnect,
    DisconnectRequest,
    PublishRequest,
    SubscribeRequest,
    UnsubscribeRequest,
)
from centrifuge import ClientState, SubscriptionState

from harness import T, EventLog
from sdkutil import ClientEvents, SubEvents, _connected_client, _subscribed


async def test_sdk_connects_subscribes_and_gets_a_cent_publication_presence_history(
    node_factory, sdk, cent_api
):
    node = node_factory(HERALD_PRESENCE=True, HERALD_ALLOW_PUBLISH=True)
    client, clog = await _connected_client(sdk, node, info={"name": "Alice"})
    connected = clog.of("connected")[0]
    assert connected.client and connected.client == client.client_id
    sub, slog = await _subscribed(client, "news")
    api = cent_api(node)

    res = await api.publish(PublishRequest(channel="news", data={"headline": "hello"}))
    assert res.offset > 0 and res.epoch, res
    await slog.wait(lambda: slog.of("publication"), what="the publication")
    pub = slog.of("publication")[0].pub
    assert sdk.data(pub.data) == {"headline": "hello"} and pub.offset == res.offset, pub

    presence = await sub.presence()
    me = presence.clients.get(client.client_id)
    assert me is not None, presence
    assert me.user == "alice" and sdk.data(me.conn_info) == {"name": "Alice"}, me
    stats = await sub.presence_stats()
    assert (stats.num_clients, stats.num_users) == (1, 1), stats

    hist = await sub.history(limit=10)
    assert [sdk.data(p.data) for p in hist.publications] == [{"headline": "hello"}], hist
    assert hist.epoch == res.epoch and hist.offset == res.offset, hist

    # A publication from the SDK itself carries the publisher's info.
    await sub.publish(sdk.payload({"from": "client"}))
    await slog.wait(lambda: len(slog.of("publication")) == 2, what="the client's publication")
    own = slog.of("publication")[1].pub
    assert sdk.data(own.data) == {"from": "client"} and own.offset == res.offset + 1, own
    assert own.info and own.info.user == "alice", own
    assert sdk.data(own.info.conn_info) == {"name": "Alice"}, own
    assert not clog.of("error") and not slog.of("sub_error"), (clog.events, slog.events)


async def test_sdk_reconnects_after_api_disconnect_and_recovers_exactly_what_it_missed(
    node, sdk, cent_api
):
    """The client is disconnected through the server API with a reconnect code. Its
    `on_connecting` handler holds the reconnect until the test has published k messages
    (deterministic: the node certainly has no connection for it meanwhile); then the SDK
    reconnects by itself, resubscribes with its (epoch, offset) and must get exactly the
    k missed publications, once, in order, with recovered = true."""
    api = cent_api(node)
    dropped = asyncio.Event()
    release = asyncio.Event()
    log = EventLog()

    class Events(ClientEvents):
        async def on_connecting(self, ctx):
            await super().on_connecting(ctx)
            if ctx.code != 0:  # not the initial connect() call
                dropped.set()
                await asyncio.wait_for(release.wait(), 3 * T)

    client = sdk(node, events=Events(log), token=node.token("alice"), min_reconnect_delay=0.05)
    await client.connect()
    await client.ready(T)
    sub, slog = await _subscribed(client, "feed", recoverable=True)
    first = slog.of("subscribed")[0]
    assert first.recoverable and first.stream_position, f"subscribe must be recoverable: {first}"

    for i in range(2):
        await api.publish(PublishRequest(channel="feed", data={"n": i}))
    await slog.wait(lambda: len(slog.of("publication")) == 2, what="2 live publications")
    old_client_id = client.client_id

    await api.disconnect(DisconnectRequest(user="alice"))
    await asyncio.wait_for(dropped.wait(), T)
    codes = [c.code for c in log.of("connecting") if c.code != 0]
    assert codes == [3011], f"API disconnect should reach the SDK as 3011: {codes}"

    missed = [await api.publish(PublishRequest(channel="feed", data={"n": 2 + i})) for i in range(5)]
    release.set()

    await slog.wait(lambda: len(slog.of("subscribed")) == 2, what="resubscribe", timeout=3 * T)
    again = slog.of("subscribed")[1]
    assert again.recovered is True, f"resubscribe must recover: {again}"
    await slog.wait(lambda: len(slog.of("publication")) == 7, what="the 5 missed publications")
    live = await api.publish(PublishRequest(channel="feed", data={"n": 7}))
    await slog.wait(lambda: len(slog.of("publication")) == 8, what="the next live publication")

    pubs = [p.pub for p in slog.of("publication")]
    assert [sdk.data(p.data)["n"] for p in pubs] == list(range(8)), [p.data for p in pubs]
    offsets = [p.offset for p in pubs]
    assert offsets == list(range(offsets[0], offsets[0] + 8)), offsets
    assert offsets[2:7] == [m.offset for m in missed] and offsets[7] == live.offset
    assert client.state == ClientState.CONNECTED and client.client_id != old_client_id
    assert not log.of("disconnected"), log.of("disconnected")


async def test_sdk_api_disconnect_with_terminal_code_does_not_reconnect(node, sdk, cent_api):
    client, log = await _connected_client(sdk, node)
    await cent_api(node).disconnect(
        DisconnectRequest(user="alice", disconnect=Disconnect(code=4501, reason="banned"))
    )
    await log.wait(lambda: log.of("disconnected"), what="terminal disconnect")
    ctx = log.of("disconnected")[0]
    assert (ctx.code, ctx.reason) == (4501, "banned"), ctx
    assert client.state == ClientState.DISCONNECTED


async def test_sdk_token_refresh_keeps_the_session_past_the_first_expiry(node, sdk, cent_api):
    """First token expires in 3 s; the SDK calls get_token and sends `refresh`. The
    session must still be the same connection after exp + the node's default 5 s grace."""
    tokens = EventLog()

    async def get_token() -> str:
        await tokens.add("get_token", time.time())
        return node.token("alice", exp_in=600)

    first_exp = time.time() + 3
    client, log = await _connected_client(
        sdk, node, token=node.token("alice", exp_in=3), get_token=get_token
    )
    client_id = client.client_id
    sub, slog = await _subscribed(client, "refresh-news")
    await tokens.wait(lambda: tokens.events, timeout=T, what="get_token called for refresh")
    # Nothing to await for "the node did not cut the session": wait out the expiry,
    # the default 5 s grace and a margin, then prove the session is the same one.
    await asyncio.sleep(max(0.0, first_exp + 5 + 2 - time.time()))
    await cent_api(node).publish(PublishRequest(channel="refresh-news", data={"alive": True}))
    await slog.wait(lambda: slog.of("publication"), what="publication after expiry")
    assert client.state == ClientState.CONNECTED and client.client_id == client_id
    assert [c.code for c in log.of("connecting")] == [0], log.of("connecting")
    assert not log.of("disconnected") and not log.of("error"), log.events
    assert len(tokens.events) == 1, f"expected one refresh (new token lives 600 s): {tokens.events}"


async def test_sdk_private_channel_with_subscription_token(node, sdk, cent_api):
    asked: list[str] = []

    async def sub_token(channel: str) -> str:
        asked.append(channel)
        return node.sub_token("alice", channel)

    client, _ = await _connected_client(sdk, node)
    sub, slog = await _subscribed(client, "$private", get_token=sub_token)
    assert asked == ["$private"]
    await cent_api(node).publish(PublishRequest(channel="$private", data={"secret": 42}))
    await slog.wait(lambda: slog.of("publication"), what="private publication")
    assert sdk.data(slog.of("publication")[0].pub.data) == {"secret": 42}


async def test_sdk_forbidden_subscription_is_unsubscribed_with_103(node, sdk):
    client, _ = await _connected_client(sdk, node)
    log = EventLog()
    sub = client.new_subscription("$nope", events=SubEvents(log))
    await sub.subscribe()
    await log.wait(lambda: log.of("unsubscribed"), what="unsubscribed")
    assert log.of("unsubscribed")[0].code == 103
    assert sub.state == SubscriptionState.UNSUBSCRIBED
    assert client.state == ClientState.CONNECTED


async def test_sdk_server_side_subscribe_and_unsubscribe_via_api(node, sdk, cent_api):
    client, log = await _connected_client(sdk, node)
    api = cent_api(node)
    await api.subscribe(SubscribeRequest(user="alice", channel="server-side"))
    await log.wait(lambda: log.of("server_subscribed"), what="server-side subscribe push")
    assert log.of("server_subscribed")[0].channel == "server-side"
    await api.publish(PublishRequest(channel="server-side", data={"srv": 1}))
    await log.wait(lambda: log.of("server_publication"), what="server-side publication")
    ctx = log.of("server_publication")[0]
    assert ctx.channel == "server-side" and sdk.data(ctx.pub.data) == {"srv": 1}
    await api.unsubscribe(UnsubscribeRequest(user="alice", channel="server-side"))
    await log.wait(lambda: log.of("server_unsubscribed"), what="server-side unsubscribe push")
    assert client.state == ClientState.CONNECTED and not log.of("error"), log.events


async def test_sdk_client_side_subscription_unsubscribed_via_api(node, sdk, cent_api):
    client, log = await _connected_client(sdk, node)
    sub, slog = await _subscribed(client, "kicked")
    await cent_api(node).unsubscribe(UnsubscribeRequest(user="alice", channel="kicked"))
    await slog.wait(lambda: slog.of("unsubscribed"), what="unsubscribe push")
    assert slog.of("unsubscribed")[0].code < 2500, "server unsubscribe must not make the SDK resubscribe"
    assert sub.state == SubscriptionState.UNSUBSCRIBED
    assert client.state == ClientState.CONNECTED and not log.of("error"), log.events


async def test_sdk_join_and_leave(node_factory, sdk):
    node = node_factory(HERALD_JOIN_LEAVE=True, HERALD_PRESENCE=True)
    alice, _ = await _connected_client(sdk, node)
    sub, slog = await _subscribed(alice, "lobby", join_leave=True)
    bob, _ = await _connected_client(sdk, node, user="bob", info={"team": "blue"})
    bsub, _ = await _subscribed(bob, "lobby")
    await slog.wait(lambda: [j for j in slog.of("join") if j.info.user == "bob"], what="bob's join")
    join = [j for j in slog.of("join") if j.info.user == "bob"][0]
    assert join.info.client == bob.client_id and sdk.data(join.info.conn_info) == {"team": "blue"}, join
    await bsub.unsubscribe()
    await slog.wait(lambda: [x for x in slog.of("leave") if x.info.user == "bob"], what="bob's leave")


async def test_sdk_history_limit_zero_returns_position_only(node, sdk, cent_api):
    client, _ = await _connected_client(sdk, node)
    sub, slog = await _subscribed(client, "pos")
    res = await cent_api(node).publish(PublishRequest(channel="pos", data={}))
    await slog.wait(lambda: slog.of("publication"))
    hist = await sub.history()  # limit=0: position only, as in Centrifugo
    assert hist.publications == [] and hist.offset == res.offset and hist.epoch == res.epoch, hist
