"""A real application backend for the proxy tests: an aiohttp server on 127.0.0.1:0
that answers Centrifugo's proxy requests (`POST /connect`, `/refresh`, `/subscribe`,
`/publish`, `/sub_refresh`, `/rpc`) the way each test tells it to, and records every
request (JSON body and headers) it got.

A test sets `backend.answer[kind]` to one of:
- a dict: answered as JSON with status 200 (a callable `body -> dict` is called first);
- `Slow(seconds, answer)`: waits, then answers;
- `Status(code)`: an empty answer with that HTTP status;
- `Garbage(text)`: that text with status 200 (not the proxy JSON).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from aiohttp import web

from harness import T, serve_app

KINDS = ("connect", "refresh", "subscribe", "publish", "sub_refresh", "rpc")


@dataclass
class Slow:
    seconds: float
    answer: Any


@dataclass
class Status:
    code: int


@dataclass
class Garbage:
    text: str


@dataclass
class Seen:
    """One request as the backend got it."""

    body: dict
    headers: dict[str, str]  # lowercased names


Answer = Union[dict, Callable[[dict], dict], Slow, Status, Garbage]


@dataclass
class Backend:
    answer: dict[str, Answer] = field(default_factory=dict)
    seen: dict[str, list[Seen]] = field(default_factory=lambda: {k: [] for k in KINDS})
    base: str = ""
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> "Backend":
        app = web.Application()
        for kind in KINDS:
            app.router.add_post(f"/{kind}", self._handler(kind))
        self._runner, port = await serve_app(app)
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, kind: str) -> str:
        return f"{self.base}/{kind}"

    def env(self, *kinds: str, **extra) -> dict:
        """HERALD_PROXY_<KIND>_ENDPOINT for each kind, plus `extra`."""
        env = {f"HERALD_PROXY_{k.upper()}_ENDPOINT": self.url(k) for k in kinds}
        env.update(extra)
        return env

    async def wait_for(self, kind: str, n: int = 1, timeout: float = T) -> list[Seen]:
        """Waits until `kind` got at least `n` requests."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.seen[kind]) < n:
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"backend got {len(self.seen[kind])} {kind} requests, wanted {n}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                pass
        return self.seen[kind]

    def _handler(self, kind: str):
        async def handle(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            body = json.loads(raw)
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.seen[kind].append(Seen(body, headers))
            self._arrived.set()
            answer = self.answer.get(kind, {"result": {}})
            if isinstance(answer, Slow):
                await asyncio.sleep(answer.seconds)
                answer = answer.answer
            if isinstance(answer, Status):
                return web.Response(status=answer.code)
            if isinstance(answer, Garbage):
                return web.Response(status=200, text=answer.text, content_type="application/json")
            if callable(answer):
                answer = answer(body)
            return web.json_response(answer)

        return handle
