"""Static checks of deploy/compose/docker-compose.yml that need no Docker engine: the file
parses (docker-compose's own `config`, where the client is installed, and our reading of
it), every HERALD_* name a service sets is a setting of the binary its image runs, and
ports, addresses, healthchecks, drain timing and Prometheus targets agree with each other
and with deploy/Dockerfile. The running cluster is checked by deploy/test/netns.py (on
network namespaces) and deploy/test/e2e.sh (on an engine).

Usage: check_compose.py [COMPOSE_FILE]
       check_compose.py --self-test    # each kind of breakage below is caught
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

import compose

ROOT = Path(__file__).resolve().parents[2]
SETTING = re.compile(r'const ENV_\w+: &str = "(HERALD_\w+)"')


def settings_of(*dirs: str) -> set[str]:
    """The HERALD_* names the crates' sources declare as settings (`ENV_*` constants)."""
    names: set[str] = set()
    for d in dirs:
        for f in (ROOT / d).rglob("*.rs"):
            names.update(SETTING.findall(f.read_text()))
    return names


def check_file(compose_file: Path) -> list[str]:
    """Every problem found in `compose_file` (empty when it is right)."""
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    dc = shutil.which("docker-compose")
    if dc:
        r = subprocess.run([dc, "-f", str(compose_file), "config", "-q"], capture_output=True, text=True)
        check(r.returncode == 0, f"docker-compose config accepts the file {r.stderr.strip()[:300]}")
    try:
        services = compose.load(compose_file)
    except (yaml.YAMLError, AssertionError, KeyError, ValueError, OSError) as e:
        check(False, f"the compose file reads: {type(e).__name__}: {e}")
        return failures
    check(True, f"the compose file reads: {len(services)} services")

    by_image = lambda prefix: [s for s in services.values() if s.image.startswith(prefix)]  # noqa: E731
    nodes, routers = by_image("herald-node:"), by_image("herald-router:")
    nats, proms = by_image("nats:"), by_image("prom/prometheus:")
    check(len(nodes) >= 2 and len(routers) >= 1 and len(nats) >= 1, "nodes, routers and NATS are defined")

    known = {"herald-node": settings_of("node/src", "shared/src"), "herald-router": settings_of("router/src")}
    for s in nodes + routers:
        prog = Path(s.program).name
        unknown = sorted(k for k in s.env if k.startswith("HERALD_") and k not in known[prog])
        check(not unknown, f"{s.name}: every HERALD_* name is a {prog} setting {unknown or ''}")

    for s in services.values():
        missing = [d for d in s.depends_on if d not in services]
        check(not missing, f"{s.name}: depends_on names services that exist {missing or ''}")
        for m in s.mounts:
            if m.source is not None:
                check(m.source.exists(), f"{s.name}: mounted {m.source.name} exists")

    # Nodes: the port they listen on is the one everybody else uses.
    node_port = {}
    for n in nodes:
        port = compose.listen_port(n.env.get("HERALD_LISTEN", ""))
        node_port[n.name] = port
        check(port in n.expose, f"{n.name}: listens on {port}, a port its image exposes")
        adv = n.env.get("HERALD_ADVERTISE_ADDR")
        check(adv == f"{n.name}:{port}", f"{n.name}: HERALD_ADVERTISE_ADDR {adv} is its own name and port")
        check(n.healthcheck[:1] == n.argv[:1] and n.healthcheck[1:] == ["healthcheck"],
              f"{n.name}: HEALTHCHECK runs `{Path(n.program).name} healthcheck` (probes HERALD_LISTEN)")
        if "HERALD_NATS_URL" in n.env:
            urls = [compose.hostport(u) for u in n.env["HERALD_NATS_URL"].split(",")]
            check({h for h, _ in urls} == {s.name for s in nats},
                  f"{n.name}: HERALD_NATS_URL names every NATS service")
            check(all(p == 4222 for _, p in urls), f"{n.name}: HERALD_NATS_URL uses NATS's client port 4222")
            replicas = int(n.env.get("HERALD_NATS_REPLICAS", "1"))
            check(replicas <= len(nats), f"{n.name}: HERALD_NATS_REPLICAS {replicas} <= {len(nats)} NATS servers")
        timeout = float(n.env.get("HERALD_DRAIN_TIMEOUT", "0") or 0)
        grace, window = (float(n.env.get(k, "0") or 0) for k in ("HERALD_DRAIN_GRACE", "HERALD_DRAIN_WINDOW"))
        check(grace + window < timeout, f"{n.name}: drain grace + window ({grace + window}) < timeout ({timeout})")
        check(n.stop_grace_s is not None and n.stop_grace_s > timeout,
              f"{n.name}: stop_grace_period {n.stop_grace_s} s > HERALD_DRAIN_TIMEOUT {timeout} s")

    for r in routers:
        port = compose.listen_port(r.env.get("HERALD_ROUTER_LISTEN", ""))
        check(bool(r.ports) and all(c == port for _, c in r.ports),
              f"{r.name}: published ports map to its listen port {port}")
        listed = [compose.hostport(a) for a in r.env.get("HERALD_ROUTER_NODES", "").split(",") if a]
        check({h for h, _ in listed} == set(node_port), f"{r.name}: HERALD_ROUTER_NODES names every node")
        check(all(node_port.get(h) == p for h, p in listed), f"{r.name}: HERALD_ROUTER_NODES uses the nodes' ports")
        check(r.healthcheck[:1] == r.argv[:1] and r.healthcheck[1:] == ["healthcheck"],
              f"{r.name}: HEALTHCHECK runs `{Path(r.program).name} healthcheck`")
        missing = [n for n in node_port if n not in r.depends_on]
        check(not missing, f"{r.name}: depends on every node {missing or ''}")

    for s in nats:
        conf_mount = next((m for m in s.mounts if m.target.endswith(".conf")), None)
        check(conf_mount is not None and s.argv[1:] == ["-c", conf_mount.target],
              f"{s.name}: runs with its mounted config")
        if conf_mount:
            conf = conf_mount.source.read_text()
            routes = set(re.findall(r"nats-route://(\w+):6222", conf))
            check(routes == {x.name for x in nats}, f"{s.name}: cluster routes name every NATS service")
            check("$NATS_NAME" not in conf or "NATS_NAME" in s.env, f"{s.name}: NATS_NAME is set")
            store = re.search(r"store_dir:\s*(\S+)", conf)
            check(store is None or any(store.group(1).startswith(m.target) for m in s.mounts if m.volume),
                  f"{s.name}: JetStream's store_dir is on a volume")

    for p in proms:
        files = {m.target: m.source for m in p.mounts if m.source}
        cfg_path = next(a.split("=", 1)[1] for a in p.argv if a.startswith("--config.file="))
        check(cfg_path in files, f"{p.name}: --config.file is mounted")
        if cfg_path not in files:
            continue
        cfg = yaml.safe_load(files[cfg_path].read_text())
        for rf in cfg.get("rule_files", []):
            ok = rf in files and files[rf] == (compose_file.parents[1] / "prometheus/alerts.yml").resolve()
            check(ok, f"{p.name}: rule file {rf} is deploy/prometheus/alerts.yml")
        targets = {t for sc in cfg["scrape_configs"] for c in sc["static_configs"] for t in c["targets"]}
        want = {f"{n}:{port}" for n, port in node_port.items()}
        want |= {f"{r.name}:{compose.listen_port(r.env['HERALD_ROUTER_LISTEN'])}" for r in routers}
        check(targets == want, f"{p.name}: scrapes every node and router at its port {sorted(targets ^ want) or ''}")
    return failures


