"""Run the real Cog HTTP server on this machine (no Docker) and talk to it, for tests and bench.py."""

import ast
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


def decorator_concurrency(predictor: Path = REPO / "predict.py") -> int:
    """What `cog build` bakes into the image as COG_MAX_CONCURRENCY: the literal integer of
    @cog.concurrent(max=N) on Predictor.run, read statically (coglet itself never reads the
    decorator, only that variable)."""
    for node in ast.walk(ast.parse(predictor.read_text())):
        if isinstance(node, ast.AsyncFunctionDef) and node.name == "run":
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and ast.unparse(decorator.func) in (
                    "cog.concurrent",
                    "concurrent",
                ):
                    [keyword] = [k for k in decorator.keywords if k.arg == "max"]
                    return keyword.value.value
    raise LookupError("no @cog.concurrent(max=...) on an async run() in predict.py")


class LocalCogServer:
    """`python -m cog.server.http` serving predict.py:Predictor on a free loopback port, set up
    as a built image would be."""

    def __init__(self, env: dict[str, str] | None = None, max_concurrency: int | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="cog-server-", suffix=".log")[1])
        concurrency = decorator_concurrency() if max_concurrency is None else max_concurrency
        environment = {
            **os.environ,
            # coglet starts its worker as `python` from PATH: make that this interpreter.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
            "PORT": str(self.port),
            "COG_MAX_CONCURRENCY": str(concurrency),
            # Without it a worker that cannot start leaves the health check at STARTING forever.
            "COG_SETUP_TIMEOUT": "300",
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

    def start_prediction(self, inputs: dict[str, Any], prediction_id: str) -> dict[str, Any]:
        """PUT /predictions/<id> with Prefer: respond-async: returns at once, the work goes on.
        A 409 (all slots busy) is retried with backoff, as predict() does."""
        for conflicts in range(200):
            request = urllib.request.Request(
                f"{self.url}/predictions/{prediction_id}",
                data=json.dumps({"id": prediction_id, "input": inputs}).encode(),
                headers={"Content-Type": "application/json", "Prefer": "respond-async"},
                method="PUT",
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.load(response)
            except urllib.error.HTTPError as error:
                if error.code != 409:
                    raise
                time.sleep(min(0.005 * 2 ** min(conflicts, 6), 0.25))
        raise TimeoutError("every slot stayed busy")

    def cancel(self, prediction_id: str) -> int:
        request = urllib.request.Request(
            f"{self.url}/predictions/{prediction_id}/cancel", data=b"", method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def pids(self) -> list[int]:
        """The server and every process under it (the model's worker, decode workers)."""
        return [self.process.pid, *_descendants(self.process.pid)]

    def decode_workers(self) -> list[int]:
        """Decode worker processes: children of the forkserver the model's worker started."""
        forkservers = [pid for pid in self.pids() if b"forkserver" in _cmdline(pid)]
        return [pid for pid in self.pids() if _parent(pid) in forkservers]

    def rss_bytes(self) -> int:
        """Resident memory of the server and all its processes."""
        return sum(_rss(pid) for pid in self.pids())

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


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


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
