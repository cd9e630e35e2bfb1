"""centrifuge-python 0.7.0 (with cent as the backend) against the node's delta
compression, tags filters and cache recovery mode (README "Bandwidth")."""

from __future__ import annotations

import asyncio

import pytest

from cent import DisconnectRequest, PublishRequest
from centrifuge import DeltaType
from centrifuge.filter import Filter

from harness import T, EventLog
from sdkutil import ClientEvents, _connected_client, _subscribed

CONFIG = """
[namespaces.dpub]
allowed_delta_types = ["fossil"]
delta_publish = true

[namespaces.cache]
force_recovery_mode = "cache"

[namespaces.tags]
allow_tags_filter = true
"""


@pytest.fixture
def sdk(json_sdk):
    """JSON only: delta compression and tags filters are not in the Protobuf encoding
    yet (README "Differences from Centrifugo")."""
    return json_sdk


def state(n: int) -> dict:
    """A 2 KiB state document in which one field changes."""
    doc = {"seq": n}
    for i in range(40):
        doc[f"row{i:02}"] = {"bid": 1000 + i, "ask": 1010 + i}
    return doc


async def test_sdk_delta_subscription_decodes_every_publication(node_factory, sdk, cent_api):
    node = node_factory(config_toml=CONFIG)
    api = cent_api(node)
    client, _ = await _connected_client(sdk, node)
    sub, slog = await _subscribed(client, "dpub:board", delta=DeltaType.FOSSIL)
    plain, plog = await _subscribed(client, "dpub:board2")
    assert slog.of("subscribed")[0] is not None
    for n in range(1, 31):
        await api.publish(PublishRequest(channel="dpub:board", data=state(n)))
        await api.publish(PublishRequest(channel="dpub:board2", data=state(n)))
    await slog.wait(lambda: len(slog.of("publication")) == 30, what="30 publications")
    await plog.wait(lambda: len(plog.of("publication")) == 30, what="30 plain publications")
    assert [p.pub.data for p in slog.of("publication")] == [state(n) for n in range(1, 31)]
    assert [p.pub.data for p in plog.of("publication")] == [state(n) for n in range(1, 31)]
    assert [p.pub.delta for p in slog.of("publication")] == [False] + [True] * 29


async def test_sdk_tags_filter_and_its_refusal(node_factory, sdk, cent_api):
    node = node_factory(config_toml=CONFIG)
    api = cent_api(node)
    client, _ = await _connected_client(sdk, node)
    sub, slog = await _subscribed(
        client, "tags:ticks", tags_filter=Filter.all(Filter.eq("ticker", "AAPL"), Filter.gt("price", "100"))
    )
    for i, (ticker, price) in enumerate([("AAPL", "99"), ("AAPL", "101"), ("MSFT", "300"), ("AAPL", "100.01")]):
        await api.publish(
            PublishRequest(channel="tags:ticks", data={"i": i}, tags={"ticker": ticker, "price": price})
        )
    await slog.wait(lambda: len(slog.of("publication")) == 2, what="the 2 matching publications")
    await asyncio.sleep(0.2)
    assert [p.pub.data["i"] for p in slog.of("publication")] == [1, 3]

    log = EventLog()
    from sdkutil import SubEvents

    refused = client.new_subscription("news", events=SubEvents(log), tags_filter=Filter.eq("a", "b"))
    await refused.subscribe()
    await log.wait(lambda: log.of("unsubscribed"), what="refused: namespace without allow_tags_filter")
    assert log.of("unsubscribed")[0].code == 107, log.events


async def test_sdk_cache_recovery_gets_only_the_latest_publication(node_factory, sdk, cent_api):
    node = node_factory(config_toml=CONFIG)
    api = cent_api(node)
    dropped = asyncio.Event()
    release = asyncio.Event()
    log = EventLog()

    class Events(ClientEvents):
        async def on_connecting(self, ctx):
            await super().on_connecting(ctx)
            if ctx.code != 0:
                dropped.set()
                await asyncio.wait_for(release.wait(), 3 * T)

    client = sdk(node, events=Events(log), token=node.token("alice"), min_reconnect_delay=0.05)
    await client.connect()
    await client.ready(T)
    sub, slog = await _subscribed(client, "cache:state", recoverable=True)
    await api.publish(PublishRequest(channel="cache:state", data=state(1)))
    await slog.wait(lambda: len(slog.of("publication")) == 1, what="the first")
    await api.disconnect(DisconnectRequest(user="alice"))
    await asyncio.wait_for(dropped.wait(), T)
    for n in range(2, 7):
        await api.publish(PublishRequest(channel="cache:state", data=state(n)))
    release.set()
    await slog.wait(lambda: len(slog.of("subscribed")) == 2, what="resubscribe", timeout=3 * T)
    again = slog.of("subscribed")[1]
    assert again.recovered is True and again.was_recovering is True, again
    await slog.wait(lambda: len(slog.of("publication")) == 2, what="the latest")
    await api.publish(PublishRequest(channel="cache:state", data=state(7)))
    await slog.wait(lambda: len(slog.of("publication")) == 3, what="live again")
    await asyncio.sleep(0.2)
    assert [p.pub.data["seq"] for p in slog.of("publication")] == [1, 6, 7]
