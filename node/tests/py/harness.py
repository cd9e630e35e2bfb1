"""Test harness for the herald-node protocol suite.

- `Node`: one real `herald-node` process on 127.0.0.1:<ephemeral port>, its log, tokens.
- `RawClient`: a WebSocket client speaking the Centrifugo v2 JSON protocol by hand, for
  exact replies, pushes and close codes (and for input no SDK would send).
- `EventLog`: records SDK callbacks so a test can await "the event happened".
- small HTTP helpers for probes and the server API.

Every wait here takes a timeout; nothing sleeps to let things settle.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import aiohttp
import jwt
from aiohttp import web
import websockets
from websockets.asyncio.client import connect as ws_connect

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "herald-node"

# Default timeout (seconds) for any single wait on the node.
T = float(os.environ.get("HERALD_TEST_TIMEOUT", "10"))
# How long the node may take to print its `listening on` line.
START_TIMEOUT = 20.0
# How long the node may take to exit after SIGTERM (it drains its clients first).
STOP_TIMEOUT = 30.0

LISTENING_RE = re.compile(r"listening on (\S+)")


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class NodeStartError(Exception):
    pass


class Node:
    """A running herald-node process."""

    def __init__(self, binary: Path, env: dict[str, str], log_path: Path, name: str):
        self.name = name
        self.binary = binary
        self.env = env
        self.secret = env.get("HERALD_TOKEN_HMAC_SECRET", "")  # "" without HMAC (JWKS only)
        self.api_key = env["HERALD_API_KEY"]
        self.log_path = log_path
        self._log_lock = threading.Lock()
        self._log = open(log_path, "w", encoding="utf-8", errors="replace")
        self._listening = threading.Event()
        self.addr: Optional[str] = None
        self.killed = False  # set by kill(): teardown expects no clean exit
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        full_env.setdefault("RUST_LOG", os.environ.get("HERALD_TEST_RUST_LOG", "info"))
        full_env.update(env)
        self.proc = subprocess.Popen(
            [str(binary)],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, "out", True), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, "err", False), daemon=True),
        ]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None:
                self._join_drains()
                raise NodeStartError(
                    f"herald-node exited with {self.proc.returncode} before listening:\n"
                    + self.log_text()
                )
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                self._join_drains()
                raise NodeStartError(
                    f"herald-node printed no 'listening on' line within {START_TIMEOUT}s:\n"
                    + self.log_text()
                )
        host, _, port = self.addr.rpartition(":")
        host = host.strip("[]")
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        self.host = host
        self.port = int(port)

    # -- process and log -------------------------------------------------------------

    def _drain(self, stream, tag: str, watch_listen: bool) -> None:
        for line in stream:
            with self._log_lock:
                self._log.write(f"[{tag}] {line}")
                self._log.flush()
            if watch_listen and not self._listening.is_set():
                m = LISTENING_RE.search(line)
                if m:
                    self.addr = m.group(1)
                    self._listening.set()

    def _join_drains(self) -> None:
        for t in self._threads:
            t.join(timeout=5)

    def log_text(self) -> str:
        with self._log_lock:
            self._log.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            return f"(cannot read {self.log_path}: {e})"

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL (a crash): no drain, no goodbye. Returns once the process is gone."""
        self.killed = True
        if self.running():
            self.proc.kill()
        rc = self.proc.wait(timeout=STOP_TIMEOUT)
        self._join_drains()
        return rc

    def terminate(self) -> None:
        """Sends SIGTERM (what an orchestrator does)."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Waits for the process to exit and returns its exit code; on timeout kills it
        and fails."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self._join_drains()
            raise AssertionError(f"herald-node did not exit within {timeout}s of SIGTERM")
        self._join_drains()
        return rc

    def stop(self) -> int:
        """SIGTERM, then the exit code (the node must exit 0)."""
        self.terminate()
        return self.wait_exit()

    # -- addresses -------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/connection/websocket"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """The base URL the `cent` SDK takes: it posts to `<api_url>/<method>`."""
        return f"{self.http_url}/api"

    # -- tokens ----------------------------------------------------------------------

    def token(
        self,
        sub: str,
        exp_in: Optional[float] = 3600,
        info: Any = None,
        channels: Optional[list[str]] = None,
        key: Optional[str] = None,
        algorithm: str = "HS256",
        **claims: Any,
    ) -> str:
        """A connection token signed with the node's HMAC secret (or `key`)."""
        payload: dict[str, Any] = {"sub": sub}
        if exp_in is not None:
            payload["exp"] = int(time.time() + exp_in)
        if info is not None:
            payload["info"] = info
        if channels is not None:
            payload["channels"] = channels
        payload.update(claims)
        return jwt.encode(payload, key if key is not None else self.secret, algorithm=algorithm)

    def sub_token(
        self,
        sub: str,
        channel: str,
        exp_in: Optional[float] = 3600,
        info: Any = None,
        key: Optional[str] = None,
        **claims: Any,
    ) -> str:
        """A subscription token for `channel`."""
        payload: dict[str, Any] = {"sub": sub, "channel": channel}
        if exp_in is not None:
            payload["exp"] = int(time.time() + exp_in)
        if info is not None:
            payload["info"] = info
        payload.update(claims)
        return jwt.encode(payload, key if key is not None else self.secret, algorithm="HS256")


