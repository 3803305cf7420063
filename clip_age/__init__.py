"""Zero-shot age estimation with CLIP: the ages 1..99 as prompts, the photo's cosine to each.

    import clip_age

    estimator = clip_age.load()           # CLIP_MODEL / CLIP_PRETRAINED, or load("ViT-B-32", "openai")
    [answer] = clip_age.predict(estimator, ["photo.jpg"], faces=True)
    print(answer.age, answer.age_low, answer.age_high, [face.box for face in answer.faces])

Importing this package is cheap: torch and open_clip load with the first model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from clip_age.answers.results import AgeDistribution, FaceAge, PhotoAge
from clip_age.request_options import DEFAULT_MAX_FACES, DEFAULT_MIN_FACE_SIZE

if TYPE_CHECKING:
    from PIL import Image

    from clip_age.estimation.estimator import AgeEstimator

__all__ = ["AgeDistribution", "DecodeFailed", "FaceAge", "InvalidImage", "PhotoAge", "load", "predict"]


def __getattr__(name: str) -> type:
    """The two errors predict() raises, imported when first asked for: their modules bring in
    the image decoders, which `import clip_age` alone does not need."""
    if name == "InvalidImage":
        from clip_age.decoding.images import InvalidImage

        return InvalidImage
    if name == "DecodeFailed":
        from clip_age.decoding.decode_pool import DecodeFailed

        return DecodeFailed
    raise AttributeError(f"module 'clip_age' has no attribute {name!r}")


def load(
    model: str | None = None,
    pretrained: str | None = None,
    *,
    device: str | None = None,
    cpu_precision: str | None = None,
    templates: Sequence[str] | None = None,
) -> AgeEstimator:
    """Load CLIP and embed the age prompts once.

    model is an open_clip model name ("ViT-L-14", "ViT-B-32", ...), "hf-hub:org/repo", or
    "local-dir:/folder" with open_clip_config.json and weights; pretrained is an open_clip
    weights tag or a checkpoint file. device is "auto", "cuda" or "cpu"; cpu_precision is
    "auto", "bf16", "int8" or "fp32". Left out, each comes from its environment variable
    (CLIP_MODEL, CLIP_PRETRAINED, CLIP_DEVICE, CLIP_CPU_PRECISION; see the README).
    Weights are read from local disk only: `clip-age download` fetches them. With the `cpu`
    extra, CLIP_CPU_RUNTIME and CLIP_EXPORT_DIR say whether and from where the image tower runs
    in OpenVINO or ONNX Runtime (with cpu_precision "auto" only).
    """
    from clip_age.estimation.estimator import AgeEstimator
    from clip_age.settings import Settings
    from prompts import TEMPLATES

    settings = Settings.from_env()
    return AgeEstimator(
        settings.clip_model if model is None else model,
        settings.clip_pretrained if pretrained is None else pretrained,
        templates=TEMPLATES if templates is None else templates,
        device=settings.device if device is None else device,
        cpu_precision=settings.cpu_precision if cpu_precision is None else cpu_precision,
        cpu_runtime_setting=settings.cpu_runtime,
        export_dir=settings.export_dir,
    )


def predict(
    estimator: AgeEstimator,
    photos: Sequence[str | os.PathLike | bytes | Image.Image],
    *,
    faces: bool = False,
    min_face_size: int = DEFAULT_MIN_FACE_SIZE,
    max_faces: int = DEFAULT_MAX_FACES,
) -> list[PhotoAge]:
    """One answer per photo (a path, the file's bytes or a PIL image), in order, in one batch.

    With faces=True each face found gets its own ages (largest first) and the answer's own
    ages are the largest face's; without faces, or when none is found, the whole photo's.
    Paths and bytes are decoded in worker processes with the HTTP server's limits (the MAX_*
    and DECODE_* settings): a photo that cannot be used raises clip_age.InvalidImage, or
    clip_age.DecodeFailed when decoding it overran DECODE_TIMEOUT_S or DECODE_MEMORY_MB,
    saying why. A PIL image is already decoded and is prepared here.
    """
    import numpy as np
    from PIL import Image

    from clip_age import pipeline
    from clip_age.decoding import bulk_loader
    from clip_age.decoding.faces import FaceDetector
    from clip_age.estimation.batch_split import split_batch
    from clip_age.request_options import face_request
    from clip_age.settings import Settings

    request = face_request(min_face_size, max_faces)
    settings = Settings.from_env()
    # An unusable detector file fails here, in one sentence, not in every worker.
    detector = FaceDetector(settings.face_detector_model) if faces else None
    files = [photo for photo in photos if not isinstance(photo, Image.Image)]
    search = bulk_loader.FaceSearch(settings.face_detector_model, request) if faces else None
    decoded = iter(
        bulk_loader.prepare_photos(files, estimator.input_spec, estimator.device, search, settings)
        if files
        else []
    )
    prepared = [
        pipeline.prepare(photo, estimator.input_spec, detector, request, settings.decode_limits)
        if isinstance(photo, Image.Image)
        else next(decoded)
        for photo in photos
    ]
    if not prepared:
        return []
    distributions = estimator.predict_pixels(np.concatenate([one.pixels for one in prepared]))
    split = split_batch(distributions, [len(one.pixels) for one in prepared])
    return [pipeline.photo_age(one.faces, rows) for one, rows in zip(prepared, split, strict=True)]
