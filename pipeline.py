"""The steps between an uploaded photo and an answer, shared by the Cog predictor and the CLI.

prepare() does the CPU work (decode, find faces, crop, resize) and can run in worker threads
or processes; the rows it returns go to the estimator, possibly batched with other photos;
summarize() turns the estimator's distributions back into one answer per photo.
"""

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from estimator import AgeDistribution
from faces import Face, FaceDetector, crop_box
from images import load_image
from preprocess import InputSpec, to_model_input

DEFAULT_MIN_FACE_SIZE = 32
DEFAULT_MAX_FACES = 10
MAX_FACES_LIMIT = 50


@dataclass(frozen=True)
class Prepared:
    """Model inputs for one photo: one row per face (largest first), or one for the whole photo
    when faces were not asked for or none was found."""

    pixels: np.ndarray
    faces: list[Face]


def prepare(
    source: bytes | str | os.PathLike,
    spec: InputSpec,
    detector: FaceDetector | None = None,
    min_face_size: int = DEFAULT_MIN_FACE_SIZE,
    max_faces: int = DEFAULT_MAX_FACES,
) -> Prepared:
    if detector is None:
        image = load_image(source, draft_side=spec.draft_side)
        return Prepared(to_model_input(image, spec)[None], [])
    # Faces can be small in a large photo, so face mode decodes every pixel.
    image = load_image(source)
    faces = detector.detect(image, min_face_size, max_faces)
    if not faces:
        return Prepared(to_model_input(image, spec)[None], [])
    crops = [to_model_input(image.crop(crop_box(face, *image.size)), spec) for face in faces]
    return Prepared(np.stack(crops), faces)


def summarize(
    faces: list[Face], distributions: list[AgeDistribution], include_probabilities: bool = False
) -> dict[str, Any]:
    """The answer for one photo from its prepared rows' distributions: the largest face's (or the
    whole photo's) age, and every face."""
    main = distributions[0]
    return {
        **_ages(main),
        "probabilities": [float(p) for p in main.probabilities] if include_probabilities else [],
        "faces": [
            {"box": list(face.box), "score": round(face.score, 4), **_ages(distribution)}
            for face, distribution in zip(faces, distributions)
        ],
    }


def _ages(distribution: AgeDistribution) -> dict[str, Any]:
    return {
        "age": distribution.age,
        "expected_age": round(distribution.expected_age, 2),
        "age_low": distribution.age_low,
        "age_high": distribution.age_high,
    }