def start_node(binary: Path, workdir: Path, name: str, config_toml: Optional[str], env: dict) -> Node:
    node_env = {
        "HERALD_LISTEN": "127.0.0.1:0",
        "HERALD_TOKEN_HMAC_SECRET": secrets.token_hex(16),  # 32 characters
        "HERALD_API_KEY": secrets.token_urlsafe(24),
        # Tests stop nodes all the time: drain at once unless a test asks otherwise.
        "HERALD_DRAIN_GRACE": "0",
        "HERALD_DRAIN_WINDOW": "0",
        "HERALD_DRAIN_TIMEOUT": "10",
    }
    if config_toml is not None:
        cfg = workdir / f"{name}.toml"
        cfg.write_text(config_toml, encoding="utf-8")
        node_env["HERALD_CONFIG"] = str(cfg)
    for k, v in env.items():
        if v is None:
            node_env.pop(k, None)
        else:
            node_env[k] = _env_value(v)
    return Node(binary, node_env, workdir / f"{name}.log", name)


# -- raw protocol client -------------------------------------------------------------


class ReplyError(Exception):
    def __init__(self, reply: dict):
        self.reply = reply
        err = reply.get("error", {})
        self.code = err.get("code")
        self.message = err.get("message")
        super().__init__(f"error reply {self.code}: {self.message} ({reply})")


@dataclass
class Closed:
    """How a connection ended, as seen by the client."""

    code: Optional[int]  # close code from the server's close frame; None: no close frame
    reason: str


