"""The steps between a photo and an answer, shared by the Python API, the CLI and the Cog predictor.

prepare() does the CPU work (decode, find faces, crop, resize) and can run in worker threads
or processes; the rows it returns go to the estimator, possibly batched with other photos;
photo_age() turns the estimator's distributions for those rows back into one answer.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clip_age.faces import Face, FaceDetector, crop_box
from clip_age.images import load_image
from clip_age.preprocess import InputSpec, to_model_input
from clip_age.results import AgeDistribution, FaceAge, PhotoAge

DEFAULT_MIN_FACE_SIZE = 32
DEFAULT_MAX_FACES = 10
MAX_FACES_LIMIT = 50


@dataclass(frozen=True)
class FaceOptions:
    """Asking for one age per face: the YuNet model file, and which faces count."""

    detector_model: Path
    min_face_size: int = DEFAULT_MIN_FACE_SIZE
    max_faces: int = DEFAULT_MAX_FACES


@dataclass(frozen=True)
class Prepared:
    """Model inputs for one photo: one row per face (largest first), or one for the whole photo
    when faces were not asked for or none was found."""

    pixels: np.ndarray
    faces: list[Face]


def prepare(
    source: bytes | str | os.PathLike | Image.Image,
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


def photo_age(faces: list[Face], distributions: list[AgeDistribution]) -> PhotoAge:
    """One photo's answer from the distributions of its prepared rows: the largest face's (or the
    whole photo's) ages, and every face."""
    return PhotoAge(
        ages=distributions[0],
        faces=[FaceAge(face.box, face.score, ages) for face, ages in zip(faces, distributions)],
    )


def to_json(answer: PhotoAge, include_probabilities: bool = False) -> dict[str, Any]:
    """The answer as the HTTP API and the CLI's JSON lines show it."""
    return {
        **_ages_json(answer.ages),
        "probabilities": [float(p) for p in answer.ages.probabilities] if include_probabilities else [],
        "faces": [
            {"box": list(face.box), "score": round(face.score, 4), **_ages_json(face.ages)}
            for face in answer.faces
        ],
    }


def _ages_json(ages: AgeDistribution) -> dict[str, Any]:
    return {
        "age": ages.age,
        "expected_age": round(ages.expected_age, 2),
        "age_low": ages.age_low,
        "age_high": ages.age_high,
    }