# -- self-test: each breakage must be reported ---------------------------------------------

BREAKAGES = {
    "not YAML": ("docker-compose.yml", lambda s: s + "\n  bad: [unclosed\n"),
    "a misspelt setting": ("herald.env", lambda s: s.replace("HERALD_HISTORY_SIZE", "HERALD_HISTROY_SIZE")),
    "a router pointing at a wrong node port": (
        "docker-compose.yml", lambda s: s.replace("node2:8000,node3:8000", "node2:8001,node3:8000")),
    "a stop grace shorter than the drain": ("docker-compose.yml", lambda s: s.replace("30s", "20s")),
    "a node advertising another name": (
        "docker-compose.yml", lambda s: s.replace('HERALD_ADVERTISE_ADDR: "node3:8000"', 'HERALD_ADVERTISE_ADDR: "node1:8000"')),
    "an unknown image": ("docker-compose.yml", lambda s: s.replace("nats:2.9.10", "nats:latest")),
    "a missing NATS route": ("nats/nats.conf", lambda s: s.replace("nats-route://nats3:6222", "")),
}


def self_test() -> None:
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for what, (name, breakit) in BREAKAGES.items():
            copy = Path(tmp) / re.sub(r"\W", "_", what) / "deploy"
            shutil.copytree(compose.DEPLOY, copy, ignore=shutil.ignore_patterns("test", "k8s"))
            f = copy / "compose" / name
            before = f.read_text()
            f.write_text(breakit(before))
            assert f.read_text() != before, f"self-test {what!r} changed nothing"
            print(f"\n--- broken: {what}")
            if not check_file(copy / "compose" / "docker-compose.yml"):
                problems.append(what)
    print()
    if problems:
        raise SystemExit(f"self-test: not caught: {problems}")
    print(f"self-test: all {len(BREAKAGES)} breakages caught")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        self_test()
    else:
        target = Path(sys.argv[1]) if len(sys.argv) > 1 else compose.COMPOSE_FILE
        failed = check_file(target)
        if failed:
            raise SystemExit(f"{len(failed)} compose check(s) failed")
        print("all compose checks passed")
