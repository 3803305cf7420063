"""Structure checks on PNG, TIFF, WebP, GIF and BMP files, before any decoder sees them.

Each reads only headers (never inflates or decodes anything) and raises HeaderProblem with the
reason when a file is built to cost more than its pixels: PNG chunk floods (Pillow keeps every
chunk it does not know), TIFFs cut into millions of strips or whose one tile is larger than the
photo (libtiff allocates and inflates a whole tile), TIFF header fields of millions of numbers
(Pillow makes a Python object of each), WebP canvases that libwebp allocates when the file is
opened, GIFs of millions of extension blocks before their first frame and run-length encoded
BMPs (Pillow reads both in Python, a byte or a block at a time). Each walk takes a Python step
per chunk, entry or block and stops at a fixed count, so its time follows the file's size.
JPEG has its own module (jpeg.py).
"""

import struct
from dataclasses import dataclass

import numpy as np

# libpng writes 8 KB image-data chunks, so a 64 MB PNG has about 8,000; other chunks
# (text, colour profile, time, ...) number a handful in a real photo.
MAX_PNG_CHUNKS = 50_000
MAX_PNG_OTHER_CHUNKS = 1_000
# Cameras and editors write one strip per 8-64 rows or 256-pixel tiles: a few thousand.
MAX_TIFF_PIECES = 100_000
# A TIFF directory holds a few dozen fields; other numeric fields than the strip or tile tables
# hold a handful of numbers (a 16-bit colour map, the largest, 196,608). Pillow makes a Python
# object of each fraction it reads (resolution, exposure, GPS: one to six in a photo), two
# microseconds each, twice when the orientation is asked for; whole numbers cost far less.
MAX_TIFF_FIELDS = 1_000
MAX_TIFF_VALUES = 1 << 18
MAX_TIFF_FRACTIONS = 4_096
_TIFF_FRACTION_TYPES = (5, 10)  # RATIONAL, SRATIONAL
# Metadata that Pillow copies or parses when it opens a photo. Cameras write EXIF into one JPEG
# segment (at most 64 KB); XMP and colour profiles of photos are kilobytes (Pillow itself stops a
# PNG's compressed text or profile at 1 MB).
MAX_EXIF_BYTES = 256_000
MAX_XMP_BYTES = 4_000_000
MAX_ICC_BYTES = 4_000_000
# GIF comments and application data come in blocks of at most 255 bytes, which Pillow reads one at
# a time; a GIF's loop count and XMP take a few hundred.
MAX_GIF_BLOCKS = 10_000
# BMP compressions Pillow decodes in C: none, and bit fields (masks over uncompressed pixels).
# Run-length encoded BMPs (1: RLE8, 2: RLE4) are decoded by Pillow in Python, a byte at a time,
# and a few hundred bytes of them declare and fill millions of pixels.
BMP_UNCOMPRESSED = (0, 3)


class HeaderProblem(ValueError):
    """The file's structure rules it out before decoding; the message is the reason."""


class UnsupportedVariant(ValueError):
    """The file is a variant of an accepted format that is refused; the message says which."""


class MetadataTooLarge(ValueError):
    """The file's EXIF, XMP or colour profile is past its limit."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(what)
        self.what, self.size, self.limit = what, size, limit


def check_metadata(what: str, size: int) -> None:
    """what: "EXIF", "XMP" or "colour profile"."""
    limit = {"EXIF": MAX_EXIF_BYTES, "XMP": MAX_XMP_BYTES}.get(what, MAX_ICC_BYTES)
    if size > limit:
        raise MetadataTooLarge(what, size, limit)


@dataclass(frozen=True)
class TiffLayout:
    """What libtiff works on for the first page: pieces (tiles, or strips of whole rows) of
    piece_width x piece_height pixels, each inflated whole into a buffer of its own."""

    width: int
    height: int
    piece_width: int
    piece_height: int
    bytes_per_pixel: float
    tiled: bool
    compressed: bool

    @property
    def covered_pixels(self) -> int:
        """Pixels the decoder produces: every tile in full, the edge ones included."""
        if not self.tiled:
            return self.width * self.height
        across = -(-self.width // max(1, self.piece_width))
        down = -(-self.height // max(1, self.piece_height))
        return across * self.piece_width * down * self.piece_height

    @property
    def piece_bytes(self) -> int:
        """libtiff's buffer for one piece; Pillow reads uncompressed pieces straight into the
        photo. Four bytes a pixel at least: libtiff's RGBA reader (JPEG-in-TIFF, YCbCr) uses that."""
        if not self.compressed:
            return 0
        return round(self.piece_width * self.piece_height * max(4.0, self.bytes_per_pixel))


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
        if kind == b"eXIf":  # Pillow parses it when asked for the orientation, after IDAT too
            check_metadata("EXIF", length)
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


_TIFF_TYPE_BYTES = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
    16: 8,
    17: 8,
    18: 8,
}
# BYTE, ASCII and UNDEFINED fields stay one bytes object in Pillow, whatever their length.
_TIFF_BYTES_TYPES = (1, 2, 7)
_TIFF_PIECE_TAGS = (273, 279, 324, 325)  # StripOffsets, StripByteCounts, TileOffsets, TileByteCounts


