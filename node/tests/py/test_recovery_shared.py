"""Recoveries of one channel share their JetStream reads (node/src/broker/nats/recent.rs):
many clients recovering together get one read between them and each gets exactly what
it missed; a position older than what the shared range holds is read from JetStream; a
position JetStream dropped is still `recovered: false`; publications that arrive while
clients recover reach each of them once, in order. Real nats-server, two nodes."""

from __future__ import annotations

import asyncio

from cent import HistoryRequest, PublishRequest

from harness import T
from test_observability import scrape, value

READS = "herald_node_recovery_reads_total"
LOOKUPS = "herald_node_recovery_lookups_total"


async def _reads(node) -> tuple[float, float]:
    """(shared, jetstream) recoveries counted by the node."""
    s = await scrape(node)
    return value(s, READS, source="shared"), value(s, READS, source="jetstream")


async def _lookups(node) -> dict[tuple[str, str], float]:
    """JetStream lookups of recoveries by (lookup, answer)."""
    s = await scrape(node)
    return {
        (k, a): value(s, LOOKUPS, lookup=k, answer=a)
        for k in ("top", "position")
        for a in ("asked", "shared")
    }


def _delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before[k] for k in after}


async def _publish(api, channel: str, n: int, start: int = 0) -> list[int]:
    """Publishes n numbered publications; returns their offsets."""
    out = []
    for i in range(n):
        r = await api.publish(PublishRequest(channel=channel, data={"n": start + i}))
        out.append(r.offset)
    return out


async def _recovering(raw, node, channel, epoch, offset, count, user="r"):
    """`count` clients on `node`, subscribed at once with recovery from `offset`."""
    clients = [await raw(node, user=f"{user}{i}") for i in range(count)]
    replies = await asyncio.gather(
        *(c.subscribe(channel, recover=True, epoch=epoch, offset=offset) for c in clients)
    )
    return clients, replies


async def test_concurrent_recoveries_share_one_read_and_older_ones_fall_back(
    nats, cluster, raw, cent_api
):
    n0, n1 = cluster(nats.url, n=2)
    first = await (await raw(n0)).subscribe("feed")
    epoch = first["epoch"]
    # n1 listens to the channel throughout (its range is not dropped in between).
    keeper = await raw(n1, user="keeper")
    await keeper.subscribe("feed")
    api = cent_api(n0)
    early = await _publish(api, "feed", 5)
    missed = await _publish(api, "feed", 30, start=5)
    before = await _reads(n1)
    looked = await _lookups(n1)

    _, replies = await _recovering(raw, n1, "feed", epoch, early[-1], 40)
    for r in replies:
        assert r.get("recovered") is True, r
        assert [p["offset"] for p in r["publications"]] == missed
        assert [p["data"]["n"] for p in r["publications"]] == list(range(5, 35))
    shared, js = await _reads(n1)
    assert (shared - before[0], js - before[1]) == (39, 1), "one read for 40 recoveries"
    # Their top and position lookups were shared too (src/broker/nats/rounds.rs): one
    # of each per recovery, most answered by another recovery's request.
    d = _delta(await _lookups(n1), looked)
    for kind in ("top", "position"):
        assert d[(kind, "asked")] + d[(kind, "shared")] == 40, d
        assert d[(kind, "shared")] > d[(kind, "asked")], d
    # One after the herd asks for itself: an answer from before it arrived may be stale.
    looked = await _lookups(n1)
    c = await raw(n1, user="after-herd")
    r = await c.subscribe("feed", recover=True, epoch=epoch, offset=early[-1])
    assert [p["offset"] for p in r["publications"]] == missed
    d = _delta(await _lookups(n1), looked)
    assert d == {("top", "asked"): 1, ("top", "shared"): 0,
                 ("position", "asked"): 1, ("position", "shared"): 0}, d

    # Older than the shared range's start: the rest is read from JetStream.
    c = await raw(n1, user="old")
    r = await c.subscribe("feed", recover=True, epoch=epoch, offset=early[1])
    assert r.get("recovered") is True, r
    assert [p["offset"] for p in r["publications"]] == early[2:] + missed
    assert (await _reads(n1))[1] - js == 1
    # And now the range covers it: the next one like it reads nothing.
    shared_now, js_now = await _reads(n1)
    c = await raw(n1, user="old2")
    r = await c.subscribe("feed", recover=True, epoch=epoch, offset=early[1])
    assert [p["offset"] for p in r["publications"]] == early[2:] + missed
    assert await _reads(n1) == (shared_now + 1, js_now)
    shared_now += 1
    # A client at the newest position needs nothing at all.
    c = await raw(n1, user="current")
    r = await c.subscribe("feed", recover=True, epoch=epoch, offset=missed[-1])
    assert r.get("recovered") is True and not r.get("publications"), r
    assert await _reads(n1) == (shared_now + 1, js_now)

    # Live publications extend the range: recovering them reads nothing either.
    live = await _publish(api, "feed", 3, start=35)
    await keeper.wait_until(
        lambda: len(keeper.pubs_taken_or_pending("feed")) >= 38, T, "live publications"
    )
    c = await raw(n1, user="after-live")
    r = await c.subscribe("feed", recover=True, epoch=epoch, offset=missed[-1])
    assert [p["offset"] for p in r["publications"]] == live
    assert await _reads(n1) == (shared_now + 2, js_now)


