#!/usr/bin/env python3
"""Every metric a dashboard panel or an alert rule names is one the binaries export.

Starts the real programs: a `nats-server` with JetStream, two `herald-node`s in cluster
mode and a `herald-router` in front of them; drives each metric family once (a client
through the router that subscribes, recovers, answers a ping and disconnects; server API
publishes; a refused upgrade), scrapes `/metrics` of every process, and checks each
`herald_*` name in `deploy/grafana/dashboards/herald.json` and
`deploy/prometheus/alerts.yml` against what was scraped. A histogram counts as exported
with its `_bucket`, `_sum` and `_count` series. The names come from the scrapes, never
from a list kept by hand, so a metric renamed in the code fails this check.

    deploy/test/check_dashboard.py target/debug/herald-node target/debug/herald-router
    deploy/test/check_dashboard.py --self-test ...   # also shows a made-up name is caught

Needs the Python suite's venv (aiohttp, websockets, PyYAML) and `nats-server`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
import websockets
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy/grafana/dashboards/herald.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
SECRET = "check-dashboard-secret-0123456789"
API_KEY = "check-dashboard-key"
METRIC = re.compile(r"\bherald_[a-zA-Z0-9_:]*")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+\S+")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token(user: str) -> str:
    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": user, "exp": int(time.time()) + 600}).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def queried_names() -> dict[str, set[str]]:
    """Every herald_* name each panel and rule queries: {name: {where, ...}}."""
    out: dict[str, set[str]] = {}
    dash = json.loads(DASHBOARD.read_text())
    for p in dash["panels"]:
        for t in p.get("targets", []):
            for n in METRIC.findall(t["expr"]):
                out.setdefault(n, set()).add(f"panel {p['title']!r}")
    rules = yaml.safe_load(ALERTS.read_text())
    for g in rules["groups"]:
        for r in g["rules"]:
            for n in METRIC.findall(r["expr"]):
                out.setdefault(n, set()).add(f"alert {r.get('alert', r.get('record'))}")
    return out


def exported(texts: list[str]) -> set[str]:
    """Series names in /metrics texts, histograms and summaries with their parts."""
    names: set[str] = set()
    for text in texts:
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(maxsplit=3)
                names.add(name)
                if kind in ("histogram", "summary"):
                    names.update({f"{name}_sum", f"{name}_count"})
                    if kind == "histogram":
                        names.add(f"{name}_bucket")
            elif line and not line.startswith("#"):
                m = SAMPLE.match(line)
                if m:
                    names.add(m.group(1))
    return names


def missing(queried: dict[str, set[str]], have: set[str]) -> list[str]:
    return sorted(f"{n} (in {', '.join(sorted(w))})" for n, w in queried.items() if n not in have)


class Procs:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")
        full = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        full.update(env)
        self.procs.append(subprocess.Popen(argv, env=full, stdout=log, stderr=log))

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


async def wait_http(session, url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with session.get(url) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"FAIL: {url} not 200 within {timeout}s")
        await asyncio.sleep(0.2)


async def recv_json(ws, pred, timeout: float = 10):
    """Reads frames (answering pings) until a message matches `pred`."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit("FAIL: the expected message did not come")
        try:
            frame = await asyncio.wait_for(ws.recv(), left)
        except asyncio.TimeoutError:
            raise SystemExit("FAIL: the expected message did not come") from None
        for line in frame.split("\n"):
            msg = json.loads(line)
            if msg == {}:
                await ws.send("{}")  # a server ping: answer it
                continue
            if pred(msg):
                return msg


