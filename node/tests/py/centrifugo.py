"""A real Centrifugo v6.9.1 process, the oracle of the differential test.

The binary comes from CENTRIFUGO_BIN, else <repo>/target/peers/bin/centrifugo; when
neither exists it is installed there with
`GOBIN=<repo>/target/peers/bin go install github.com/centrifugal/centrifugo/v6@v6.9.1`
(the Go module proxy serves it; the build is cached by Go and under target/).

`Centrifugo.start(cfg)` runs it on 127.0.0.1 with a JSON config file, waits until the
port answers, and `stop()` ends it. Only loopback addresses are used.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

REPO_ROOT = Path(__file__).resolve().parents[3]
VERSION = "v6.9.1"
MODULE = f"github.com/centrifugal/centrifugo/v6@{VERSION}"
PEER_BIN_DIR = REPO_ROOT / "target" / "peers" / "bin"
START_TIMEOUT = 30.0


def binary() -> Path:
    """Finds Centrifugo, installing it under target/peers/bin when it is missing."""
    env = os.environ.get("CENTRIFUGO_BIN")
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise RuntimeError(f"CENTRIFUGO_BIN={env} is not an executable file")
        return path
    path = PEER_BIN_DIR / "centrifugo"
    if path.is_file() and os.access(path, os.X_OK):
        return path
    go = shutil.which("go")
    if go is None:
        raise RuntimeError(
            f"Centrifugo not found at {path} and no Go toolchain to install it "
            f"(`GOBIN={PEER_BIN_DIR} go install {MODULE}`)"
        )
    PEER_BIN_DIR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOBIN=str(PEER_BIN_DIR), CGO_ENABLED="0")
    done = subprocess.run(
        [go, "install", MODULE], env=env, capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0 or not path.is_file():
        raise RuntimeError(f"go install {MODULE} failed:\n{done.stdout}\n{done.stderr}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Centrifugo:
    """One running Centrifugo with the given configuration."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path, config: dict):
        self.proc = proc
        self.port = port
        self.log_path = log_path
        self.config = config
        self.host = "127.0.0.1"

    @classmethod
    def start(cls, config: dict[str, Any], workdir: Path, name: str = "centrifugo") -> "Centrifugo":
        port = free_port()
        cfg = json.loads(json.dumps(config))
        cfg.setdefault("http_server", {}).update({"address": "127.0.0.1", "port": port})
        cfg_path = workdir / f"{name}.json"
        cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        log_path = workdir / f"{name}.log"
        log = open(log_path, "w", encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CENTRIFUGO_")}
        proc = subprocess.Popen(
            [str(binary()), "--config", str(cfg_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(workdir),
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"centrifugo exited with {proc.returncode}:\n{log_path.read_text()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError(f"centrifugo did not listen:\n{log_path.read_text()}")
                time.sleep(0.05)
        return cls(proc, port, log_path, cfg)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.http_url}/api"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            return f"(cannot read {self.log_path}: {e})"

    def stop(self) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return self.proc.returncode
