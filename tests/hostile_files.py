"""Hostile files, built in memory in milliseconds (nothing big is committed): each costs far
more to decode than its size suggests, or claims more than it holds. Sizes are the ones the
hostile-input tests use; the docstrings say what each exploits."""

import io
import struct
import zlib

# ----------------------------------------------------------------------------------------
# JPEG building blocks
# ----------------------------------------------------------------------------------------


def _seg(marker: int, payload: bytes) -> bytes:
    """A JPEG marker segment: FF xx, 2-byte length (counting itself), payload."""
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


class _BitWriter:
    """Huffman-coded entropy data writer with 0xFF byte stuffing (MSB first)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def write(self, value: int, length: int) -> None:
        self.acc = (self.acc << length) | (value & ((1 << length) - 1))
        self.n += length
        while self.n >= 8:
            self.n -= 8
            byte = (self.acc >> self.n) & 0xFF
            self.out.append(byte)
            if byte == 0xFF:
                self.out.append(0x00)
        self.acc &= (1 << self.n) - 1

    def flush(self) -> bytes:
        if self.n:  # pad with 1-bits, as the standard asks
            self.write((1 << (8 - self.n)) - 1, 8 - self.n)
        return bytes(self.out)


def _canonical_codes(lengths: dict[int, int]) -> tuple[bytes, dict[int, tuple[int, int]]]:
    """DHT payload part (16 counts + symbols) and {symbol: (code, length)} for
    symbol->code-length assignments, in canonical (JPEG Annex C) order."""
    by_len: list[list[int]] = [[] for _ in range(17)]
    for symbol, length in lengths.items():
        by_len[length].append(symbol)
    counts = bytes(len(by_len[i]) for i in range(1, 17))
    symbols = bytes(s for i in range(1, 17) for s in sorted(by_len[i]))
    codes: dict[int, tuple[int, int]] = {}
    code = 0
    for length in range(1, 17):
        for symbol in sorted(by_len[length]):
            codes[symbol] = (code, length)
            code += 1
        code <<= 1
    return counts + symbols, codes


def _dht(table_class: int, table_id: int, lengths: dict[int, int]):
    table, codes = _canonical_codes(lengths)
    return _seg(0xC4, bytes([(table_class << 4) | table_id]) + table), codes


def _dqt(value: int = 1) -> bytes:
    return _seg(0xDB, b"\x00" + bytes([value]) * 64)


def _sof(marker: int, width: int, height: int, ncomp: int, sampling: int = 0x11) -> bytes:
    payload = struct.pack(">BHHB", 8, height, width, ncomp)
    for c in range(ncomp):
        payload += bytes([c + 1, sampling if c == 0 else 0x11, 0])
    return _seg(marker, payload)


def _sos(comp_ids: list[int], ss: int, se: int, ah: int, al: int, tables: int = 0x00) -> bytes:
    payload = bytes([len(comp_ids)])
    for cid in comp_ids:
        payload += bytes([cid, tables])
    payload += bytes([ss, se, (ah << 4) | al])
    return _seg(0xDA, payload)


def _blocks(width: int, height: int) -> int:
    return ((width + 7) // 8) * ((height + 7) // 8)


def _zero_bits(nbits: int) -> bytes:
    """`nbits` 0-bits (e.g. one 1-bit DC code "0" per block), padded with 1-bits."""
    full, rest = divmod(nbits, 8)
    return b"\x00" * full + (bytes([(1 << (8 - rest)) - 1]) if rest else b"")


def _eob_runs(writer: _BitWriter, codes: dict[int, tuple[int, int]], blocks: int) -> None:
    """Cover `blocks` blocks with EOB-run symbols (EOBr, r extra bits; at most 32767 each)."""
    left = blocks
    while left:
        run = min(left, 32767)
        r = run.bit_length() - 1
        code, length = codes[r << 4]
        writer.write(code, length)
        if r:
            writer.write(run - (1 << r), r)
        left -= run


# ----------------------------------------------------------------------------------------
# 1. Progressive JPEG scan bomb
# ----------------------------------------------------------------------------------------


def jpeg_scan_bomb(
    width: int = 4032,
    height: int = 3024,
    scans: int = 23_000,
    components: int = 1,
    kind: str = "refine",
) -> bytes:
    """Progressive (SOF2) JPEG whose scans are nearly empty but each makes libjpeg visit
    every block of a component.

    kind="refine": one DC scan, one AC first scan (1..63, Al=1), then `scans` AC refinement
    scans (Ss=1, Se=63, Ah=1, Al=0) of component 1, each coded as exact EOB runs (~15 bits
    per 32767 blocks). The entropy data is valid Huffman data; from the 2nd refinement scan
    on the progression is "bogus" (Ah repeats), which libjpeg only *warns* about
    (JWRN_BOGUS_PROGRESSION) and Pillow ignores warnings. Each refinement scan loops over
    63 coefficients of every block: the most work per byte found.
    kind="first": repeated AC first scans (Ah=0, Al=0) with EOB runs (cheaper per block).
    kind="empty": repeated refinement scans with *no* entropy data at all (10-byte scans);
    libjpeg warns "premature end of data segment" and skips the blocks (cheap per scan).
    kind="dc_refine": repeated DC refinement scans; 1 raw bit per block, so bytes ~ blocks/8.
    kind="valid_max": no repetition at all (passes checks.progression_problem): DC and each
    component's AC band 1..63 sent at Al=13 then refined 13 times (14 + 14*ncomp scans).
    """
    ncomp = components
    out = bytearray(b"\xff\xd8")
    out += _dqt()
    out += _sof(0xC2, width, height, ncomp)
    dc_seg, dc_codes = _dht(0, 0, {0: 1})  # one DC symbol: category 0, code "0"
    eob_lengths = {0xE0: 1}
    eob_lengths.update({r << 4: 5 for r in range(14)})
    ac_seg, ac_codes = _dht(1, 0, eob_lengths)
    out += dc_seg + ac_seg
    blocks = _blocks(width, height)

    # DC first scan, all components interleaved (MCU = 1 block per component at 1x1 sampling)
    first_dc_al = {"dc_refine": 1, "valid_max": 13}.get(kind, 0)
    out += _sos(list(range(1, ncomp + 1)), 0, 0, 0, first_dc_al)
    out += _zero_bits(blocks * ncomp)

    def ac_scan(cid: int, ah: int, al: int) -> bytes:
        w = _BitWriter()
        _eob_runs(w, ac_codes, blocks)
        return _sos([cid], 1, 63, ah, al) + w.flush()

    if kind == "refine":
        first = ac_scan(1, 0, 1)
        out += first
        scan = ac_scan(1, 1, 0)
        out += scan * scans
    elif kind == "first":
        scan = ac_scan(1, 0, 0)
        out += scan * scans
    elif kind == "empty":
        out += ac_scan(1, 0, 1)
        out += _sos([1], 1, 63, 1, 0) * scans
    elif kind == "valid_max":
        # the most work a *valid* progression allows: every coefficient of every component
        # sent at Al=13 and refined 13 times (DC refinements cost 1 bit per block each)
        for al in range(12, -1, -1):
            out += _sos(list(range(1, ncomp + 1)), 0, 0, al + 1, al) + _zero_bits(blocks * ncomp)
        for cid in range(1, ncomp + 1):
            out += ac_scan(cid, 0, 13)
            for al in range(12, -1, -1):
                out += ac_scan(cid, al + 1, al)
    elif kind == "dc_refine":
        scan = _sos(list(range(1, ncomp + 1)), 0, 0, 1, 0) + _zero_bits(blocks * ncomp)
        out += scan * scans
    else:
        raise ValueError(kind)
    out += b"\xff\xd9"
    return bytes(out)


def jpeg_arith_declared_huge(width: int = 10_900, height: int = 10_900, progressive=False) -> bytes:
    """Arithmetic-coded (SOF9) JPEG of `width` x `height` with no entropy data: ~150 bytes
    that decode, without any libjpeg warning, to a flat grey image."""
    out = bytearray(b"\xff\xd8")
    out += _dqt()
    out += _sof(0xCA if progressive else 0xC9, width, height, 3)
    out += _sos([1, 2, 3], 0, 0 if progressive else 63, 0, 0)
    out += b"\xff\xd9"
    return bytes(out)


# ----------------------------------------------------------------------------------------
# 2. JPEGs that promise more than they carry
# ----------------------------------------------------------------------------------------


def _photo_like(width: int, height: int, seed: int = 1):
    """A deterministic photo-like RGB PIL image (smooth gradients + noise)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin(x / 37.0) * np.cos(y / 53.0)
    g = 128 + 90 * np.sin((x + y) / 71.0)
    b = 128 + 80 * np.cos(x / 23.0 - y / 41.0)
    arr = np.stack([r, g, b], axis=-1) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _patch_sof_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the frame header's height/width in place."""
    pos = 2
    while pos < len(data):
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return data[: pos + 5] + struct.pack(">HH", height, width) + data[pos + 9 :]
        pos += 2 + length
    raise ValueError("no SOF")


