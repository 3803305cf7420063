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
class KeptPhoto:
    """The upright photo itself, made smaller, for drawing the answer on (clip-age --draw)."""

    pixels: np.ndarray  # RGB, uint8 (height, width, 3)
    scale: float  # its width over the decoded photo's, whose coordinates face boxes are given in


@dataclass(frozen=True)
class Prepared:
    """Model inputs for one photo: one row per face (largest first), or one for the whole photo
    when faces were not asked for or none was found; and the photo, when kept."""

    pixels: np.ndarray
    faces: list[Face]
    photo: KeptPhoto | None = None


def prepare(
    source: bytes | str | os.PathLike | Image.Image,
    spec: InputSpec,
    detector: FaceDetector | None = None,
    faces: FaceRequest = FaceRequest(),
    limits: DecodeLimits = DecodeLimits(),
    keep_side: int | None = None,
) -> Prepared:
    """Decode the photo once and cut the model's rows: its faces' crops when a detector is given
    and finds any, else the whole photo. keep_side: also keep the photo, at most that many pixels
    on its longer side."""
    if detector is None:
        # A JPEG decodes at the coarsest scale the model needs, or the kept photo when that needs more.
        draft_side = spec.draft_side if keep_side is None else max(spec.draft_side, keep_side)
        image = load_image(source, draft_side=draft_side, limits=limits)
        return Prepared(to_model_input(image, spec)[None], [], _kept(image, keep_side))
    # Faces can be small in a large photo, so face mode decodes every pixel.
    image = load_image(source, limits=limits)
    found = detector.detect(image, faces.min_face_size, faces.max_faces, limits.detect_max_pixels)
    if not found:
        return Prepared(to_model_input(image, spec)[None], [], _kept(image, keep_side))
    crops = [to_model_input(image.crop(crop_box(face, *image.size)), spec) for face in found]
    return Prepared(np.stack(crops), found, _kept(image, keep_side))


def _kept(image: Image.Image, keep_side: int | None) -> KeptPhoto | None:
    if keep_side is None:
        return None
    scale = min(1.0, keep_side / max(image.size))
    if scale < 1.0:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return KeptPhoto(np.asarray(image), scale)


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
