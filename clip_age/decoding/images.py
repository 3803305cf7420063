"""Turn untrusted bytes into an upright RGB photo, or refuse them with a clear message.

Everything that bounds the cost is checked before a pixel is decoded: the file's size, its
format, its structure (for JPEG and PNG) and, from the header, the pixels and the memory the
decoded photo would take at its own bit depth. What a header cannot show (a decoder stuck on a
crafted file, memory beyond the estimate) is the decode worker's deadline and memory cap.
"""

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile
from pillow_heif import register_heif_opener

from clip_age.decoding import avif, jpeg, structure_checks
from clip_age.decoding.upload_limits import DecodeLimits

# pillow-heif adds HEIC/HEIF (iPhone photos); Pillow decodes AVIF itself.
register_heif_opener()

MIN_SIDE = 16

# Pillow's own bomb guard would raise before we can say the size in words; the header checks
# below do the same job, before any pixel is decoded.
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
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 image"),
    (b"\xff\x0a", "a JPEG XL image"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "a JPEG XL image"),
    (b"qoif", "a QOI image"),
    (b"DDS ", "a DirectDraw Surface (DDS) texture"),
    (b"%!PS", "a PostScript or EPS document"),
    (b"\xc5\xd0\xd3\xc6", "an EPS document"),
    (b"II*\x00\x10\x00\x00\x00CR", "a Canon raw (CR2) photo"),
    (b"ID3", "an MP3 audio file"),
    (b"OggS", "an Ogg audio or video file"),
    (b"fLaC", "a FLAC audio file"),
    (b"\x1a\x45\xdf\xa3", "a WebM or Matroska video"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"MZ", "a Windows program"),
)
# Leading bytes of the accepted formats, to tell a damaged photo from another kind of file.
_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"MM*\x00", "TIFF"),  # byte order and magic number disagree; Pillow reads these too
    (b"II\x00*", "TIFF"),
)
# How each EXIF orientation is undone (the EXIF definitions, as Pillow's exif_transpose has them).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# Memory a format's decoder holds besides Pillow's own copy, in bytes a pixel (measured: libheif
# hands over a buffer of its own, libavif two).
DECODER_COPY = {"HEIF": 4, "AVIF": 6}
# libwebp keeps two RGBA canvases for an animation, allocated when the file is opened.
WEBP_ANIMATION_BYTES_PER_PIXEL = 8 + 4


class InvalidImage(ValueError):
    """The upload cannot be used as a photo; the message says why and what is accepted."""


def load_image(
    source: bytes | str | os.PathLike | Image.Image,
    draft_side: int | None = None,
    limits: DecodeLimits = DecodeLimits(),
) -> Image.Image:
    """Decode a photo into an upright RGB image (a PIL image is only turned upright and RGB).

    draft_side: the shorter side the caller needs. JPEGs are then decoded at the coarsest DCT
    scale (1/2, 1/4, 1/8) that still gives at least that many pixels, which is most of the
    speed-up on phone photos. None decodes every pixel.
    """
    if isinstance(source, Image.Image):
        _check_size(source.size, limits)
        return _to_rgb(_upright(source, _orientation(source)))
    data = _read_limited(source, limits)
    kind = image_format(data)
    if kind == "JPEG":
        return _load_jpeg(data, draft_side, limits)
    working_bytes = _check_structure(data, kind, limits)
    with _open(data, kind) as image:
        _check_size(image.size, limits)
        _check_metadata(image)
        # The decoder's own buffers, estimated per pixel of the photo it hands over (an AVIF
        # coded smaller than it declares is still scaled up to the declared size: 1 GB for
        # 320 bytes that declare 10900x10900), plus what the file's structure shows beyond that.
        decoder_copy = DECODER_COPY.get(kind, 0)
        working_bytes = max(0, working_bytes - image.width * image.height * decoder_copy)
        if kind == "PNG":
            # A PNG's EXIF may follow its pixels, and Pillow decodes them to look for it: the
            # budget assumes a turn, and the orientation is read after decoding.
            _check_memory(image, 6, limits, decoder_copy=decoder_copy)
        else:
            _check_memory(
                image, _orientation(image), limits, decoder_copy=decoder_copy, extra_bytes=working_bytes
            )
        try:
            image.load()
        except MemoryError:
            raise  # the decode worker's memory cap, which it reports in its own words
        # Pillow's decoders raise many types (OSError, SyntaxError, struct.error, ...) on
        # malformed data; each means the same thing to the person uploading.
        except Exception as error:
            raise InvalidImage(_decode_error_message(image.format, error)) from None
        _check_metadata(image)  # what a PNG's chunks after its pixels added
        return _to_rgb(_upright(image, _orientation(image)))