async def drive(node_urls: list[str], router_url: str) -> None:
    """Gives every metric family a reason to appear."""
    ws_url = router_url.replace("http://", "ws://") + "/connection/websocket"
    async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as http:
        async def publish(i: int) -> None:
            async with http.post(f"{node_urls[1]}/api/publish",
                                 json={"channel": "dash", "data": {"i": i}}) as r:
                assert r.status == 200, await r.text()

        async with websockets.connect(ws_url) as ws:
            await ws.send(json.dumps({"id": 1, "connect": {"token": token("alice")}}))
            await recv_json(ws, lambda m: m.get("id") == 1)
            await ws.send(json.dumps({"id": 2, "subscribe": {"channel": "dash"}}))
            sub = (await recv_json(ws, lambda m: m.get("id") == 2))["subscribe"]
            await publish(1)
            await recv_json(ws, lambda m: "push" in m)
            await ws.send(json.dumps({"id": 3, "unsubscribe": {"channel": "dash"}}))
            await recv_json(ws, lambda m: m.get("id") == 3)
            await ws.send(json.dumps({"id": 4, "subscribe": {
                "channel": "dash", "recover": True, "epoch": sub["epoch"],
                "offset": sub.get("offset", 0)}}))
            await recv_json(ws, lambda m: m.get("id") == 4)
            # One call through the rpc proxy (the backend started in run()).
            await ws.send(json.dumps({"id": 5, "rpc": {"method": "m", "data": {}}}))
            reply = await recv_json(ws, lambda m: m.get("id") == 5)
            assert "rpc" in reply, reply
            # Ping interval is 1 s: wait for one ping and answer it (recv_json does).
            try:
                await recv_json(ws, lambda m: False, timeout=2.5)
            except SystemExit:
                pass
        # A refused upgrade (no such path) and an API request with a bad key.
        async with http.get(f"{node_urls[0]}/connection/websocket") as r:
            assert r.status >= 400
        async with aiohttp.ClientSession() as anon:
            async with anon.post(f"{node_urls[0]}/api/info", json={}) as r:
                assert r.status == 401


async def run(node_bin: str, router_bin: str, self_test: bool) -> None:
    nats_bin = shutil.which("nats-server") or "/usr/sbin/nats-server"
    with tempfile.TemporaryDirectory(prefix="herald-dash-") as tmp:
        work = Path(tmp)
        procs = Procs(work)
        # A backend for the rpc proxy, so the proxy metrics have a call to count.
        async def rpc_answer(_request):
            return web.json_response({"result": {"data": {"ok": True}}})

        backend = web.Application()
        backend.router.add_post("/rpc", rpc_answer)
        runner = web.AppRunner(backend)
        await runner.setup()
        backend_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", backend_port).start()
        try:
            nats_port = free_port()
            procs.start("nats", [nats_bin, "-js", "-a", "127.0.0.1", "-p", str(nats_port),
                                 "-sd", str(work / "js")], {})
            node_ports = [free_port(), free_port()]
            for i, port in enumerate(node_ports):
                procs.start(f"node{i}", [node_bin], {
                    "HERALD_LISTEN": f"127.0.0.1:{port}",
                    "HERALD_NODE_ID": f"dash{i}",
                    "HERALD_NATS_URL": f"nats://127.0.0.1:{nats_port}",
                    "HERALD_TOKEN_HMAC_SECRET": SECRET,
                    "HERALD_API_KEY": API_KEY,
                    "HERALD_PING_INTERVAL": "1",
                    "HERALD_PROXY_RPC_ENDPOINT": f"http://127.0.0.1:{backend_port}/rpc",
                    "RUST_LOG": "warn",
                })
            router_port = free_port()
            procs.start("router", [router_bin], {
                "HERALD_ROUTER_LISTEN": f"127.0.0.1:{router_port}",
                "HERALD_ROUTER_NODES": ",".join(f"127.0.0.1:{p}" for p in node_ports),
                "HERALD_ROUTER_HEALTH_INTERVAL": "0.2",
                "RUST_LOG": "warn",
            })
            node_urls = [f"http://127.0.0.1:{p}" for p in node_ports]
            router_url = f"http://127.0.0.1:{router_port}"
            async with aiohttp.ClientSession() as s:
                for u in node_urls + [router_url]:
                    await wait_http(s, f"{u}/readyz")
                await drive(node_urls, router_url)
                await asyncio.sleep(0.5)
                texts = []
                for u in node_urls + [router_url]:
                    async with s.get(f"{u}/metrics") as r:
                        texts.append(await r.text())
        finally:
            procs.stop()
            await runner.cleanup()
            for log in sorted(work.glob("*.log")):
                text = log.read_text(errors="replace")
                if "panicked" in text:
                    print(f"--- {log.name} ---\n{text}")
    have = exported(texts)
    queried = queried_names()
    if self_test:
        fake = {"herald_node_made_up_total": {"panel 'made up'"}}
        assert missing(fake, have), "a name no binary exports must be reported"
        print("  self-test: a made-up metric name is reported")
    problems = missing(queried, have)
    if problems:
        raise SystemExit("FAIL: queried but not exported by the node or the router:\n  "
                         + "\n  ".join(problems))
    print(f"  dashboard and alerts: {len(queried)} metric names, all exported "
          f"({len(have)} series names scraped from 2 nodes and a router)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("node_bin")
    ap.add_argument("router_bin")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    asyncio.run(run(a.node_bin, a.router_bin, a.self_test))


if __name__ == "__main__":
    main()
