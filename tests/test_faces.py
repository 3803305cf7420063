import cv2
import numpy as np
import pytest
from PIL import Image, ImageFilter

from clip_age import pipeline
from clip_age.decoding.faces import NMS_THRESHOLD, DetectorUnavailable, Face, FaceDetector, crop_box
from clip_age.estimation.preprocess import InputSpec
from clip_age.request_options import FaceRequest
from tests.conftest import EXAMPLES
from tests.image_corpus import save

NOSE = (222, 130)  # a point on the astronaut's face in the 512 x 512 photo


@pytest.fixture(scope="module")
def detector(yunet_model):
    return FaceDetector(yunet_model)


def contains(box, point):
    x, y, width, height = box
    return x <= point[0] <= x + width and y <= point[1] <= y + height


def test_the_astronaut_has_exactly_one_face_around_her_face(detector, astronaut):
    [face] = detector.detect(astronaut, min_face_size=32, max_faces=10)
    assert contains(face.box, NOSE)
    x, y, width, height = face.box
    assert 150 <= x and x + width <= 300 and 30 <= y and y + height <= 220
    assert 0.8 <= face.score <= 1.0


def test_six_tiles_give_six_faces_each_in_its_own_tile(detector, astronaut):
    canvas = Image.new("RGB", (3 * 512, 2 * 512), "white")
    for column in range(3):
        for row in range(2):
            canvas.paste(astronaut, (column * 512, row * 512))
    faces = detector.detect(canvas, min_face_size=32, max_faces=10)
    assert len(faces) == 6
    tiles = []
    for face in faces:
        x, y, width, height = face.box
        column, row = x // 512, y // 512
        assert (x + width - 1) // 512 == column and (y + height - 1) // 512 == row
        assert contains(face.box, (column * 512 + NOSE[0], row * 512 + NOSE[1]))
        tiles.append((column, row))
    assert sorted(tiles) == [(c, r) for c in range(3) for r in range(2)]


def test_a_photo_without_people_has_no_faces(detector):
    assert detector.detect(Image.open(EXAMPLES / "coffee.png").convert("RGB"), 32, 10) == []


def test_boxes_are_in_the_upright_photos_coordinates(detector, astronaut):
    stored = Image.fromarray(np.rot90(np.asarray(astronaut), 1))  # what a camera stores for EXIF 6
    exif = Image.Exif()
    exif[0x0112] = 6
    data = save(stored, "JPEG", quality=95, exif=exif.tobytes())
    prepared = pipeline.prepare(data, InputSpec(224), detector, FaceRequest(32, 10))
    [face] = prepared.faces
    [upright_face] = detector.detect(astronaut, 32, 10)
    assert contains(face.box, NOSE)
    assert np.allclose(face.box, upright_face.box, atol=8)


def test_largest_first_and_capped(detector, astronaut):
    canvas = Image.new("RGB", (1400, 600), "white")
    for offset, side in [(0, 300), (350, 512), (900, 400)]:
        canvas.paste(astronaut.resize((side, side)), (offset, 0))
    faces = detector.detect(canvas, min_face_size=20, max_faces=10)
    areas = [face.area for face in faces]
    assert len(faces) == 3 and areas == sorted(areas, reverse=True)
    assert 350 <= faces[0].box[0] < 862  # the 512 px astronaut
    assert detector.detect(canvas, min_face_size=20, max_faces=2) == faces[:2]


def scores(model_path, photo: Image.Image) -> list[tuple[tuple[int, ...], float]]:
    """Every box YuNet scores above 0.3 in the photo, as OpenCV reports it: the reference."""
    reference = cv2.FaceDetectorYN.create(str(model_path), "", photo.size, 0.3, NMS_THRESHOLD)
    _, rows = reference.detect(np.ascontiguousarray(np.asarray(photo)[:, :, ::-1]))
    return [(tuple(int(v) for v in row[:4]), float(row[-1])) for row in (rows if rows is not None else [])]


def test_a_face_scored_below_0_8_is_not_a_face(detector, yunet_model, astronaut):
    blurred = astronaut.filter(ImageFilter.GaussianBlur(10))
    found = scores(yunet_model, blurred)
    # The blurred face is still found by YuNet, with a score between 0.5 and 0.8 ...
    assert any(contains(box, NOSE) and 0.5 < score < 0.8 for box, score in found), found
    # ... which is not enough: YuNet's clear faces score 0.9 and more.
    assert detector.detect(blurred, min_face_size=32, max_faces=10) == []


