"""Answers drawn on photos: boxes and labels where they belong, legible at any photo size."""

import numpy as np
import pytest
from PIL import Image, ImageChops

from clip_age.answers.drawing import BOX, DARK, ages_text, draw_answer
from clip_age.answers.results import AgeDistribution, FaceAge, PhotoAge

GREY = (120, 130, 140)


def ages(age: int, low: int, high: int) -> AgeDistribution:
    return AgeDistribution(np.full(99, 1 / 99), age, float(age), low, high)


def with_faces(*boxes: tuple[int, int, int, int]) -> PhotoAge:
    faces = [FaceAge(box, 0.9, ages(30 + i, 20 + i, 40 + i)) for i, box in enumerate(boxes)]
    return PhotoAge(faces[0].ages, faces)


WHOLE_PHOTO = PhotoAge(ages(34, 25, 45))


def changed(before: Image.Image, after: Image.Image) -> tuple[int, int, int, int] | None:
    """The bounding box (left, top, right, bottom) of the pixels the drawing changed."""
    return ImageChops.difference(before, after).getbbox()


def fully_shown(drawing: Image.Image, area: tuple[int, int, int, int]) -> bool:
    """Whether a lone label within area shows its dark rim on all four sides, so none of it is cut off."""
    label = np.asarray(drawing.crop(area))
    edges = [label[0], label[-1], label[:, 0], label[:, -1]]
    return all((edge == DARK).all() for edge in edges)


def test_ages_text():
    assert ages_text(ages(34, 25, 45)) == "34 (25-45)"


