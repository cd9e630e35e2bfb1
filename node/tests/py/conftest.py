"""Fixtures: real herald-node processes, raw protocol clients, the official SDKs.

The node binary comes from HERALD_NODE_BIN (default <repo>/target/debug/herald-node).
Each test starts its own node(s) on 127.0.0.1:0 with a random HMAC secret and API key;
`node_factory(**env)` adds or overrides HERALD_* variables (None removes one) and
`config_toml=` writes a HERALD_CONFIG file. On teardown every node gets SIGTERM and must
exit 0; when a test fails its nodes' logs are attached to the report.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cent
import centrifuge
import pytest

from harness import DEFAULT_BIN, Node, RawClient, T, start_node


def pytest_report_header(config):
    return f"herald-node binary: {_node_bin()}"


def _node_bin() -> Path:
    return Path(os.environ.get("HERALD_NODE_BIN", str(DEFAULT_BIN))).resolve()


@pytest.fixture(scope="session")
def node_bin() -> Path:
    path = _node_bin()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.exit(
            f"herald-node binary not found at {path}: run `cargo build -p herald-node` "
            "or set HERALD_NODE_BIN",
            returncode=2,
        )
    return path


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for n in getattr(item, "_herald_nodes", []):
            report.sections.append((f"herald-node log: {n.name} ({n.log_path})", n.log_text()))
    return report


@pytest.fixture
def node_factory(request, tmp_path, node_bin):
    """Starts nodes: `node_factory(HERALD_PRESENCE=True, config_toml="...")`."""
    nodes: list[Node] = []
    request.node._herald_nodes = nodes

    def start(config_toml: str | None = None, **env) -> Node:
        n = start_node(node_bin, tmp_path, f"node{len(nodes)}", config_toml, env)
        nodes.append(n)
        return n

    yield start

    failures = []
    for n in nodes:
        if n.killed:
            continue
        try:
            rc = n.stop() if n.running() else n.wait_exit()
        except AssertionError as e:
            failures.append(f"{n.name}: {e}")
            continue
        if rc != 0:
            failures.append(f"{n.name}: exited with {rc} after SIGTERM (expected 0)")
    if failures:
        logs = "\n".join(f"--- {n.name} log ---\n{n.log_text()}" for n in nodes)
        pytest.fail("; ".join(failures) + "\n" + logs)


@pytest.fixture
def node(node_factory) -> Node:
    """A node with the default settings."""
    return node_factory()


@pytest.fixture
async def raw(node_factory):
    """Opens raw protocol clients: `await raw(node, token=...)` connects (a connect
    command) unless `token=None` and `connect=False`."""
    clients: list[RawClient] = []

    async def open_client(
        n: Node,
        token: str | None = "",
        connect: bool = True,
        auto_pong: bool = True,
        user: str = "alice",
        **ws_kwargs,
    ) -> RawClient:
        c = await RawClient.open(n.ws_url, auto_pong=auto_pong, **ws_kwargs)
        clients.append(c)
        if connect:
            await c.connect(n.token(user) if token == "" else token)
        return c

    yield open_client
    for c in clients:
        await c.close()


@pytest.fixture
async def cent_api(node_factory):
    """`cent_api(node)` is the official `cent.AsyncClient` pointed at the node."""
    clients: list[cent.AsyncClient] = []

    def make(n: Node, api_key: str | None = None) -> cent.AsyncClient:
        c = cent.AsyncClient(n.api_url, api_key if api_key is not None else n.api_key, timeout=T)
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


class SdkFactory:
    """`sdk(node, **kwargs)` is the official `centrifuge.Client` for the node, in the
    encoding the test runs with (`sdk.encoding`: "json" or "protobuf", the SDK's
    `use_protobuf`). Payloads differ between the two in the SDK's API only: JSON clients
    publish and receive JSON values, Protobuf clients bytes (here: JSON text as bytes,
    which is what a JSON publisher's data reaches a Protobuf client as). `payload(v)`
    and `data(d)` turn one into the other, so a test asserts the same values in both."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        self.protobuf = encoding == "protobuf"
        self.clients: list[centrifuge.Client] = []

    def __call__(self, n: Node, **kwargs) -> centrifuge.Client:
        kwargs.setdefault("timeout", T)
        kwargs.setdefault("proxy", None)
        kwargs.setdefault("use_protobuf", self.protobuf)
        c = centrifuge.Client(n.ws_url, **kwargs)
        self.clients.append(c)
        return c

    def payload(self, value):
        """What to hand the SDK's publish() for the JSON value `value`."""
        return json.dumps(value).encode() if self.protobuf else value

    def data(self, data):
        """The JSON value of a payload the SDK handed us (data, conn_info, ...)."""
        if self.protobuf and isinstance(data, (bytes, bytearray)):
            return json.loads(data) if data else None
        return data


async def _sdk_clients(encoding: str):
    """An [`SdkFactory`] in `encoding`, its clients disconnected afterwards."""
    make = SdkFactory(encoding)
    yield make
    for c in make.clients:
        try:
            await c.disconnect()
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture(params=["json", "protobuf"])
async def sdk(node_factory, request):
    """The SDK client factory ([`SdkFactory`]), once per encoding."""
    async for make in _sdk_clients(request.param):
        yield make


@pytest.fixture
async def json_sdk(node_factory):
    """The SDK client factory in the JSON encoding only: for features the node's
    Protobuf encoding lacks so far (README "Differences from Centrifugo")."""
    async for make in _sdk_clients("json"):
        yield make


@pytest.fixture
def nats(tmp_path):
    """One real nats-server with JetStream on a free port."""
    from natsutil import NatsServer

    server = NatsServer(tmp_path, "nats")
    yield server
    server.stop()


@pytest.fixture
def nats_cluster(tmp_path):
    """Three real nats-servers routed into one cluster, JetStream on each."""
    from natsutil import start_cluster

    servers = start_cluster(tmp_path)
    yield servers
    for s in servers:
        s.stop()


@pytest.fixture
def cluster(node_factory):
    """`cluster(nats_url, n=3, **env)` starts n nodes on that NATS with quick cluster
    timings (heartbeat 0.5 s, dead after 2 s, unsubscribe 0.5 s after the last leaves)."""

    def start(nats_url: str, n: int = 3, **env):
        settings = {
            "HERALD_NATS_URL": nats_url,
            "HERALD_NODE_HEARTBEAT": "0.5",
            "HERALD_NODE_TIMEOUT": "2",
            "HERALD_UNSUBSCRIBE_DELAY": "0.5",
        }
        settings.update(env)
        nodes = []
        for i in range(n):
            node = node_factory(**{**settings, "HERALD_NODE_ID": f"n{i}"})
            nodes.append(node)
            # One secret and key across the cluster, as a deployment has.
            settings.setdefault("HERALD_TOKEN_HMAC_SECRET", node.secret)
            settings.setdefault("HERALD_API_KEY", node.api_key)
        for node in nodes:  # as a load balancer would: use a node once it is ready
            wait_ready(node)
        return nodes

    return start


def wait_ready(node, timeout: float = 3 * T) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{node.http_url}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise AssertionError(f"{node.name} not ready within {timeout}s: {last}\n{node.log_text()}")


_REPORTS: list[dict] = []


@pytest.fixture
def herald_report(request):
    """`herald_report(dict)`: figures a test measured, printed at the end of the run."""

    def add(report: dict) -> None:
        _REPORTS.append({"test": request.node.name, **report})

    return add


def pytest_terminal_summary(terminalreporter):
    if _REPORTS:
        import json as _json

        terminalreporter.section("herald measurements")
        for r in _REPORTS:
            terminalreporter.write_line(_json.dumps(r))
