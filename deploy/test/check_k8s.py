"""Checks deploy/k8s: every manifest (base and overlays) against the Kubernetes schemas
(kubernetes-validate, strict), and that the manifests agree with the binaries and with
each other: ports and probe paths are what herald-node and herald-router serve (the
real binaries are started and asked), the drain fits terminationGracePeriodSeconds, the
routers discover the nodes through the headless Service, selectors match.

Usage: check_k8s.py NODE_BIN ROUTER_BIN
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import kubernetes_validate
import yaml

K8S = Path(__file__).resolve().parents[1] / "k8s"
VERSION = "1.37.0"
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def load(kustomization: Path) -> list[dict]:
    """Resources of a kustomization, following `resources` into bases (no patches:
    the overlays here only set images and replicas)."""
    k = yaml.safe_load(kustomization.read_text())
    docs = []
    for r in k.get("resources", []):
        p = (kustomization.parent / r).resolve()
        if p.is_dir():
            docs += load(p / "kustomization.yaml")
        else:
            docs += [d for d in yaml.safe_load_all(p.read_text()) if d]
    return docs


def by_kind(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert found, f"no {kind}/{name}"
    return found[0]


def container(deploy):
    return deploy["spec"]["template"]["spec"]["containers"][0]


def port_of(c, ref):
    for p in c["ports"]:
        if ref in (p.get("name"), p["containerPort"]):
            return p["containerPort"]
    raise AssertionError(f"port {ref} not declared")


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def serve(binary: str, env: dict, name: str) -> tuple[subprocess.Popen, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    full.update(env)
    p = subprocess.Popen([binary], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    for line in p.stdout:
        m = re.search(r"listening on (\S+)", line)
        if m:
            return p, m.group(1).replace("0.0.0.0", "127.0.0.1")
        if time.monotonic() > deadline:
            break
    p.kill()
    raise AssertionError(f"{name} did not start")


def main(node_bin: str, router_bin: str) -> None:
    kustomizations = sorted(K8S.rglob("kustomization.yaml"))
    for k in kustomizations:
        for d in load(k):
            where = f"{k.parent.relative_to(K8S)}: {d['kind']}/{d['metadata']['name']}"
            try:
                kubernetes_validate.validate(d, VERSION, strict=True)
                check(True, f"{where} valid against Kubernetes {VERSION} (strict)")
            except kubernetes_validate.ValidationError as e:
                check(False, f"{where}: {e.message}")

    docs = load(K8S / "base" / "kustomization.yaml")
    node_cfg = by_kind(docs, "ConfigMap", "herald-node-config")["data"]
    router_cfg = by_kind(docs, "ConfigMap", "herald-router-config")["data"]
    node = by_kind(docs, "Deployment", "herald-node")
    router = by_kind(docs, "Deployment", "herald-router")
    nc, rc = container(node), container(router)

    listen_port = int(node_cfg["HERALD_LISTEN"].rsplit(":", 1)[1])
    check(port_of(nc, "http") == listen_port, f"node containerPort = HERALD_LISTEN port ({listen_port})")
    rport = int(router_cfg["HERALD_ROUTER_LISTEN"].rsplit(":", 1)[1])
    check(port_of(rc, "http") == rport, f"router containerPort = HERALD_ROUTER_LISTEN port ({rport})")

    grace = node["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = float(node_cfg["HERALD_DRAIN_TIMEOUT"])
    check(grace >= drain + 5, f"terminationGracePeriodSeconds {grace} >= HERALD_DRAIN_TIMEOUT {drain} + 5")
    check(float(node_cfg["HERALD_DRAIN_GRACE"]) + float(node_cfg["HERALD_DRAIN_WINDOW"]) < drain,
          "drain grace + window < drain timeout")
    ready = nc["readinessProbe"]
    check(ready["periodSeconds"] * ready.get("failureThreshold", 3) < float(node_cfg["HERALD_DRAIN_GRACE"]),
          "readiness probe notices a drain within HERALD_DRAIN_GRACE")
    check(nc["lifecycle"]["preStop"]["exec"]["command"][-1] == "drain", "preStop runs `herald-node drain`")
    rgrace = router["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    check(rgrace > float(router_cfg["HERALD_ROUTER_SHUTDOWN_GRACE"]),
          "router terminationGracePeriodSeconds > HERALD_ROUTER_SHUTDOWN_GRACE")

    svc = by_kind(docs, "Service", "herald-node")
    dns_name, dns_port = router_cfg["HERALD_ROUTER_DNS"].rsplit(":", 1)
    check(svc["spec"].get("clusterIP") == "None", "node Service is headless")
    check(dns_name == "herald-node" and int(dns_port) == svc["spec"]["ports"][0]["port"] == listen_port,
          "routers discover nodes through the headless Service (HERALD_ROUTER_DNS)")
    labels = node["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        d = by_kind(docs, kind, "herald-node")
        sel = d["spec"]["selector"].get("matchLabels", d["spec"]["selector"])
        check(all(labels.get(k) == v for k, v in sel.items()), f"{kind}/herald-node selects the node pods")
    hpa = by_kind(docs, "HorizontalPodAutoscaler", "herald-node")
    check(hpa["spec"]["scaleTargetRef"]["name"] == "herald-node", "HPA scales the node Deployment")
    nats_url = node_cfg["HERALD_NATS_URL"]
    nats = by_kind(docs, "StatefulSet", "nats")
    check(all(f"nats-{i}.nats:4222" in nats_url for i in range(nats["spec"]["replicas"])),
          "HERALD_NATS_URL names every NATS pod of the StatefulSet")

    # The binaries serve the probed paths on the declared ports' roles.
    env = {k: v for k, v in node_cfg.items() if k != "HERALD_NATS_URL"}
    env.update(HERALD_LISTEN="127.0.0.1:0", HERALD_TOKEN_HMAC_SECRET="x" * 32, HERALD_API_KEY="k")
    p, addr = serve(node_bin, env, "herald-node")
    try:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            path = nc[probe]["httpGet"]["path"]
            check(http_status(f"http://{addr}{path}") == 200, f"herald-node serves {probe} {path} (200)")
    finally:
        p.terminate()
        p.wait(10)
    renv = dict(router_cfg)
    renv.pop("HERALD_ROUTER_DNS")
    renv.update(HERALD_ROUTER_LISTEN="127.0.0.1:0", HERALD_ROUTER_NODES=addr)
    p, raddr = serve(router_bin, renv, "herald-router")
    try:
        for probe in ("livenessProbe", "readinessProbe"):
            path = rc[probe]["httpGet"]["path"]
            # With no node up, readiness is rightly 503; the path must exist.
            status = http_status(f"http://{raddr}{path}")
            check(status in (200, 503) if probe == "readinessProbe" else status == 200,
                  f"herald-router serves {probe} {path} ({status})")
    finally:
        p.terminate()
        p.wait(10)

    if failures:
        raise SystemExit(f"{len(failures)} check(s) failed")
    print("all Kubernetes checks passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