def jpeg_declared_huge(width: int = 10_900, height: int = 10_900, payload: int = 17_000) -> bytes:
    """Baseline JPEG whose frame header says width x height but which carries only the
    entropy data of a small real photo (~`payload` bytes), then EOI. libjpeg warns
    'premature end of data segment' and fills the rest with zero coefficients (grey)."""

    side = 64
    while True:  # grow a photo until its JPEG reaches the payload size
        buf = io.BytesIO()
        _photo_like(side, side).save(buf, "JPEG", quality=90)
        if buf.tell() >= payload:
            break
        side = int(side * 1.05) + 1
    data = _patch_sof_size(buf.getvalue(), width, height)
    return data


def jpeg_truncated(
    width: int = 2000, height: int = 1500, keep: float = 0.5, eoi: bool = True, progressive=False
) -> bytes:
    """A real photo-like JPEG cut at `keep` of its length; with eoi=True an EOI (FFD9) marker
    is appended, which makes Pillow decode it 'successfully' with grey below the cut."""
    buf = io.BytesIO()
    _photo_like(width, height).save(buf, "JPEG", quality=90, progressive=progressive)
    data = buf.getvalue()
    cut = data[: int(len(data) * keep)]
    return cut + (b"\xff\xd9" if eoi else b"")


# ----------------------------------------------------------------------------------------
# 3. PNG chunk bombs
# ----------------------------------------------------------------------------------------


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def _zeros_deflated(size: int, level: int = 9) -> bytes:
    """A zlib stream of `size` zeros, built in time proportional to its own length: after a
    full flush the compressor forgets what came before, so every 1 MiB of zeros compresses to
    the same bytes, which are repeated; the checksum of n zeros is (n mod 65521) << 16 | 1."""
    block = 1 << 20
    whole, rest = divmod(size, block)

    def flushed(length: int) -> bytes:  # raw deflate blocks, without the 2-byte zlib header
        comp = zlib.compressobj(level)
        return (comp.compress(b"\x00" * length) + comp.flush(zlib.Z_FULL_FLUSH))[2:] if length else b""

    final_empty_block = b"\x03\x00"
    checksum = struct.pack(">I", ((size % 65521) << 16) | 1)
    return b"\x78\xda" + flushed(block) * whole + flushed(rest) + final_empty_block + checksum


