"""What one upload may cost, each bound a setting (see settings.py) with a safe default."""

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DecodeLimits:
    """Checked from the file and its header before any pixel is decoded (see images.py)."""

    max_upload_bytes: int = 64_000_000
    max_pixels: int = 120_000_000
    # Peak memory of decoding, turning upright and converting to RGB, estimated from the
    # header's size and mode (images.decode_bytes_per_pixel): Pillow keeps RGB in 4 bytes a
    # pixel, so 120 megapixels of RGB take 480 MB, 8-bit gray 600 MB (with its RGB copy), 32-bit
    # gray over 1.5 GB.
    max_decoded_bytes: int = 1_000_000_000
    # Each scan of a progressive JPEG is a pass over the whole photo. Encoders write 10 (RGB),
    # 6 (gray) or 18 (CMYK); thousands of near-empty scans take minutes to decode.
    max_jpeg_scans: int = 64
    # Faces are searched on a copy of the photo shrunk to at most this many pixels.
    detect_max_pixels: int = 4_000_000


@dataclass(frozen=True)
class PoolLimits:
    """The HTTP server's decode workers (see decode_pool.py)."""

    workers: int = min(8, os.cpu_count() or 1)  # jobs at once; bounds the photos in memory at once
    timeout_s: float = 10.0  # wall-clock deadline of one job: decode, faces and crops
    # Address space a worker may add to what it maps at start: the decode budget above, plus
    # room for the decoder's own buffers; beyond it the worker gets a MemoryError, not the server.
    memory_bytes: int = 1_500_000_000
