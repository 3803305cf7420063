"""Run the real Cog HTTP server on this machine (no Docker) and talk to it, for tests and bench.py."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class LocalCogServer:
    """`python -m cog.server.http` serving predict.py:Predictor on a free loopback port."""

    def __init__(self, env: dict[str, str] | None = None, max_concurrency: int = 32) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="cog-server-", suffix=".log")[1])
        environment = {
            **os.environ,
            "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
            "PORT": str(self.port),
            # A built image takes this from cog.yaml; the bare server needs it spelled out.
            "COG_MAX_CONCURRENCY": str(max_concurrency),
            **(env or {}),
        }
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"],
                cwd=REPO,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def __enter__(self) -> "LocalCogServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_until_ready(self, timeout_s: float = 180.0) -> dict[str, Any]:
        """Poll the health check until setup has finished; return its last answer."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Cog server exited during setup:\n{self.log()}")
            try:
                health = self.health()
            except OSError:
                health = {}
            if health.get("status") in ("READY", "SETUP_FAILED"):
                return health
            time.sleep(0.2)
        raise TimeoutError(f"Cog server not ready after {timeout_s} s:\n{self.log()}")

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/health-check", timeout=10) as response:
            return json.load(response)

    def predict(
        self, inputs: dict[str, Any], retries: int = 200, timeout_s: float = 120.0
    ) -> tuple[dict[str, Any], int]:
        """POST /predictions; on 409 (all slots busy) back off and retry.
        Returns the prediction and how many 409s it met."""
        body = json.dumps({"input": inputs}).encode()
        conflicts = 0
        while True:
            request = urllib.request.Request(
                f"{self.url}/predictions",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=timeout_s) as response:
                    return json.load(response), conflicts
            except urllib.error.HTTPError as error:
                if error.code != 409 or conflicts >= retries:
                    raise
                conflicts += 1
                time.sleep(min(0.005 * 2 ** min(conflicts, 6), 0.25))

    def rss_bytes(self) -> int:
        """Resident memory of the server and its worker processes."""
        return sum(_rss(pid) for pid in [self.process.pid, *_descendants(self.process.pid)])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
