"""The compose cluster without a Docker engine: every service of
deploy/compose/docker-compose.yml runs as a plain process in a network namespace of its
own (its own address, its own port space, the other services' names in its /etc/hosts),
all of them on one bridge, as containers on a compose network would; then the same
end-to-end check as deploy/test/e2e.sh runs (e2e.run: clients through both routers, a
node SIGKILLed under load, nothing lost, Prometheus scraping everything with the alert
rules loaded, every dashboard query evaluating).

What each service runs comes from deploy/test/compose.py: for Herald's images the
Dockerfile stage (ENTRYPOINT, ENV, USER 10001:10001, HEALTHCHECK), with this checkout's
binaries; for the third-party images the same program from Debian's packages
(nats-server 2.9, prometheus 2.42: the versions the compose file pins). Mounts become
paths on this machine: a mounted config file is copied with every container path in it
(other mounts, named volumes) rewritten to where that mount lives here; named volumes
are folders in a temporary directory. Grafana has no Debian package: it is the one
service not started (its dashboard's queries are still evaluated against Prometheus).
Published ports are not needed: the test reaches each router at its own address.

Needs root (ip netns, veth, a bridge) and iproute2. Addresses come from 198.18.0.0/24
(RFC 2544's benchmarking range) and exist only inside the namespaces this script makes;
it removes them, and whatever an earlier interrupted run left, every time.

Usage: netns.py NODE_BIN ROUTER_BIN
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compose  # noqa: E402
import e2e  # noqa: E402

PREFIX = "hrld-"
SUBNET = "198.18.0"
HOST_ADDR = f"{SUBNET}.254"
SWITCH = f"{PREFIX}switch"
NOT_STARTED = {"grafana/grafana:10.4.2": "no Debian package"}


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r


def cleanup_leftovers() -> None:
    """Namespaces and /etc/netns entries of this script's earlier runs."""
    for ns in sh("ip", "netns", "list").stdout.split():
        if ns.startswith(PREFIX):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            sh("ip", "netns", "del", ns, check=False)
    sh("ip", "link", "del", "hrldhost", check=False)
    for d in Path("/etc/netns").glob(f"{PREFIX}*"):
        shutil.rmtree(d, ignore_errors=True)


