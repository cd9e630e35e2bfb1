"""Real NATS for the cluster tests: `nats-server` processes (Debian's package, 2.9.x) with
JetStream on free ports, alone or as a 3-server cluster, plus what the tests need around
them: a raw NATS publisher (a backend publishing straight to a channel subject), the
server's monitoring endpoint (who is subscribed to what), and a switchable TCP proxy
standing in for a load balancer in front of the nodes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Optional

import aiohttp

from harness import T

NATS_BIN = os.environ.get("HERALD_NATS_SERVER_BIN", shutil.which("nats-server") or "nats-server")
START_TIMEOUT = 20.0


def _read_line(s: socket.socket, limit: int = 65536) -> bytes:
    """One CRLF-terminated protocol line (bounded), without the terminator."""
    buf = b""
    while b"\r\n" not in buf and len(buf) < limit:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\r\n", 1)[0]


def free_port() -> int:
    """A port nothing listens on right now, below the kernel's ephemeral range.

    The kernel's pick for port 0 comes from the same range it draws the source ports of
    outgoing connections from. A port picked that way and bound later, or bound again when
    a killed process restarts on it, can meanwhile be taken by any client's connect (a
    router probe, a reconnecting SDK); nothing is ever given a port below the range unless
    it asks for it by number.
    """
    low = _EPHEMERAL_LOW
    for _ in range(1000):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port below {low}")


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_EPHEMERAL_LOW = _ephemeral_low()


class NatsServer:
    """One nats-server process with JetStream; restartable on the same port and store."""

    def __init__(self, workdir: Path, name: str, cluster_ports: Optional[list[int]] = None,
                 cluster_port: Optional[int] = None):
        self.name = name
        # Unique, so that start() can tell this server from another nats-server that
        # answers on the same port (one left over by another test or program).
        self.server_name = f"{name}-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.monitor_port = free_port()
        self.store = workdir / f"{name}-js"
        self.log_path = workdir / f"{name}.log"
        self.conf = workdir / f"{name}.conf"
        lines = [
            f"server_name: {self.server_name}",
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.monitor_port}",
            f'jetstream {{ store_dir: "{self.store}" }}',
        ]
        if cluster_port is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in cluster_ports or [])
            lines.append(
                f"cluster {{ name: herald-test, listen: 127.0.0.1:{cluster_port}, routes: [{routes}] }}"
            )
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.proc: Optional[subprocess.Popen] = None
        self._lines = lines
        self._clustered = cluster_port is not None
        for attempt in range(10):
            try:
                self.start()
                return
            except RuntimeError:
                # A port found free can be taken by another process before nats-server
                # binds it; a lone server simply tries other ports.
                if self._clustered or attempt == 9:
                    raise
                self.port = free_port()
                self.monitor_port = free_port()
                lines[1] = f"listen: 127.0.0.1:{self.port}"
                lines[2] = f"http: 127.0.0.1:{self.monitor_port}"
                self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._log = open(self.log_path, "a", encoding="utf-8")
        self.proc = subprocess.Popen(
            [NATS_BIN, "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    info = _read_line(s)
                    if info.startswith(b"INFO {") and self.proc.poll() is None:
                        if json.loads(info[5:]).get("server_name") == self.server_name:
                            return
                    self.kill()  # something else answers on that port
                    raise RuntimeError(f"port {self.port} is taken")
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server {self.name} not listening:\n{self.log_text()}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    async def monitor(self, path: str) -> dict:
        async with aiohttp.ClientSession() as s:
            async with s.get(
                f"http://127.0.0.1:{self.monitor_port}{path}",
                timeout=aiohttp.ClientTimeout(total=T),
            ) as r:
                return json.loads(await r.text())

    async def subscriptions(self, connection_name: str) -> dict[str, int]:
        """Subject -> messages delivered, for the client connection called `name`."""
        connz = await self.monitor("/connz?subs=detail&limit=1024")
        out: dict[str, int] = {}
        for c in connz.get("connections") or []:
            if c.get("name") == connection_name:
                for sub in c.get("subscriptions_list_detail") or []:
                    out[sub["subject"]] = out.get(sub["subject"], 0) + sub.get("msgs", 0)
        return out

    async def wait_jetstream(self, timeout: float = START_TIMEOUT) -> None:
        """Waits until the server reports itself healthy (JetStream current)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                async with aiohttp.ClientSession() as s:
                    async with s.get(
                        f"http://127.0.0.1:{self.monitor_port}/healthz",
                        timeout=aiohttp.ClientTimeout(total=2),
                    ) as r:
                        last = (r.status, await r.text())
                    if r.status == 200:
                        # Clustered: also wait for a JetStream meta leader.
                        jsz = await self.monitor("/jsz")
                        meta = jsz.get("meta_cluster") or {}
                        last = meta
                        if not meta or meta.get("leader"):
                            return
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                last = e
            await asyncio.sleep(0.1)
        raise AssertionError(f"nats-server {self.name} not healthy within {timeout}s: {last}")


