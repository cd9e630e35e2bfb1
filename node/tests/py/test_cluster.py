"""Several herald-node processes on real nats-server processes behave as one server:
fan-out exactly once and in order, interest-based subscriptions, recovery after a node
is killed, presence without ghosts, the server API from any node, NATS outages and a
3-server NATS cluster losing a member."""

from __future__ import annotations

import asyncio
import json
import time

import centrifuge
import websockets
from cent import (
    BroadcastRequest,
    ChannelsRequest,
    DisconnectRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    SubscribeRequest,
)

from harness import T, EventLog, api_post, http
from natsutil import NatsSubscriber, Proxy, nats_publish
from sdkutil import ClientEvents, SubEvents, _subscribed


async def _subscribers(raw, nodes, channel, per_node=1, **sub_params):
    """`per_node` raw clients subscribed to `channel` on each node."""
    clients = []
    for i, n in enumerate(nodes):
        for j in range(per_node):
            c = await raw(n, user=f"u{i}-{j}")
            await c.subscribe(channel, **sub_params)
            clients.append(c)
    return clients


async def _collect(client, channel, count, timeout=T):
    await client.wait_until(
        lambda: len(client.pubs_taken_or_pending(channel)) >= count,
        timeout,
        f"{count} publications on {channel!r}",
    )
    return client.pubs_taken_or_pending(channel)


