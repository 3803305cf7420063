"""AVIF: the size each AV1 image is coded at, read from the file before any decoder sees it.

Pillow reports an AVIF's declared size (its ispe property), while libavif decodes the frame the
AV1 sequence header codes, which may be far larger: a flat 16384x16384 frame takes about a
kilobyte. This reads the item boxes (which items are AV1, where their data is) and the first
OBUs of each AV1 item, a bounded number of steps for any file.
"""

import struct

from clip_age.decoding.structure_checks import HeaderProblem

# An AVIF holds a few image items (the photo, or its grid's tiles, a thumbnail, an alpha plane),
# each stored in one piece (extent), in a few boxes; each costs a Python step here.
MAX_AVIF_ITEMS = 1_000
MAX_AVIF_EXTENTS = 64
MAX_BOXES = 1_000
# A sequence header is tens of bytes (a few hundred with 32 operating points).
_AV1_SEQUENCE_HEADER_BYTES = 512


def coded_size(data: bytes) -> tuple[int, int] | None:
    """The largest frame any AV1 image item of an AVIF is coded at, from its sequence header.
    The decoder allocates the coded frame whatever size the file declares for the image (its
    ispe property, which Pillow reports), so a 64x64 photo can be coded as 16384x16384. None
    when the file has no item whose sequence header can be read."""
    meta = _find_box(data, 0, len(data), b"meta")
    if meta is None:
        return None
    start, end = meta[0] + 4, meta[1]  # a full box: version and flags first
    items = _avif_av1_items(data, start, end)
    largest = None
    for offset, length in _avif_item_extents(data, start, end, items):
        size = _av1_frame_size(data, offset, min(len(data), offset + length))
        if size is not None and (largest is None or size[0] * size[1] > largest[0] * largest[1]):
            largest = size
    return largest


