"""Cog adapter: setup() builds the estimator; predict() maps Cog inputs to an Output."""

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import cog
from cog import BaseModel, BasePredictor, Input, Path

import clip_age
from clip_age import pipeline
from clip_age.batcher import MicroBatcher
from clip_age.faces import DetectorUnavailable, FaceDetector
from clip_age.images import ACCEPTED_NAMES, InvalidImage
from clip_age.settings import Settings

log = logging.getLogger(__name__)

# Keep equal to cog.yaml's concurrency.max (a test checks). Requests beyond it get 409.
MAX_CONCURRENCY = 32
MIN_FACE_SIZE_RANGE = (8, 4096)


class Output(BaseModel):
    age: int
    expected_age: float
    age_low: int
    age_high: int
    probabilities: list[float]
    faces: list[dict]


class Predictor(BasePredictor):
    def setup(self) -> None:
        started = time.perf_counter()
        settings = Settings.from_env()
        self.estimator = clip_age.load(settings.clip_model, settings.clip_pretrained)
        # Decoding is CPU work: one thread per core is as fast as more, and it bounds how many
        # full-size photos sit in memory at once when many large uploads arrive together.
        self.decoders = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="decode")
        self.batcher = MicroBatcher(
            self.estimator.predict_pixels,
            max_rows=settings.max_batch_size,
            window_s=settings.batch_window_ms / 1000,
        )
        try:
            self.detector: FaceDetector | None = FaceDetector(settings.face_detector_model)
            self.detector_problem = ""
        except DetectorUnavailable as problem:
            log.warning("%s Whole-photo predictions still work.", problem)
            self.detector, self.detector_problem = None, str(problem)
        print(
            f"Ready: CLIP_MODEL={settings.clip_model} CLIP_PRETRAINED={settings.clip_pretrained} "
            f"on {self.estimator.device} in {time.perf_counter() - started:.1f} s"
        )

    # Plain literals only in this signature: `cog build` reads it statically, without running it.
    @cog.concurrent(max=32)
    async def predict(
        self,
        image: Path = Input(
            description="A photo of a person: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF or AVIF; at most 64 MB and 120 megapixels."
        ),
        return_probabilities: bool = Input(
            default=False,
            description="Also return the 99 probabilities; index i is age i + 1.",
        ),
        detect_faces: bool = Input(
            default=False,
            description="Find faces and predict an age for each (largest first); the top-level fields then describe the largest face.",
        ),
        min_face_size: int = Input(
            default=32,
            ge=8,
            le=4096,
            description="With detect_faces: ignore faces narrower or shorter than this, in pixels.",
        ),
        max_faces: int = Input(
            default=10,
            ge=1,
            le=50,
            description="With detect_faces: predict at most this many faces, the largest ones.",
        ),
    ) -> Output:
        # Without a built image's schema the server passes inputs unchecked, so check here too.
        if image is None:
            raise InvalidImage(f"No image was given. Send a photo as 'image': {ACCEPTED_NAMES}.")
        _check_range("min_face_size", min_face_size, *MIN_FACE_SIZE_RANGE)
        _check_range("max_faces", max_faces, 1, pipeline.MAX_FACES_LIMIT)
        detector = self._detector() if detect_faces else None

        prepare = partial(
            pipeline.prepare, image, self.estimator.input_spec, detector, min_face_size, max_faces
        )
        prepared = await asyncio.get_running_loop().run_in_executor(self.decoders, prepare)
        batched = await asyncio.wrap_future(self.batcher.submit(prepared.pixels))
        # Shows in the response's metrics: how many images shared this request's forward pass.
        self.record_metric("batch_size", batched.batch_rows)
        answer = pipeline.photo_age(prepared.faces, batched.results)
        return Output(**pipeline.to_json(answer, return_probabilities))

    def _detector(self) -> FaceDetector:
        if self.detector is None:
            raise DetectorUnavailable(self.detector_problem)
        return self.detector


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}; got {value!r}.")
