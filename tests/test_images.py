import io
import struct
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from clip_age import images
from clip_age.images import InvalidImage, load_image
from clip_age.limits import DecodeLimits
from tests.image_corpus import (
    BLUE,
    GREEN,
    HEIGHT,
    RED,
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