async def _eventually(check, timeout=T, what=""):
    """Polls an async check until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")


async def test_every_publisher_reaches_every_node_once_in_order(nats, cluster, raw, cent_api):
    nodes = cluster(nats.url, HERALD_ALLOW_PUBLISH=True)
    subs = await _subscribers(raw, nodes, "room", per_node=2)
    epochs = {c.replies[2]["subscribe"]["epoch"] for c in subs}
    assert len(epochs) == 1, f"one epoch whichever node: {epochs}"

    publisher = await raw(nodes[0], user="pub")
    await publisher.subscribe("room")  # subscribers may publish (HERALD_ALLOW_PUBLISH)
    subs.append(publisher)
    sent = []
    for i in range(10):  # client publishes on node 0
        await publisher.call("publish", {"channel": "room", "data": {"k": "client", "i": i}})
        sent.append({"k": "client", "i": i})
    for i in range(10):  # API publishes on node 1
        await cent_api(nodes[1]).publish(PublishRequest(channel="room", data={"k": "api", "i": i}))
        sent.append({"k": "api", "i": i})
    await cent_api(nodes[2]).broadcast(  # broadcast on node 2
        BroadcastRequest(channels=["room", "other"], data={"k": "broadcast", "i": 0})
    )
    sent.append({"k": "broadcast", "i": 0})
    for i in range(5):  # a backend publishing plain JSON straight to the subject
        await nats_publish(nats.url, "herald.ch.default.room", json.dumps({"k": "nats", "i": i}).encode())
        sent.append({"k": "nats", "i": i})

    seen = []
    for c in subs:
        pubs = await _collect(c, "room", len(sent))
        seen.append([(p["offset"], p["data"]) for p in pubs])
    # Every subscriber on every node: the same publications, with the same offsets, in
    # offset order, each once.
    assert all(s == seen[0] for s in seen), seen
    # Offsets strictly increase per channel; they may skip numbers (the namespace's
    # stream sequence is shared: the broadcast also went to "other").
    offsets = [o for o, _ in seen[0]]
    assert all(a < b for a, b in zip(offsets, offsets[1:])), offsets
    assert [d for _, d in seen[0]] == sent
    await asyncio.sleep(0.5)  # nothing more arrives: no duplicate shows up late
    assert all(len(c.pubs_taken_or_pending("room")) == len(sent) for c in subs)


async def test_a_node_hears_only_channels_it_has_subscribers_for(nats, cluster, raw, cent_api):
    n0, n1 = cluster(nats.url, n=2)
    name0, name1 = "herald-node n0", "herald-node n1"
    live = "herald.live.default.quiet"
    a = await raw(n0, user="a")
    await a.subscribe("quiet")
    for i in range(20):
        await cent_api(n1).publish(PublishRequest(channel="quiet", data={"i": i}))
    await _collect(a, "quiet", 20)

    subs0 = await nats.subscriptions(name0)
    subs1 = await nats.subscriptions(name1)
    assert subs0.get(live, 0) >= 20, subs0
    # Node 1 published (and answered the API) but has no subscriber: no subscription on
    # the channel, not one of its messages delivered to it.
    assert not any("quiet" in s for s in subs1), subs1

    # Interest follows the subscribers: node 1 starts and stops listening with them.
    b = await raw(n1, user="b")
    await b.subscribe("quiet")
    assert live in await nats.subscriptions(name1)
    await b.call("unsubscribe", {"channel": "quiet"})
    await _eventually(
        lambda: _no_sub(nats, name1, "quiet"), what="node 1 to unsubscribe after its last subscriber left"
    )


async def _no_sub(nats, name, fragment):
    return not any(fragment in s for s in await nats.subscriptions(name))


async def test_sdk_recovers_after_its_node_is_killed(nats, cluster, cent_api):
    """The official SDK, through a load balancer, on node 0; node 0 is SIGKILLed while
    `cent` keeps publishing on node 1; the SDK reconnects to node 1 and gets exactly what
    it missed, with recovered=true."""
    n0, n1 = cluster(nats.url, n=2)
    proxy = await Proxy((n0.host, n0.port)).start()
    log = EventLog()
    client = centrifuge.Client(
        proxy.ws_url,
        token=n0.token("alice"),
        events=ClientEvents(log),
        timeout=T,
        min_reconnect_delay=0.1,
        max_reconnect_delay=0.5,
    )
    try:
        await client.connect()
        await client.ready(T)
        assert log.of("connected")[0].data is None or True
        sub, slog = await _subscribed(client, "feed")
        api = cent_api(n1)
        first = [await api.publish(PublishRequest(channel="feed", data={"n": i})) for i in range(3)]
        await slog.wait(lambda: len(slog.of("publication")) == 3, what="3 live publications")

        n0.kill()
        proxy.switch((n1.host, n1.port))
        missed = [await api.publish(PublishRequest(channel="feed", data={"n": 3 + i})) for i in range(20)]

        await slog.wait(lambda: len(slog.of("subscribed")) == 2, what="resubscribe", timeout=3 * T)
        again = slog.of("subscribed")[1]
        assert again.was_recovering and again.recovered is True, again
        await slog.wait(lambda: len(slog.of("publication")) == 23, what="the 20 missed publications")
        live = await api.publish(PublishRequest(channel="feed", data={"n": 23}))
        await slog.wait(lambda: len(slog.of("publication")) == 24, what="a live publication")

        pubs = [c.pub for c in slog.of("publication")]
        assert [p.data["n"] for p in pubs] == list(range(24)), [p.data for p in pubs]
        assert [p.offset for p in pubs] == [r.offset for r in first + missed] + [live.offset]
    finally:
        await client.disconnect()
        await proxy.close()


async def test_position_older_than_retention_is_not_recovered(nats, cluster, raw, cent_api):
    n0, n1 = cluster(nats.url, n=2, HERALD_HISTORY_SIZE=3)
    a = await raw(n0)
    sub = await a.subscribe("short")
    for i in range(6):
        await cent_api(n1).publish(PublishRequest(channel="short", data={"i": i}))
    b = await raw(n1)
    res = await b.subscribe(
        "short", recover=True, epoch=sub["epoch"], offset=sub.get("offset", 0)
    )
    assert res.get("recovered", False) is False, res
    assert not res.get("publications"), "never a partial set"
    # A recent position recovers exactly the tail.
    hist = await cent_api(n0).history(HistoryRequest(channel="short", limit=-1))
    tail = hist.publications[-2].offset
    c = await raw(n0)
    res = await c.subscribe("short", recover=True, epoch=sub["epoch"], offset=tail)
    assert res.get("recovered") is True, res
    assert [p["data"]["i"] for p in res.get("publications", [])] == [5], res


async def test_presence_join_leave_and_no_ghosts_after_sigkill(nats, cluster, raw, cent_api):
    nodes = cluster(nats.url, HERALD_PRESENCE=True, HERALD_JOIN_LEAVE=True)
    watcher = await raw(nodes[2], user="watcher")
    await watcher.subscribe("lobby", join_leave=True)
    a = await raw(nodes[0], user="alice")
    await a.subscribe("lobby")
    b = await raw(nodes[1], user="bob")
    await b.subscribe("lobby")
    # (The watcher's own join may or may not reach it, depending on whether it is live
    # by then; the others' joins must.)
    joins = [
        (await watcher.next_push(lambda p: "join" in p and p["join"]["info"]["user"] != "watcher",
                                 what="join"))["join"]["info"]["user"]
        for _ in range(2)
    ]
    assert sorted(joins) == ["alice", "bob"], joins

    for n in nodes:  # every node answers for the whole cluster
        pres = await cent_api(n).presence(PresenceRequest(channel="lobby"))
        assert {i.user for i in pres.presence.values()} == {"watcher", "alice", "bob"}, (n.name, pres)
        stats = await cent_api(n).presence_stats(PresenceStatsRequest(channel="lobby"))
        assert (stats.num_clients, stats.num_users) == (3, 3), stats

    await b.call("unsubscribe", {"channel": "lobby"})
    leave = await watcher.next_push(lambda p: "leave" in p, what="bob's leave")
    assert leave["leave"]["info"]["user"] == "bob"

    killed_at = time.monotonic()
    nodes[0].kill()

    async def alice_gone():
        pres = await cent_api(nodes[1]).presence(PresenceRequest(channel="lobby"))
        return {i.user for i in pres.presence.values()} == {"watcher"}

    # HERALD_NODE_TIMEOUT is 2 s here: alice must be gone soon after, never kept as a ghost.
    await _eventually(alice_gone, timeout=2 + T, what="the killed node's member to leave presence")
    assert time.monotonic() - killed_at < 2 + T

    async def dead_node_gone():
        info = await cent_api(nodes[1]).info(InfoRequest())
        return {n.name for n in info.nodes} == {"n1", "n2"}

    await _eventually(dead_node_gone, timeout=2 + T, what="info to stop listing the killed node")


async def test_api_answers_for_the_whole_cluster_from_any_node(nats, cluster, raw, cent_api):
    nodes = cluster(nats.url)
    clients = await _subscribers(raw, nodes, "news")
    extra = await raw(nodes[0], user="solo")
    await extra.subscribe("solo-room")

    async def info_complete():
        info = await cent_api(nodes[2]).info(InfoRequest())
        counts = {n.name: n.num_clients for n in info.nodes}
        return counts if counts == {"n0": 2, "n1": 1, "n2": 1} else None

    await _eventually(info_complete, what="info listing every node with its clients")
    chans = await cent_api(nodes[1]).channels(ChannelsRequest())
    assert {k: v.num_clients for k, v in chans.channels.items()} == {"news": 3, "solo-room": 1}, chans

    # Server-side subscribe and disconnect reach a client on another node.
    await cent_api(nodes[2]).subscribe(SubscribeRequest(user="solo", channel="pushed"))
    push = await extra.next_push(lambda p: "subscribe" in p, what="server-side subscribe")
    assert push["channel"] == "pushed"
    await cent_api(nodes[1]).publish(PublishRequest(channel="pushed", data={"x": 1}))
    assert (await extra.next_pub("pushed"))["data"] == {"x": 1}
    await cent_api(nodes[1]).disconnect(DisconnectRequest(user="u0-0"))
    await clients[0].expect_disconnect(3011)
    assert not clients[1].closed.done() and not clients[2].closed.done()


async def test_nats_outage_is_visible_and_subscriptions_come_back(nats, cluster, raw, cent_api):
    n0, n1 = cluster(nats.url, n=2, HERALD_ALLOW_PUBLISH=True, HERALD_NATS_PUBLISH_TIMEOUT=1)
    a = await raw(n0)
    await a.subscribe("resilient")
    await cent_api(n1).publish(PublishRequest(channel="resilient", data={"i": 0}))
    await _collect(a, "resilient", 1)

    nats.kill()

    async def not_ready():
        r = await http("GET", f"{n0.http_url}/readyz")
        return r if r.status == 503 else None

    r = await _eventually(not_ready, what="/readyz 503 while NATS is down")
    assert "nats" in r.json().get("reason", "").lower(), r.text
    # Publishes fail loudly instead of vanishing.
    reply = await a.request("publish", {"channel": "resilient", "data": {"lost": True}})
    assert "error" in reply, reply
    resp = await api_post(n1, "publish", {"channel": "resilient", "data": {"lost": True}})
    assert resp.status >= 500 or "error" in resp.json(), (resp.status, resp.text)

    nats.start()

    async def ready():
        r = await http("GET", f"{n0.http_url}/readyz")
        return r.status == 200

    await _eventually(ready, timeout=3 * T, what="/readyz 200 once NATS is back")
    await _eventually(
        lambda: _ready_all(n1), timeout=3 * T, what="node 1 ready again"
    )
    # The subscription was restored before readiness: a publication reaches it at once.
    await cent_api(n1).publish(PublishRequest(channel="resilient", data={"i": 1}))
    pubs = await _collect(a, "resilient", 2)
    assert [p["data"] for p in pubs] == [{"i": 0}, {"i": 1}], pubs
    assert not a.closed.done()


async def _ready_all(*nodes):
    for n in nodes:
        if (await http("GET", f"{n.http_url}/readyz")).status != 200:
            return False
    return True


async def test_losing_one_of_three_nats_servers_is_transparent(nats_cluster, cluster, raw, cent_api):
    for s in nats_cluster:
        await s.wait_jetstream(timeout=30)
    urls = ",".join(s.url for s in nats_cluster)
    # Electing new stream and meta leaders can take several seconds: publishes wait.
    nodes = cluster(urls, HERALD_NATS_REPLICAS=3, HERALD_NATS_PUBLISH_TIMEOUT=30)
    subs = await _subscribers(raw, nodes, "ha")
    api = cent_api(nodes[0])
    for i in range(10):
        await api.publish(PublishRequest(channel="ha", data={"i": i}))
    for c in subs:
        await _collect(c, "ha", 10)

    nats_cluster[0].kill()
    # Publications keep flowing (the node retries while JetStream fails over) and
    # nobody's connection notices.
    for i in range(10, 40):
        await cent_api(nodes[i % 3]).publish(PublishRequest(channel="ha", data={"i": i}))
    for c in subs:
        pubs = await _collect(c, "ha", 40, timeout=3 * T)
        assert [p["data"]["i"] for p in pubs] == list(range(40)), pubs
        offsets = [p["offset"] for p in pubs]
        assert all(a < b for a, b in zip(offsets, offsets[1:])), offsets
        assert not c.closed.done()


async def test_members_of_a_draining_node_move_without_leave_join_flapping(nats, cluster, raw):
    n0, n1 = cluster(
        nats.url, n=2, HERALD_PRESENCE=True, HERALD_JOIN_LEAVE=True, HERALD_REJOIN_GRACE=2
    )
    watcher = await raw(n1, user="watcher")
    await watcher.subscribe("room", join_leave=True)
    alice = await raw(n0, user="alice")
    await alice.subscribe("room")
    bob = await raw(n0, user="bob")
    await bob.subscribe("room")
    for _ in range(2):
        await watcher.next_push(lambda p: "join" in p and p["join"]["info"]["user"] != "watcher")

    n0.terminate()  # SIGTERM: the node closes its sessions advising reconnect
    await alice.wait_closed()
    assert n0.wait_exit() == 0
    # Alice reconnects to the other node at once; Bob does not come back.
    alice2 = await raw(n1, user="alice")
    await alice2.subscribe("room")

    bob_left = await watcher.next_push(
        lambda p: "leave" in p, timeout=2 + T, what="bob's leave after the grace"
    )
    assert bob_left["leave"]["info"]["user"] == "bob", bob_left
    await asyncio.sleep(0.5)
    about_alice = [
        p for p in watcher.all_pushes
        if ("join" in p or "leave" in p)
        and (p.get("join") or p.get("leave"))["info"]["user"] == "alice"
    ]
    # One join when she first came, nothing for the move.
    assert len(about_alice) == 1 and "join" in about_alice[0], about_alice


NAMESPACES_TOML = """
[namespaces.chat]
history_size = 0
allow_publish = true