def _png_ihdr(width: int, height: int, bit_depth: int = 8, color_type: int = 2) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))


def _png_idat_flat(width: int, height: int, bpp: int, filter_type: int = 0) -> bytes:
    row = bytes([filter_type]) + b"\x00" * (width * bpp)
    comp = zlib.compressobj(9)
    out = bytearray()
    rows_per = max(1, (1 << 22) // len(row))
    chunk_rows = row * rows_per
    left = height
    while left:
        n = min(left, rows_per)
        out += comp.compress(chunk_rows if n == rows_per else row * n)
        left -= n
    out += comp.flush()
    return bytes(out)


def png_small(
    width: int = 64, height: int = 64, extra_before_idat: bytes = b"", extra_after_idat: bytes = b""
) -> bytes:
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_ihdr(width, height)
        + extra_before_idat
        + _chunk(b"IDAT", _png_idat_flat(width, height, 3))
        + extra_after_idat
        + _chunk(b"IEND", b"")
    )


def png_iccp_bomb(decompressed: int = 1 << 30) -> bytes:
    """64x64 PNG with an iCCP chunk whose zlib stream inflates to `decompressed` bytes
    (~1 MB chunk for 1 GiB)."""
    payload = b"bomb\x00\x00" + _zeros_deflated(decompressed)
    return png_small(extra_before_idat=_chunk(b"iCCP", payload))


