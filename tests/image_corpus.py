"""Photos in every accepted format and mode, and files that must be refused, made on the fly."""

import io
import struct
import zlib

import numpy as np
from PIL import Image

from clip_age.decoding import images  # noqa: F401  (registers the HEIF plugin, for saving HEIC too)

RED, GREEN, BLUE, YELLOW = (220, 30, 30), (30, 200, 40), (30, 40, 220), (230, 220, 30)
WIDTH, HEIGHT = 96, 64  # not square, so a wrong rotation also shows in the size


def quadrants(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """An upright test card: red top-left, green top-right, blue bottom-left, yellow bottom-right."""
    card = np.zeros((height, width, 3), dtype=np.uint8)
    card[: height // 2, : width // 2] = RED
    card[: height // 2, width // 2 :] = GREEN
    card[height // 2 :, : width // 2] = BLUE
    card[height // 2 :, width // 2 :] = YELLOW
    return card


def quadrant_colours(image: Image.Image) -> list[tuple[int, int, int]]:
    """Mean colour at the centre of each quadrant: top-left, top-right, bottom-left, bottom-right."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    height, width = pixels.shape[:2]
    centres = [
        (height // 4, width // 4),
        (height // 4, 3 * width // 4),
        (3 * height // 4, width // 4),
        (3 * height // 4, 3 * width // 4),
    ]
    return [tuple(int(v) for v in pixels[y - 3 : y + 4, x - 3 : x + 4].mean(axis=(0, 1))) for y, x in centres]


# How a camera stores the upright card for each EXIF orientation, written from the EXIF
# definitions of the tag (where the stored 0th row and 0th column are in the scene).
STORED_FOR_ORIENTATION = {
    1: lambda upright: upright,
    2: lambda upright: upright[:, ::-1],  # mirrored left-right
    3: lambda upright: upright[::-1, ::-1],  # upside down
    4: lambda upright: upright[::-1, :],  # mirrored top-bottom
    5: lambda upright: upright.transpose(1, 0, 2),  # 0th row is the left side, 0th column the top
    6: lambda upright: np.rot90(upright, 1),  # 0th row is the right side, 0th column the top
    7: lambda upright: upright[::-1, ::-1].transpose(1, 0, 2),  # 0th row right side, column bottom
    8: lambda upright: np.rot90(upright, -1),  # 0th row is the left side, 0th column the bottom
}


def jpeg_with_orientation(orientation: int) -> bytes:
    stored = Image.fromarray(np.ascontiguousarray(STORED_FOR_ORIENTATION[orientation](quadrants())))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(stored, "JPEG", quality=95, exif=exif.tobytes())


def save(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_rgb16(rgb8: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), each value v stored as v * 257."""
    height, width = rgb8.shape[:2]
    wide = (rgb8.astype(">u2") * 257).reshape(height, width * 3)
    rows = b"".join(b"\x00" + row.tobytes() for row in wide)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def png_bomb(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels but carries almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + png_chunk(b"IEND", b"")
    )


def animated_gif(first: tuple[int, int, int], second: tuple[int, int, int]) -> bytes:
    frames = [Image.new("RGB", (WIDTH, HEIGHT), first), Image.new("RGB", (WIDTH, HEIGHT), second)]
    return save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
