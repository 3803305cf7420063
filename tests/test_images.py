import io
import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from clip_age.decoding import images
from clip_age.decoding.images import InvalidImage, load_image
from clip_age.decoding.upload_limits import DecodeLimits
from tests import hostile_files as hostile
from tests.image_corpus import (
    BLUE,
    GREEN,
    HEIGHT,
    RED,
    STORED_FOR_ORIENTATION,
    WIDTH,
    YELLOW,
    animated_gif,
    jpeg_with_orientation,
    png_bomb,
    png_rgb16,
    quadrant_colours,
    quadrants,
    save,
)

ACCEPTED = "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF or AVIF"
LIMITS = DecodeLimits()
MAX_PIXELS, MAX_FILE_BYTES = LIMITS.max_pixels, LIMITS.max_upload_bytes
CARD = Image.fromarray(quadrants())


def close(actual, expected, tolerance=40):
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def assert_upright_card(image: Image.Image, tolerance: int = 40) -> None:
    assert image.mode == "RGB"
    assert image.size == (WIDTH, HEIGHT)
    for actual, expected in zip(quadrant_colours(image), [RED, GREEN, BLUE, YELLOW], strict=True):
        assert close(actual, expected, tolerance), (quadrant_colours(image), [RED, GREEN, BLUE, YELLOW])


def palette_with_transparency() -> bytes:
    image = CARD.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    top_left_index = image.getpixel((0, 0))
    return save(image, "PNG", transparency=top_left_index)


ACCEPTED_CARDS = {
    "jpeg baseline": lambda: save(CARD, "JPEG", quality=95),
    "jpeg progressive": lambda: save(CARD, "JPEG", quality=95, progressive=True),
    "png rgb": lambda: save(CARD, "PNG"),
    "png 16-bit rgb": lambda: png_rgb16(quadrants()),
    "png palette": lambda: save(CARD.convert("P", palette=Image.Palette.ADAPTIVE, colors=8), "PNG"),
    "png rgba opaque": lambda: save(CARD.convert("RGBA"), "PNG"),
    "webp lossless": lambda: save(CARD, "WEBP", lossless=True),
    "webp lossy": lambda: save(CARD, "WEBP", quality=95),
    "bmp": lambda: save(CARD, "BMP"),
    "tiff": lambda: save(CARD, "TIFF"),
    "tiff compressed": lambda: save(CARD, "TIFF", compression="tiff_deflate"),
    "heic": lambda: save(CARD, "HEIF", quality=95),
    "avif": lambda: save(CARD, "AVIF", quality=95),
}


@pytest.mark.parametrize("kind", sorted(ACCEPTED_CARDS))
def test_accepted_format_decodes_to_the_same_upright_rgb_card(kind):
    assert_upright_card(load_image(ACCEPTED_CARDS[kind]()))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    assert_upright_card(load_image(jpeg_with_orientation(orientation)))


@pytest.mark.parametrize("orientation", [1, 6, 8])
def test_exif_orientation_is_applied_with_draft_decoding(orientation):
    image = load_image(jpeg_with_orientation(orientation), draft_side=16)
    # A 1/2 or 1/4 scale decode keeps the aspect and the colours in their places.
    assert image.width > image.height
    assert [
        close(a, e) for a, e in zip(quadrant_colours(image), [RED, GREEN, BLUE, YELLOW], strict=True)
    ] == [True] * 4


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (WIDTH, HEIGHT), (0, 255, 255, 0))  # red ink
    image = load_image(save(cmyk, "JPEG", quality=95))
    assert image.mode == "RGB"
    assert close(image.getpixel((10, 10)), (255, 0, 0), 30)


def test_grayscale_jpeg_becomes_rgb_gray():
    image = load_image(save(Image.new("L", (WIDTH, HEIGHT), 100), "JPEG"))
    assert image.mode == "RGB" and close(image.getpixel((5, 5)), (100, 100, 100), 3)


