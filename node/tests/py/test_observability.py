"""Every metric an SRE reads during an incident moves when its event happens, on real
nodes (embedded broker, and real nats-server processes): recoveries by result,
recovered publications, delivery lag, ping round trip, JetStream round trip, messages
re-read from JetStream after NATS lost them, and per-namespace counts labelled by
namespace only."""

from __future__ import annotations

import asyncio
import re
import time

from cent import PublishRequest

from harness import T, http
from natsutil import Proxy

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


async def scrape(node) -> dict[tuple[str, frozenset], float]:
    """The node's /metrics as {(name, labels): value}."""
    r = await http("GET", f"{node.http_url}/metrics")
    assert r.status == 200, r.status
    out = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, name: str, **labels) -> float:
    """Sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
    want = set(labels.items())
    return sum(v for (n, lb), v in samples.items() if n == name and want <= set(lb))


async def eventually(node, check, what: str, timeout: float = T):
    """Scrapes until `check(samples)` is true (bounded); returns the samples."""
    deadline = time.monotonic() + timeout
    while True:
        s = await scrape(node)
        if check(s):
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen in /metrics within {timeout}s")
        await asyncio.sleep(0.1)


async def test_recoveries_are_counted_by_result(node_factory, raw, cent_api):
    node = node_factory(HERALD_HISTORY_SIZE=3)
    api = cent_api(node)
    before = await scrape(node)
    for result in ("recovered", "position_gone", "not_recovered"):
        assert ("herald_node_recoveries_total", frozenset({("result", result)})) in before, (
            f"{result} is shown at 0 from the start"
        )
    first = await raw(node)
    sub = await first.subscribe("rec")
    epoch, offset = sub["epoch"], sub.get("offset", 0)
    for i in range(2):
        await api.publish(PublishRequest(channel="rec", data={"i": i}))

    ok = await raw(node)
    r = await ok.subscribe("rec", recover=True, epoch=epoch, offset=offset)
    assert r.get("recovered") is True and len(r.get("publications", [])) == 2, r
    s = await scrape(node)
    assert value(s, "herald_node_recoveries_total", result="recovered") == 1
    assert value(s, "herald_node_recovered_publications_total") == 2

    # Three more: the history keeps 3, so offset 1 is gone while the epoch is the same.
    for i in range(3):
        await api.publish(PublishRequest(channel="rec", data={"j": i}))
    gone = await raw(node)
    r = await gone.subscribe("rec", recover=True, epoch=epoch, offset=offset + 1)
    assert r.get("recovered") is not True and not r.get("publications"), r
    # Another epoch: the stream the client knew is not this one.
    other = await raw(node)
    r = await other.subscribe("rec", recover=True, epoch="not-this-one", offset=1)
    assert r.get("recovered") is not True, r

    s = await scrape(node)
    assert value(s, "herald_node_recoveries_total", result="position_gone") == 1, s
    assert value(s, "herald_node_recoveries_total", result="not_recovered") == 1, s
    assert value(s, "herald_node_recoveries_total", result="recovered") == 1
    assert value(s, "herald_node_recovered_publications_total") == 2, "failed ones add none"
    # A plain subscribe is no recovery.
    plain = await raw(node)
    await plain.subscribe("rec")
    assert value(await scrape(node), "herald_node_recoveries_total") == 3


async def test_delivery_lag_is_sampled_once_per_fan_out(node, raw, cent_api):
    clients = [await raw(node, user=f"u{i}") for i in range(5)]
    for c in clients:
        await c.subscribe("lag")
    s = await scrape(node)
    assert value(s, "herald_node_delivery_lag_seconds_count") == 0
    for i in range(4):
        await cent_api(node).publish(PublishRequest(channel="lag", data={"i": i}))
        for c in clients:
            await c.next_pub("lag")
    s = await eventually(
        node,
        lambda s: value(s, "herald_node_delivery_lag_seconds_count") >= 4,
        "a lag sample per publication",
    )
    # One sample per fan-out (the last subscriber's write), not one per recipient.
    assert value(s, "herald_node_delivery_lag_seconds_count") == 4, s
    assert value(s, "herald_node_deliveries_total") >= 20
    total = value(s, "herald_node_delivery_lag_seconds_sum")
    assert 0 < total < 4 * T, total
    buckets = [lb for (n, lb) in s if n == "herald_node_delivery_lag_seconds_bucket"]
    assert buckets, "rendered as a histogram (buckets), aggregatable across nodes"


async def test_ping_round_trip_is_measured_on_the_pong(node_factory, raw):
    node = node_factory(HERALD_PING_INTERVAL=1, HERALD_PONG_TIMEOUT=5)
    answering = await raw(node)  # answers every ping with {}
    await eventually(
        node,
        lambda s: value(s, "herald_node_ping_rtt_seconds_count") >= 2,
        "two pongs from the answering client",
        timeout=3 * T,
    )
    s = await scrape(node)
    assert value(s, "herald_node_ping_rtt_seconds_sum") / value(
        s, "herald_node_ping_rtt_seconds_count"
    ) < 1.0
    assert not answering.closed.done()


NAMESPACES = """
[namespaces.chat]
history_size = 10
history_ttl = 60
"""


async def test_namespace_counts_carry_namespace_labels_only(node_factory, raw, cent_api):
    node = node_factory(config_toml=NAMESPACES)
    s = await scrape(node)
    for ns in ("(default)", "chat"):
        assert ("herald_node_namespace_publications_total", frozenset({("namespace", ns)})) in s
    a, b = await raw(node), await raw(node, user="bob")
    for c in (a, b):
        await c.subscribe("chat:room-17")
    await a.subscribe("news-42")
    api = cent_api(node)
    await api.publish(PublishRequest(channel="chat:room-17", data={"x": 1}))
    await api.publish(PublishRequest(channel="chat:room-18", data={"x": 2}))  # nobody there
    await api.publish(PublishRequest(channel="news-42", data={"x": 3}))
    await a.next_pub("chat:room-17")
    await b.next_pub("chat:room-17")
    await a.next_pub("news-42")
    s = await scrape(node)
    assert value(s, "herald_node_namespace_publications_total", namespace="chat") == 2
    assert value(s, "herald_node_namespace_publications_total", namespace="(default)") == 1
    assert value(s, "herald_node_namespace_deliveries_total", namespace="chat") == 2
    assert value(s, "herald_node_namespace_deliveries_total", namespace="(default)") == 1
    # Bounded labels: no series anywhere is labelled with a channel name.
    for (name, labels) in s:
        for _, v in labels:
            assert "room-17" not in v and "news-42" not in v, (name, labels)
    # An unknown namespace is refused and creates no series.
    r = await a.request("subscribe", {"channel": "nosuch:x"})
    assert r.get("error", {}).get("code") == 102, r
    s = await scrape(node)
    assert not any(("namespace", "nosuch") in lb for (_, lb) in s)


async def test_jetstream_round_trip_and_reread_after_nats_lost_messages(
    nats, cluster, node_factory, raw, cent_api
):
    # Node 0 reaches NATS through a proxy that can be cut; node 1 directly.
    proxy = await Proxy(("127.0.0.1", nats.port)).start()
    n1 = cluster(nats.url, n=1, HERALD_NODE_ID="direct")[0]
    # Not `cluster()`: its readiness wait blocks the event loop the proxy runs on.
    n0 = node_factory(
        HERALD_NATS_URL=f"nats://127.0.0.1:{proxy.port}",
        HERALD_NODE_ID="proxied",
        HERALD_NODE_HEARTBEAT="0.5",
        HERALD_NODE_TIMEOUT="2",
        HERALD_TOKEN_HMAC_SECRET=n1.secret,
        HERALD_API_KEY=n1.api_key,
    )
    deadline = time.monotonic() + 3 * T
    while (await http("GET", f"{n0.http_url}/readyz")).status != 200:
        assert time.monotonic() < deadline, "node 0 not ready through the proxy"
        await asyncio.sleep(0.1)
    a = await raw(n0)
    await a.subscribe("gap")
    api = cent_api(n1)
    await api.publish(PublishRequest(channel="gap", data={"i": 0}))
    assert (await a.next_pub("gap"))["data"] == {"i": 0}
    s1 = await scrape(n1)
    assert value(s1, "herald_node_nats_publish_rtt_seconds_count") >= 1, "JetStream ack timed"
    assert value(await scrape(n0), "herald_node_jetstream_reread_total") == 0

    proxy.switch(("127.0.0.1", 1))  # cut: n0 loses NATS, nothing listens on port 1
    async def n0_not_ready():
        return (await http("GET", f"{n0.http_url}/readyz")).status == 503

    deadline = time.monotonic() + 3 * T
    while not await n0_not_ready():
        assert time.monotonic() < deadline, "node 0 did not notice NATS going away"
        await asyncio.sleep(0.1)
    for i in (1, 2):
        await api.publish(PublishRequest(channel="gap", data={"i": i}))
    proxy.switch(("127.0.0.1", nats.port))

    # Node 0 reads what it missed back from JetStream: the client sees 1 and 2 in order.
    assert (await a.next_pub("gap"))["data"] == {"i": 1}
    assert (await a.next_pub("gap"))["data"] == {"i": 2}
    s0 = await eventually(
        n0,
        lambda s: value(s, "herald_node_jetstream_reread_total") >= 2,
        "the re-read publications counted",
        timeout=3 * T,
    )
    assert value(s0, "herald_node_jetstream_reread_total") == 2, s0
    assert value(s0, "herald_node_jetstream_skipped_total", reason="unreadable") == 0
    assert not a.closed.done()
