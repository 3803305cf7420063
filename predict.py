"""Cog adapter: setup() loads the model and starts the decode workers; run() checks the inputs,
has the photo decoded in a worker, batches it with concurrent requests and answers."""

import asyncio
import logging
import time

import cog
from cog import BaseModel, BaseRunner, Input, Path

import clip_age
from clip_age import pipeline, request_options
from clip_age.decoding import cog_uploads
from clip_age.decoding.decode_pool import DecodeFailed, DecodePool
from clip_age.decoding.faces import DetectorUnavailable, FaceDetector
from clip_age.decoding.images import InvalidImage
from clip_age.estimation.batcher import MicroBatcher
from clip_age.settings import Settings

log = logging.getLogger(__name__)

SEND_A_PHOTO = (
    "Send the photo as 'image': a data URI (data:image/jpeg;base64,...) or an http(s) URL. "
    "Accepted: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF or AVIF."
)


class Face(BaseModel):
    box: list[int]
    score: float
    age: int
    expected_age: float
    age_low: int
    age_high: int


class Output(BaseModel):
    age: int
    expected_age: float
    age_low: int
    age_high: int
    probabilities: list[float]
    faces: list[Face]


class Refused(Exception):
    """A request this model will not answer as sent. Cog reports a failure as "<exception type>:
    <message>", so this type's name is the word the client reads before the reason."""


class Predictor(BaseRunner):
    def setup(self) -> None:
        started = time.perf_counter()
        settings = Settings.from_env()
        cog_uploads.harden(settings.decode_limits.max_upload_bytes, settings.pool_limits.timeout_s)
        self.estimator = clip_age.load(settings.clip_model, settings.clip_pretrained)
        self.batcher = MicroBatcher(self.estimator.predict_pixels, max_rows=settings.max_batch_size)
        try:
            FaceDetector(settings.face_detector_model)  # fail here, not per request, if unusable
            detector_model, self.detector_problem = settings.face_detector_model, ""
        except DetectorUnavailable as problem:
            log.warning("%s Whole-photo predictions still work.", problem)
            detector_model, self.detector_problem = None, str(problem)
        self.decoders = DecodePool(
            self.estimator.input_spec, detector_model, settings.decode_limits, settings.pool_limits
        )
        print(
            f"Ready in {time.perf_counter() - started:.1f} s: CLIP_MODEL={settings.clip_model} "
            f"CLIP_PRETRAINED={settings.clip_pretrained}, {self.estimator.serving}; "
            f"{settings.pool_limits.workers} decode workers"
        )

    # Plain literals only in this signature: `cog build` reads it statically, without running it.
    # Eight slots: Cog holds a request's body in this process several times over while it parses
    # it (about 6x at the peak), so 8 bodies of 100 MB in flight stay under 5 GB; 32 could take 19.
    @cog.concurrent(max=8)
    async def run(
        # Positional-only: an input named "self" lands in **unknown instead of breaking the call.
        self,
        /,
        image: Path = Input(
            description="A photo of a person, as a data URI or an http(s) URL: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF or AVIF; by default at most 64 MB and 120 megapixels."
        ),
        return_probabilities: bool = Input(
            default=False,
            description="Also return the 99 probabilities; index i is age i + 1.",
        ),
        detect_faces: bool = Input(
            default=False,
            description="Find faces and predict an age for each (largest first); the top-level fields then describe the largest face. Faces are searched on a copy of the photo shrunk to at most 4 megapixels, so in a larger photo the smallest face found is correspondingly larger than min_face_size.",
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
        # A built image's schema validation drops inputs it does not know; a server without the
        # schema passes them here, and they are dropped the same way instead of failing the call.
        **unknown,
    ) -> Output:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        if unknown:
            log.warning("Ignoring %s", _named_briefly(unknown))
        try:
            path = _uploaded_file(image)
            with_probabilities = request_options.yes_or_no("return_probabilities", return_probabilities)
            faces = request_options.face_request(min_face_size, max_faces)
            if request_options.yes_or_no("detect_faces", detect_faces):
                if self.detector_problem:
                    raise DetectorUnavailable(self.detector_problem)
            else:
                faces = None
            prepared = await self.decoders.prepare(path, faces, started=arrived)
            decoded = loop.time()
        # Whatever the client sent that we cannot use ends here, as a plain sentence.
        except (request_options.OptionError, InvalidImage, DecodeFailed, DetectorUnavailable) as refusal:
            raise Refused(str(refusal)) from None
        batched = await asyncio.wrap_future(self.batcher.submit(prepared.pixels))
        # Shown in the response's metrics: how many images shared this request's forward pass,
        # and where its time went (seconds, as Cog's own predict_time): waiting for and decoding
        # in a worker, then waiting for and running the model.
        self.record_metric("batch_size", batched.batch_rows)
        self.record_metric("decode_time", decoded - arrived)
        self.record_metric("model_time", loop.time() - decoded)
        answer = pipeline.to_json(pipeline.photo_age(prepared.faces, batched.results), with_probabilities)
        return Output(**{**answer, "faces": [Face(**face) for face in answer["faces"]]})


def _named_briefly(unknown: dict) -> str:
    """The unknown inputs for the log: how many, and the first few names, cut short (a client
    may send megabytes of names)."""
    shown = [repr(name if len(name) <= 40 else name[:37] + "...") for name in list(unknown)[:5]]
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    return f"{len(unknown)} unknown input(s): {', '.join(shown)}{more}"


def _uploaded_file(image: object) -> str:
    """The file Cog made from the request's data URI or URL. Cog passes any other string
    through as it is, and reading that would open a file of the server's: refused, with the
    same words whatever the string names."""
    if not isinstance(image, Path) or not image.is_file():
        raise request_options.OptionError(SEND_A_PHOTO)
    return str(image)
