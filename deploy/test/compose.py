"""What deploy/compose/docker-compose.yml asks for, read the way docker-compose reads it,
without a Docker engine: each service's image, command, environment (the image's `ENV`,
then `env_file`, then `environment`), user, published and exposed ports, mounts and the
image's HEALTHCHECK. The images Herald builds are described by deploy/Dockerfile (one
stage per image, named as deploy/build-images.sh tags them: `herald-<stage>:latest`);
third-party images are described here by what they run, so the same service can be
started as a plain process (deploy/test/netns.py) or checked (check_compose.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1]
COMPOSE_FILE = DEPLOY / "compose" / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"

# Third-party images: the program each one runs, its default arguments (the image's CMD
# when the service gives no `command`), the ports it exposes and its user. A service
# naming an image that is neither here nor in the Dockerfile is an error, so a new image
# cannot slip past the checks.
THIRD_PARTY = {
    "nats:2.9.10": {"program": "nats-server", "cmd": [], "expose": [4222, 6222, 8222], "user": None},
    "prom/prometheus:v2.42.0": {
        "program": "prometheus",
        "cmd": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"],
        "expose": [9090],
        "user": None,
    },
    "grafana/grafana:10.4.2": {"program": "grafana-server", "cmd": [], "expose": [3000], "user": None},
}


@dataclass
class Stage:
    """One stage of deploy/Dockerfile: what `docker build --target NAME` gives."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    entrypoint: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    expose: list[int] = field(default_factory=list)


@dataclass
class Mount:
    """A bind mount (`source` is a path on this machine) or a named volume (`volume`)."""

    target: str
    source: Path | None = None
    volume: str | None = None
    read_only: bool = False


@dataclass
class Service:
    """One service as a container would run it."""

    name: str
    image: str
    argv: list[str]
    env: dict[str, str]
    user: str | None
    ports: list[tuple[str, int]]  # (published, container port)
    expose: list[int]
    mounts: list[Mount]
    healthcheck: list[str]
    depends_on: list[str]
    stop_grace_s: float | None

    @property
    def program(self) -> str:
        return self.argv[0]


def _json_list(s: str) -> list[str]:
    v = json.loads(s)
    assert isinstance(v, list) and all(isinstance(x, str) for x in v), s
    return v


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, Stage]:
    """The Dockerfile's stages, each inheriting from the stage it is built `FROM`."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: dict[str, Stage] = {}
    cur: Stage | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        rest = rest.strip()
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            parent = stages.get(m.group(1))
            cur = Stage(name=m.group(2) or m.group(1))
            if parent:
                cur.env = dict(parent.env)
                cur.user = parent.user
                cur.entrypoint = list(parent.entrypoint)
                cur.healthcheck = list(parent.healthcheck)
                cur.expose = list(parent.expose)
            stages[cur.name] = cur
        elif cur is None:
            continue
        elif word == "ENV":
            for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', rest):
                cur.env[k] = v.strip('"')
        elif word == "USER":
            cur.user = rest
        elif word == "ENTRYPOINT":
            cur.entrypoint = _json_list(rest)
        elif word == "EXPOSE":
            cur.expose += [int(p.split("/")[0]) for p in rest.split()]
        elif word == "HEALTHCHECK":
            cmd = rest[rest.upper().index("CMD") + 3:].strip()
            cur.healthcheck = _json_list(cmd)
    return stages


def _env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, sep, v = line.partition("=")
            assert sep, f"{path}: not NAME=value: {line!r}"
            env[k.strip()] = v
    return env


def _interpolate(value: str, env: dict[str, str]) -> str:
    """docker-compose's `${NAME:-default}` and `${NAME}` in the compose file."""
    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(3) or ""
        return env.get(name) or default
    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", sub, value)


def _duration(v) -> float | None:
    if v is None:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", str(v))
    assert m, f"not a duration: {v!r}"
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)]


def load(compose_file: Path = COMPOSE_FILE, host_env: dict[str, str] | None = None) -> dict[str, Service]:
    """Every service of the compose file, in file order."""
    host_env = host_env or {}
    doc = yaml.safe_load(_interpolate(compose_file.read_text(), host_env))
    base = compose_file.parent
    stages = dockerfile_stages(base.parent / "Dockerfile")
    out: dict[str, Service] = {}
    for name, svc in doc["services"].items():
        image = svc["image"]
        m = re.fullmatch(r"herald-(\w+):latest", image)
        if m:
            stage = stages[m.group(1)]
            env, user, entry, health, expose = (dict(stage.env), stage.user, stage.entrypoint,
                                                stage.healthcheck, stage.expose)
            default_cmd: list[str] = []
        elif image in THIRD_PARTY:
            t = THIRD_PARTY[image]
            env, user, entry, health, expose = {}, t["user"], [t["program"]], [], t["expose"]
            default_cmd = t["cmd"]
        else:
            raise AssertionError(f"service {name}: image {image} is neither built from deploy/Dockerfile "
                                 "nor a known third-party image")
        files = svc.get("env_file", [])
        for f in [files] if isinstance(files, str) else files:
            env.update(_env_file(base / f))
        environment = svc.get("environment", {})
        if isinstance(environment, list):
            environment = dict(e.split("=", 1) for e in environment)
        env.update({k: str(v) for k, v in environment.items()})
        command = svc.get("command", default_cmd)
        mounts = []
        for v in svc.get("volumes", []):
            parts = v.split(":")
            src, target = parts[0], parts[1]
            ro = len(parts) > 2 and "ro" in parts[2].split(",")
            if src.startswith((".", "/")):
                mounts.append(Mount(target=target, source=(base / src).resolve(), read_only=ro))
            else:
                assert src in (doc.get("volumes") or {}), f"service {name}: volume {src} not declared"
                mounts.append(Mount(target=target, volume=src, read_only=ro))
        ports = []
        for p in svc.get("ports", []):
            published, _, container = str(p).rpartition(":")
            ports.append((published, int(container)))
        deps = svc.get("depends_on", [])
        out[name] = Service(
            name=name,
            image=image,
            argv=list(entry) + list(command),
            env=env,
            user=svc.get("user", user),
            ports=ports,
            expose=list(expose),
            mounts=mounts,
            healthcheck=health,
            depends_on=list(deps.keys() if isinstance(deps, dict) else deps),
            stop_grace_s=_duration(svc.get("stop_grace_period")),
        )
    return out


def hostport(addr: str) -> tuple[str, int]:
    """`HOST:PORT`, with or without a `scheme://` in front, split."""
    addr = re.sub(r"^\w+(-\w+)?://", "", addr)
    host, _, port = addr.rpartition(":")
    return host, int(port)


def listen_port(addr: str) -> int:
    """The port of `HOST:PORT` (HERALD_LISTEN and friends)."""
    return hostport(addr)[1]