def _find_box(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    """(start of the box's contents, end of the box) of the first box of that kind."""
    position = start
    for _ in range(MAX_BOXES):
        if position + 8 > end:
            return None
        size, found = struct.unpack_from(">I4s", data, position)
        header = 8
        if size == 1 and position + 16 <= end:
            (size,), header = struct.unpack_from(">Q", data, position + 8), 16
        elif size == 0:
            size = end - position
        if size < header:
            return None
        if found == kind:
            return position + header, min(end, position + size)
        position += size
    return None


def _avif_av1_items(data: bytes, start: int, end: int) -> set[int]:
    """The ids of the AV1-coded items, from the item information box."""
    box = _find_box(data, start, end, b"iinf")
    if box is None:
        return set()
    position, box_end = box
    version = data[position] if position < box_end else 0
    count_size = 2 if version == 0 else 4
    if position + 4 + count_size > box_end:
        return set()
    count = int.from_bytes(data[position + 4 : position + 4 + count_size], "big")
    if count > MAX_AVIF_ITEMS:
        raise HeaderProblem(
            f"it has {count:,} items; photos have a few and at most {MAX_AVIF_ITEMS:,} are read"
        )
    items, position = set(), position + 4 + count_size
    for _ in range(count):
        entry = _find_box(data, position, box_end, b"infe")  # the entries are infe boxes
        if entry is None:
            break
        contents, position = entry
        version = data[contents] if contents < position else 0
        id_size = 2 if version == 2 else 4
        if version in (2, 3) and contents + 4 + id_size + 6 <= position:
            item_id = int.from_bytes(data[contents + 4 : contents + 4 + id_size], "big")
            item_type = data[contents + 4 + id_size + 2 : contents + 4 + id_size + 6]
            if item_type == b"av01":
                items.add(item_id)
    return items


def _avif_item_extents(data: bytes, start: int, end: int, items: set[int]) -> list[tuple[int, int]]:
    """Where each of these items' data starts in the file, and its first extent's length
    (item location box; data in the file or in the meta box's idat)."""
    box = _find_box(data, start, end, b"iloc")
    if box is None or not items:
        return []
    position, box_end = box
    reader = _Bytes(data, position, box_end)
    version = reader.number(1)
    reader.number(3)  # flags
    sizes = reader.number(1)
    offset_size, length_size = sizes >> 4, sizes & 15
    sizes = reader.number(1)
    base_offset_size, index_size = sizes >> 4, (sizes & 15) if version in (1, 2) else 0
    count = reader.number(2 if version < 2 else 4)
    if count > MAX_AVIF_ITEMS:
        raise HeaderProblem(
            f"it has {count:,} items; photos have a few and at most {MAX_AVIF_ITEMS:,} are read"
        )
    idat = _find_box(data, start, end, b"idat")
    extents = []
    for _ in range(count):
        item_id = reader.number(2 if version < 2 else 4)
        method = reader.number(2) & 15 if version in (1, 2) else 0
        reader.number(2)  # data reference index
        base = reader.number(base_offset_size)
        first: tuple[int, int] | None = None
        pieces = reader.number(2)
        if pieces > MAX_AVIF_EXTENTS:
            raise HeaderProblem(
                f"an image of it is split into {pieces:,} pieces; photos use one and at most "
                f"{MAX_AVIF_EXTENTS} are read"
            )
        for _ in range(pieces):
            reader.number(index_size)
            offset, length = reader.number(offset_size), reader.number(length_size)
            first = first or (offset, length)
        if reader.overran:
            break
        if item_id in items and first is not None and method in (0, 1):
            origin = 0 if method == 0 else (idat[0] if idat else len(data))
            extents.append((origin + base + first[0], first[1] or len(data)))
    return extents


class _Bytes:
    """Big-endian numbers of any byte width read in turn; past the end they read as 0."""

    def __init__(self, data: bytes, position: int, end: int) -> None:
        self.data, self.position, self.end, self.overran = data, position, end, False

    def number(self, size: int) -> int:
        if self.position + size > self.end:
            self.overran = True
            return 0
        value = int.from_bytes(self.data[self.position : self.position + size], "big")
        self.position += size
        return value


def _av1_frame_size(data: bytes, position: int, end: int) -> tuple[int, int] | None:
    """The largest frame size of the sequence header among an AV1 item's first OBUs."""
    for _ in range(4):  # a temporal delimiter may come first, then the sequence header
        if position >= end:
            return None
        header = data[position]
        kind, extension, has_size = (header >> 3) & 15, header & 4, header & 2
        position += 2 if extension else 1
        size = end - position
        if has_size:
            size, position = _leb128(data, position)
        if kind == 1:  # OBU_SEQUENCE_HEADER
            return _av1_sequence_frame_size(
                data[position : min(end, position + size, position + _AV1_SEQUENCE_HEADER_BYTES)]
            )
        position += size
    return None


def _leb128(data: bytes, position: int) -> tuple[int, int]:
    value = 0
    for index in range(8):
        if position >= len(data):
            break
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            break
    return value, position


def _av1_sequence_frame_size(header: bytes) -> tuple[int, int] | None:
    """max_frame_width and max_frame_height of an AV1 sequence header (AV1 spec 5.5.1)."""
    bits = _Bits(header)
    bits.read(3)  # seq_profile
    bits.read(1)  # still_picture
    if bits.read(1):  # reduced_still_picture_header
        bits.read(5)  # seq_level_idx
    else:
        decoder_model_info = False
        buffer_delay_length = 0
        if bits.read(1):  # timing_info_present_flag
            bits.read(32)  # num_units_in_display_tick
            bits.read(32)  # time_scale
            if bits.read(1):  # equal_picture_interval
                bits.uvlc()  # num_ticks_per_picture_minus_1
            decoder_model_info = bool(bits.read(1))
            if decoder_model_info:
                buffer_delay_length = bits.read(5) + 1
                bits.read(32)  # num_units_in_decoding_tick
                bits.read(5)  # buffer_removal_time_length_minus_1
                bits.read(5)  # frame_presentation_time_length_minus_1
        initial_display_delay = bits.read(1)
        for _ in range(bits.read(5) + 1):  # operating points
            bits.read(12)  # operating_point_idc
            if bits.read(5) > 7:  # seq_level_idx
                bits.read(1)  # seq_tier
            if decoder_model_info and bits.read(1):
                bits.read(2 * buffer_delay_length + 1)  # decoder and encoder buffer delay, low delay
            if initial_display_delay and bits.read(1):
                bits.read(4)
    width_bits, height_bits = bits.read(4) + 1, bits.read(4) + 1
    width, height = bits.read(width_bits) + 1, bits.read(height_bits) + 1
    return None if bits.overran else (width, height)


class _Bits:
    """Most significant bit first; past the end they read as 0 and overran is set."""

    def __init__(self, data: bytes) -> None:
        self.value, self.left, self.overran = int.from_bytes(data, "big"), len(data) * 8, False

    def read(self, count: int) -> int:
        if count > self.left:
            self.overran, self.left = True, 0
            return 0
        self.left -= count
        return (self.value >> self.left) & ((1 << count) - 1)

    def uvlc(self) -> int:
        zeros = 0
        while not self.read(1) and not self.overran and zeros < 32:
            zeros += 1
        return 0 if zeros >= 32 else self.read(zeros)