def test_a_face_gets_its_box_and_label_and_the_rest_is_untouched(astronaut):
    box = (178, 63, 90, 113)  # where YuNet finds the astronaut's face

    drawing = draw_answer(astronaut, with_faces(box), faces_searched=True)

    assert (drawing.size, drawing.mode) == (astronaut.size, astronaut.mode)
    x, y, w, h = box
    for edge in [(x, y + h // 2), (x + w - 1, y + h // 2), (x + w // 2, y + h - 1)]:
        assert drawing.getpixel(edge) == BOX
    above = np.asarray(drawing.crop((x, y - 15, x + w, y - 3)))
    assert (above == BOX).all(axis=-1).mean() > 0.3  # the label's background, on the box's top edge
    left, top, right, bottom = changed(astronaut, drawing)
    assert (left, bottom) == (x - 1, y + h + 1) and y - 40 < top < y - 15  # box, rim and label
    for far in [(0, 0), (500, 500), (20, 300), (x + w // 2, y + h // 2)]:  # the face itself is not covered
        assert drawing.getpixel(far) == astronaut.getpixel(far)
    assert astronaut.getpixel((x, y + h // 2)) != BOX  # the input is left as it was


def test_a_face_near_the_top_has_its_label_inside_the_box():
    photo = Image.new("RGB", (400, 300), GREY)
    drawing = draw_answer(photo, with_faces((100, 10, 120, 150)), faces_searched=True)
    pixels = np.asarray(drawing)
    assert (pixels[10, 100:220] == BOX).all()  # the box's top line, not covered by the label
    assert (pixels[12:40, 102:218] == BOX).all(axis=-1).sum() > 300  # the label's background
    assert drawing.getpixel((160, 140)) == GREY  # the box's lower part stays clear


def test_a_label_at_the_right_edge_moves_inside():
    photo = Image.new("RGB", (400, 300), GREY)
    drawing = draw_answer(photo, with_faces((370, 100, 30, 40)), faces_searched=True)
    left, top, right, _ = changed(photo, drawing)
    assert right == 400 and left < 350  # wider than the box, so shifted left to fit
    assert (np.asarray(drawing)[top:99, 399] == DARK).all()  # its rim, so none of it is cut off


def test_a_box_across_the_edge_is_drawn_where_it_is_inside():
    photo = Image.new("RGB", (300, 300), GREY)
    drawing = draw_answer(photo, with_faces((-40, 200, 100, 150)), faces_searched=True)
    assert drawing.getpixel((59, 250)) == BOX  # the right edge of the box
    assert drawing.getpixel((150, 100)) == GREY


@pytest.mark.parametrize("faces_searched", [True, False])
def test_without_faces_the_whole_photo_label_sits_in_a_corner(faces_searched):
    photo = Image.new("RGB", (640, 480), GREY)
    drawing = draw_answer(photo, WHOLE_PHOTO, faces_searched)
    area = changed(photo, drawing)
    assert area[0] < 20 and area[1] < 20 and area[2] < 640 and area[3] < 60
    assert fully_shown(drawing, area)
    assert drawing.getpixel((600, 400)) == GREY


def test_the_label_says_when_no_face_was_found():
    photo = Image.new("RGB", (1000, 800), GREY)
    found_none = changed(photo, draw_answer(photo, WHOLE_PHOTO, faces_searched=True))
    not_searched = changed(photo, draw_answer(photo, WHOLE_PHOTO, faces_searched=False))
    # "no face found · whole photo: 34 (25-45)" against "34 (25-45)", at the same text size.
    assert found_none[2] - found_none[0] > 3 * (not_searched[2] - not_searched[0])
    heights = found_none[3] - found_none[1], not_searched[3] - not_searched[1]
    assert heights[1] <= heights[0] < 1.3 * heights[1]  # letters reach higher than digits


@pytest.mark.parametrize(
    "size, upright",
    [
        ((200, 200), False),
        ((160, 900), True),
        ((16, 2000), True),
        ((2000, 16), False),
        ((20000, 30), False),
        ((3, 3), False),
    ],
)
def test_small_and_thin_photos_show_the_whole_label(size, upright):
    photo = Image.new("RGB", size, GREY)
    drawing = draw_answer(photo, WHOLE_PHOTO, faces_searched=True)
    assert (drawing.size, drawing.mode) == (size, "RGB")
    area = changed(photo, drawing)
    if size == (3, 3):
        return  # nothing fits; it must only not fail
    assert fully_shown(drawing, area)
    width, height = area[2] - area[0], area[3] - area[1]
    assert (height > width) == upright  # turned to run along a tall strip
    assert min(width, height) >= 12  # 10-pixel text at the least


def test_text_and_lines_grow_with_the_photo():
    small, large = Image.new("RGB", (512, 384), GREY), Image.new("RGB", (4000, 3000), GREY)
    small_label = changed(small, draw_answer(small, WHOLE_PHOTO, faces_searched=False))
    drawing = draw_answer(large, WHOLE_PHOTO, faces_searched=False)
    large_label = changed(large, drawing)
    assert drawing.size == (4000, 3000)  # large photos keep their size
    ratio = (large_label[3] - large_label[1]) / (small_label[3] - small_label[1])
    assert 5 < ratio < 10  # the photos' sizes differ 7.8 times

    framed = np.asarray(draw_answer(large, with_faces((2000, 1000, 900, 1100), (500, 500, 40, 40)), True))
    assert (framed[1500, 1950:2100] == BOX).all(axis=-1).sum() >= 10  # the box's line, several pixels wide
    assert (framed[520, 508:532] == GREY).all()  # a small face's box stays open: thinner lines


def test_the_largest_faces_label_is_drawn_last_on_top():
    photo = Image.new("RGB", (400, 300), GREY)
    largest, nearby = (100, 100, 200, 180), (100, 90, 30, 30)  # their labels overlap
    alone = np.asarray(draw_answer(photo, with_faces(largest), True))
    top = changed(photo, Image.fromarray(alone))[1]
    columns = np.flatnonzero((alone[top] == DARK).all(axis=-1))
    label = np.s_[top : largest[1] - 2, columns.min() : columns.max() + 1]
    both = np.asarray(draw_answer(photo, with_faces(largest, nearby), True))
    assert (both[label] == alone[label]).all()
