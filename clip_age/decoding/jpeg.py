"""JPEG: read the structure before decoding anything, then decode strictly.

Pillow decodes a JPEG whose data stops early (or that a truncation with an end marker appended
fakes as whole) by filling the rest with gray, and it takes minutes over a few hundred KB of
near-empty progressive scans. The marker walk here finds both cheaply; libjpeg-turbo through
simplejpeg then decodes with its warnings ("premature end of data") raised as errors.

The walk itself costs time linear in the file with a small constant: runs of fill bytes and scan
data are skipped by regular expressions, and a Python step is taken per marker segment, of which
a file may have only so many (Pillow's own header reader, which runs next, reads fill bytes one
at a time and every segment before the first scan).
"""

import re
import struct
from dataclasses import dataclass, field

import numpy as np
import simplejpeg

# Frame headers (SOFn) of Huffman-coded DCT JPEGs, the kind every camera and editor writes.
# Arithmetic-coded (SOF9-SOF11) and lossless or hierarchical frames are refused as unsupported.
HUFFMAN_FRAMES = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}
OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# In entropy-coded data a 0xFF byte is followed by 0x00 (stuffing) or a restart marker; any
# other byte after 0xFF is the next marker, where the scan's data ends.
_END_OF_SCAN_DATA = re.compile(rb"\xff(?![\x00\xd0-\xd7\xff])")
# A marker is 0xFF and a code; any number of 0xFF fill bytes may come before it.
_FILL = re.compile(rb"\xff+")
# Encoders write 10 to 30 marker segments (a colour profile split over a few APP2 segments, a
# Huffman table before each progressive scan); 1,000 is far beyond that, and each costs a Python
# step here and in Pillow's header reader. The scans allowed (MAX_JPEG_SCANS) come on top.
MAX_SEGMENTS = 1_000
# Fill bytes between markers are allowed by the standard but encoders write none; Pillow reads
# them one byte at a time.
MAX_FILL_BYTES = 65_536


class JpegProblem(ValueError):
    """The JPEG's structure rules it out before decoding; the message is the reason."""