def _read_limited(source: bytes | str | os.PathLike, limits: DecodeLimits) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        size = len(source)
    else:
        try:
            size = Path(source).stat().st_size
        except OSError as error:
            raise InvalidImage(
                f"Could not read the file ({error.strerror or error}). Upload a photo: {ACCEPTED_NAMES}."
            ) from None
    check_file_size(size, limits)
    return bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).read_bytes()


def check_file_size(size: int, limits: DecodeLimits) -> None:
    """Refuse an empty or too large file from its size alone, before it is read (callers that
    learn the size from a listing or an archive check it there)."""
    if size == 0:
        raise InvalidImage(f"The file is empty (0 bytes). Upload a photo: {ACCEPTED_NAMES}.")
    if size > limits.max_upload_bytes:
        raise InvalidImage(
            f"The file is {size / 1e6:.1f} MB; the limit is {limits.max_upload_bytes / 1e6:g} MB "
            f"(MAX_UPLOAD_MB). Upload a smaller photo ({ACCEPTED_NAMES})."
        )


def _check_structure(data: bytes, kind: str | None, limits: DecodeLimits) -> int:
    """What must be checked before Pillow opens the file, because opening it already costs.
    Returns the memory the decoder works in besides the photo (a TIFF's tile buffer, an AVIF's
    coded frames), in bytes; 0 when the file does not show it."""
    try:
        if kind == "PNG":
            size = structure_checks.png_size(data)
            if size is not None:
                _check_size(size, limits)  # the pixel limit's words come first
            structure_checks.check_png(data)
        elif kind == "TIFF":
            layout = structure_checks.check_tiff(data)
            if layout is not None:
                _check_size((layout.width, layout.height), limits)
                _check_tiff_pieces(layout, limits)
                return layout.piece_bytes
        elif kind == "WEBP":
            canvas = structure_checks.webp_canvas(data)
            if canvas is not None:
                _check_size(canvas, limits)
                if structure_checks.webp_is_animated(data):
                    _check_bytes(canvas, WEBP_ANIMATION_BYTES_PER_PIXEL, "animated WebP", limits)
        elif kind in ("AVIF", "HEIF"):  # an AVIF may carry the generic HEIF brand
            coded = avif.coded_size(data)
            if coded is not None:
                if coded[0] * coded[1] > limits.max_pixels:
                    _check_size(coded, limits)  # the size it is coded at, which is decoded
                return coded[0] * coded[1] * DECODER_COPY["AVIF"]
        elif kind == "GIF":
            structure_checks.check_gif(data)
        elif kind == "BMP":
            structure_checks.check_bmp(data)
    except structure_checks.HeaderProblem as problem:
        raise InvalidImage(_corrupt_message(kind, str(problem))) from None
    except structure_checks.MetadataTooLarge as problem:
        raise InvalidImage(_metadata_message(kind, problem)) from None
    except structure_checks.UnsupportedVariant as variant:
        raise InvalidImage(
            f"The {kind} image is {variant}, which is not supported. Save it as an uncompressed "
            f"{kind}, a PNG or a JPEG and re-upload it."
        ) from None
    return 0


def _check_tiff_pieces(layout: structure_checks.TiffLayout, limits: DecodeLimits) -> None:
    """libtiff decodes every tile whole, the parts outside the photo too: a 64x64 photo in one
    16384x16384 tile costs 268 megapixels of work."""
    covered = layout.covered_pixels
    if layout.tiled and covered > limits.max_pixels:
        raise InvalidImage(
            f"The TIFF image is {layout.width}x{layout.height} pixels in tiles of "
            f"{layout.piece_width}x{layout.piece_height}, which cover {covered / 1e6:,.1f} megapixels; "
            f"the limit is {limits.max_pixels / 1e6:g} megapixels (MAX_MEGAPIXELS). Save it again as "
            "an ordinary TIFF, JPEG or PNG."
        )


