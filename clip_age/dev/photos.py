"""Synthetic photos for tests and benchmarks."""

import io
from importlib import resources

import numpy as np
from PIL import Image

# Package data, so that an installed wheel has it too (clip_age/example_photos/README.md).
ASTRONAUT = resources.files("clip_age") / "example_photos" / "astronaut.jpg"


def phone_photo(width: int, height: int, seed: int = 0) -> bytes:
    """A phone-sized JPEG with fine detail everywhere (a smooth upscale would flatter decoders)."""
    with ASTRONAUT.open("rb") as file:
        base = Image.open(file).convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(seed).normal(0, 1, (height // 2, width // 2, 3))
    texture = Image.fromarray(np.clip(128 + 60 * noise, 0, 255).astype(np.uint8))
    photo = Image.blend(base, texture.resize((width, height), Image.Resampling.BILINEAR), 0.25)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
