"""Subscription-token claims Centrifugo reads beyond `sub`/`channel`/`exp`/`info`:
`b64info`, `data`/`b64data`, `expire_at` and `override` (presence, join_leave,
force_push_join_leave, force_recovery), each seen through the official SDK.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

from centrifuge import ClientState

from harness import T, EventLog
from sdkutil import ClientEvents, SubEvents


def b64(value) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


async def connected(sdk, node, user: str):
    client = sdk(node, token=node.token(user), events=ClientEvents(EventLog()))
    await client.connect()
    await client.ready(T)
    return client


async def subscribed(client, channel: str, tok: str, **kwargs):
    log = EventLog()
    sub = client.new_subscription(channel, token=tok, events=SubEvents(log), **kwargs)
    await sub.subscribe()
    await sub.ready(T)
    return sub, log


async def test_b64info_and_data_reach_presence_and_the_subscribed_event(node_factory, json_sdk):
    node = node_factory(HERALD_PRESENCE=True)
    client = await connected(json_sdk, node, "alice")
    tok = node.sub_token(
        "alice", "$room", info={"loses": 1}, b64info=b64({"seat": 9}), b64data=b64({"welcome": True})
    )
    sub, log = await subscribed(client, "$room", tok)
    assert log.of("subscribed")[0].data == {"welcome": True}
    presence = await sub.presence()
    assert [c.chan_info for c in presence.clients.values()] == [{"seat": 9}]

    other = await connected(json_sdk, node, "bob")
    _, log = await subscribed(other, "$room", node.sub_token("bob", "$room", data={"plain": 1}))
    assert log.of("subscribed")[0].data == {"plain": 1}


async def test_bad_b64info_is_refused_and_the_connection_stays(node_factory, json_sdk):
    node = node_factory()
    client = await connected(json_sdk, node, "alice")
    log = EventLog()
    tok = node.sub_token("alice", "$room", b64info="%%%not base64")
    sub = client.new_subscription("$room", token=tok, events=SubEvents(log))
    await sub.subscribe()
    await log.wait(lambda: log.of("unsubscribed"), what="unsubscribed")
    assert log.of("unsubscribed")[0].code == 103
    assert client.state == ClientState.CONNECTED


async def test_expire_at_wins_over_exp(node_factory, json_sdk):
    node = node_factory()
    client = await connected(json_sdk, node, "alice")
    asked = asyncio.Event()

    async def get_token(_ctx):
        asked.set()
        return node.sub_token("alice", "$room")

    # `exp` an hour away, `expire_at` in 2 s: the SDK must refresh within seconds.
    tok = node.sub_token("alice", "$room", expire_at=int(time.time()) + 2)
    await subscribed(client, "$room", tok, get_token=get_token)
    await asyncio.wait_for(asked.wait(), 3 * T)


async def test_override_presence_join_leave_and_recovery(node_factory, json_sdk):
    # Namespace: presence on, join/leave off, history kept, recovery off.
    node = node_factory(HERALD_PRESENCE=True, HERALD_RECOVERY=False, HERALD_HISTORY_SIZE=10)
    watcher = await connected(json_sdk, node, "alice")
    over = {"force_push_join_leave": {"value": True}, "force_recovery": {"value": True}}
    sub_a, log_a = await subscribed(watcher, "$room", node.sub_token("alice", "$room", override=over))
    assert log_a.of("subscribed")[0].recoverable is True

    # Bob is hidden from presence but announces his join.
    bob = await connected(json_sdk, node, "bob")
    hidden = {"presence": {"value": False}, "join_leave": {"value": True}}
    _, log_b = await subscribed(bob, "$room", node.sub_token("bob", "$room", override=hidden))
    assert log_b.of("subscribed")[0].recoverable is False
    await log_a.wait(lambda: log_a.of("join"), what="bob's join")
    assert log_a.of("join")[0].info.user == "bob"
    presence = await sub_a.presence()
    assert sorted(c.user for c in presence.clients.values()) == ["alice"]

    # Carol has no override: namespace defaults, no join published.
    carol = await connected(json_sdk, node, "carol")
    await subscribed(carol, "$room", node.sub_token("carol", "$room"))
    presence = await sub_a.presence()
    assert sorted(c.user for c in presence.clients.values()) == ["alice", "carol"]
    # Dave announces his join after Carol subscribed: once it is here, a join of Carol's
    # would have been too.
    dave = await connected(json_sdk, node, "dave")
    announce = {"join_leave": {"value": True}}
    await subscribed(dave, "$room", node.sub_token("dave", "$room", override=announce))
    await log_a.wait(lambda: len(log_a.of("join")) >= 2, what="dave's join")
    assert [j.info.user for j in log_a.of("join")] == ["bob", "dave"]