def start_cluster(workdir: Path, size: int = 3) -> list[NatsServer]:
    ports = [free_port() for _ in range(size)]
    return [
        NatsServer(workdir, f"nats{i}", cluster_ports=[p for p in ports if p != port], cluster_port=port)
        for i, port in enumerate(ports)
    ]


async def nats_publish(url: str, subject: str, payload: bytes) -> None:
    """Publishes one message the way any NATS client would (core PUB), and waits for
    the server to have processed it (PING/PONG)."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), T)
    try:
        info = await asyncio.wait_for(reader.readline(), T)
        assert info.startswith(b"INFO "), info
        writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        writer.write(b"PUB %s %d\r\n%s\r\nPING\r\n" % (subject.encode(), len(payload), payload))
        await writer.drain()
        while True:
            line = await asyncio.wait_for(reader.readline(), T)
            assert line and not line.startswith(b"-ERR"), line
            if line.strip() == b"PONG":
                return
    finally:
        writer.close()


class Proxy:
    """A TCP forwarder standing in for the load balancer in front of the nodes:
    `switch(target)` sends new connections elsewhere and cuts the open ones."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self._tunnels: set[asyncio.StreamWriter] = set()
        self._server: Optional[asyncio.base_events.Server] = None
        self.port = 0

    async def start(self) -> "Proxy":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    def switch(self, target: tuple[str, int]) -> None:
        self.target = target
        for w in list(self._tunnels):
            w.close()

    async def _handle(self, reader, writer) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._tunnels.update((writer, up_w))

        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
        self._tunnels.discard(writer)
        self._tunnels.discard(up_w)

    async def close(self) -> None:
        self.switch(self.target)
        if self._server:
            self._server.close()
            await self._server.wait_closed()


class NatsSubscriber:
    """A minimal core-NATS subscriber (SUB/MSG), to watch what nodes announce."""

    def __init__(self, url: str, subject: str):
        self.url = url
        self.subject = subject
        self.messages: list[bytes] = []
        self._changed = asyncio.Event()

    async def start(self) -> "NatsSubscriber":
        host, port = self.url.removeprefix("nats://").rsplit(":", 1)
        self._reader, self._writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), T)
        await self._reader.readline()  # INFO
        self._writer.write(b'CONNECT {"verbose":false}\r\nSUB %s 1\r\nPING\r\n' % self.subject.encode())
        await self._writer.drain()
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        r = self._reader
        while line := await r.readline():
            if line.startswith(b"PING"):
                self._writer.write(b"PONG\r\n")
            elif line.startswith(b"MSG "):
                size = int(line.split()[-1])
                payload = await r.readexactly(size + 2)
                self.messages.append(payload[:-2])
                self._changed.set()

    async def wait_for(self, pred, timeout: float = T, what: str = ""):
        """The first message (decoded as JSON) for which `pred` holds."""
        deadline = time.monotonic() + timeout
        while True:
            for m in self.messages:
                try:
                    obj = json.loads(m)
                except ValueError:
                    continue
                if pred(obj):
                    return obj
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no message for {what} within {timeout}s: {self.messages[-5:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    async def close(self) -> None:
        self._task.cancel()
        self._writer.close()
