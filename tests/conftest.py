import base64
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from tiny_clip import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHARED = Path(os.environ.get("SHARED_DIR", REPO.parent / "shared"))
YUNET = SHARED / "models" / "face_detection_yunet_2026may.onnx"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def estimator(tiny_model_dir):
    from estimator import AgeEstimator

    return AgeEstimator(f"local-dir:{tiny_model_dir}", device="cpu")


@pytest.fixture(scope="session")
def yunet_model() -> Path:
    if not YUNET.is_file():
        pytest.skip(f"the YuNet face detector model is not at {YUNET} (see ../shared/README.md)")
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
    from local_server import LocalCogServer

    env = {
        "CLIP_MODEL": f"local-dir:{tiny_model_dir}",
        "FACE_DETECTOR_MODEL": str(YUNET if YUNET.is_file() else SHARED / "no-such-detector.onnx"),
    }
    with LocalCogServer(env) as server:
        health = server.wait_until_ready()
        assert health["status"] == "READY", server.log()
        yield server