class RawClient:
    """Speaks the Centrifugo v2 JSON client protocol over a raw WebSocket.

    A background task reads every frame, splits it into `\\n`-separated JSON objects and
    sorts them: replies by id, pushes into a queue, `{}` pings counted (and answered when
    `auto_pong`). `closed` resolves with the close code when the connection ends.
    """

    def __init__(self, conn, auto_pong: bool = True):
        self.conn = conn
        self.auto_pong = auto_pong
        self.frames: list[Any] = []  # every data frame as received
        self.messages: list[dict] = []  # every decoded message, in order
        self.pushes: deque[dict] = deque()  # pushes not yet taken by next_push
        self.all_pushes: list[dict] = []
        self.replies: dict[int, dict] = {}
        self.pings = 0
        self.decode_errors: list[str] = []
        self.closed: asyncio.Future[Closed] = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Condition()
        self._next_id = 0
        self._reading = asyncio.Event()
        self._reading.set()
        self.client_id: Optional[str] = None
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, auto_pong: bool = True, **kwargs) -> "RawClient":
        kwargs.setdefault("max_size", None)
        kwargs.setdefault("ping_interval", None)  # the protocol has its own pings
        kwargs.setdefault("open_timeout", T)
        kwargs.setdefault("close_timeout", 2)
        conn = await ws_connect(url, **kwargs)
        return cls(conn, auto_pong=auto_pong)

    # -- reading ---------------------------------------------------------------------

    async def _read(self) -> None:
        closed: Closed
        try:
            while True:
                await self._reading.wait()
                frame = await self.conn.recv()
                self.frames.append(frame)
                text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
                for line in text.split("\n"):
                    if not line.strip():
                        continue
                    try:
                        msg = json.loads(line)
                    except ValueError as e:
                        self.decode_errors.append(f"{e}: {line[:200]!r}")
                        continue
                    await self._dispatch(msg)
                async with self._changed:
                    self._changed.notify_all()
        except websockets.ConnectionClosed as e:
            if e.rcvd is not None:
                closed = Closed(e.rcvd.code, e.rcvd.reason)
            else:
                closed = Closed(None, "")
        except Exception as e:  # noqa: BLE001 - recorded for the test to see
            closed = Closed(None, f"reader failed: {e!r}")
        if not self.closed.done():
            self.closed.set_result(closed)
        async with self._changed:
            self._changed.notify_all()

    async def _dispatch(self, msg: dict) -> None:
        self.messages.append(msg)
        if not isinstance(msg, dict):
            self.decode_errors.append(f"not an object: {msg!r}")
            return
        if msg.get("id"):
            self.replies[msg["id"]] = msg
        elif "push" in msg:
            self.pushes.append(msg["push"])
            self.all_pushes.append(msg["push"])
        elif msg == {}:
            self.pings += 1
            if self.auto_pong:
                try:
                    await self.conn.send("{}")
                except websockets.ConnectionClosed:
                    pass
        else:
            self.decode_errors.append(f"neither reply, push nor ping: {msg!r}")

    async def wait_until(self, pred: Callable[[], bool], timeout: float = T, what: str = "") -> None:
        """Waits until `pred()` holds (checked after every frame and on close)."""
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(pred)
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or pred}; "
                f"closed={self.closed.result() if self.closed.done() else None}; "
                f"last messages={self.messages[-5:]}"
            ) from None

    def pause_reading(self) -> None:
        """Stops reading frames (the node sees a slow consumer once buffers fill)."""
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    # -- writing ---------------------------------------------------------------------

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def send_json(self, *objs: dict) -> None:
        """Sends the objects in one text frame, `\\n`-separated."""
        await self.conn.send("\n".join(json.dumps(o) for o in objs))

    async def send_raw(self, data, text: Optional[bool] = None) -> None:
        await self.conn.send(data, text=text)

    async def request(self, method: str, params: Optional[dict] = None, timeout: float = T) -> dict:
        """Sends one command and returns the whole reply (result or error)."""
        cid = self.next_id()
        await self.send_json({"id": cid, method: params if params is not None else {}})
        return await self.reply(cid, timeout, what=f"reply to {method} (id {cid})")

    async def reply(self, cid: int, timeout: float = T, what: str = "") -> dict:
        await self.wait_until(
            lambda: cid in self.replies or self.closed.done(),
            timeout,
            what or f"reply id {cid}",
        )
        if cid not in self.replies:
            raise AssertionError(
                f"connection closed ({self.closed.result()}) before the reply to id {cid}; "
                f"pushes={self.all_pushes}"
            )
        return self.replies[cid]

    async def call(self, method: str, params: Optional[dict] = None, timeout: float = T) -> dict:
        """Sends one command and returns its result; raises ReplyError on an error reply."""
        reply = await self.request(method, params, timeout)
        if "error" in reply:
            raise ReplyError(reply)
        assert method in reply, f"reply to {method} carries no {method!r} result: {reply}"
        return reply[method]

    async def connect(self, token: Optional[str] = None, **params) -> dict:
        if token is not None:
            params["token"] = token
        result = await self.call("connect", params)
        self.client_id = result.get("client")
        return result

    async def subscribe(self, channel: str, **params) -> dict:
        return await self.call("subscribe", {"channel": channel, **params})

    async def next_push(
        self,
        pred: Callable[[dict], bool] = lambda p: True,
        timeout: float = T,
        what: str = "",
    ) -> dict:
        """Takes the first not-yet-taken push matching `pred`, waiting for it if needed."""

        def find():
            for p in self.pushes:
                if pred(p):
                    return p
            return None

        await self.wait_until(
            lambda: find() is not None or self.closed.done(), timeout, what or "a push"
        )
        p = find()
        if p is None:
            raise AssertionError(
                f"connection closed ({self.closed.result()}) while waiting for {what or 'a push'}; "
                f"pushes={list(self.pushes)}"
            )
        self.pushes.remove(p)
        return p

    async def next_pub(self, channel: str, timeout: float = T) -> dict:
        push = await self.next_push(
            lambda p: p.get("channel") == channel and "pub" in p,
            timeout,
            f"a publication on {channel!r}",
        )
        return push["pub"]

    def pubs_taken_or_pending(self, channel: str) -> list[dict]:
        return [p["pub"] for p in self.all_pushes if p.get("channel") == channel and "pub" in p]

    async def wait_closed(self, timeout: float = T) -> Closed:
        try:
            return await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            raise AssertionError(
                f"connection still open {timeout}s later; last messages={self.messages[-5:]}"
            ) from None

    async def expect_disconnect(self, code: int, timeout: float = T) -> Closed:
        """Asserts the node closes the connection with `code`; for protocol codes (>= 3000)
        also that a `disconnect` push with the same code (and a `reconnect` flag matching
        the code's range) came before the close frame."""
        closed = await self.wait_closed(timeout)
        assert closed.code == code, (
            f"expected close code {code}, got {closed.code} (reason {closed.reason!r}); "
            f"disconnect pushes={[p for p in self.all_pushes if 'disconnect' in p]}"
        )
        if code >= 3000:
            pushes = [p["disconnect"] for p in self.all_pushes if "disconnect" in p]
            assert pushes, f"no disconnect push before close code {code}"
            d = pushes[-1]
            assert d.get("code") == code, f"disconnect push {d} does not carry code {code}"
            assert isinstance(d.get("reason", ""), str)
            should_reconnect = not (3500 <= code < 4000 or 4500 <= code < 5000)
            assert bool(d.get("reconnect", False)) == should_reconnect, (
                f"disconnect push {d}: reconnect should be {should_reconnect} for code {code}"
            )
        return closed

    async def close(self) -> None:
        try:
            await self.conn.close()
        except Exception:  # noqa: BLE001
            pass
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass


