"""Structure checks on PNG, TIFF and WebP files, before any decoder sees them.

Each reads only headers (never inflates or decodes anything) and raises HeaderProblem with the
reason when a file is built to cost more than its pixels: PNG chunk floods (Pillow keeps every
chunk it does not know), TIFFs cut into millions of strips (Pillow indexes them all when it
opens the file), WebP canvases that libwebp allocates when the file is opened. JPEG has its own
module (jpeg.py).
"""

import struct

# libpng writes 8 KB image-data chunks, so a 64 MB PNG has about 8,000; other chunks
# (text, colour profile, time, ...) number a handful in a real photo.
MAX_PNG_CHUNKS = 50_000
MAX_PNG_OTHER_CHUNKS = 1_000
# Cameras and editors write one strip per 8-64 rows or 256-pixel tiles: a few thousand.
MAX_TIFF_PIECES = 100_000


class HeaderProblem(ValueError):
    """The file's structure rules it out before decoding; the message is the reason."""


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the PNG's header chunk; None when it has none (Pillow's own header
    check words that)."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def check_png(data: bytes) -> None:
    """Too many chunks, or too little image data for the declared size (deflate shrinks data
    at most 1032 times, so less means the file was cut short)."""
    if png_size(data) is None:
        return
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 4)
    raw = height * (1 + -(-width * channels * depth // 8))
    image_data = chunks = other = 0
    position = 8
    while position + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8]
        chunks += 1
        if kind == b"IDAT":
            image_data += length
        elif kind != b"IEND":
            other += 1
        if chunks > MAX_PNG_CHUNKS or other > MAX_PNG_OTHER_CHUNKS:
            raise HeaderProblem(
                f"it is split into more than {min(chunks, MAX_PNG_CHUNKS):,} chunks"
                if chunks > MAX_PNG_CHUNKS
                else f"it carries more than {MAX_PNG_OTHER_CHUNKS:,} chunks that are not image data"
            )
        position += 12 + length
    if image_data * 1032 < raw:
        raise HeaderProblem(
            f"it holds {image_data:,} bytes of image data, too few for {width}x{height} pixels"
        )


def check_tiff(data: bytes) -> None:
    """The first page's strips or tiles: their count is in the directory entry's header, so a
    file cut into millions of them is refused without reading the list."""
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 8 or struct.unpack_from(order + "H", data, 2)[0] != 42:
        return  # BigTIFF or damaged: Pillow's own check words it
    (offset,) = struct.unpack_from(order + "I", data, 4)
    if offset + 2 > len(data):
        return
    (entries,) = struct.unpack_from(order + "H", data, offset)
    for index in range(entries):
        position = offset + 2 + 12 * index
        if position + 12 > len(data):
            return
        tag, _, count = struct.unpack_from(order + "HHI", data, position)
        if tag in (273, 324) and count > MAX_TIFF_PIECES:  # StripOffsets, TileOffsets
            raise HeaderProblem(
                f"it is cut into {count:,} strips or tiles (at most {MAX_TIFF_PIECES:,} are read)"
            )


def webp_canvas(data: bytes) -> tuple[int, int] | None:
    """The canvas of an extended (VP8X) WebP, animated ones included, which libwebp allocates
    when the file is opened; None for a simple WebP (Pillow checks those before allocating)."""
    if data[12:16] != b"VP8X" or len(data) < 30:
        return None
    width = int.from_bytes(data[24:27], "little") + 1
    height = int.from_bytes(data[27:30], "little") + 1
    return width, height


def webp_is_animated(data: bytes) -> bool:
    return data[12:16] == b"VP8X" and len(data) > 20 and bool(data[20] & 0x02)
