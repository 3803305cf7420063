"""An answer drawn on its photo: each face's box and ages, or the whole photo's ages in a corner.

Sizes follow the photo's, so that a drawing reads the same when it is shown fitted to a screen,
whatever its pixel count: a 4000-pixel photo gets thick lines and large text, a thumbnail thin
ones and the smallest text that stays legible.
"""

import math
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from clip_age.answers.results import AgeDistribution, PhotoAge

BOX = (255, 214, 0)  # amber: apart from skin, sky, foliage and most clothes
DARK = (0, 0, 0)  # text, and a rim around boxes and labels so that they show on light backgrounds too
TEXT_SHARE = 0.035  # text height as a share of the photo's size (the square root of its area)
LINE_SHARE = 0.004  # box line width, likewise
MIN_TEXT = 10  # pixels: below this the default font's digits blur together
NO_FACE = "no face found · whole photo: "


@dataclass(frozen=True)
class Style:
    """Text size, line width and the dark rim's width for one photo size."""

    text: int
    line: int
    rim: int

    @classmethod
    def for_size(cls, width: int, height: int) -> "Style":
        size = math.sqrt(width * height)
        line = max(1, round(size * LINE_SHARE))
        return cls(max(MIN_TEXT, round(size * TEXT_SHARE)), line, max(1, line // 4))


def draw_answer(image: Image.Image, answer: PhotoAge, faces_searched: bool) -> Image.Image:
    """An RGB copy of the upright photo with each face's box and "age (low-high)" drawn on it;
    without faces, the whole photo's ages in its top-left corner, saying so when faces were
    searched for and none was found. The photo keeps its size."""
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    style = Style.for_size(*canvas.size)
    if not answer.faces:
        text = (NO_FACE if faces_searched else "") + ages_text(answer.ages)
        _paste(canvas, _label(text, style, canvas.size), (style.line, style.line))
        return canvas
    for face in answer.faces:
        _box(draw, face.box, style)
    # Labels after every box, so that no line crosses one; the largest face's (the answer) last, on top.
    for face in reversed(answer.faces):
        label = _label(ages_text(face.ages), style, canvas.size)
        _paste(canvas, label, _label_place(face.box, label, style))
    return canvas


def ages_text(ages: AgeDistribution) -> str:
    """A face's or photo's label, such as "34 (25-45)": the most likely age, then the 10%-90% range."""
    return f"{ages.age} ({ages.age_low}-{ages.age_high})"


def _box(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], style: Style) -> None:
    x, y, w, h = box
    # No thicker than an eighth of a small face's box, which would otherwise be mostly line.
    line = max(1, min(style.line, min(w, h) // 8))
    rim = style.rim
    draw.rectangle((x - rim, y - rim, x + w - 1 + rim, y + h - 1 + rim), outline=DARK, width=line + 2 * rim)
    draw.rectangle((x, y, x + w - 1, y + h - 1), outline=BOX, width=line)


def _label_place(box: tuple[int, int, int, int], label: Image.Image, style: Style) -> tuple[int, int]:
    """Above the box, on its top edge; inside it, below the edge, when there is no room above."""
    x, y, _, _ = box
    above = y - style.rim - label.height
    return x - style.rim, above if above >= 0 else y + style.line


def _label(text: str, style: Style, room: tuple[int, int]) -> Image.Image:
    """The text on a filled box, as large as the style asks but no larger than the photo; turned
    to read upwards when it only fits along the photo's height (a tall, narrow strip)."""
    width, height = room
    label = _tile(text, _fitting_size(text, style, width, height), style.rim)
    if label.width <= width or height <= width:
        return label
    return _tile(text, _fitting_size(text, style, height, width), style.rim).rotate(90, expand=True)


def _fitting_size(text: str, style: Style, along: int, across: int) -> int:
    """The style's text size, shrunk (not below MIN_TEXT) until its label is at most `along` long
    and `across` high."""
    size = style.text
    while size > MIN_TEXT:
        width, height = _tile_size(text, size, style.rim)
        if width <= along and height <= across:
            break
        # Both sides are near proportional to the size: jump close, then step down the rest.
        size = max(MIN_TEXT, min(size - 1, math.floor(size * min(along / width, across / height))))
    return size


def _tile(text: str, size: int, rim: int) -> Image.Image:
    font = _font(size)
    left, top, _, _ = font.getbbox(text)
    pad = _padding(size, rim)
    tile = Image.new("RGB", _tile_size(text, size, rim), DARK)
    draw = ImageDraw.Draw(tile)
    draw.rectangle((rim, rim, tile.width - 1 - rim, tile.height - 1 - rim), fill=BOX)
    draw.text((pad - left, pad - top), text, font=font, fill=DARK)
    return tile


def _tile_size(text: str, size: int, rim: int) -> tuple[int, int]:
    """The text's own extent (not the font's line height, so digits sit centred), and padding."""
    left, top, right, bottom = _font(size).getbbox(text)
    pad = 2 * _padding(size, rim)
    return right - left + pad, bottom - top + pad


def _padding(size: int, rim: int) -> int:
    # A sixth of the text size: room around the text, yet 10-pixel text fits a 16-pixel strip.
    return rim + max(1, size // 6)


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's built-in font scales to any size (with FreeType), so no font file has to ship.
    return ImageFont.load_default(size=size)


def _paste(canvas: Image.Image, label: Image.Image, place: tuple[int, int]) -> None:
    """The label at place, moved inside the photo where it would cross an edge."""
    x = max(0, min(place[0], canvas.width - label.width))
    y = max(0, min(place[1], canvas.height - label.height))
    canvas.paste(label, (x, y))