# -- SDK event recording -------------------------------------------------------------


@dataclass
class EventLog:
    """Records (kind, ctx) pairs from SDK callbacks; `wait` awaits a condition over them."""

    events: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self):
        self._cond = asyncio.Condition()

    async def add(self, kind: str, ctx: Any) -> None:
        self.events.append((kind, ctx))
        async with self._cond:
            self._cond.notify_all()

    def of(self, kind: str) -> list[Any]:
        return [c for k, c in self.events if k == kind]

    async def wait(self, pred: Callable[[], bool], timeout: float = T, what: str = "") -> None:
        try:
            async with asyncio.timeout(timeout):
                async with self._cond:
                    await self._cond.wait_for(pred)
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or pred}; "
                f"events={[(k, c) for k, c in self.events][-10:]}"
            ) from None


# -- HTTP ----------------------------------------------------------------------------


@dataclass
class HttpResponse:
    status: int
    headers: dict
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


async def http(method: str, url: str, *, data=None, headers=None, timeout: float = T) -> HttpResponse:
    async with aiohttp.ClientSession() as s:
        async with s.request(
            method, url, data=data, headers=headers or {}, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as r:
            return HttpResponse(r.status, dict(r.headers), await r.text())


async def serve_app(
    app: web.Application, port: int = 0, ssl_context=None, access_log: bool = False
) -> tuple[web.AppRunner, int]:
    """Runs `app` on 127.0.0.1:`port` (0: a free one), over TLS with `ssl_context`: the
    runner (to `cleanup()`) and the port. The test servers (backend, JWKS, OTLP) start so."""
    runner = web.AppRunner(app) if access_log else web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def api_post(node: Node, method: str, body, key: Optional[str] = "default") -> HttpResponse:
    """POST /api/<method> with a raw body (str/bytes) or a JSON-encodable object."""
    headers = {"Content-Type": "application/json"}
    if key == "default":
        key = node.api_key
    if key is not None:
        headers["X-API-Key"] = key
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return await http("POST", f"{node.api_url}/{method}", data=data, headers=headers)
