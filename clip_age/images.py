"""Turn untrusted bytes into an upright RGB photo, or refuse them with a clear message."""

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps
from pillow_heif import register_heif_opener

# pillow-heif adds HEIC/HEIF (iPhone photos); Pillow decodes AVIF itself.
register_heif_opener()

MAX_FILE_BYTES = 64_000_000
MAX_PIXELS = 120_000_000
MIN_SIDE = 16

# Pillow's own bomb guard would raise before we can say the size in words; _check_dimensions
# does the same job right after the header is read, before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = None
# Explicit, whatever another module sets: a truncated upload is refused, not half-decoded.
ImageFile.LOAD_TRUNCATED_IMAGES = False

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")
ACCEPTED_NAMES = "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF or AVIF"

# Leading bytes of files people upload by mistake, to say what the file is.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or Office document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"8BPS", "a Photoshop (PSD) file"),
    (b"\x00\x00\x01\x00", "an icon (ICO) file"),
    (b"ID3", "an MP3 audio file"),
    (b"OggS", "an Ogg audio or video file"),
    (b"fLaC", "a FLAC audio file"),
    (b"\x1a\x45\xdf\xa3", "a WebM or Matroska video"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"MZ", "a Windows program"),
)


class InvalidImage(ValueError):
    """The upload cannot be used as a photo; the message says why and what is accepted."""


def load_image(source: bytes | str | os.PathLike | Image.Image, draft_side: int | None = None) -> Image.Image:
    """Decode a photo into an upright RGB image (a PIL image is only turned upright and RGB).

    draft_side: the shorter side the caller needs. JPEGs are then decoded at the
    coarsest DCT scale (1/2, 1/4, 1/8) that still gives at least that many pixels,
    which is most of the speed-up on phone photos. None decodes every pixel.
    """
    if isinstance(source, Image.Image):
        _check_dimensions(source.size)
        return _to_rgb(_upright(source))
    data = _read_limited(source)
    with _open(data) as image:
        _check_dimensions(image.size)
        if draft_side is not None and image.format == "JPEG":
            image.draft(None, (draft_side, draft_side))
        try:
            image.load()
            upright = _upright(image)
            rgb = _to_rgb(upright)
        # Pillow's decoders raise many types (OSError, SyntaxError, struct.error, ...)
        # on malformed data; each means the same thing to the person uploading.
        except Exception as error:
            raise InvalidImage(_corrupt_message(image.format, _first_line(error))) from None
    return rgb


def _read_limited(source: bytes | str | os.PathLike) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        size = len(data)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as error:
            raise InvalidImage(
                f"Could not read the file ({error.strerror or error}). Upload a photo: {ACCEPTED_NAMES}."
            ) from None
        data = b""
    if size == 0:
        raise InvalidImage(f"The file is empty (0 bytes). Upload a photo: {ACCEPTED_NAMES}.")
    if size > MAX_FILE_BYTES:
        raise InvalidImage(
            f"The file is {size / 1e6:.1f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB. "
            f"Upload a smaller photo ({ACCEPTED_NAMES})."
        )
    return data or Path(source).read_bytes()


# Leading bytes of the accepted formats, to tell a damaged photo from another kind of file.
_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8", "JPEG"),
    (b"\x89PNG", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Exception:
        kind = image_format(data)
        if kind is not None:
            raise InvalidImage(_corrupt_message(kind, "its header could not be read")) from None
        raise InvalidImage(
            f"The file is not an image we can read (it looks like {describe(data)}). "
            f"Accepted formats: {ACCEPTED_NAMES}."
        ) from None


def _check_dimensions(size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise InvalidImage(
            f"The image is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels. Resize it and try again."
        )
    if min(width, height) < MIN_SIDE:
        raise InvalidImage(
            f"The image is {width}x{height} pixels; it must be at least {MIN_SIDE} pixels "
            "on each side to show a face."
        )


def _corrupt_message(kind: str, detail: str) -> str:
    return (
        f"The {kind} image is truncated or corrupt and could not be decoded ({detail}). "
        "Export or save the photo again and re-upload it."
    )


def image_format(data: bytes) -> str | None:
    """The accepted format these bytes claim to be, whole or not; None if none."""
    for signature, kind in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return kind
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "HEIF"
    return None


def describe(data: bytes) -> str:
    """A few words saying what kind of file these bytes look like."""
    head = data[:512]
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    if head[4:8] == b"ftyp":
        return "a video or an unsupported HEIF variant"
    if head.startswith(b"RIFF"):
        return "a RIFF file (audio or video)"
    lowered = head.lstrip().lower()
    if b"<svg" in lowered:
        return "an SVG drawing"
    if lowered.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if lowered.startswith((b"{", b"[")):
        return "JSON text"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "a text file"
        except UnicodeDecodeError:
            pass
    return "an unrecognised file type"


def _upright(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        # A broken EXIF block must not cost the person their answer: keep the stored orientation.
        return image.copy()


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(image)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    # Pillow's convert("RGB") clips 16-bit values at 255, turning a 16-bit scan white.
    values = np.asarray(image, dtype=np.float32)
    if image.mode.startswith("I;16"):
        top = 65535.0
    else:
        top = max(float(values.max(initial=0.0)), 255.0)
    gray = np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
