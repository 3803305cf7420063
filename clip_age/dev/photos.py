"""Synthetic photos for tests and benchmarks."""

import io
from pathlib import Path

import numpy as np
from PIL import Image

ASTRONAUT = Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"


def phone_photo(width: int, height: int, seed: int = 0) -> bytes:
    """A phone-sized JPEG with fine detail everywhere (a smooth upscale would flatter decoders)."""
    base = Image.open(ASTRONAUT).convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(seed).normal(0, 1, (height // 2, width // 2, 3))
    texture = Image.fromarray(np.clip(128 + 60 * noise, 0, 255).astype(np.uint8))
    photo = Image.blend(base, texture.resize((width, height), Image.Resampling.BILINEAR), 0.25)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
