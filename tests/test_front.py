"""deploy/nginx.conf before the real Cog server: only predictions, cancel and health get
through, the body is capped, large uploads are let in two at a time, and the server never calls
out (webhooks, photo URLs) unless the front is told to."""

import http.client
import http.server
import json
import threading
import time

import pytest

from tests import front
from tests.conftest import EXAMPLES, data_uri

pytestmark = pytest.mark.skipif(front.missing() is not None, reason=str(front.missing()))

GOOD = {"image": data_uri((EXAMPLES / "astronaut_face.jpg").read_bytes(), "image/jpeg")}


@pytest.fixture(scope="module")
def front_url(cog_server):
    running = front.LocalFront(cog_server.url)
    yield running.url
    running.stop()


class Listener:
    """Records every request that reaches it: where a webhook or a photo URL would call."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        calls = self.calls

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                calls.append(f"GET {self.path}")
                self.send_response(200)
                self.end_headers()
                self.wfile.write((EXAMPLES / "astronaut_face.jpg").read_bytes())

            def do_POST(self) -> None:
                calls.append(f"POST {self.path}")
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()


@pytest.fixture
def listener():
    running = Listener()
    yield running
    running.close()


def call(url: str, method: str, path: str, body: dict | bytes | None = None, **headers: str):
    """(status, parsed JSON answer) for one request, retrying Cog's 409 (all slots busy)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    host, port = url.removeprefix("http://").split(":")
    for _ in range(50):
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.request(method, path, body=data, headers={"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        status, text = response.status, response.read()
        connection.close()
        if status != 409:
            return status, json.loads(text) if text else None
        time.sleep(0.1)
    raise AssertionError("the server stayed busy")


def test_a_prediction_goes_through(front_url):
    status, prediction = call(front_url, "POST", "/predictions", {"input": GOOD})
    assert status == 200 and prediction["status"] == "succeeded", prediction
    assert call(front_url, "GET", "/health-check")[1]["status"] == "READY"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/shutdown"), ("GET", "/openapi.json"), ("GET", "/predictions"), ("DELETE", "/predictions/x")],
)
def test_everything_else_is_not_found(front_url, cog_server, method, path):
    status, answer = call(front_url, method, path, b"{}")
    assert status == 404
    assert answer["error"].startswith("Not found. This server answers POST /predictions")
    assert cog_server.health()["status"] == "READY"


def test_a_webhook_is_dropped_though_the_server_itself_would_call_it(front_url, cog_server, listener):
    body = {"input": GOOD, "webhook": f"{listener.url}/hook"}
    status, prediction = call(front_url, "POST", "/predictions", body)
    assert status == 200 and prediction["status"] == "succeeded", prediction
    time.sleep(1.0)
    assert listener.calls == []
    call(cog_server.url, "POST", "/predictions", body)  # without the front
    deadline = time.monotonic() + 5
    while not listener.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listener.calls and listener.calls[0].startswith("POST /hook")


def test_a_photo_url_is_refused_unless_the_front_allows_urls(front_url, cog_server, listener):
    status, answer = call(front_url, "POST", "/predictions", {"input": {"image": f"{listener.url}/p.jpg"}})
    assert (status, answer["error"]) == (
        400,
        "Send the photo as a data URI (data:image/jpeg;base64,...): this server does not fetch URLs.",
    )
    assert listener.calls == []
    allowing = front.LocalFront(cog_server.url, {"FRONT_ALLOW_URLS": "1"})
    try:
        status, prediction = call(
            allowing.url, "POST", "/predictions", {"input": {"image": f"{listener.url}/p.jpg"}}
        )
    finally:
        allowing.stop()
    assert prediction["status"] == "succeeded", prediction
    assert listener.calls == ["GET /p.jpg"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "The request body must be JSON, for example"),
        (b'{"image": "data:..."}', 'The request body must hold an "input" object, for example'),
        (b"[1, 2]", 'The request body must hold an "input" object, for example'),
    ],
)
def test_a_body_that_is_not_a_prediction_gets_one_sentence(front_url, body, message):
    status, answer = call(front_url, "POST", "/predictions", body)
    assert status == 400 and answer["error"].startswith(message), answer


def raw_request(url: str, head: bytes) -> tuple[int, bytes]:
    """Send a request head (and no body); the status line and body of the answer."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head)
        connection.shutdown(socket.SHUT_WR)  # nothing more is coming: nginx answers and closes
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def test_a_body_over_the_cap_is_refused_before_it_is_sent(front_url):
    status, body = raw_request(
        front_url,
        b"POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 95000000\r\nConnection: close\r\n\r\n",
    )
    assert status == 413 and b"larger than 90 MB" in body


def test_a_chunked_body_is_refused(front_url):
    status, body = raw_request(
        front_url,
        b"POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
    )
    assert status == 411 and b"Content-Length" in body


def test_a_third_large_upload_at_once_is_told_to_retry(front_url):
    import socket

    host, port = front_url.removeprefix("http://").split(":")
    head = (
        b"POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 20000000\r\n\r\n{"
    )
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(2)]
    try:
        for connection in held:
            connection.sendall(head)  # two large uploads under way, their bodies still coming
        time.sleep(0.3)
        status, body = raw_request(front_url, head.replace(b"\r\n\r\n{", b"\r\nConnection: close\r\n\r\n"))
        assert status == 503 and b"busy with other large uploads" in body
    finally:
        for connection in held:
            connection.close()
    time.sleep(0.3)
    assert call(front_url, "POST", "/predictions", {"input": GOOD})[1]["status"] == "succeeded"


def test_the_compose_file_publishes_only_the_front_and_mounts_what_nginx_conf_reads():
    import yaml

    services = yaml.safe_load((front.REPO / "deploy" / "compose.yaml").read_text())["services"]
    assert "ports" not in services["model"]
    assert services["front"]["ports"] == ["5000:8080"]
    config = (front.REPO / "deploy" / "nginx.conf").read_text()
    assert "listen 8080;" in config and "server model:5000;" in config
    assert "js_path /etc/nginx/njs/;" in config and "js_import front.js;" in config
    assert set(services["front"]["volumes"]) == {
        "./nginx.conf:/etc/nginx/nginx.conf:ro",
        "./front.js:/etc/nginx/njs/front.js:ro",
    }
