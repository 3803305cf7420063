"""Every environment variable the model reads, read in this one place."""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Where cog.yaml's build steps put the weights inside the image.
DEFAULT_WEIGHTS_DIR = Path("/weights")
# OpenCV's YuNet (MIT, 230 KB) ships inside the package: face detection needs no download.
DEFAULT_FACE_DETECTOR = Path(__file__).resolve().parent / "models" / "face_detection_yunet_2026may.onnx"


@dataclass(frozen=True)
class Settings:
    clip_model: str = "ViT-L-14"
    clip_pretrained: str = "openai"
    weights_dir: Path = DEFAULT_WEIGHTS_DIR
    face_detector_model: Path = DEFAULT_FACE_DETECTOR
    max_batch_size: int = 64
    batch_window_ms: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        defaults = cls()
        return cls(
            clip_model=env.get("CLIP_MODEL", defaults.clip_model),
            clip_pretrained=env.get("CLIP_PRETRAINED", defaults.clip_pretrained),
            weights_dir=Path(env.get("CLIP_WEIGHTS_DIR", str(defaults.weights_dir))),
            face_detector_model=Path(env.get("FACE_DETECTOR_MODEL", str(defaults.face_detector_model))),
            max_batch_size=_number(env, "MAX_BATCH_SIZE", int, defaults.max_batch_size, 1),
            batch_window_ms=_number(env, "BATCH_WINDOW_MS", float, defaults.batch_window_ms, 0),
        )


def _number(env: Mapping[str, str], name: str, kind: type, default, minimum):
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(
            f"{name}={raw!r} is not valid: expected {kind.__name__} >= {minimum} (default {default})."
        )
    return value