def png_ztxt_bomb(decompressed: int = 1 << 30, after_idat: bool = False) -> bytes:
    """64x64 PNG with a zTXt chunk inflating to `decompressed` bytes."""
    c = _chunk(b"zTXt", b"Comment\x00\x00" + _zeros_deflated(decompressed))
    if after_idat:
        return png_small(extra_after_idat=c)
    return png_small(extra_before_idat=c)


def png_chunk_flood(count: int = 2_000_000, kind: bytes = b"tEXt") -> bytes:
    """64x64 PNG with `count` minimal ancillary chunks before IDAT: tEXt "k\\0" (14 bytes
    each) or an empty unknown chunk (12 bytes each; a *private* name such as b"prVt",
    second letter lower case, is kept by Pillow in im.private_chunks, one tuple per chunk)."""
    if kind == b"tEXt":
        one = _chunk(b"tEXt", b"k\x00")
    else:
        one = _chunk(kind, b"")
    return png_small(extra_before_idat=one * count)


# ----------------------------------------------------------------------------------------
# 5. Big-but-legal images in each mode (decode memory per mode)
# ----------------------------------------------------------------------------------------

# PNG colour type / bit depth -> bytes per pixel in the file's raw scanlines
_PNG_KINDS = {
    "rgb8": (2, 8, 3),
    "rgb16": (2, 16, 6),
    "rgba8": (6, 8, 4),
    "rgba16": (6, 16, 8),
    "gray8": (0, 8, 1),
    "gray16": (0, 16, 2),
    "la8": (4, 8, 2),
    "la16": (4, 16, 4),
    "palette8": (3, 8, 1),
    "gray1": (0, 1, None),
}


def png_flat(width: int = 10_900, height: int = 10_900, kind: str = "rgb8", filter_type: int = 0) -> bytes:
    """A flat (all-zero) PNG of the given size and colour type: a few hundred KB for 119 MP."""
    color_type, depth, bpp = _PNG_KINDS[kind]
    extra = b""
    if color_type == 3:
        extra = _chunk(b"PLTE", bytes(range(256)) * 3)
    if bpp is None:  # 1-bit
        row = bytes([filter_type]) + b"\x00" * ((width + 7) // 8)
        comp = zlib.compressobj(9)
        idat = comp.compress(row * height) + comp.flush()
    else:
        idat = _png_idat_flat(width, height, bpp, filter_type)
    # split IDAT like encoders do (any size works)
    chunks = b"".join(_chunk(b"IDAT", idat[i : i + (1 << 20)]) for i in range(0, len(idat), 1 << 20))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_ihdr(width, height, depth, color_type)
        + extra
        + chunks
        + _chunk(b"IEND", b"")
    )


