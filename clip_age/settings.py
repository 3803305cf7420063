"""Every environment variable the model reads, read in this one place."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clip_age.limits import DecodeLimits, PoolLimits

# Where cog.yaml's build steps put the weights inside the image.
DEFAULT_WEIGHTS_DIR = Path("/weights")
# OpenCV's YuNet (MIT, 230 KB) ships inside the package: face detection needs no download.
DEFAULT_FACE_DETECTOR = Path(__file__).resolve().parent / "models" / "face_detection_yunet_2026may.onnx"
DEVICES = ("auto", "cuda", "cpu")
CPU_PRECISIONS = ("auto", "bf16", "int8", "fp32")
CPU_RUNTIMES = ("auto", "openvino", "onnxruntime", "torch")
# The image tower's exports, beside the Hugging Face and open_clip download caches.
DEFAULT_EXPORT_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()) / "clip-age" / "exports"
)


@dataclass(frozen=True)
class Settings:
    clip_model: str = "ViT-L-14"
    clip_pretrained: str = "openai"
    weights_dir: Path = DEFAULT_WEIGHTS_DIR
    face_detector_model: Path = DEFAULT_FACE_DETECTOR
    device: str = "auto"
    cpu_precision: str = "auto"
    max_batch_size: int = 64
    decode_limits: DecodeLimits = field(default_factory=DecodeLimits)
    pool_limits: PoolLimits = field(default_factory=PoolLimits)
    cpu_runtime: str = "auto"
    export_dir: Path = DEFAULT_EXPORT_DIR

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        decode, pool = DecodeLimits(), PoolLimits()
        return cls(
            clip_model=env.get("CLIP_MODEL", cls.clip_model),
            clip_pretrained=env.get("CLIP_PRETRAINED", cls.clip_pretrained),
            weights_dir=Path(env.get("CLIP_WEIGHTS_DIR", str(DEFAULT_WEIGHTS_DIR))),
            face_detector_model=Path(env.get("FACE_DETECTOR_MODEL", str(DEFAULT_FACE_DETECTOR))),
            device=_choice(env, "CLIP_DEVICE", DEVICES, cls.device),
            cpu_precision=_choice(env, "CLIP_CPU_PRECISION", CPU_PRECISIONS, cls.cpu_precision),
            cpu_runtime=_choice(env, "CLIP_CPU_RUNTIME", CPU_RUNTIMES, cls.cpu_runtime),
            export_dir=export_dir(env),
            max_batch_size=_number(env, "MAX_BATCH_SIZE", int, cls.max_batch_size, 1, 4096),
            decode_limits=DecodeLimits(
                max_upload_bytes=_megabytes(env, "MAX_UPLOAD_MB", decode.max_upload_bytes),
                max_pixels=round(
                    _number(env, "MAX_MEGAPIXELS", float, decode.max_pixels / 1e6, 0.01, 1e4) * 1e6
                ),
                max_decoded_bytes=_megabytes(env, "MAX_DECODED_MB", decode.max_decoded_bytes),
                max_jpeg_scans=_number(env, "MAX_JPEG_SCANS", int, decode.max_jpeg_scans, 1, 1000),
                detect_max_pixels=round(
                    _number(env, "DETECT_MAX_MEGAPIXELS", float, decode.detect_max_pixels / 1e6, 0.1, 100)
                    * 1e6
                ),
            ),
            pool_limits=PoolLimits(
                workers=_number(env, "DECODE_WORKERS", int, pool.workers, 1, 64),
                timeout_s=_number(env, "DECODE_TIMEOUT_S", float, pool.timeout_s, 0.1, 600),
                memory_bytes=_megabytes(env, "DECODE_MEMORY_MB", pool.memory_bytes),
            ),
        )


def export_dir(env: Mapping[str, str] = os.environ) -> Path:
    """CLIP_EXPORT_DIR, also the default of an AgeEstimator made without Settings."""
    return Path(env.get("CLIP_EXPORT_DIR") or DEFAULT_EXPORT_DIR)


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = env.get(name, default).strip().lower()
    if value not in allowed:
        raise ValueError(
            f"{name}={env[name]!r} is not valid: use one of {', '.join(allowed)} (default {default})."
        )
    return value


def _megabytes(env: Mapping[str, str], name: str, default_bytes: int) -> int:
    return round(_number(env, name, float, default_bytes / 1e6, 0.001, 1e6) * 1e6)


def _number(env: Mapping[str, str], name: str, kind: type, default, low, high):
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ValueError(
            f"{name}={raw!r} is not valid: expected {'a whole number' if kind is int else 'a number'} "
            f"from {low:g} to {high:g} (default {default:g})."
        )
    return value