# Metadata Pillow keeps from the file, under the names its plugins use, and what each is.
_METADATA = {
    "exif": "EXIF",
    "xmp": "XMP",
    "XML:com.adobe.xmp": "XMP",
    "icc_profile": "colour profile",
    "Raw profile type exif": "EXIF",  # hexadecimal text, as ImageMagick writes EXIF into a PNG
}


def _check_metadata(image: Image.Image) -> None:
    """Bounds EXIF, XMP and colour profiles before Pillow parses any of them (it reads the
    orientation from EXIF, or from XMP when EXIF has none)."""
    for key, what in _METADATA.items():
        value = image.info.get(key)
        if isinstance(value, (bytes, str)):
            size = len(value) // 2 if key == "Raw profile type exif" else len(value)
            try:
                structure_checks.check_metadata(what, size)
            except structure_checks.MetadataTooLarge as problem:
                raise InvalidImage(_metadata_message(image.format or "image", problem)) from None


_FORMAT_NAMES = {"WEBP": "WebP"}


def _metadata_message(kind: str | None, problem: structure_checks.MetadataTooLarge) -> str:
    name = _FORMAT_NAMES.get(kind, kind)
    return (
        f"The {name} file carries {_in_words(problem.size)} of {problem.what} metadata; at most "
        f"{_in_words(problem.limit)} is read (photos carry a few kilobytes). Export the photo again "
        "without its metadata and re-upload it."
    )


def _in_words(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size >= 1_000_000 else f"{size / 1000:,.0f} KB"


def _load_jpeg(data: bytes, draft_side: int | None, limits: DecodeLimits) -> Image.Image:
    try:
        structure = jpeg.read_structure(data, limits.max_jpeg_scans)
    except jpeg.JpegProblem as problem:
        raise InvalidImage(_corrupt_message("JPEG", str(problem))) from None
    with _open(data, "JPEG") as header:  # Pillow reads the EXIF orientation and mode cheaply
        _check_size((structure.width, structure.height), limits)
        _check_metadata(header)
        orientation = _orientation(header)
        scale = _jpeg_scale(structure.width, structure.height, draft_side)
        # libjpeg's output is an array of its own (1, 3 or 4 bytes a pixel) before Pillow's copy;
        # a progressive JPEG also keeps every coefficient of the full-size photo (2 bytes each).
        coefficients = structure.blocks * 64 * 2 if structure.frame == 0xC2 else 0
        _check_memory(header, orientation, limits, scale, len(header.getbands()), coefficients)
    try:
        pixels, mode = jpeg.decode(data, draft_side)
    # simplejpeg raises ValueError for every libjpeg error and warning, with libjpeg's words.
    except (ValueError, RuntimeError) as error:
        raise InvalidImage(_corrupt_message("JPEG", _reason(error))) from None
    image = Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode)
    del pixels
    return _to_rgb(_upright(image, orientation))


def _jpeg_scale(width: int, height: int, draft_side: int | None) -> int:
    """The DCT scale denominator libjpeg will use for draft_side (1, 2, 4 or 8)."""
    scale = 1
    while draft_side and scale < 8 and min(width, height) / (scale * 2) >= draft_side:
        scale *= 2
    return scale


def _open(data: bytes, kind: str | None) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Exception as error:
        if kind is not None:
            raise InvalidImage(_decode_error_message(kind, error, "its header could not be read")) from None
        raise InvalidImage(
            f"The file is not an image we can read (it looks like {describe(data)}). "
            f"Accepted formats: {ACCEPTED_NAMES}."
        ) from None


def _check_size(size: tuple[int, int], limits: DecodeLimits) -> None:
    width, height = size
    if width * height > limits.max_pixels:
        raise InvalidImage(
            f"The image is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {limits.max_pixels / 1e6:g} megapixels (MAX_MEGAPIXELS). Resize it and try again."
        )
    if min(width, height) < MIN_SIDE:
        raise InvalidImage(
            f"The image is {width}x{height} pixels; it must be at least {MIN_SIDE} pixels "
            "on each side to show a face."
        )