def test_the_largest_face_comes_first_even_when_a_smaller_one_scores_higher(detector, yunet_model, astronaut):
    canvas = Image.new("RGB", (800, 512), "white")
    canvas.paste(astronaut.filter(ImageFilter.GaussianBlur(8)), (0, 0))  # large, scores about 0.84
    canvas.paste(astronaut.resize((256, 256)), (540, 128))  # small and sharp, scores about 0.94
    large, small = detector.detect(canvas, min_face_size=20, max_faces=10)
    assert large.area > small.area and large.score < small.score
    assert contains(large.box, NOSE) and contains(small.box, (540 + NOSE[0] / 2, 128 + NOSE[1] / 2))
    [only] = detector.detect(canvas, min_face_size=20, max_faces=1)
    assert only == large


def test_min_face_size_drops_small_faces(detector, astronaut):
    [face] = detector.detect(astronaut, min_face_size=32, max_faces=10)
    assert detector.detect(astronaut, min_face_size=min(face.box[2:]) + 1, max_faces=10) == []


def test_small_faces_in_a_large_photo_are_found_when_asked_for(detector, astronaut):
    canvas = Image.new("RGB", (4000, 3000), "white")
    canvas.paste(astronaut.resize((160, 160)), (3000, 2000))  # a face of about 30 px
    assert detector.detect(canvas, min_face_size=200, max_faces=10) == []
    [face] = detector.detect(canvas, min_face_size=16, max_faces=10)
    assert contains(face.box, (3000 + NOSE[0] * 160 / 512, 2000 + NOSE[1] * 160 / 512))


@pytest.mark.parametrize(
    ("box", "size", "expected"),
    [
        ((100, 100, 50, 60), (1000, 1000), (71, 76, 179, 184)),  # 60 px + 40% a side = 108 px square
        ((0, 0, 50, 50), (1000, 1000), (0, 0, 90, 90)),  # overhangs the top-left: moved inside
        ((970, 10, 30, 30), (1000, 500), (946, 0, 1000, 54)),  # overhangs the right edge
        ((10, 10, 300, 300), (400, 350), (0, 0, 350, 350)),  # larger than the photo: its shorter side
    ],
)
def test_crop_is_a_square_with_a_40_percent_margin_kept_inside_the_photo(box, size, expected):
    assert crop_box(Face(box=box, score=1.0), *size) == expected


def test_a_missing_detector_model_is_explained(tmp_path):
    with pytest.raises(DetectorUnavailable, match=f"no YuNet model at {tmp_path / 'x.onnx'}"):
        FaceDetector(tmp_path / "x.onnx")


class RecordingDetector(FaceDetector):
    """The real detector, remembering the input size it was given."""

    sizes: list[tuple[int, int]]

    def _detector(self):
        real = super()._detector()
        sizes = self.sizes

        class Recording:
            def setInputSize(self, size):  # noqa: N802 (OpenCV's name)
                sizes.append(tuple(size))
                real.setInputSize(size)

            def detect(self, image):
                return real.detect(image)

        return Recording()


@pytest.mark.parametrize(("size", "min_face"), [((12_000, 10_000), 8), ((20_000, 500), 8), ((640, 480), 32)])
def test_the_detector_never_sees_more_than_its_megapixel_limit(yunet_model, size, min_face):
    detector = RecordingDetector(yunet_model)
    detector.sizes = []
    detector.detect(Image.new("RGB", size, "white"), min_face, 10, max_pixels=4_000_000)
    [(width, height)] = detector.sizes
    assert width * height <= 4_000_000
    assert width / height == pytest.approx(size[0] / size[1], rel=0.02)


def test_a_strip_too_thin_to_hold_a_face_once_shrunk_is_not_searched(yunet_model):
    detector = RecordingDetector(yunet_model)
    detector.sizes = []
    # 16 megapixels shrunk to 4: 8 x 500,000, narrower than the smallest face YuNet finds.
    assert detector.detect(Image.new("RGB", (16, 1_000_000)), 8, 10, max_pixels=4_000_000) == []
    assert detector.sizes == []


def test_in_a_photo_past_the_limit_a_face_must_be_proportionally_larger(detector, astronaut):
    canvas = Image.new("RGB", (4000, 3000), "white")
    canvas.paste(astronaut.resize((160, 160)), (3000, 2000))  # a face of about 30 px
    assert len(detector.detect(canvas, 16, 10, max_pixels=12_000_000)) == 1
    # Shrunk to 0.25 megapixels (1/7 of each side), the 30 px face is under 5 px: not found.
    assert detector.detect(canvas, 16, 10, max_pixels=250_000) == []
