"""The differential test's machinery: the same scripted session against two servers.

- `Peer`: one server under test (Herald or Centrifugo) with what a script needs: its
  WebSocket and API URLs, HMAC secret, API key, and the client protocol encoding
  (`json` today; the encoding is a parameter so a protobuf run can join later). With
  `jwks` set, its tokens are RS256 signed with the key the test's JWKS endpoint
  publishes (`jwksutil`), so the same scripts check the JWKS path.
- `Transcript`: what a script saw, step by step: replies, pushes, close codes, HTTP
  statuses and bodies. A script records; it never asserts on values.
- `normalise`: replaces what must differ between two servers (client ids, epochs,
  node names and ids, versions, uptimes...) by placeholders numbered in order of first
  appearance, so the same client or epoch must show up at the same places on both.
- `compare`: field-by-field differences between two normalised transcripts, each as
  (step, JSON path, herald value, centrifugo value).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import aiohttp
import jwt
import websockets

from harness import T, RawClient
from jwksutil import RSA_KEY, RSA_KEY_2

# How long to wait for pushes a step expects, and to see that no more come.
PUSH_WAIT = min(T, 5.0)
QUIET = 0.3

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class Peer:
    """A server under test."""

    name: str
    ws_url: str
    api_url: str
    secret: str
    api_key: str
    encoding: str = "json"
    # Tokens signed RS256 with kid `rsa-1` of the test's JWKS instead of HS256.
    jwks: bool = False

    def token(self, sub: str = "", exp_in: Optional[float] = 3600, key: Optional[str] = None, **claims) -> str:
        """A token for `sub`; with `key`, signed by another key than the server trusts
        (JWKS: another RSA key under the same kid)."""
        payload: dict[str, Any] = {"sub": sub}
        if exp_in is not None:
            payload["exp"] = int(time.time() + exp_in)
        payload.update(claims)
        if self.jwks:
            signer = RSA_KEY_2 if key else RSA_KEY
            return jwt.encode(payload, signer, algorithm="RS256", headers={"kid": "rsa-1"})
        return jwt.encode(payload, key or self.secret, algorithm="HS256")

    def sub_token(self, sub: str, channel: str, exp_in: Optional[float] = 3600, **claims) -> str:
        return self.token(sub, exp_in, channel=channel, **claims)

    async def open(self, t: "Transcript", label: str) -> "Session":
        if self.encoding != "json":
            raise NotImplementedError(f"encoding {self.encoding}")
        raw = await RawClient.open(self.ws_url)
        s = Session(raw, t, label)
        t.sessions.append(s)
        return s

    async def api(
        self, t: "Transcript", step: str, method: str, body: Any, key: Optional[str] = "default", reduce=None
    ) -> Any:
        """POSTs to the server API and records status and body (`reduce(body)` when
        given, for answers only partly comparable)."""
        headers = {"Content-Type": "application/json"}
        if key == "default":
            key = self.api_key
        if key is not None:
            headers["X-API-Key"] = key
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        async with aiohttp.ClientSession() as s:
            async with s.post(
                f"{self.api_url}/{method}", data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=T)
            ) as r:
                text = await r.text()
                try:
                    parsed: Any = json.loads(text)
                except ValueError:
                    parsed = {"<text>": text.strip()}
                t.add(step, {"status": r.status, "body": reduce(parsed) if reduce else parsed})
                return parsed


class Session:
    """A raw client whose every reply, push and close goes into the transcript."""

    def __init__(self, raw: RawClient, t: "Transcript", label: str):
        self.raw = raw
        self.t = t
        self.label = label
        self.taken = 0  # pushes already recorded

    async def send(self, step: str, method: str, params: Optional[dict] = None) -> dict:
        """Sends a command and records the whole reply (or how the connection ended)."""
        cid = self.raw.next_id()
        try:
            await self.raw.send_json({"id": cid, method: params if params is not None else {}})
        except websockets.ConnectionClosed:
            self.t.add(step, {"closed": await self.closed()})
            return {}
        return await self._reply(step, cid)

    async def _reply(self, step: str, cid: int) -> dict:
        try:
            await self.raw.wait_until(lambda: cid in self.raw.replies or self.raw.closed.done(), PUSH_WAIT)
        except AssertionError:
            self.t.add(step, {"timeout": True})
            return {}
        if cid in self.raw.replies:
            reply = dict(self.raw.replies[cid])
            reply.pop("id", None)
            self.t.add(step, reply)
            if "connect" in reply:
                self.t.seen_client(reply["connect"].get("client"))
            return reply
        self.t.add(step, {"closed": await self.closed()})
        return {}

    async def send_raw(self, step: str, data) -> None:
        """Sends bytes or text as they are, then records the next reply or the close
        (or that neither came)."""
        before = len(self.raw.replies)
        try:
            await self.raw.send_raw(data)
        except websockets.ConnectionClosed:
            self.t.add(step, {"closed": await self.closed()})
            return
        try:
            await self.raw.wait_until(lambda: len(self.raw.replies) > before or self.raw.closed.done(), PUSH_WAIT)
        except AssertionError:
            self.t.add(step, {"timeout": True})
            return
        if self.raw.closed.done():
            self.t.add(step, {"closed": await self.closed()})
        else:
            self.t.add(step, {"replies": list(self.raw.replies.values())[before:]})

    async def pushes(self, step: str, n: int) -> None:
        """Waits for `n` more pushes (or the close), gives stragglers a moment, and
        records every push since the last call."""
        want = self.taken + n
        try:
            await self.raw.wait_until(lambda: len(self.raw.all_pushes) >= want or self.raw.closed.done(), PUSH_WAIT)
        except AssertionError:
            pass
        await asyncio.sleep(QUIET)
        got = self.raw.all_pushes[self.taken :]
        self.taken = len(self.raw.all_pushes)
        self.t.add(step, {"pushes": [p for p in got]})

    async def closed(self, timeout: float = PUSH_WAIT) -> dict:
        try:
            c = await asyncio.wait_for(asyncio.shield(self.raw.closed), timeout)
        except TimeoutError:
            return {"open": True}
        return {"code": c.code, "reason": c.reason}

    async def record_close(self, step: str, timeout: float = PUSH_WAIT) -> None:
        """Records how the connection ended (or that it stayed open for `timeout`),
        with the pushes that came before."""
        c = await self.closed(timeout)
        got = self.raw.all_pushes[self.taken :]
        self.taken = len(self.raw.all_pushes)
        # The `disconnect` push before a close frame is recorded apart (Herald sends
        # one, see README's differences), so that other pushes stay comparable.
        rest = [p for p in got if "disconnect" not in p]
        disconnect = [p["disconnect"] for p in got if "disconnect" in p]
        self.t.add(step, {"closed": c, "pushes": rest, "disconnect_push": disconnect or None})

    async def close(self) -> None:
        await self.raw.close()


@dataclass
class Transcript:
    """What one script saw on one peer, in order."""

    peer: str
    steps: list[tuple[str, Any]] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    clients: list[str] = field(default_factory=list)

    def add(self, step: str, value: Any) -> None:
        self.steps.append((step, value))

    def seen_client(self, client: Optional[str]) -> None:
        if client and client not in self.clients:
            self.clients.append(client)

    async def close(self) -> None:
        for s in self.sessions:
            await s.close()


# Keys whose values are the server's own and always differ: replaced by a placeholder.
OPAQUE_KEYS = {"version", "node"}
# Keys whose values are numbered placeholders: the same value must recur at the same places.
NUMBERED_KEYS = {"client": "client", "epoch": "epoch"}


class Normaliser:
    def __init__(self, clients: list[str]):
        self.tables: dict[str, dict[str, str]] = {"client": {}, "epoch": {}}
        for c in clients:
            self.number("client", c)

    def number(self, kind: str, value: str) -> str:
        table = self.tables[kind]
        if value not in table:
            table[value] = f"<{kind}#{len(table) + 1}>"
        return table[value]

    def value(self, v: Any, key: Optional[str] = None) -> Any:
        if isinstance(v, dict):
            out = {}
            # Sorted: one server's map order is not the other's, and placeholders are
            # numbered in order of appearance.
            for k, x in sorted(v.items(), key=lambda kv: str(kv[0])):
                if isinstance(k, str) and k in self.tables["client"]:
                    k = self.tables["client"][k]
                elif isinstance(k, str) and UUID_RE.match(k):
                    k = self.number("client", k)
                out[k] = self.value(x, k)
            return out
        if isinstance(v, list):
            return [self.value(x, key) for x in v]
        if key in OPAQUE_KEYS and v not in ("", None, 0):
            return f"<{key}>"
        if key in NUMBERED_KEYS and isinstance(v, str) and v:
            return self.number(NUMBERED_KEYS[key], v)
        if key == "ttl" and isinstance(v, int) and v > 0:
            # Seconds left: equal up to the second the two runs took.
            return f"<ttl~{round(v, -1)}>"
        return v


def normalise(t: Transcript) -> list[tuple[str, Any]]:
    n = Normaliser(t.clients)
    return [(step, n.value(v)) for step, v in t.steps]


def compare(a: list[tuple[str, Any]], b: list[tuple[str, Any]]) -> list[tuple[str, str, Any, Any]]:
    """Differences between two normalised transcripts: (step, path, a, b)."""
    out: list[tuple[str, str, Any, Any]] = []
    for i in range(max(len(a), len(b))):
        sa, va = a[i] if i < len(a) else ("<missing>", None)
        sb, vb = b[i] if i < len(b) else ("<missing>", None)
        if sa != sb:
            out.append((f"{sa}|{sb}", "", "<step order>", "<step order>"))
            continue
        _diff(sa, "", va, vb, out)
    return out


def _diff(step: str, path: str, a: Any, b: Any, out: list) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            _diff(step, f"{path}.{k}", a.get(k, "<absent>"), b.get(k, "<absent>"), out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(step, f"{path}[{i}]", x, y, out)
    elif a != b:
        out.append((step, path, a, b))


def b64(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    return base64.b64encode(raw).decode()