def decode_bytes_per_pixel(mode: str, transparent: bool, rotated: bool, decoder_copy: int = 0) -> int:
    """Peak memory per pixel to decode a photo of this Pillow mode and make it upright RGB:
    the decoder's own output when it is not Pillow's (decoder_copy bytes a pixel), the photo as
    Pillow stores it (1, 2 or 4 bytes a pixel), a turned copy, and the conversion to RGB (4
    bytes a pixel), with a composite on white for transparency."""
    stored = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    total = decoder_copy + stored + (stored if rotated else 0)
    if mode == "RGB":
        return total
    if transparent or mode in _ALPHA_MODES:
        as_rgba = 0 if mode == "RGBA" else 4
        return total + as_rgba + 4 + 1  # as RGBA, the white RGB result, the alpha mask
    if mode.startswith("I") or mode == "F":
        return total + stored + 1 + 4  # an array copy, 8-bit gray, then RGB
    return total + 4


def _check_memory(
    image: Image.Image,
    orientation: object,
    limits: DecodeLimits,
    scale: int = 1,
    decoder_copy: int = 0,
    extra_bytes: int = 0,
) -> None:
    per_pixel = decode_bytes_per_pixel(
        image.mode, "transparency" in image.info, orientation in _UPRIGHT, decoder_copy
    )
    depth = "" if image.mode in ("RGB", "L", "P", "1") else f" ({image.mode} mode)"
    what = f"{image.format} image{depth}"
    _check_bytes((image.width, image.height), per_pixel / scale**2, what, limits, extra_bytes)


def _check_bytes(
    size: tuple[int, int], per_pixel: float, what: str, limits: DecodeLimits, extra_bytes: int = 0
) -> None:
    needed = size[0] * size[1] * per_pixel + extra_bytes
    if needed > limits.max_decoded_bytes:
        fits = limits.max_decoded_bytes / needed * size[0] * size[1] / 1e6
        raise InvalidImage(
            f"Decoding this {size[0]}x{size[1]} {what} would take about {needed / 1e6:,.0f} MB of "
            f"memory; the limit is {limits.max_decoded_bytes / 1e6:,.0f} MB (MAX_DECODED_MB). Save it "
            f"as an 8-bit JPEG or PNG, or resize it to at most {fits:,.1f} megapixels."
        )


def _decode_error_message(kind: str, error: Exception, detail: str | None = None) -> str:
    if any(
        words in str(error)
        for words in ("Decompressed data too large", "Too much memory used in text chunks")
    ):
        # Pillow's limits on PNG text and colour-profile chunks (MAX_TEXT_CHUNK, MAX_TEXT_MEMORY).
        return (
            f"The {kind} file carries text or a colour profile that decompresses to more than "
            "Pillow's safety limit, which is how decompression bombs are built. Export the photo "
            "again without its metadata and re-upload it."
        )
    return _corrupt_message(kind, detail or _reason(error))


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
    if head.startswith((b"P1", b"P2", b"P3", b"P4", b"P5", b"P6")) and head[2:3].isspace():
        return "a PNM/PPM image"
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


def _orientation(image: Image.Image) -> object:
    """The EXIF orientation tag as stored; anything but the eight defined values (a malformed
    tag included) leaves the photo as stored, so it cannot cost the person their answer; so does
    an EXIF block Pillow cannot parse (it raises SyntaxError, struct.error, ... on one)."""
    try:
        return image.getexif().get(0x0112, 1)
    except Exception:
        return 1


def _upright(image: Image.Image, orientation: object) -> Image.Image:
    if orientation not in _UPRIGHT:
        return image
    try:
        return image.transpose(_UPRIGHT[orientation])
    except Exception as error:
        raise InvalidImage(_corrupt_message(image.format or "image", _reason(error))) from None


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_gray(image).convert("RGB")
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return image.convert("RGB")


def _high_depth_to_gray(image: Image.Image, rows: int = 512) -> Image.Image:
    """16- and 32-bit gray to 8 bits, a band of rows at a time. Pillow's convert("RGB") clips
    16-bit values at 255, turning a 16-bit scan white; a whole-image float copy would take four
    bytes a pixel more."""
    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        top = 65535.0
    else:
        top = max(float(values.max(initial=0)), 255.0)
    gray = np.empty(values.shape, dtype=np.uint8)
    for start in range(0, values.shape[0], rows):
        band = values[start : start + rows].astype(np.float32)
        gray[start : start + rows] = np.clip(band * (255.0 / top), 0, 255).round()
    return Image.fromarray(gray, mode="L")


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else "the decoder stopped"
