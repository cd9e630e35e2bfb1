"""A small OpenTelemetry receiver for the trace tests: OTLP/HTTP with protobuf bodies
(`POST /v1/traces`), decoded with the OTLP protobuf definitions of the pinned
`opentelemetry-proto` package, as a Collector's `otlphttp` receiver would. It keeps
every span with its resource's `service.name` and `service.instance.id`, and refuses
what a Collector refuses (another path 404, another content type 415, an undecodable
body 400)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from harness import T, serve_app


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root span
    name: str
    service: str
    instance: str
    attributes: dict = field(default_factory=dict)


def _value(v) -> object:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class OtlpReceiver:
    def __init__(self):
        self.spans: list[Span] = []
        self.requests = 0
        self.rejected = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> "OtlpReceiver":
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner, self.port = await serve_app(app, access_log=True)
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _traces(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.content_type != "application/x-protobuf":
            self.rejected += 1
            return web.Response(status=415, text="expected application/x-protobuf")
        body = await request.read()
        msg = trace_service_pb2.ExportTraceServiceRequest()
        try:
            msg.ParseFromString(body)
        except Exception as e:  # noqa: BLE001 - any decode failure is the sender's fault
            self.rejected += 1
            return web.Response(status=400, text=f"undecodable: {e}")
        for rs in msg.resource_spans:
            res = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        Span(
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            name=s.name,
                            service=str(res.get("service.name", "")),
                            instance=str(res.get("service.instance.id", "")),
                            attributes={a.key: _value(a.value) for a in s.attributes},
                        )
                    )
        out = trace_service_pb2.ExportTraceServiceResponse()
        return web.Response(body=out.SerializeToString(), content_type="application/x-protobuf")

    async def wait_for(self, pred, what: str, timeout: float = 2 * T) -> list[Span]:
        """Waits until `pred(spans)` holds; returns the spans."""
        deadline = time.monotonic() + timeout
        while not pred(self.spans):
            if time.monotonic() > deadline:
                shown = "\n  ".join(f"{s.service}/{s.instance} {s.name} trace={s.trace_id[:8]} "
                                    f"id={s.span_id[:8]} parent={s.parent_id[:8]}" for s in self.spans)
                raise AssertionError(f"{what}: not received within {timeout}s; spans:\n  {shown}")
            await asyncio.sleep(0.1)
        return self.spans
