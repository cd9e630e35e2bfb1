"""Recording event handlers for the official centrifuge-python SDK, and helpers that
connect a client or subscribe and wait until the SDK says it is done."""

from __future__ import annotations

from centrifuge import ClientEventHandler, SubscriptionEventHandler

from harness import T, EventLog


class ClientEvents(ClientEventHandler):
    """Records every client-level callback."""

    def __init__(self, log: EventLog):
        self.log = log

    async def on_connecting(self, ctx):
        await self.log.add("connecting", ctx)

    async def on_connected(self, ctx):
        await self.log.add("connected", ctx)

    async def on_disconnected(self, ctx):
        await self.log.add("disconnected", ctx)

    async def on_error(self, ctx):
        await self.log.add("error", ctx)

    async def on_subscribed(self, ctx):
        await self.log.add("server_subscribed", ctx)

    async def on_subscribing(self, ctx):
        await self.log.add("server_subscribing", ctx)

    async def on_unsubscribed(self, ctx):
        await self.log.add("server_unsubscribed", ctx)

    async def on_publication(self, ctx):
        await self.log.add("server_publication", ctx)

    async def on_join(self, ctx):
        await self.log.add("server_join", ctx)

    async def on_leave(self, ctx):
        await self.log.add("server_leave", ctx)


class SubEvents(SubscriptionEventHandler):
    """Records every subscription callback."""

    def __init__(self, log: EventLog):
        self.log = log

    async def on_subscribing(self, ctx):
        await self.log.add("subscribing", ctx)

    async def on_subscribed(self, ctx):
        await self.log.add("subscribed", ctx)

    async def on_unsubscribed(self, ctx):
        await self.log.add("unsubscribed", ctx)

    async def on_publication(self, ctx):
        await self.log.add("publication", ctx)

    async def on_join(self, ctx):
        await self.log.add("join", ctx)

    async def on_leave(self, ctx):
        await self.log.add("leave", ctx)

    async def on_error(self, ctx):
        await self.log.add("sub_error", ctx)


async def _connected_client(sdk, node, user="alice", **kwargs):
    log = EventLog()
    kwargs.setdefault("token", node.token(user, info=kwargs.pop("info", None)))
    client = sdk(node, events=ClientEvents(log), **kwargs)
    await client.connect()
    await client.ready(T)
    return client, log


async def _subscribed(client, channel, **kwargs):
    log = EventLog()
    sub = client.new_subscription(channel, events=SubEvents(log), **kwargs)
    await sub.subscribe()
    await sub.ready(T)
    return sub, log
