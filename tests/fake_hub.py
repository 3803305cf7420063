"""A Hugging Face Hub on loopback, for download tests: serves files as the Hub's resolve
endpoint does (commit, etag = the file's sha256, size), and can lie about a file's contents."""

import hashlib
import http.server
import threading
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """files: {"org/repo/filename": bytes}; corrupt: names whose bytes are flipped on the way
    while their etag stays the true sha256 (a download corrupted in transit)."""

    def __init__(self, files: dict[str, bytes], corrupt: frozenset[str] = frozenset()) -> None:
        self.files, self.corrupt, self.requests = files, corrupt, []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                hub.requests.append(self.path)
                # /{org}/{repo}/resolve/{revision}/{filename}
                parts = self.path.split("?")[0].strip("/").split("/")
                key = "/".join(parts[:2] + parts[4:]) if len(parts) >= 5 and parts[2] == "resolve" else ""
                if key not in hub.files:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = hub.files[key]
                sent = bytes(b ^ 0xFF for b in data) if key in hub.corrupt else data
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(sent)))
                self.end_headers()
                if body:
                    self.wfile.write(sent)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def model_files(folder: Path, repo_id: str) -> dict[str, bytes]:
    """A local-dir model's files, as a Hub repository would hold them."""
    return {f"{repo_id}/{path.name}": path.read_bytes() for path in folder.iterdir()}