@dataclass
class JpegStructure:
    width: int = 0
    height: int = 0
    frame: int | None = None
    sampling: list[tuple[int, int]] = field(default_factory=list)  # per component (h, v)
    scans: int = 0
    scan_data_bytes: int = 0
    # per scan: component ids, spectral start and end, successive approximation high and low
    scan_params: list[tuple[tuple[int, ...], int, int, int, int]] = field(default_factory=list)

    @property
    def blocks(self) -> int:
        """8x8 blocks over all components, after chroma subsampling."""
        if not self.sampling:
            return 0
        h_max = max(h for h, _ in self.sampling) or 1
        v_max = max(v for _, v in self.sampling) or 1
        total = 0
        for h, v in self.sampling:
            width = -(-self.width * h // h_max)
            height = -(-self.height * v // v_max)
            total += -(-width // 8) * -(-height // 8)
        return total


def read_structure(data: bytes, max_scans: int) -> JpegStructure:
    """Walk the markers of a JPEG and check what decoding it would cost; raise JpegProblem."""
    found = JpegStructure()
    size, position = len(data), 2
    segments = fill = 0
    max_segments = MAX_SEGMENTS + 2 * max_scans  # each scan may bring its own Huffman table
    while position < size:
        run = _FILL.match(data, position)
        if run is None:
            raise JpegProblem("it has bytes where a marker should be")
        fill += run.end() - position - 1
        segments += 1
        if fill > MAX_FILL_BYTES or segments > max_segments:
            raise JpegProblem(
                f"it has more than {MAX_FILL_BYTES:,} fill bytes between its markers"
                if fill > MAX_FILL_BYTES
                else f"it has more than {max_segments:,} marker segments (encoders write a few dozen)"
            )
        position = run.end()
        if position >= size:
            break
        marker = data[position]
        position += 1
        if marker == 0xD9:  # end of image
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # restart markers, TEM: no length
            continue
        if position + 2 > size:
            raise JpegProblem("it ends inside a marker")
        (length,) = struct.unpack_from(">H", data, position)
        if length < 2 or position + length > size:
            raise JpegProblem("it ends inside a marker")
        segment = data[position + 2 : position + length]
        position += length
        if marker in HUFFMAN_FRAMES or marker in OTHER_FRAMES:
            _read_frame(found, marker, segment)
        elif marker == 0xDA:  # start of scan: its header, then its data up to the next marker
            _read_scan(found, segment)
            if found.scans > max_scans:
                raise JpegProblem(
                    f"it has more than {max_scans} progressive scans, the limit (MAX_JPEG_SCANS); "
                    "cameras and editors write 10 to 20"
                )
            end = _END_OF_SCAN_DATA.search(data, position)
            found.scan_data_bytes += (end.start() if end else size) - position
            position = end.start() if end else size
    _check(found)
    return found


def decode(data: bytes, min_side: int | None) -> tuple[np.ndarray, str]:
    """Pixels (height, width, channels) and their Pillow mode ("RGB", "L" or "CMYK"), at the
    coarsest DCT scale (1/2, 1/4, 1/8) whose shorter side is still >= min_side (None: full)."""
    _, _, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    target = {"Gray": "GRAY", "CMYK": "CMYK", "YCCK": "CMYK"}.get(colorspace, "RGB")
    pixels = simplejpeg.decode_jpeg(
        data, colorspace=target, min_height=min_side or 0, min_width=min_side or 0, strict=True
    )
    if target == "CMYK":
        # libjpeg hands back Adobe's inverted CMYK, which is what Photoshop and every other
        # CMYK JPEG writer store; Pillow reads it the same way.
        np.subtract(255, pixels, out=pixels)
    return pixels, {"GRAY": "L", "CMYK": "CMYK"}.get(target, "RGB")


def _read_frame(found: JpegStructure, marker: int, segment: bytes) -> None:
    if marker not in HUFFMAN_FRAMES:
        raise JpegProblem("it is an arithmetic-coded, lossless or hierarchical JPEG, which is not supported")
    if found.frame is not None or len(segment) < 6:
        raise JpegProblem("its frame header is damaged")
    precision, found.height, found.width, components = struct.unpack_from(">BHHB", segment)
    if precision != 8 or len(segment) < 6 + 3 * components or components not in (1, 3, 4):
        raise JpegProblem("it is a 12-bit or otherwise unusual JPEG, which is not supported")
    found.frame = marker
    found.sampling = [(segment[7 + 3 * i] >> 4, segment[7 + 3 * i] & 15) for i in range(components)]


def _read_scan(found: JpegStructure, segment: bytes) -> None:
    found.scans += 1
    count = segment[0] if segment else 0
    if len(segment) < 4 + 2 * count:
        raise JpegProblem("a scan header is damaged")
    ids = tuple(segment[1 + 2 * i] for i in range(count))
    start, end, approximation = segment[1 + 2 * count], segment[2 + 2 * count], segment[3 + 2 * count]
    found.scan_params.append((ids, start, end, approximation >> 4, approximation & 15))


def _check(found: JpegStructure) -> None:
    if found.frame is None or found.scans == 0:
        raise JpegProblem("it has no image data")
    if found.frame == 0xC2:
        _check_progression(found)
    # Every Huffman-coded scan spends at least one bit on each block it covers, and the first
    # scans cover every block: fewer bytes than blocks / 8 means the data was cut short.
    if found.scan_data_bytes < found.blocks // 8:
        raise JpegProblem(
            f"it holds {found.scan_data_bytes:,} bytes of image data, fewer than "
            f"{found.width}x{found.height} pixels need at the very least, so it was cut short"
        )


def _check_progression(found: JpegStructure) -> None:
    """Each coefficient of each component gets one first scan (Ah = 0) and then refinements
    whose Ah is the previous Al. A script that re-sends coefficients is what scan bombs are
    made of; libjpeg only warns about it, after doing the work."""
    last_low: dict[tuple[int, int], int] = {}
    for ids, start, end, high, low in found.scan_params:
        for component in ids:
            for coefficient in range(start, min(end, 63) + 1):
                previous = last_low.get((component, coefficient))
                if (high == 0 and previous is not None) or (high != 0 and previous != high):
                    raise JpegProblem("its progressive scans send the same data more than once")
                last_low[(component, coefficient)] = low