def check_tiff(data: bytes) -> TiffLayout | None:
    """The first page's directory, the only one Pillow reads: how many fields, how many numbers
    in each (the strip or tile tables: their count is in the entry, so a file cut into millions
    of pieces is refused without reading the list), and the pieces' geometry. None when the
    header is too damaged to say; Pillow's own check words that."""
    order = "<" if data[:2] == b"II" else ">"
    if len(data) < 16:
        return None
    big = data[2] == 43  # BigTIFF: 8-byte counts and offsets (Pillow's test, whatever the order)
    (offset,) = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)
    count_format, value = ("Q", "V8") if big else ("H", "V4")
    count_size = struct.calcsize(count_format)
    if offset + count_size > len(data):
        return None
    (fields,) = struct.unpack_from(order + count_format, data, offset)
    if fields > MAX_TIFF_FIELDS:
        raise HeaderProblem(
            f"its header has {fields:,} fields; photos have a few dozen and at most "
            f"{MAX_TIFF_FIELDS:,} are read"
        )
    entry = np.dtype(
        [
            ("tag", order + "u2"),
            ("type", order + "u2"),
            ("count", order + ("u8" if big else "u4")),
            ("value", value),
        ]
    )
    fields = min(fields, (len(data) - offset - count_size) // entry.itemsize)
    entries = np.frombuffer(data, entry, count=fields, offset=offset + count_size)
    numeric = ~np.isin(entries["type"], _TIFF_BYTES_TYPES)
    pieces = np.isin(entries["tag"], _TIFF_PIECE_TAGS)
    too_many_pieces = np.flatnonzero(numeric & pieces & (entries["count"] > MAX_TIFF_PIECES))
    if too_many_pieces.size:
        count = int(entries["count"][too_many_pieces[0]])
        raise HeaderProblem(
            f"it is cut into {count:,} strips or tiles (at most {MAX_TIFF_PIECES:,} are read)"
        )
    fractions = np.isin(entries["type"], _TIFF_FRACTION_TYPES)
    limit = np.where(fractions, MAX_TIFF_FRACTIONS, MAX_TIFF_VALUES)
    too_many_values = np.flatnonzero(numeric & ~pieces & (entries["count"] > limit))
    if too_many_values.size:
        index = too_many_values[0]
        raise HeaderProblem(
            f"a field of its header holds {int(entries['count'][index]):,} "
            f"{'fractions' if fractions[index] else 'numbers'}; photos hold a few and at most "
            f"{int(limit[index]):,} are read"
        )
    values: dict[int, np.void] = {}
    for field_entry in entries[np.isin(entries["tag"], _TIFF_LAYOUT_TAGS)]:
        values.setdefault(int(field_entry["tag"]), field_entry)  # Pillow keeps a tag's first entry

    def first(tag: int, default: int) -> int:
        return _tiff_first_value(data, order, values[tag], big) if tag in values else default

    width, height = first(256, 0), first(257, 0)
    bits = first(258, 1) * first(277, 1)
    tiled = 322 in values or 323 in values
    if tiled:
        piece = first(322, 0), first(323, 0)
    else:
        piece = width, min(first(278, 2**32 - 1), height)
    compressed = first(259, 1) != 1
    if not width or not height:
        return None
    return TiffLayout(width, height, piece[0], piece[1], bits / 8, tiled, compressed)


# ImageWidth, ImageLength, BitsPerSample, Compression, SamplesPerPixel, RowsPerStrip, TileWidth,
# TileLength
_TIFF_LAYOUT_TAGS = (256, 257, 258, 259, 277, 278, 322, 323)


def _tiff_first_value(data: bytes, order: str, entry: np.void, big: bool) -> int:
    """The first number of a SHORT or LONG field, in the entry or where it points; 0 if none."""
    kind = {3: "H", 4: "I", 16: "Q"}.get(int(entry["type"]))
    if kind is None or int(entry["count"]) == 0:
        return 0
    raw = entry["value"].tobytes()
    if int(entry["count"]) * _TIFF_TYPE_BYTES[int(entry["type"])] > len(raw):
        (position,) = struct.unpack(order + ("Q" if big else "I"), raw)
        raw = data[position : position + 8]
    if len(raw) < struct.calcsize(kind):
        return 0
    return struct.unpack_from(order + kind, raw)[0]


def check_gif(data: bytes) -> None:
    """Extension blocks (comments, application data) before the first frame, which Pillow reads
    a block at a time in Python when it opens the file."""
    if len(data) < 13:
        return
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    blocks = 0
    while position < len(data) and data[position] == 0x21:  # "!": an extension, not yet a frame
        position += 2  # its introducer and label, then blocks up to an empty one
        while position < len(data):
            length = data[position]
            position += 1 + length
            blocks += 1
            if blocks > MAX_GIF_BLOCKS:
                raise HeaderProblem(
                    f"it has more than {MAX_GIF_BLOCKS:,} blocks of comments or application data before "
                    "its first frame"
                )
            if length == 0:
                break


def check_bmp(data: bytes) -> None:
    """Run-length encoded BMPs are refused; an uncompressed one must hold the pixels it declares
    (Pillow allocates the whole photo before it finds the data missing)."""
    if len(data) < 30:
        return
    offset, header = struct.unpack_from("<II", data, 10)
    if header == 12:
        width, height, _, bits = struct.unpack_from("<HHHH", data, 18)
        compression = 0
    elif len(data) >= 34:
        width, height, _, bits, compression = struct.unpack_from("<iiHHI", data, 18)
    else:
        return
    if compression in (1, 2):
        raise UnsupportedVariant("run-length encoded (RLE)")
    if compression not in BMP_UNCOMPRESSED or width <= 0:
        return  # Pillow refuses other compressions in its own words
    needed = (offset or 14 + header) + ((width * bits + 31) // 32) * 4 * abs(height)
    if needed > len(data):
        raise HeaderProblem(
            f"it holds {len(data):,} bytes, too few for {width}x{abs(height)} pixels of {bits} bits"
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
