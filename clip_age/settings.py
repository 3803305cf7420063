"""Every environment variable the model reads, read in this one place."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clip_age.decoding import detector_file
from clip_age.decoding.upload_limits import DecodeLimits, PoolLimits

DEVICES = ("auto", "cuda", "cpu")
CPU_PRECISIONS = ("auto", "bf16", "int8", "fp32")
HF_TRUE = ("1", "ON", "YES", "TRUE")  # what huggingface_hub reads as "on"


class SettingError(ValueError):
    """An environment variable set to a value the model cannot use; the message names it."""


CPU_RUNTIMES = ("auto", "openvino", "onnxruntime", "torch")
# The image tower's exports, beside the Hugging Face and open_clip download caches.
DEFAULT_EXPORT_DIR = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()) / "clip-age" / "exports"
)


@dataclass(frozen=True)
class Settings:
    clip_model: str = "ViT-L-14"
    clip_pretrained: str = "openai"
    face_detector_model: Path = field(default_factory=lambda: default_face_detector(os.environ))
    device: str = "auto"
    cpu_precision: str = "auto"
    max_batch_size: int = 64
    decode_limits: DecodeLimits = field(default_factory=DecodeLimits)
    pool_limits: PoolLimits = field(default_factory=PoolLimits)
    # The Hugging Face client's own switch; the clip-age command fetches no weights while it is on.
    hub_offline: bool = False
    cpu_runtime: str = "auto"
    export_dir: Path = DEFAULT_EXPORT_DIR

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        decode, pool = DecodeLimits(), PoolLimits()
        return cls(
            clip_model=env.get("CLIP_MODEL", cls.clip_model),
            clip_pretrained=env.get("CLIP_PRETRAINED", cls.clip_pretrained),
            face_detector_model=Path(env.get("FACE_DETECTOR_MODEL") or default_face_detector(env)),
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
                queue_timeout_s=_number(
                    env, "DECODE_QUEUE_TIMEOUT_S", float, pool.queue_timeout_s, 0.01, 600
                ),
                memory_bytes=_megabytes(env, "DECODE_MEMORY_MB", pool.memory_bytes),
            ),
            hub_offline=env.get("HF_HUB_OFFLINE", "").upper() in HF_TRUE,
        )


def default_face_detector(env: Mapping[str, str]) -> Path:
    """Where cog.yaml's build step and `clip-age download` put OpenCV's YuNet face detector: in
    the Hugging Face cache folder (HF_HOME, as the Hugging Face client works it out), beside the
    CLIP weights, so that one folder holds every model file."""
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    hf_home = Path(env.get("HF_HOME") or Path(cache) / "huggingface").expanduser()
    return hf_home / "clip-age" / detector_file.NAME


def export_dir(env: Mapping[str, str] = os.environ) -> Path:
    """CLIP_EXPORT_DIR, also the default of an AgeEstimator made without Settings."""
    return Path(env.get("CLIP_EXPORT_DIR") or DEFAULT_EXPORT_DIR)


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = env.get(name, default).strip().lower()
    if value not in allowed:
        raise SettingError(
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
        raise SettingError(
            f"{name}={raw!r} is not valid: expected {'a whole number' if kind is int else 'a number'} "
            f"from {low:g} to {high:g} (default {default:g})."
        )
    return value