def tiff_flat(
    width: int = 10_900,
    height: int = 10_900,
    kind: str = "I32",
    compression: int = 8,
    tile: tuple[int, int] | None = None,
    declared_tile: tuple[int, int] | None = None,
    pages: int = 1,
    rows_per_strip: int | None = None,
) -> bytes:
    """Minimal little-endian TIFF, all-zero pixels, deflate (8), LZW (5) or none (1).

    kind: "I32" (signed 32-bit gray -> mode I), "F32" (float -> F), "RGB8", "I16", "L8".
    tile: tile size for a tiled TIFF; declared_tile: tile size written in the header while
    the data is that of `tile` (a lie). pages: number of IFDs (each a copy of page 1).
    """
    spp, bps, fmt = {
        "I32": (1, 32, 2),
        "F32": (1, 32, 3),
        "RGB8": (3, 8, 1),
        "I16": (1, 16, 1),
        "L8": (1, 8, 1),
    }[kind]
    bpp = spp * bps // 8
    if compression == 8:

        def zeros(size: int) -> bytes:
            return _zeros_deflated(size)
    elif compression == 1:

        def zeros(size: int) -> bytes:
            return b"\x00" * size
    else:
        raise ValueError("compression 1 or 8")
    if tile:
        tw, th = tile
        across, down = -(-width // tw), -(-height // th)
        one = zeros(tw * th * bpp)
        pieces = [one] * (across * down)
    else:
        rows = rows_per_strip or max(1, min(height, (8 << 20) // max(1, width * bpp)))
        nstrips = -(-height // rows)
        full = zeros(width * rows * bpp)
        last_rows = height - rows * (nstrips - 1)
        last = full if last_rows == rows else zeros(width * last_rows * bpp)
        pieces = [full] * (nstrips - 1) + [last]

    def ifd_bytes(ifd_offset: int, data_offset: int, next_ifd: int) -> tuple[bytes, bytes]:
        # layout: [IFD][arrays][data...]
        n = len(pieces)
        entries = []
        arrays = bytearray()
        ntags = 11
        arr_base = ifd_offset + 2 + ntags * 12 + 4

        def long_array(values):
            nonlocal arrays
            off = arr_base + len(arrays)
            arrays += struct.pack(f"<{len(values)}I", *values)
            return off

        offsets, pos = [], data_offset
        shared = len(set(map(id, pieces))) <= 2 and len(pieces) > 1000
        for p in pieces:
            offsets.append(pos)
            if not shared:  # many identical strips/tiles all point at one stored copy
                pos += len(p)
        counts = [len(p) for p in pieces]
        bps_value = bps
        if spp == 3:
            bps_off = arr_base + len(arrays)
            arrays += struct.pack("<3H", bps, bps, bps)
        entries.append((256, 4, 1, width))
        entries.append((257, 4, 1, height))
        if spp == 3:
            entries.append((258, 3, 3, bps_off))
        else:
            entries.append((258, 3, 1, bps_value))
        entries.append((259, 3, 1, compression))
        entries.append((262, 3, 1, 2 if spp == 3 else 1))
        entries.append((277, 3, 1, spp))
        entries.append((339, 3, 1, fmt))
        if tile:
            tw, th = declared_tile or tile
            entries.append((322, 4, 1, tw))
            entries.append((323, 4, 1, th))
            off_tag, cnt_tag = 324, 325
        else:
            entries.append((278, 4, 1, rows))
            off_tag, cnt_tag = 273, 279
        entries.append((off_tag, 4, n, offsets[0] if n == 1 else long_array(offsets)))
        entries.append((cnt_tag, 4, n, counts[0] if n == 1 else long_array(counts)))
        entries.sort()
        while len(entries) < ntags:  # pad with harmless tags to keep the layout fixed
            entries.append((305, 2, 1, 0))
            entries.sort()
        ifd = struct.pack("<H", len(entries))
        for tag, typ, count, value in entries:
            if typ == 3 and count == 1:
                ifd += struct.pack("<HHIHH", tag, typ, count, value, 0)
            else:
                ifd += struct.pack("<HHII", tag, typ, count, value)
        ifd += struct.pack("<I", next_ifd)
        return ifd, bytes(arrays)

    shared = len(set(map(id, pieces))) <= 2 and len(pieces) > 1000
    data_blob = max(pieces, key=len) if shared else b"".join(pieces)
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    # every page shares the same pixel data, stored once after all IFDs
    ifd_size_guess = 2 + 11 * 12 + 4 + 8 * len(pieces) + 6
    data_offset = 8 + ifd_size_guess * pages
    for page in range(pages):
        ifd_offset = 8 + ifd_size_guess * page
        next_ifd = 8 + ifd_size_guess * (page + 1) if page + 1 < pages else 0
        ifd, arrays = ifd_bytes(ifd_offset, data_offset, next_ifd)
        block = ifd + arrays
        block += b"\x00" * (ifd_size_guess - len(block))
        out += block
    out += data_blob
    return bytes(out)


def webp_many_frames(frames: int = 20_000, width: int = 64, height: int = 64) -> bytes:
    """Animated WebP with `frames` tiny lossless frames (via Pillow's encoder for one frame,
    then the ANMF chunk repeated)."""
    from PIL import Image

    buf = io.BytesIO()
    a = Image.new("RGBA", (width, height), (255, 0, 0, 255))
    b = Image.new("RGBA", (width, height), (0, 255, 0, 255))
    a.save(buf, "WEBP", save_all=True, append_images=[b], lossless=True, duration=1)
    data = buf.getvalue()
    # find the first ANMF chunk and repeat it
    pos = 12
    chunks = []
    while pos < len(data):
        kind = data[pos : pos + 4]
        size = struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunk = data[pos : pos + 8 + size + (size & 1)]
        chunks.append((kind, chunk))
        pos += 8 + size + (size & 1)
    head = b"".join(c for k, c in chunks if k != b"ANMF")
    anmf = [c for k, c in chunks if k == b"ANMF"][0]
    body = head + anmf * frames
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


# ----------------------------------------------------------------------------------------
# 6. HEIF / AVIF with a declared size that the coded image does not have
# ----------------------------------------------------------------------------------------


def _patch_ispe(data: bytes, width: int, height: int) -> bytes:
    """Rewrite every 'ispe' (image spatial extents) property to width x height."""
    out = bytearray(data)
    pos = out.find(b"ispe")
    while pos != -1:
        out[pos + 8 : pos + 16] = struct.pack(">II", width, height)
        pos = out.find(b"ispe", pos + 4)
    return bytes(out)


def heif_declared_huge(width: int = 10_900, height: int = 10_900) -> bytes:
    """64x64 HEVC-coded HEIC (x265 via pillow-heif) whose ispe says width x height."""
    from PIL import Image
    from pillow_heif import register_heif_opener

    register_heif_opener()
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, "HEIF")
    return _patch_ispe(buf.getvalue(), width, height)


def avif_declared_huge(width: int = 10_900, height: int = 10_900) -> bytes:
    """64x64 AV1-coded AVIF (Pillow's encoder) whose ispe says width x height."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, "AVIF")
    return _patch_ispe(buf.getvalue(), width, height)


def webp_anim_big_canvas(width: int = 16_383, height: int = 16_383, frames: int = 1) -> bytes:
    """Valid animated WebP: canvas width x height (VP8X), `frames` 64x64 ANMF frames.
    libwebp's WebPAnimDecoder allocates the whole canvas (x4 bytes, twice) when Pillow
    *opens* it."""
    data = webp_many_frames(frames=frames)
    pos = data.find(b"VP8X")
    out = bytearray(data)
    out[pos + 12 : pos + 15] = (width - 1).to_bytes(3, "little")
    out[pos + 15 : pos + 18] = (height - 1).to_bytes(3, "little")
    return bytes(out)


# ----------------------------------------------------------------------------------------
# 7. Cheap to send, costly to open: work that follows what the file declares, not its bytes
# ----------------------------------------------------------------------------------------


def bmp_rle(width: int = 7_000_000, height: int = 16, rle4: bool = False) -> bytes:
    """RLE8 (or RLE4) BMP of width x height whose rows are one pixel and an end-of-line escape
    (then end of bitmap): 128 bytes for 16 rows. Pillow's RLE decoder is Python and pads each row
    to its width a byte at a time (24.9 s for 7,000,000x16)."""
    palette = b"\x00\x00\x00\x00\xff\xff\xff\x00"
    pixels = b"\x01\x00\x00\x00" * height + b"\x00\x01"
    offset = 14 + 40 + len(palette)
    info = struct.pack(
        "<IiiHHIIiiII",
        40,
        width,
        height,
        1,
        4 if rle4 else 8,
        2 if rle4 else 1,
        len(pixels),
        2835,
        2835,
        2,
        0,
    )
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def bmp_declared_huge(width: int = 10_000, height: int = 10_000) -> bytes:
    """An uncompressed 24-bit BMP header declaring width x height, with no pixels after it."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + info


def tiff_huge_tile(side: int = 64, tile: int = 16_384) -> bytes:
    """An RGB side x side TIFF in one deflated tile of tile x tile zeros (783 KB for 16384):
    libtiff allocates and inflates the whole tile (+813 MB) for a photo of 64x64."""
    return tiff_flat(side, side, "RGB8", compression=8, tile=(tile, tile))


def exif_orientation_bomb(values: int = 7_000_000) -> bytes:
    """A big-endian EXIF block (TIFF structure, no "Exif" prefix) whose one field, the
    orientation, holds `values` fractions: Pillow makes a Python object of each when asked for
    the orientation (8 bytes each: 56 MB for 7 million)."""
    entry = struct.pack(">HHII", 0x0112, 5, values, 26)
    return (
        b"MM\x00*"
        + struct.pack(">IH", 8, 1)
        + entry
        + struct.pack(">I", 0)
        + b"\x00\x00\x00\x01" * 2 * values
    )


def png_with_exif(exif: bytes) -> bytes:
    """A 64x64 PNG whose eXIf chunk holds `exif`."""
    return png_small(extra_before_idat=_chunk(b"eXIf", exif))


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)


def webp_with_exif(exif: bytes, width: int = 64, height: int = 64) -> bytes:
    """An extended (VP8X) lossless WebP whose EXIF chunk holds `exif`."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buf, "WEBP", lossless=True)
    simple = buf.getvalue()
    vp8x = struct.pack("<I", 0x08) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + _riff_chunk(b"VP8X", vp8x) + simple[12:] + _riff_chunk(b"EXIF", exif)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiff_with_orientation_values(values: int = 7_000_000, side: int = 64) -> bytes:
    """An uncompressed 8-bit gray side x side TIFF whose orientation field holds `values`
    fractions (8 bytes each), read by Pillow when asked for the orientation."""
    pixels = b"\x80" * side * side
    fields = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1)]
    directory_size = 2 + 12 * 10 + 4
    strip = 8 + directory_size
    orientation_values = strip + len(pixels)
    fields += [(273, 4, 1, strip), (274, 5, values, orientation_values), (277, 3, 1, 1)]
    fields += [(278, 4, 1, side), (279, 4, 1, len(pixels))]
    directory = struct.pack("<H", len(fields))
    for tag, kind, count, value in fields:
        if kind == 3 and count == 1:
            directory += struct.pack("<HHIHH", tag, kind, count, value, 0)
        else:
            directory += struct.pack("<HHII", tag, kind, count, value)
    directory += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + directory + pixels + b"\x01\x00\x00\x00" * 2 * values


def _small_jpeg() -> bytes:

    buf = io.BytesIO()
    _photo_like(64, 64).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def jpeg_segment_flood(segments: int = 15_999_000, marker: int = 0xFE) -> bytes:
    """A 64x64 JPEG with `segments` empty COM (or APPn) segments after its start marker, 4 bytes
    each (64 MB for 16 million): every one is a step of a marker walk in Python."""
    data = _small_jpeg()
    return data[:2] + bytes((0xFF, marker, 0x00, 0x02)) * segments + data[2:]


def jpeg_fill_flood(fill: int = 63_000_000) -> bytes:
    """A 64x64 JPEG with `fill` 0xFF fill bytes before its second marker, which the standard
    allows; a byte-at-a-time reader takes seconds over 63 MB."""
    data = _small_jpeg()
    return data[:2] + b"\xff" * fill + data[2:]


def gif_block_flood(blocks: int = 30_000_000, width: int = 64, height: int = 64) -> bytes:
    """A GIF whose first frame follows one comment extension of `blocks` one-byte blocks (two
    bytes each): Pillow reads them one at a time before it finds the frame."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("P", (width, height), 1).save(buf, "GIF")
    data = buf.getvalue()
    frame = data.index(b",", 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 13))
    return data[:frame] + b"!\xfe" + b"\x01C" * blocks + b"\x00" + data[frame:]


def bigtiff_many_fields(fields: int = 3_000_000) -> bytes:
    """A BigTIFF whose first directory declares `fields` fields (20 bytes each, all present):
    its count is a 64-bit number, and Pillow reads the fields one at a time in Python."""
    entry = struct.pack("<HHQQ", 0x9C9C, 1, 1, 0)  # a private one-byte field
    return (
        b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + struct.pack("<Q", fields) + entry * fields + b"\x00" * 8
    )


def avif_coded_larger(side: int = 2_048, declared: int = 64) -> bytes:
    """A flat AVIF coded at side x side whose ispe declares declared x declared: the AV1 decoder
    decodes the coded frame (an 8192x8192 one took 0.7 s and 146 MB for a "64x64" photo)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (10, 200, 30)).save(buf, "AVIF", quality=50, speed=10)
    return _patch_ispe(buf.getvalue(), declared, declared)