async def test_a_position_dropped_from_the_stream_is_not_recovered_from_the_range(
    nats, cluster, raw, cent_api
):
    n0, n1 = cluster(nats.url, n=2, HERALD_HISTORY_SIZE=10)
    first = await (await raw(n0)).subscribe("short")
    epoch = first["epoch"]
    keeper = await raw(n1, user="keeper")
    await keeper.subscribe("short")
    api = cent_api(n0)
    offsets = await _publish(api, "short", 8)
    _, replies = await _recovering(raw, n1, "short", epoch, offsets[0], 5)
    assert all(r.get("recovered") is True for r in replies), replies
    # Twelve more: JetStream keeps the newest 10 (+1); the range is trimmed alike.
    offsets += await _publish(api, "short", 12, start=8)
    await keeper.wait_until(
        lambda: len(keeper.pubs_taken_or_pending("short")) >= 20, T, "live publications"
    )
    c = await raw(n1, user="late")
    r = await c.subscribe("short", recover=True, epoch=epoch, offset=offsets[2])
    assert r.get("recovered", False) is False, r
    assert not r.get("publications"), "never a partial set"
    # The herd's own position, stored when the herd asked and dropped since: asked
    # again, not answered from the herd's lookup.
    c = await raw(n1, user="late-herd")
    r = await c.subscribe("short", recover=True, epoch=epoch, offset=offsets[0])
    assert r.get("recovered", False) is False, r
    assert not r.get("publications"), "never a partial set"
    # A position still stored recovers exactly the tail.
    hist = await cent_api(n1).history(HistoryRequest(channel="short", limit=-1))
    kept = [p.offset for p in hist.publications]
    c = await raw(n1, user="recent")
    r = await c.subscribe("short", recover=True, epoch=epoch, offset=kept[1])
    assert r.get("recovered") is True, r
    assert [p["offset"] for p in r["publications"]] == kept[2:]


async def test_publications_during_recoveries_reach_each_client_once_in_order(
    nats, cluster, raw, cent_api
):
    n0, n1 = cluster(nats.url, n=2)
    first = await (await raw(n0)).subscribe("busy")
    epoch = first["epoch"]
    api = cent_api(n0)
    before = await _publish(api, "busy", 10)
    published: list[int] = list(before)

    async def keep_publishing():
        for i in range(60):
            published.append((await _publish(api, "busy", 1, start=10 + i))[0])
            await asyncio.sleep(0.005)

    publisher = asyncio.create_task(keep_publishing())
    clients: list = []
    replies: list = []
    # Waves of recovering clients while the publisher runs: no listener on n1 at
    # first, then a range being read, extended live and read again.
    for wave in range(4):
        cs, rs = await _recovering(raw, n1, "busy", epoch, before[0], 10, user=f"w{wave}-")
        clients += cs
        replies += rs
        await asyncio.sleep(0.05)
    await publisher

    want = [o for o in published if o > before[0]]
    for c, r in zip(clients, replies):
        assert r.get("recovered") is True, r
        got = [p["offset"] for p in r.get("publications", [])]

        def complete(c=c, got=got):
            live = [p["offset"] for p in c.pubs_taken_or_pending("busy")]
            return len(got) + len(live) >= len(want)

        await c.wait_until(complete, T, "every publication")
        await asyncio.sleep(0)
        seen = got + [p["offset"] for p in c.pubs_taken_or_pending("busy")]
        assert seen == want, f"{len(seen)} seen, {len(want)} published"