def test_16_bit_grayscale_png_keeps_its_brightness():
    gray16 = Image.fromarray(np.full((HEIGHT, WIDTH), 0x8080, dtype=np.uint16))
    image = load_image(save(gray16, "PNG"))
    assert image.mode == "RGB" and close(image.getpixel((5, 5)), (128, 128, 128), 1)


def test_alpha_is_composited_on_white():
    half = CARD.convert("RGBA")
    half.paste((0, 0, 0, 0), (0, 0, WIDTH // 2, HEIGHT))  # left half fully transparent
    image = load_image(save(half, "PNG"))
    assert close(image.getpixel((5, 5)), (255, 255, 255), 0)
    assert close(image.getpixel((WIDTH - 5, 5)), GREEN, 0)


def test_grayscale_with_alpha_is_composited_on_white():
    la = Image.merge("LA", [Image.new("L", (WIDTH, HEIGHT), 0), Image.new("L", (WIDTH, HEIGHT), 0)])
    la.paste((0, 255), (WIDTH // 2, 0, WIDTH, HEIGHT))  # right half opaque black
    image = load_image(save(la, "PNG"))
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert image.getpixel((WIDTH - 5, 5)) == (0, 0, 0)


def test_palette_transparency_is_composited_on_white():
    image = load_image(palette_with_transparency())
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert close(image.getpixel((WIDTH - 5, 5)), GREEN, 20)


def test_animated_gif_gives_its_first_frame():
    image = load_image(animated_gif(RED, BLUE))
    assert close(image.getpixel((10, 10)), RED, 10)


def test_a_path_is_read_like_bytes(tmp_path):
    path = tmp_path / "card.png"
    path.write_bytes(save(CARD, "PNG"))
    assert_upright_card(load_image(path))


def exif_orientation_as_text(value: bytes) -> bytes:
    """A TIFF-style EXIF block whose orientation tag (0x0112) is ASCII text instead of a SHORT."""
    entry = struct.pack(">HHI4s", 0x0112, 2, len(value), value.ljust(4, b"\x00"))
    return b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + struct.pack(">I", 0)


@pytest.mark.parametrize("value", [b"6\x00", b"up\x00"])
def test_a_malformed_orientation_tag_keeps_the_stored_orientation(value):
    data = save(CARD, "JPEG", quality=95, exif=exif_orientation_as_text(value))
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == value.rstrip(b"\x00").decode()
    assert_upright_card(load_image(data))


# Refusals: each with its own message, asserted in full.


def test_empty_file():
    with pytest.raises(InvalidImage) as raised:
        load_image(b"")
    assert str(raised.value) == f"The file is empty (0 bytes). Upload a photo: {ACCEPTED}."


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"%PDF-1.7\n1 0 obj", "a PDF document"),
        (b"PK\x03\x04" + b"\x00" * 40, "a ZIP archive or Office document"),
        (b"hello, this is a note", "a text file"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "an SVG drawing"),
        (b"<!DOCTYPE html><html></html>", "an HTML page"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00", "a video or an unsupported HEIF variant"),
        (b"8BPS\x00\x01" + b"\x00" * 40, "a Photoshop (PSD) file"),
        (bytes(range(256)) * 2, "an unrecognised file type"),
    ],
)
def test_not_an_image_names_what_it_looks_like(data, what):
    with pytest.raises(InvalidImage) as raised:
        load_image(data)
    assert str(raised.value) == (
        f"The file is not an image we can read (it looks like {what}). Accepted formats: {ACCEPTED}."
    )


def test_a_format_pillow_reads_but_we_do_not_accept_is_refused():
    with pytest.raises(InvalidImage, match=r"^The file is not an image we can read"):
        load_image(save(CARD, "PPM"))


def test_truncated_jpeg():
    data = save(Image.effect_noise((256, 256), 60).convert("RGB"), "JPEG")
    with pytest.raises(InvalidImage) as raised:
        load_image(data[: len(data) // 2])
    assert str(raised.value) == (
        "The JPEG image is truncated or corrupt and could not be decoded (Premature end of JPEG "
        "file). Export or save the photo again and re-upload it."
    )


def test_jpeg_with_a_broken_header():
    with pytest.raises(InvalidImage) as raised:
        load_image(save(CARD, "JPEG")[:40])
    assert str(raised.value) == (
        "The JPEG image is truncated or corrupt and could not be decoded (it ends inside a "
        "marker). Export or save the photo again and re-upload it."
    )


def test_corrupt_png_data():
    data = bytearray(save(Image.effect_noise((128, 128), 60).convert("RGB"), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10 : idat + 200] = b"\xff" * 190
    with pytest.raises(
        InvalidImage, match=r"^The PNG image is truncated or corrupt and could not be decoded \("
    ):
        load_image(bytes(data))


def test_too_small():
    with pytest.raises(InvalidImage) as raised:
        load_image(save(Image.new("RGB", (15, 40)), "PNG"))
    assert str(raised.value) == (
        "The image is 15x40 pixels; it must be at least 16 pixels on each side to show a face."
    )


def test_sixteen_pixels_is_enough():
    assert load_image(save(Image.new("RGB", (16, 16)), "PNG")).size == (16, 16)


def test_decompression_bomb_is_refused_before_decoding_in_under_a_second():
    bomb = png_bomb(50_000, 50_000)
    started = time.perf_counter()
    with pytest.raises(InvalidImage) as raised:
        load_image(bomb)
    assert time.perf_counter() - started < 1.0
    assert str(raised.value) == (
        "The image is 50000x50000 pixels (2500.0 megapixels); the limit is 120 megapixels "
        "(MAX_MEGAPIXELS). Resize it and try again."
    )


def test_just_over_the_pixel_limit_is_refused():
    width = 12_000
    height = MAX_PIXELS // width + 1
    with pytest.raises(InvalidImage, match=rf"^The image is {width}x{height} pixels"):
        load_image(png_bomb(width, height))


def test_file_over_the_byte_limit_is_refused_before_reading(tmp_path):
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as file:
        file.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(InvalidImage) as raised:
        load_image(huge)
    assert str(raised.value) == (
        f"The file is 64.0 MB; the limit is 64 MB (MAX_UPLOAD_MB). Upload a smaller photo ({ACCEPTED})."
    )


def test_missing_file_is_explained(tmp_path):
    with pytest.raises(InvalidImage, match=r"^Could not read the file \(No such file or directory\)"):
        load_image(tmp_path / "gone.jpg")


def test_100_megapixel_png_of_mostly_one_colour_is_handled_within_the_limits():
    side = 10_000
    canvas = Image.new("RGB", (side, side), (40, 90, 160))
    canvas.paste(RED, (4_000, 4_000, 6_000, 6_000))
    data = save(canvas, "PNG", compress_level=1)
    del canvas
    image = load_image(data)
    assert image.size == (side, side)
    assert image.getpixel((5_000, 5_000)) == RED
    assert image.getpixel((10, 10)) == (40, 90, 160)


# Fuzzing: whatever the bytes, the result is a usable image or our own error.

SEEDS = [
    save(CARD, "JPEG"),
    save(CARD, "PNG"),
    save(CARD, "GIF"),
    save(CARD, "WEBP"),
    save(CARD, "BMP"),
    save(CARD, "TIFF"),
    save(CARD, "HEIF"),
    save(CARD, "AVIF"),
    png_rgb16(quadrants()),
    animated_gif(RED, BLUE),
    jpeg_with_orientation(6),
]


@st.composite
def mutated_files(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "truncate":
            del data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            del data[position : position + draw(st.integers(1, 64))]
    return bytes(data)


def check_contract(data: bytes) -> None:
    try:
        image = load_image(data)
    except InvalidImage as error:
        assert str(error)
        return
    assert image.mode == "RGB"
    assert min(image.size) >= images.MIN_SIDE
    assert image.width * image.height <= MAX_PIXELS


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_files())
def test_fuzz_mutated_images_give_an_image_or_our_error(data):
    check_contract(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes_give_an_image_or_our_error(data):
    check_contract(data)


# Cost follows bytes: what a file declares (rows, tiles, fields, blocks, metadata) is bounded
# before Pillow reads it, so that a small file is answered quickly, and legitimate files of the
# same formats still decode as Pillow decodes them.

SMALL_ATTACKS = {
    "RLE8 BMP of 7,000,000x16": (
        lambda: hostile.bmp_rle(7_000_000),
        "The BMP image is run-length encoded (RLE), which is not supported.",
    ),
    "RLE4 BMP of 7,000,000x16": (
        lambda: hostile.bmp_rle(7_000_000, rle4=True),
        "The BMP image is run-length encoded (RLE), which is not supported.",
    ),
    "BMP declaring 10000x10000 without its pixels": (
        hostile.bmp_declared_huge,
        "it holds 54 bytes, too few for 10000x10000 pixels of 24 bits",
    ),
    "64x64 TIFF in one 16384x16384 tile": (
        hostile.tiff_huge_tile,
        "64x64 pixels in tiles of 16384x16384, which cover 268.4 megapixels",
    ),
    "TIFF orientation of 100,000 fractions": (
        lambda: hostile.tiff_with_orientation_values(100_000),
        "a field of its header holds 100,000 fractions; photos hold a few and at most 4,096 are read",
    ),
    "BigTIFF of 40,000 fields": (
        lambda: hostile.bigtiff_many_fields(40_000),
        "its header has 40,000 fields; photos have a few dozen and at most 1,000 are read",
    ),
    "PNG with EXIF of 100,000 fractions": (
        lambda: hostile.png_with_exif(hostile.exif_orientation_bomb(100_000)),
        "The PNG file carries 800 KB of EXIF metadata; at most 256 KB is read",
    ),
    "WebP with EXIF of 100,000 fractions": (
        lambda: hostile.webp_with_exif(hostile.exif_orientation_bomb(100_000)),
        "The WebP file carries 800 KB of EXIF metadata; at most 256 KB is read",
    ),
    "JPEG of 200,000 empty comments": (
        lambda: hostile.jpeg_segment_flood(200_000),
        "it has more than 1,128 marker segments (encoders write a few dozen)",
    ),
    "JPEG of 900,000 fill bytes": (
        lambda: hostile.jpeg_fill_flood(900_000),
        "it has more than 65,536 fill bytes between its markers",
    ),
    "GIF of 450,000 comment blocks": (
        lambda: hostile.gif_block_flood(450_000),
        "it has more than 10,000 blocks of comments or application data before its first frame",
    ),
}


@pytest.mark.parametrize("name", list(SMALL_ATTACKS))
def test_a_small_file_declaring_costly_work_is_refused_within_two_seconds(name):
    build, words = SMALL_ATTACKS[name]
    data = build()
    assert len(data) < 1_000_000
    started = time.perf_counter()
    with pytest.raises(InvalidImage) as raised:
        load_image(data)
    seconds = time.perf_counter() - started
    print(f"\n{name} ({len(data):,} bytes): refused in {seconds * 1000:.1f} ms")
    assert seconds < 2.0
    assert words in str(raised.value)


def pillow_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def test_a_palette_bmp_decodes_as_pillow_decodes_it():
    data = save(CARD.convert("P", palette=Image.Palette.ADAPTIVE, colors=8), "BMP")
    assert np.array_equal(np.asarray(load_image(data)), pillow_rgb(data))


def test_a_gif_with_comments_decodes_as_pillow_decodes_it():
    data = save(CARD.convert("P", palette=Image.Palette.ADAPTIVE, colors=8), "GIF", comment=b"c" * 5_000)
    assert np.array_equal(np.asarray(load_image(data)), pillow_rgb(data))


def test_a_jpeg_with_comments_and_fill_bytes_decodes_as_pillow_decodes_it():
    plain = save(CARD, "JPEG", quality=95)
    data = plain[:2] + b"\xff\xfe\x00\x07notes" * 50 + b"\xff" * 1_000 + plain[2:]
    ours, pillows = np.asarray(load_image(data), dtype=int), pillow_rgb(data).astype(int)
    assert np.abs(ours - pillows).mean() < 1.0
    assert np.array_equal(np.asarray(load_image(data)), np.asarray(load_image(plain)))


def tiled_tiff(pixels: np.ndarray, tile: int) -> bytes:
    """An RGB TIFF in deflated tile x tile tiles (Pillow cannot write tiles), edge tiles padded."""
    height, width = pixels.shape[:2]
    down, across = -(-height // tile), -(-width // tile)
    padded = np.zeros((down * tile, across * tile, 3), np.uint8)
    padded[:height, :width] = pixels
    tiles = [
        zlib.compress(padded[y * tile : (y + 1) * tile, x * tile : (x + 1) * tile].tobytes())
        for y in range(down)
        for x in range(across)
    ]
    count = len(tiles)
    directory_size = 2 + 12 * 10 + 4
    arrays = 8 + directory_size
    data_start = arrays + 6 + 8 * count
    offsets = np.cumsum([data_start] + [len(t) for t in tiles[:-1]])
    fields = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, arrays),
        (259, 3, 1, 8),
        (262, 3, 1, 2),
        (277, 3, 1, 3),
        (322, 4, 1, tile),
        (323, 4, 1, tile),
        (324, 4, count, arrays + 6 if count > 1 else int(offsets[0])),
        (325, 4, count, arrays + 6 + 4 * count if count > 1 else len(tiles[0])),
    ]
    directory = struct.pack("<H", len(fields))
    for tag, kind, number, value in fields:
        packing = "<HHIHH" if kind == 3 and number == 1 else "<HHII"
        directory += (
            struct.pack(packing, tag, kind, number, value, 0)
            if kind == 3 and number == 1
            else (struct.pack(packing, tag, kind, number, value))
        )
    directory += struct.pack("<I", 0)
    tables = struct.pack("<3H", 8, 8, 8) + struct.pack(f"<{count}I", *offsets)
    tables += struct.pack(f"<{count}I", *[len(t) for t in tiles])
    return b"II*\x00" + struct.pack("<I", 8) + directory + tables + b"".join(tiles)


def test_a_tiled_tiff_decodes_to_its_pixels():
    data = tiled_tiff(quadrants(), 32)  # 96x64 in six 32x32 tiles
    assert np.array_equal(pillow_rgb(data), quadrants())  # the builder makes what Pillow reads
    assert np.array_equal(np.asarray(load_image(data)), quadrants())


def test_a_tiff_whose_tiles_overhang_it_is_still_read():
    data = tiled_tiff(quadrants(), 256)  # one 256x256 tile for 96x64 pixels, as encoders do
    assert np.array_equal(np.asarray(load_image(data)), quadrants())


def test_a_tiff_tile_counts_in_the_memory_estimate():
    data = hostile.tiff_huge_tile(64, 8_192)  # a 67-megapixel tile: libtiff's buffer takes 268 MB
    with pytest.raises(InvalidImage, match=r"^Decoding this 64x64 TIFF image would take about 268 MB"):
        load_image(data, limits=DecodeLimits(max_decoded_bytes=200_000_000))


def test_a_bigtiff_decodes_as_pillow_decodes_it():
    data = save(CARD, "TIFF", big_tiff=True)
    assert data[:4] == b"II+\x00"
    assert np.array_equal(np.asarray(load_image(data)), pillow_rgb(data))


def turned_card(orientation: int) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(STORED_FOR_ORIENTATION[orientation](quadrants())))


def orientation_exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@pytest.mark.parametrize(
    "kind",
    [
        lambda: save(turned_card(6), "PNG", exif=orientation_exif(6)),
        lambda: save(turned_card(6), "WEBP", lossless=True, exif=orientation_exif(6)),
        lambda: save(turned_card(6), "TIFF", tiffinfo={0x0112: 6}),
        lambda: save(turned_card(8), "HEIF", quality=95, exif=orientation_exif(8)),
    ],
    ids=["png", "webp", "tiff", "heic"],
)
def test_a_photo_with_ordinary_exif_is_turned_upright(kind):
    assert_upright_card(load_image(kind()))


def test_an_exif_block_pillow_cannot_parse_keeps_the_stored_orientation():
    data = save(CARD, "WEBP", lossless=True, exif=b"Exif\x00\x00" + bytes(50))
    assert_upright_card(load_image(data))


def test_a_png_exif_after_the_pixels_is_refused_before_they_are_decoded():
    exif = hostile._chunk(b"eXIf", hostile.exif_orientation_bomb(100_000))
    data = bytearray(hostile.png_small(extra_after_idat=exif))
    idat = data.index(b"IDAT")
    data[idat + 10 : idat + 30] = b"\xff" * 20  # corrupt pixels: decoding them would be refused otherwise
    with pytest.raises(InvalidImage, match=r"^The PNG file carries 800 KB of EXIF metadata"):
        load_image(bytes(data))


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"icc_profile": b"\x00" * 4_100_000}, "The WebP file carries 4.1 MB of colour profile metadata"),
        (
            {"xmp": b"<x/>" * 1_100_000},
            "The WebP file carries 4.4 MB of XMP metadata; at most 4.0 MB is read",
        ),
    ],
)
def test_oversized_metadata_is_refused(options, words):
    with pytest.raises(InvalidImage) as raised:
        load_image(save(CARD, "WEBP", lossless=True, **options))
    assert str(raised.value).startswith(words)


