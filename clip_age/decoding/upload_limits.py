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
    # Wall-clock deadline of one request, from the moment the predictor has the file: waiting for
    # a worker, reading, checks, decode, faces and crops. A file gets a share of it that grows
    # with its size (see decode_allowance_s), so a tiny file cannot hold a worker for long.
    timeout_s: float = 10.0
    # Address space a worker may add to what it maps at start: the decode budget above, plus
    # room for the decoder's own buffers; beyond it the worker gets a MemoryError, not the server.
    memory_bytes: int = 1_500_000_000
    # Longest wait for a free worker; past it the request is refused as busy instead of queueing
    # behind uploads that may each take their whole deadline.
    queue_timeout_s: float = 2.0

    def decode_allowance_s(self, file_bytes: int, max_upload_bytes: int) -> float:
        """How long a worker may spend on a file of this size: SMALL_FILE_S plus the deadline's
        share in proportion to the file's part of the upload limit, at most the deadline.
        Files built to be slow are small (a 128-byte BMP took 25 s, a 350 KB PNG of 119
        megapixels takes 2 s or more): this is what stops those no header check foresaw."""
        share = self.timeout_s * file_bytes / max(max_upload_bytes, 1)
        return min(self.timeout_s, SMALL_FILE_S + share)


# Time any file may take to decode, however small. A 9-megapixel JPEG of 0.7 MB with faces took
# 0.24 s, a 12-megapixel one of 1.5 MB 0.41 s, on two busy cores (load average 10).
SMALL_FILE_S = 1.5
