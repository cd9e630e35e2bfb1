"""OpenTelemetry traces: a server API publish is one trace, from the HTTP request on the
node that took it, through the broker (the JetStream publish and its ack), to the
fan-out on every node that delivers it (the context travels in the NATS headers as W3C
`traceparent`), exported over OTLP/HTTP to a real receiver started here (`otlp.py`)."""

from __future__ import annotations

import asyncio

import pytest
from cent import PublishRequest

from harness import T, api_post, http
from otlp import OtlpReceiver

# Export quickly: the SDK's batch processor reads its delay from the environment.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}


@pytest.fixture
async def otlp():
    r = await OtlpReceiver().start()
    yield r
    await r.stop()


def _by_name(spans, name):
    return [s for s in spans if s.name == name]


async def test_a_publish_is_one_trace_across_two_nodes(nats, cluster, raw, cent_api, otlp):
    n0, n1 = cluster(nats.url, n=2, HERALD_OTEL_ENDPOINT=otlp.endpoint, **FAST_EXPORT)
    a, b = await raw(n0), await raw(n1, user="bob")
    await a.subscribe("traced")
    await b.subscribe("traced")
    await cent_api(n0).publish(PublishRequest(channel="traced", data={"t": 1}))
    await a.next_pub("traced")
    await b.next_pub("traced")

    def complete(spans):
        return len(_by_name(spans, "herald.fanout")) >= 2 and _by_name(spans, "herald.api")

    spans = await otlp.wait_for(complete, "the API span and a fan-out span from each node")
    api = [s for s in _by_name(spans, "herald.api") if s.attributes.get("api.method") == "publish"]
    assert len(api) == 1, api
    api = api[0]
    assert api.parent_id == "", "no traceparent came in: the API request is the root"
    assert (api.service, api.instance) == ("herald-node", "n0")
    trace = [s for s in spans if s.trace_id == api.trace_id]
    by_id = {s.span_id: s for s in trace}

    broker = _by_name(trace, "herald.broker.publish")
    assert len(broker) == 1 and broker[0].parent_id == api.span_id, trace
    js = _by_name(trace, "herald.jetstream.publish")
    assert js and all(s.parent_id == broker[0].span_id for s in js), trace
    assert int(js[-1].attributes.get("seq", 0)) >= 1, js[-1].attributes  # a u64: sent as a string

    fanouts = _by_name(trace, "herald.fanout")
    assert {s.instance for s in fanouts} == {"n0", "n1"}, fanouts
    for f in fanouts:
        # The parent is the JetStream publish on n0: the link crossed NATS.
        assert f.parent_id in by_id and by_id[f.parent_id].name == "herald.jetstream.publish", f
        assert f.attributes.get("channel") == "traced"
    assert otlp.rejected == 0


async def test_a_callers_traceparent_is_the_parent_and_sampling_follows_it(node_factory, raw, otlp):
    # Ratio 0: nothing of its own is recorded, but a caller's sampled trace is (parent-based).
    node = node_factory(HERALD_OTEL_ENDPOINT=otlp.endpoint, HERALD_OTEL_SAMPLE_RATIO=0, **FAST_EXPORT)
    c = await raw(node)
    await c.subscribe("p")
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = await http(
        "POST", f"{node.http_url}/api/publish",
        data=b'{"channel":"p","data":{"x":1}}',
        headers={"X-API-Key": node.api_key, "traceparent": f"00-{trace_id}-{parent}-01"},
    )
    assert r.status == 200, r.text
    await c.next_pub("p")
    # Unsampled and unparented requests leave no spans; a garbage traceparent is ignored.
    for tp in (None, "garbage", f"00-{trace_id}-{parent}-00"):
        headers = {"X-API-Key": node.api_key}
        if tp:
            headers["traceparent"] = tp
        r = await http("POST", f"{node.http_url}/api/publish",
                       data=b'{"channel":"p","data":{"x":2}}', headers=headers)
        assert r.status == 200, (tp, r.text)
        await c.next_pub("p")

    spans = await otlp.wait_for(
        lambda s: _by_name(s, "herald.api") and _by_name(s, "herald.fanout"),
        "the caller's sampled trace",
    )
    await asyncio.sleep(0.5)  # anything else would have come in the same batches
    api = _by_name(otlp.spans, "herald.api")
    assert len(api) == 1, [(s.name, s.trace_id) for s in otlp.spans]
    assert api[0].trace_id == trace_id and api[0].parent_id == parent
    fan = _by_name(spans, "herald.fanout")
    assert len(fan) == 1 and fan[0].parent_id == api[0].span_id and fan[0].trace_id == trace_id
    assert all(s.trace_id == trace_id for s in otlp.spans)


async def test_an_unreachable_collector_costs_nothing_but_the_spans(node_factory, raw, cent_api):
    # Nothing listens there: exports fail, the node serves on.
    node = node_factory(HERALD_OTEL_ENDPOINT="http://127.0.0.1:1", **FAST_EXPORT)
    c = await raw(node)
    await c.subscribe("dark")
    for i in range(20):
        await cent_api(node).publish(PublishRequest(channel="dark", data={"i": i}))
        assert (await c.next_pub("dark"))["data"] == {"i": i}
    await asyncio.sleep(0.5)
    r = await api_post(node, "info", {})
    assert r.status == 200 and node.running()


@pytest.mark.parametrize(
    "setting,value",
    [
        ("HERALD_OTEL_ENDPOINT", "https://collector:4318"),
        ("HERALD_OTEL_ENDPOINT", "collector:4318"),
        ("HERALD_OTEL_SAMPLE_RATIO", "1.5"),
        ("HERALD_OTEL_SAMPLE_RATIO", "some"),
    ],
)
def test_bad_trace_settings_exit_64(node_bin, setting, value):
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update({"HERALD_LISTEN": "127.0.0.1:0", setting: value})
    p = subprocess.run([str(node_bin)], env=env, capture_output=True, text=True, timeout=T)
    assert p.returncode == 64, (p.returncode, p.stderr)
    assert setting in p.stderr, p.stderr