[namespaces.feed]
history_size = 5
history_ttl = 60
"""


async def test_namespaces_map_onto_streams_and_plain_subjects(nats, cluster, raw, cent_api):
    n0, n1 = cluster(nats.url, n=2, config_toml=NAMESPACES_TOML)
    # No history: plain subjects, no offsets, still delivered across nodes.
    a = await raw(n0)
    chat = await a.subscribe("chat:lobby")
    assert not chat.get("epoch") and not chat.get("offset"), chat
    await cent_api(n1).publish(PublishRequest(channel="chat:lobby", data={"hi": 1}))
    pub = await a.next_pub("chat:lobby")
    assert pub["data"] == {"hi": 1} and not pub.get("offset"), pub
    jsz = await nats.monitor("/jsz?streams=true&config=true")
    streams = {
        s["name"]: s["config"]
        for acc in jsz.get("account_details") or []
        for s in acc.get("stream_detail") or []
    }
    assert "HERALD_NS_chat" not in streams, sorted(streams)
    # History 5 / TTL 60 s: the stream's per-subject limit and age (one extra message
    # per channel is room for the position marker).
    feed = streams["HERALD_NS_feed"]
    assert feed["max_msgs_per_subject"] == 6 and feed["max_age"] == 60 * 10**9, feed
    for i in range(8):
        await cent_api(n0).publish(PublishRequest(channel="feed:x", data={"i": i}))
    hist = await cent_api(n1).history(HistoryRequest(channel="feed:x", limit=-1))
    assert [p.data["i"] for p in hist.publications] == [3, 4, 5, 6, 7], hist


async def test_an_envelope_of_an_unknown_version_is_logged_and_skipped(nats, cluster, raw, cent_api):
    n0, n1 = cluster(nats.url, n=2)
    a = await raw(n0)
    await a.subscribe("room")
    # Version byte 7 (a future release) on the control subject and on a channel.
    await nats_publish(nats.url, "herald.control", b"\x07future-control")
    await nats_publish(nats.url, "herald.ch.default.room", b"\x07future-publication")
    await cent_api(n1).publish(PublishRequest(channel="room", data={"after": True}))
    pub = await a.next_pub("room")
    assert pub["data"] == {"after": True}, pub  # the unknown one was skipped, not delivered
    for n in (n0, n1):
        assert "unknown envelope version 7" in n.log_text(), n.log_text()
        assert "panicked" not in n.log_text()
    assert (await http("GET", f"{n0.http_url}/readyz")).status == 200


async def test_nodes_announce_themselves_for_router_discovery(nats, cluster):
    watch = await NatsSubscriber(nats.url, "herald.node.announce").start()
    try:
        (n0,) = cluster(nats.url, n=1)
        a = await watch.wait_for(lambda m: m.get("id") == "n0" and m.get("state") == "ready", what="ready")
        assert a["addr"] == f"127.0.0.1:{n0.port}" and a["ttl"] > 0, a
        assert n0.stop() == 0
        await watch.wait_for(lambda m: m.get("id") == "n0" and m.get("state") == "leaving", what="leaving")
    finally:
        await watch.close()


async def test_a_node_without_nats_refuses_upgrades_until_ready(node_factory):
    from natsutil import free_port

    node = node_factory(HERALD_NATS_URL=f"nats://127.0.0.1:{free_port()}")  # nobody there
    ready = await http("GET", f"{node.http_url}/readyz")
    assert ready.status == 503 and "nats" in ready.json()["reason"].lower(), ready.text
    try:
        await websockets.connect(node.ws_url, open_timeout=T)
        raise AssertionError("a node that is not ready accepted a WebSocket")
    except websockets.InvalidStatus as e:
        assert e.response.status_code == 503 and e.response.headers.get("Retry-After")
