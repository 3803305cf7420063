import base64
import io
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from clip_age.dev.tiny_models import build_tiny_model
from clip_age.settings import Settings

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHARED = Path(os.environ.get("SHARED_DIR", REPO.parent / "shared"))
YUNET = Settings.from_env().face_detector_model


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory) -> Path:
    """The CPU runtime's exports (the cpu extra) for this run, not the user's cache; servers and
    commands the tests start inherit it."""
    folder = tmp_path_factory.mktemp("exports")
    os.environ["CLIP_EXPORT_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture
def model(tiny_model_dir, monkeypatch):
    """The tiny model as the environment names it, for the command and the Python API."""
    monkeypatch.setenv("CLIP_MODEL", f"local-dir:{tiny_model_dir}")
    monkeypatch.setenv("CLIP_DEVICE", "cpu")
    monkeypatch.setenv("CLIP_CPU_PRECISION", "fp32")
    return tiny_model_dir


@pytest.fixture(scope="session")
def estimator(tiny_model_dir):
    from clip_age.estimation.estimator import AgeEstimator

    # fp32: answers are compared with other paths and with open_clip; bf16 and int8 have tests of their own.
    return AgeEstimator(f"local-dir:{tiny_model_dir}", device="cpu", cpu_precision="fp32")


@pytest.fixture(scope="session")
def yunet_model() -> Path:
    """The YuNet face detector: FACE_DETECTOR_MODEL, else where `clip-age download` puts it."""
    if not YUNET.is_file():
        pytest.skip(
            f"needs the YuNet face detector at {YUNET}: run `clip-age download`, or set "
            "FACE_DETECTOR_MODEL to a copy (.ci/run uses ../shared/models/face_detection_yunet_2026may.onnx)"
        )
    return YUNET


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    return Image.open(EXAMPLES / "astronaut.png").convert("RGB")


def encode(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "application/octet-stream") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.fixture(scope="session")
def cog_server(tiny_model_dir):
    """The real Cog HTTP server running predict.py with the tiny model (and YuNet if present)."""
    from tests.cog_server import LocalCogServer

    env = {"CLIP_MODEL": f"local-dir:{tiny_model_dir}", "CLIP_DEVICE": "cpu", "CLIP_CPU_PRECISION": "fp32"}
    with LocalCogServer(env) as server:
        health = server.wait_until_ready()
        assert health["status"] == "READY", server.log()
        yield server


@pytest.fixture(scope="session")
def one_worker_server(tiny_model_dir):
    """A Cog server with one decode worker and default limits, for the tests that hold, kill or
    cancel that worker (each leaves it READY, its worker replaced): one start for all of them."""
    from tests.cog_server import LocalCogServer

    env = {"CLIP_MODEL": f"local-dir:{tiny_model_dir}", "CLIP_DEVICE": "cpu", "DECODE_WORKERS": "1"}
    with LocalCogServer(env) as server:
        assert server.wait_until_ready()["status"] == "READY", server.log()
        yield server


@pytest.fixture(scope="session")
def two_worker_server(tiny_model_dir):
    """A Cog server with two decode workers and default limits, for attacks on its bounds."""
    from tests.cog_server import LocalCogServer

    env = {"CLIP_MODEL": f"local-dir:{tiny_model_dir}", "CLIP_DEVICE": "cpu", "DECODE_WORKERS": "2"}
    with LocalCogServer(env) as server:
        assert server.wait_until_ready()["status"] == "READY", server.log()
        yield server


def the_decode_worker(server) -> int:
    """The one decode worker's pid, once a replaced worker's successor has started and the same
    one worker has been there for half a second."""
    deadline = time.monotonic() + 30
    seen, since = None, time.monotonic()
    while True:
        workers = server.decode_workers()
        if workers != seen:
            seen, since = workers, time.monotonic()
        elif len(workers) == 1 and time.monotonic() - since >= 0.5:
            return workers[0]
        assert time.monotonic() < deadline, f"decode workers: {workers}"
        time.sleep(0.05)
