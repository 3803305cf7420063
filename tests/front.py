"""Run deploy/nginx.conf, the front a self-hoster puts before the model, on this machine:
nginx as Debian packages it, with the njs module, before a local Cog server."""

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NJS_MODULE = Path("/usr/lib/nginx/modules/ngx_http_js_module.so")


def missing() -> str | None:
    """Why the front cannot run here, or None."""
    if shutil.which("nginx") is None or not NJS_MODULE.exists():
        return "needs nginx with its njs module: apt-get install nginx-light libnginx-mod-http-js"
    return None


class LocalFront:
    """deploy/nginx.conf as shipped, with three things a compose file sets otherwise: the
    model's address, the port, and where front.js and the temporary files live."""

    def __init__(self, model_url: str, env: dict[str, str] | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="clip-age-front-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = (REPO / "deploy" / "nginx.conf").read_text()
        for shipped, here in (
            ("server model:5000;", f"server {model_url.removeprefix('http://')};"),
            ("listen 8080;", f"listen 127.0.0.1:{self.port};"),
            ("js_path /etc/nginx/njs/;", f"js_path {REPO / 'deploy'}/;"),
            ("/tmp/clip-age-front", str(self.folder / "front")),
        ):
            assert shipped in config, f"deploy/nginx.conf no longer has {shipped!r}"
            config = config.replace(shipped, here)
        (self.folder / "nginx.conf").write_text(config)
        self.log_path = self.folder / "nginx.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                ["nginx", "-p", str(self.folder), "-c", str(self.folder / "nginx.conf"), "-g", "daemon off;"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={"PATH": "/usr/sbin:/usr/bin:/bin", **(env or {})},
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(self.log_path.read_text())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
