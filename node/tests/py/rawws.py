"""A WebSocket client built by hand on a plain socket, for abuse no library will send:
unmasked frames, reserved bits and opcodes, oversized control frames, lying length
fields, fragments that never end, header bytes trickled one at a time, a reader that
never reads.

Server frames are parsed just enough to find text frames (replies, pushes) and the
close frame's code. Every wait takes a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from dataclasses import dataclass
from typing import Optional

from harness import T

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    length: Optional[int] = None,
) -> bytes:
    """One WebSocket frame. `length` overrides the length field (a lie about the size)."""
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)])
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head.append(mask_bit | n)
    elif n < 65536:
        head.append(mask_bit | 126)
        head += struct.pack(">H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack(">Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    return bytes(head) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack(">H", code) + reason


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes


class RawWs:
    """An upgraded (or refused) connection on a plain TCP socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.status: Optional[int] = None
        self.headers: dict[str, str] = {}
        self.body = b""
        self.texts: list[str] = []  # text frames received, in order
        self.pongs: list[bytes] = []  # pong payloads received

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        path: str = "/connection/websocket",
        headers: Optional[dict[str, str]] = None,
        timeout: float = T,
        rcvbuf: Optional[int] = None,
    ) -> "RawWs":
        """Sends an upgrade request and reads the response head (`status`, `headers`).
        `rcvbuf` shrinks the socket's receive buffer (a client that reads nothing then
        stalls the server's writes at once)."""
        sock = None
        if rcvbuf is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
            reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        else:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=1 << 20), timeout
            )
        ws = cls(reader, writer)
        hdrs = {
            "Host": f"{host}:{port}",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Version": "13",
        }
        hdrs.update(headers or {})
        head = f"GET {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items() if v is not None
        )
        writer.write(head.encode() + b"\r\n")
        await writer.drain()
        await ws.read_response_head(timeout)
        return ws

    async def read_response_head(self, timeout: float = T) -> None:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = raw.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                self.headers[k.strip().lower()] = v.strip()
        if self.status != 101 and "content-length" in self.headers:
            n = int(self.headers["content-length"])
            self.body = await asyncio.wait_for(self.reader.readexactly(n), timeout)

    async def send(self, data: bytes) -> None:
        """Writes raw bytes (one or more frames, or anything else)."""
        self.writer.write(data)
        await self.writer.drain()

    async def send_text(self, text: str, **kw) -> None:
        await self.send(frame(TEXT, text.encode(), **kw))

    async def recv(self, timeout: float = T) -> Optional[Frame]:
        """The next frame, or None when the connection ended (EOF or reset)."""
        try:
            async with asyncio.timeout(timeout):
                b0, b1 = await self.reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack(">H", await self.reader.readexactly(2))
                elif n == 127:
                    (n,) = struct.unpack(">Q", await self.reader.readexactly(8))
                key = await self.reader.readexactly(4) if b1 & 0x80 else None
                payload = await self.reader.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        f = Frame(bool(b0 & 0x80), b0 & 0xF, payload)
        if f.opcode == TEXT:
            self.texts.append(payload.decode("utf-8", "replace"))
        elif f.opcode == PONG:
            self.pongs.append(payload)
        return f

    async def close_code(self, timeout: float = T) -> Optional[int]:
        """Reads until the server's close frame and returns its code; None when the
        connection ended without one. Fails when nothing ends within `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    f = await self.recv(timeout)
                    if f is None:
                        return None
                    if f.opcode == CLOSE:
                        return struct.unpack(">H", f.payload[:2])[0] if len(f.payload) >= 2 else 1005
        except TimeoutError:
            raise AssertionError(
                f"no close from the server within {timeout}s; last texts={self.texts[-3:]}"
            ) from None

    async def until_reply(self, cid: int, timeout: float = T) -> dict:
        """Reads frames until the reply with id `cid`."""
        async with asyncio.timeout(timeout):
            while True:
                for text in self.texts:
                    for line in text.split("\n"):
                        if line.strip():
                            msg = json.loads(line)
                            if msg.get("id") == cid:
                                return msg
                f = await self.recv(timeout)
                assert f is not None, f"connection ended before reply {cid}: {self.texts[-3:]}"
                assert f.opcode != CLOSE, f"closed before reply {cid}: {f.payload!r}"

    async def connect(self, token: str) -> dict:
        await self.send_text(json.dumps({"id": 1, "connect": {"token": token}}))
        reply = await self.until_reply(1)
        assert "connect" in reply, reply
        return reply

    async def ended(self, timeout: float = T) -> bool:
        """Reads and discards until the server ends the connection (EOF or reset);
        returns False when it is still open after `timeout`."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.reader.read(65536)
                    if not data:
                        return True
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    def abort(self) -> None:
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 2)
        except (OSError, TimeoutError):
            pass


async def tcp(host: str, port: int, timeout: float = T):
    """A bare TCP connection (reader, writer)."""
    return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