def test_only_the_first_page_of_a_tiff_is_read():
    data = hostile.tiff_flat(64, 64, "L8", compression=1, pages=5_000)
    started = time.perf_counter()
    assert load_image(data).size == (64, 64)
    assert time.perf_counter() - started < 2.0


def test_an_avif_is_checked_at_the_size_it_is_coded_at():
    data = hostile.avif_coded_larger(2_048, declared=64)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (64, 64)  # what Pillow reports; the decoder works on 2048x2048
    with pytest.raises(InvalidImage) as raised:
        load_image(data, limits=DecodeLimits(max_pixels=1_000_000))
    assert str(raised.value).startswith(
        "The image is 2048x2048 pixels (4.2 megapixels); the limit is 1 megapixels"
    )
    with pytest.raises(InvalidImage, match=r"^Decoding this 64x64 AVIF image would take about 25 MB"):
        load_image(data, limits=DecodeLimits(max_decoded_bytes=20_000_000))


def test_an_avif_coded_smaller_than_it_declares_is_budgeted_at_the_declared_size():
    """Pillow hands over the declared size: 320 bytes declaring 10900x10900 took 2.7 s and 1 GB."""
    started = time.perf_counter()
    with pytest.raises(
        InvalidImage, match=r"^Decoding this 10900x10900 AVIF image would take about 1,188 MB"
    ):
        load_image(hostile.avif_declared_huge())
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("size", [(96, 64), (17, 300)])
def test_an_avif_coded_at_its_size_decodes_as_pillow_decodes_it(size):
    data = save(Image.fromarray(quadrants(*size)), "AVIF", quality=95)
    assert np.array_equal(np.asarray(load_image(data)), pillow_rgb(data))


def test_a_heic_coded_larger_than_it_declares_is_refused_by_libheif():
    buf = io.BytesIO()
    Image.new("RGB", (256, 256), (10, 200, 30)).save(buf, "HEIF", quality=50)
    with pytest.raises(InvalidImage, match="Decoded image does not have the size signaled in the file"):
        load_image(hostile._patch_ispe(buf.getvalue(), 64, 64))