class Network:
    """A bridge in a namespace of its own (so the host's firewall never sees the
    traffic), this machine attached to it at HOST_ADDR, and one namespace per service."""

    def __init__(self, names: list[str]):
        self.addr = {name: f"{SUBNET}.{10 + i}" for i, name in enumerate(names)}
        sh("ip", "netns", "add", SWITCH)
        sh("ip", "netns", "exec", SWITCH, "ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "netns", "exec", SWITCH, "ip", "link", "set", "br0", "up")
        self._plug("hrldhost", "hrldhostp", None, HOST_ADDR)
        hosts = "127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in self.addr.items())
        for i, (name, addr) in enumerate(self.addr.items()):
            ns = self.ns(name)
            sh("ip", "netns", "add", ns)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            self._plug(f"hrld{i}", f"hrld{i}p", ns, addr)
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            # `ip netns exec` mounts these over /etc/hosts and /etc/hostname.
            (etc / "hosts").write_text(hosts)
            (etc / "hostname").write_text(name + "\n")

    @staticmethod
    def ns(name: str) -> str:
        return PREFIX + name

    @staticmethod
    def _plug(inner: str, outer: str, ns: str | None, addr: str) -> None:
        sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        sh("ip", "link", "set", outer, "netns", SWITCH)
        sh("ip", "netns", "exec", SWITCH, "ip", "link", "set", outer, "master", "br0", "up")
        pre = ("ip", "netns", "exec", ns) if ns else ()
        if ns:
            sh("ip", "link", "set", inner, "netns", ns)
        sh(*pre, "ip", "addr", "add", f"{addr}/24", "dev", inner)
        sh(*pre, "ip", "link", "set", inner, "up")


class Host:
    """One service as a process in its namespace."""

    def __init__(self, svc: compose.Service, net: Network, work: Path, programs: dict[str, str]):
        self.svc = svc
        self.ns = net.ns(svc.name)
        self.log = work / "logs" / f"{svc.name}.log"
        self.paths = self._mounts(work)
        self.env = {"PATH": "/usr/local/bin:/usr/bin:/bin", **svc.env}
        self.user = []
        if svc.user:
            uid, _, gid = svc.user.partition(":")
            self.user = ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups"]
        self.argv = [programs[svc.program]] + [self._rewrite(a) for a in svc.argv[1:]]
        self.health = [programs[svc.healthcheck[0]]] + svc.healthcheck[1:] if svc.healthcheck else []
        self.proc: subprocess.Popen | None = None

    def _mounts(self, work: Path) -> dict[str, str]:
        """Container path -> path here. Files are copied (rewritten later); volumes are
        folders under `work`, shared by name as docker's named volumes are."""
        paths = {}
        for m in self.svc.mounts:
            if m.volume:
                d = work / "volumes" / m.volume
                d.mkdir(parents=True, exist_ok=True)
                os.chmod(d, 0o777)
                paths[m.target] = str(d)
            elif m.source.is_dir():
                paths[m.target] = str(m.source)
            else:
                paths[m.target] = str(work / "files" / self.svc.name / m.target.lstrip("/"))
        for m in self.svc.mounts:
            if m.source and m.source.is_file():
                dest = Path(paths[m.target])
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(self._rewrite(m.source.read_text(), paths))
        return paths

    def _rewrite(self, text: str, paths: dict[str, str] | None = None) -> str:
        paths = paths if paths is not None else self.paths
        if not paths:
            return text
        alt = "|".join(re.escape(t) for t in sorted(paths, key=len, reverse=True))
        return re.sub(rf"(?<![\w.\-/])({alt})(?=$|[/\s\"',\]])", lambda m: paths[m.group(1)], text)

    def _exec(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *self.user, *argv]

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen(self._exec(self.argv), env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def healthy(self) -> bool:
        """The image's HEALTHCHECK, run where docker runs it: inside, as the service."""
        r = subprocess.run(self._exec(self.health), env=self.env, capture_output=True, timeout=10)
        return r.returncode == 0

    def uid(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
        raise AssertionError("no Uid line")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_order(services: dict[str, compose.Service]) -> list[str]:
    order: list[str] = []

    def visit(name: str) -> None:
        if name not in order:
            for dep in services[name].depends_on:
                visit(dep)
            order.append(name)

    for name in services:
        visit(name)
    return order


def main(node_bin: str, router_bin: str) -> None:
    if os.geteuid() != 0:
        raise SystemExit("netns.py needs root (ip netns, veth, a bridge)")
    services = compose.load()
    started = {n: s for n, s in services.items() if s.image not in NOT_STARTED}
    for n, s in services.items():
        if n not in started:
            print(f"    (not started: {n}, {s.image}: {NOT_STARTED[s.image]})")
    cleanup_leftovers()
    work = Path(tempfile.mkdtemp(prefix="herald-netns-"))
    os.chmod(work, 0o755)
    # The image's binaries, world-readable like /usr/local/bin in the image.
    bindir = work / "bin"
    bindir.mkdir()
    programs = {}
    for b in (node_bin, router_bin):
        dest = bindir / Path(b).name
        shutil.copy2(b, dest)
        os.chmod(dest, 0o755)
        programs[f"/usr/local/bin/{dest.name}"] = str(dest)
    for s in started.values():
        if not s.program.startswith("/usr/local/bin/"):
            found = shutil.which(s.program)
            if not found:
                raise SystemExit(f"{s.name} needs {s.program} (apt-get install {s.program})")
            programs[s.program] = found
    hosts: dict[str, Host] = {}
    ok = False
    try:
        net = Network(list(started))
        print("==> network: " + ", ".join(f"{n} {a}" for n, a in net.addr.items()))
        for name in start_order(started):
            hosts[name] = Host(started[name], net, work, programs)
            hosts[name].start()
        print(f"==> started {len(hosts)} services as processes")

        deadline = time.monotonic() + 120
        for name, h in hosts.items():
            if not h.health:
                continue
            while not h.healthy():
                if h.proc.poll() is not None:
                    raise AssertionError(f"{name} exited with {h.proc.returncode}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} not healthy within 120 s")
                time.sleep(0.5)
            print(f"    {name} healthy (its HEALTHCHECK, uid {h.uid()})")
        for name, h in hosts.items():
            if h.svc.user:
                want = int(h.svc.user.split(":")[0])
                assert h.uid() == want, f"{name} runs as uid {h.uid()}, not {want}"

        def port_of(name: str) -> int:
            return compose.listen_port(started[name].env["HERALD_ROUTER_LISTEN"])

        routers = [f"http://{net.addr[n]}:{port_of(n)}" for n in started if started[n].image.startswith("herald-router")]
        prom = next(n for n in started if started[n].image.startswith("prom/"))
        print("==> e2e.run (the check deploy/test/e2e.sh runs on an engine)")
        prom_url = f"http://{net.addr[prom]}:{started[prom].expose[0]}"
        asyncio.run(e2e.run(routers, prom_url, lambda svc: hosts[svc].kill()))
        ok = True
    finally:
        if not ok:
            print("==> logs (failure)")
            for name, h in hosts.items():
                print(f"--- {name}\n{h.tail()}")
        for h in hosts.values():
            h.kill(signal.SIGTERM)
        for h in hosts.values():
            try:
                h.proc.wait(10)
            except subprocess.TimeoutExpired:
                h.kill()
        cleanup_leftovers()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
