"""Find faces with OpenCV's YuNet detector and cut a square crop with margin around each."""

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from clip_age.decoding.upload_limits import DecodeLimits

# OpenCV warns on every detector it creates that its new engine ignores backend targets.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

# Face-age pipelines pad the detector's tight box (DEX uses 40% on every side) so the crop
# shows hair, forehead and jaw, which carry much of the age signal.
FACE_MARGIN = 0.4
SCORE_THRESHOLD = 0.8  # YuNet scores a clear face 0.9 at full size but lower once shrunk
NMS_THRESHOLD = 0.3
# Photos are shrunk so their longer side is at most this before detection (speed), unless
# that would shrink a face of min_face_size below what YuNet can still find.
DETECT_SIDE = 640
SMALLEST_DETECTABLE = 10


class DetectorUnavailable(RuntimeError):
    """Face detection was asked for but the detector model is not on this machine."""


@dataclass(frozen=True)
class Face:
    """A face box [x, y, width, height] in the photo's pixels (after EXIF rotation)."""

    box: tuple[int, int, int, int]
    score: float

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


class FaceDetector:
    """YuNet through cv2.FaceDetectorYN; safe to call from several threads."""

    def __init__(self, model_path: Path) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise DetectorUnavailable(
                f"Face detection is unavailable: no YuNet model at {self.model_path}. "
                "Set FACE_DETECTOR_MODEL to a YuNet .onnx file, or leave it unset and run `clip-age download` "
                "to fetch one."
            )
        self._local = threading.local()
        self._create()  # fail at setup, not on the first request, if the file is not a model

    def detect(
        self,
        image: Image.Image,
        min_face_size: int,
        max_faces: int,
        max_pixels: int = DecodeLimits.detect_max_pixels,
    ) -> list[Face]:
        """Faces at least min_face_size pixels wide and high, largest first, at most max_faces.

        The detector sees a copy of the photo shrunk to at most max_pixels, whatever
        min_face_size asks: in a larger photo a face must be proportionally larger to be found
        (about SMALLEST_DETECTABLE / scale pixels).
        """
        width, height = image.size
        scale = min(1.0, max(DETECT_SIDE / max(width, height), SMALLEST_DETECTABLE / min_face_size))
        scale = min(scale, math.sqrt(max_pixels / (width * height)))
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        if min(size) < SMALLEST_DETECTABLE:
            return []  # a strip too thin to hold a face the detector could find
        small = image if size == image.size else image.resize(size, Image.Resampling.BOX)
        bgr = np.ascontiguousarray(np.asarray(small)[:, :, ::-1])
        detector = self._detector()
        detector.setInputSize(size)
        _, rows = detector.detect(bgr)
        faces = []
        for row in rows if rows is not None else ():
            box = _clip_box(row[:4] / np.array([size[0] / width, size[1] / height] * 2), width, height)
            if min(box[2], box[3]) >= min_face_size:
                faces.append(Face(box=box, score=float(row[-1])))
        faces.sort(key=lambda face: face.area, reverse=True)
        return faces[:max_faces]

    def _detector(self):
        if not hasattr(self._local, "detector"):
            self._local.detector = self._create()
        return self._local.detector

    def _create(self):
        try:
            return cv2.FaceDetectorYN.create(
                str(self.model_path), "", (DETECT_SIDE, DETECT_SIDE), SCORE_THRESHOLD, NMS_THRESHOLD
            )
        except cv2.error:
            raise DetectorUnavailable(
                f"{self.model_path} is not a YuNet face detector model (OpenCV could not load it). "
                "Point FACE_DETECTOR_MODEL (or --detector) at a YuNet .onnx file, or leave it unset "
                "and run `clip-age download` to fetch one."
            ) from None


def crop_box(face: Face, width: int, height: int, margin: float = FACE_MARGIN) -> tuple[int, int, int, int]:
    """Square (left, top, right, bottom) around a face: its longer side plus `margin` of it on
    every side, centred on the face, moved inside the photo where it overhangs an edge, and
    shrunk to the photo's shorter side if it is larger."""
    x, y, w, h = face.box
    side = min(round(max(w, h) * (1 + 2 * margin)), width, height)
    left = min(max(round(x + w / 2 - side / 2), 0), width - side)
    top = min(max(round(y + h / 2 - side / 2), 0), height - side)
    return (left, top, left + side, top + side)


def _clip_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    left, top = max(0, round(float(box[0]))), max(0, round(float(box[1])))
    right = min(width, round(float(box[0] + box[2])))
    bottom = min(height, round(float(box[1] + box[3])))
    return (left, top, max(0, right - left), max(0, bottom - top))
