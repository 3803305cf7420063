"""The steps between a photo and an answer, shared by the Python API, the CLI and the Cog predictor.

prepare() does the CPU work (decode, find faces, crop, resize) and can run in worker threads
or processes; the rows it returns go to the estimator, possibly batched with other photos;
photo_age() turns the estimator's distributions for those rows back into one answer.
"""

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from clip_age.answers.results import AgeDistribution, FaceAge, PhotoAge
from clip_age.decoding.faces import Face, FaceDetector, crop_box
from clip_age.decoding.images import load_image
from clip_age.decoding.upload_limits import DecodeLimits
from clip_age.estimation.preprocess import InputSpec, to_model_input
from clip_age.request_options import FaceRequest


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
    faces: FaceRequest = FaceRequest(),
    limits: DecodeLimits = DecodeLimits(),
) -> Prepared:
    """Decode the photo and cut the model's rows: its faces' crops when a detector is given and
    finds any, else the whole photo."""
    if detector is None:
        image = load_image(source, draft_side=spec.draft_side, limits=limits)
        return Prepared(to_model_input(image, spec)[None], [])
    # Faces can be small in a large photo, so face mode decodes every pixel.
    image = load_image(source, limits=limits)
    found = detector.detect(image, faces.min_face_size, faces.max_faces, limits.detect_max_pixels)
    if not found:
        return Prepared(to_model_input(image, spec)[None], [])
    crops = [to_model_input(image.crop(crop_box(face, *image.size)), spec) for face in found]
    return Prepared(np.stack(crops), found)


def photo_age(faces: list[Face], distributions: list[AgeDistribution]) -> PhotoAge:
    """One photo's answer from the distributions of its prepared rows: the largest face's (or the
    whole photo's) ages, and every face."""
    if not faces:
        [whole_photo] = distributions  # no face: the one row is the whole photo
        return PhotoAge(ages=whole_photo, faces=[])
    return PhotoAge(
        ages=distributions[0],
        faces=[FaceAge(face.box, face.score, ages) for face, ages in zip(faces, distributions, strict=True)],
    )


def to_json(answer: PhotoAge, include_probabilities: bool = False) -> dict[str, Any]:
    """The answer as the HTTP API and the CLI's JSON lines show it."""
    return {
        **ages_json(answer.ages),
        "probabilities": [float(p) for p in answer.ages.probabilities] if include_probabilities else [],
        "faces": [
            {"box": list(face.box), "score": round(face.score, 4), **ages_json(face.ages)}
            for face in answer.faces
        ],
    }


def ages_json(ages: AgeDistribution) -> dict[str, Any]:
    """The four ages of one distribution, as every output format shows them."""
    return {
        "age": ages.age,
        "expected_age": round(ages.expected_age, 2),
        "age_low": ages.age_low,
        "age_high": ages.age_high,
    }
