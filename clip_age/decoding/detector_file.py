"""The YuNet face detector's model file: the release clip-age uses, and fetching it, checked.

The file is fetched like the CLIP weights, never shipped: cog.yaml's build step puts it into the
image, `clip-age download` (or `clip-age predict --faces`, on first use) into this machine's
cache. Both put it in the same place, the default FACE_DETECTOR_MODEL (see settings.py).
"""

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

NAME = "face_detection_yunet_2026may.onnx"
# OpenCV's model zoo; cog.yaml's build step names the same URL and sha256 (a test keeps them equal).
URL = f"https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/{NAME}"
SHA256 = "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"
SIZE = 229_738
TIMEOUT_S = 60


class DetectorDownloadError(RuntimeError):
    """The detector could not be fetched or was not the file it should be."""


def fetch(target: Path, url: str | None = None) -> Path:
    """Download the detector (from URL unless told) to target, unless a verified copy is
    already there. Nothing is left at target unless its sha256 matches."""
    url = url or URL
    if target.is_file() and _sha256(target.read_bytes()) == SHA256:
        return target
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            data = response.read(SIZE + 1)  # one byte more than the file: a longer one is refused
    except OSError as error:
        raise DetectorDownloadError(f"Could not download the face detector from {url}: {error}") from None
    digest = _sha256(data)
    if digest != SHA256:
        raise DetectorDownloadError(
            f"The face detector downloaded from {url} is not YuNet 2026may ({len(data)} bytes, "
            f"sha256 {digest}; expected {SIZE} bytes, sha256 {SHA256}). Nothing was saved."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed: a reader never sees half a file.
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".yunet-", delete=False) as part:
        part.write(data)
    os.replace(part.name, target)
    return target


def describe(path: Path) -> str:
    return f"{path} ({SIZE / 1e6:.1f} MB): the YuNet face detector, sha256 {SHA256[:12]}... matches"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
