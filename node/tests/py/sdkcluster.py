"""Starts real Herald servers for the SDK suites in other languages and controls them
over stdin/stdout, so the JavaScript, Go and Java suites reuse this harness (free ports
below the ephemeral range, the same node and router settings as the pytest suite)
instead of each re-implementing it.

    python sdkcluster.py single     # one herald-node on the embedded broker
    python sdkcluster.py cluster    # nats-server + 3 nodes + herald-router

It prints one JSON line describing what runs:

    {"mode": "cluster", "ws": "ws://…/connection/websocket", "api": "http://…/api",
     "secret": "…", "api_key": "…", "logdir": "…",
     "nodes": [{"id": "n0", "ws": "…", "api": "…"}, …], "router": "http://…" | null}

`ws` and `api` are the router's in cluster mode and the node's in single mode; tokens
are HS256 with `secret`. Then it reads one JSON command per line and answers each with
one JSON line (`{"ok": true, …}` or `{"ok": false, "error": "…"}`):

    {"cmd": "route", "key": "k"}   node index a connection with ?client=k lands on
    {"cmd": "kill", "node": i}     SIGKILL node i; answers once the router has dropped it
    {"cmd": "restart", "node": i}  start node i again on its port; answers once routed
    {"cmd": "logs", "lines": 40}   the last lines of every process's log

End of input (the test process exited, however it exited) stops every process, and so
does SIGTERM; the log folder is removed unless HERALD_SDK_KEEP_LOGS=1.

Node settings: the default namespace keeps history, presence and join/leave and lets
subscribers publish; tokens expire with a 1 s grace. Extra `HERALD_*=value` arguments
override them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from websockets.sync.client import connect as ws_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from failover import ROUTER_BIN, Cluster, _node_up  # noqa: E402
from harness import DEFAULT_BIN, T, Node, start_node  # noqa: E402
from natsutil import NatsServer  # noqa: E402

NODE_BIN = Path(os.environ.get("HERALD_NODE_BIN", str(DEFAULT_BIN))).resolve()

SETTINGS = {
    "HERALD_PRESENCE": "true",
    "HERALD_JOIN_LEAVE": "true",
    "HERALD_ALLOW_PUBLISH": "true",
    "HERALD_HISTORY_SIZE": "1000",
    "HERALD_EXPIRY_GRACE": "1",
}


class Servers:
    def __init__(self, mode: str, env: dict[str, str]):
        self.mode = mode
        self.workdir = Path(tempfile.mkdtemp(prefix=f"herald-sdk-{mode}-"))
        self.nats: NatsServer | None = None
        self.cluster: Cluster | None = None
        self.single: Node | None = None
        try:
            if mode == "single":
                self.single = start_node(NODE_BIN, self.workdir, "node", None, env)
            else:
                if not ROUTER_BIN.is_file():
                    raise SystemExit(f"herald-router not built at {ROUTER_BIN}: set HERALD_ROUTER_BIN")
                self.nats = NatsServer(self.workdir, "nats")
                self.cluster = Cluster(NODE_BIN, self.workdir, self.nats.url, 3, env)
                for i in range(3):
                    self._wait_routed(i, up=True)
        except BaseException:
            self.stop()
            raise

    # -- description -----------------------------------------------------------------

    def describe(self) -> dict:
        if self.single is not None:
            n = self.single
            nodes = [n]
            ws, api, router = n.ws_url, n.api_url, None
        else:
            c = self.cluster
            nodes = c.nodes
            ws, api, router = c.ws_url, c.api_url, f"http://127.0.0.1:{c.router.port}"
        return {
            "mode": self.mode,
            "ws": ws,
            "api": api,
            "router": router,
            "secret": nodes[0].secret,
            "api_key": nodes[0].api_key,
            "logdir": str(self.workdir),
            "nodes": [
                {"id": n.env.get("HERALD_NODE_ID", n.name), "ws": n.ws_url, "api": n.api_url}
                for n in nodes
            ],
        }

    # -- commands --------------------------------------------------------------------

    def handle(self, cmd: dict) -> dict:
        op = cmd.get("cmd")
        if op == "logs":
            return {"logs": self.logs(int(cmd.get("lines", 40)))}
        if self.cluster is None:
            raise ValueError(f"{op!r} needs cluster mode")
        if op == "route":
            return {"node": self.route(str(cmd["key"]))}
        i = int(cmd["node"])
        if op == "kill":
            self.cluster.nodes[i].kill()
            self._wait_routed(i, up=False)
            return {}
        if op == "restart":
            gen = sum(1 for p in self.cluster.procs if p.name.startswith(f"n{i}-"))
            self.cluster.restart(i, gen)
            self._wait_routed(i, up=True)
            return {}
        raise ValueError(f"unknown command {op!r}")

    def route(self, key: str) -> int:
        """Connects through the router with `?client=key` (no cookie: a first visit) and
        reads which node answers the connect."""
        c = self.cluster
        with ws_connect(f"{c.ws_url}?client={key}", open_timeout=T, close_timeout=1) as ws:
            ws.send(json.dumps({"id": 1, "connect": {"token": c.token("route-probe")}}))
            reply = json.loads(ws.recv(timeout=T).split("\n")[0])
        node_id = reply["connect"]["node"]
        return [n.env["HERALD_NODE_ID"] for n in c.nodes].index(node_id)

    def _wait_routed(self, i: int, up: bool, timeout: float = 3 * T) -> None:
        import urllib.request

        c = self.cluster
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{c.router.port}/readyz", timeout=2) as r:
                    text = r.read().decode()
            except OSError as e:  # 503 while no node is up yet
                text = getattr(e, "read", lambda: str(e).encode())().decode(errors="replace")
            if _node_up(text, c.ports[i]) == up:
                return
            time.sleep(0.05)
        raise RuntimeError(f"router never saw node {i} {'up' if up else 'down'}: {text}")

    def logs(self, lines: int) -> dict[str, str]:
        out = {}
        for p in sorted(self.workdir.glob("*.log")):
            text = p.read_text(encoding="utf-8", errors="replace").splitlines()
            out[p.name] = "\n".join(text[-lines:])
        return out

    # -- teardown --------------------------------------------------------------------

    def stop(self) -> None:
        if self.cluster is not None:
            for n in self.cluster.procs:
                n.killed = True
            self.cluster.stop_all()
        if self.single is not None and self.single.running():
            try:
                self.single.stop()
            except AssertionError:
                pass
        if self.nats is not None:
            self.nats.stop()
        if os.environ.get("HERALD_SDK_KEEP_LOGS") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("single", "cluster"):
        print(__doc__, file=sys.stderr)
        return 64
    env = dict(SETTINGS)
    for arg in sys.argv[2:]:
        k, _, v = arg.partition("=")
        env[k] = v
    servers = Servers(sys.argv[1], env)
    done = threading.Event()

    def on_signal(_sig, _frame):
        done.set()
        servers.stop()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        print(json.dumps(servers.describe()), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                answer = {"ok": True, **servers.handle(json.loads(line))}
            except Exception as e:  # noqa: BLE001 - reported to the test, which fails
                answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            print(json.dumps(answer), flush=True)
    finally:
        servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
