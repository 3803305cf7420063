"""`clip-age predict --engine ray`: the same answers as the local engine, on a Ray cluster.

    sources (driver lists)  ->  decode tasks: read, size limit, strict decode, faces, crops
                            ->  actor pool: CLIP, one model per GPU (or per CPU node)
                            ->  write tasks: Parquet files, whole or not at all (ray_cluster/output.py)

Ray retries a task whose worker dies and restarts a killed actor, re-running its batch; the
output files are named after their photos, so a retried write replaces its file instead of
adding a copy: every photo is written exactly once. --resume reads the `path` column of the
files already in --out and leaves those photos out before any is read (a shard is read again,
and its finished members are skipped before decoding).

Ray is an optional extra: this module imports it, and only `--engine ray` imports this module.
"""

import logging
import os
import sys
import time
import warnings
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute
import ray
import ray.data

from clip_age import pipeline
from clip_age.cli import PredictRequest
from clip_age.decoding.faces import Face, FaceDetector
from clip_age.decoding.images import InvalidImage
from clip_age.decoding.upload_limits import DecodeLimits
from clip_age.estimation.batch_split import split_batch
from clip_age.estimation.preprocess import InputSpec
from clip_age.ray_cluster.output import OutputFolder, schema
from clip_age.ray_cluster.sources import PhotoFile, Shard, read_photo, resolve_sources, shard_members
from clip_age.request_options import FaceRequest

# Each Parquet file holds this many of the model's batches: fewer, larger files, and at most
# this much work to redo after an interruption.
BATCHES_PER_FILE = 16


@dataclass(frozen=True)
class ModelChoice:
    """The model every actor loads, resolved on the driver so that all of them load the same."""

    model: str
    pretrained: str
    device: str
    precision: str


@dataclass(frozen=True)
class RayJob:
    sources: list[str]
    out: str
    address: str | None
    resume: bool
    model: ModelChoice


@dataclass(frozen=True)
class Plan:
    """Resources of each stage. The actors together reserve at most half the cluster's CPUs and
    a task at most the other half, so the decode and write tasks always find room beside the
    model: actors holding every CPU slot starve the tasks that feed them, and the job hangs."""

    actors: int
    actor_cpus: float
    actor_gpus: float
    task_cpus: float


def plan(cpus: float, gpus: float, cpu_nodes: int) -> Plan:
    """One actor per GPU; on a CPU-only cluster one per node (its torch threads = its cores)."""
    actors = int(gpus) if gpus >= 1 else max(1, cpu_nodes)
    return Plan(
        actors=actors,
        actor_cpus=min(1.0, cpus / (2 * actors)),
        actor_gpus=1.0 if gpus >= 1 else 0.0,
        task_cpus=min(1.0, cpus / 2),
    )


def run(request: PredictRequest, job: RayJob, log: TextIO | None = None) -> int:
    """Answer every photo the sources name into job.out, and say how it went in one line on
    log (default: stderr); 1 when any photo failed, else 0."""
    sources = resolve_sources(job.sources)
    spec = input_spec(job.model)
    folder = OutputFolder(job.out)
    done = folder.start(_run_record(request, job.model), job.resume)
    photos = [photo for photo in sources.photos if photo.path not in done]
    finished = sorted(done)
    shards = [(shard, _below(finished, shard.path + "/")) for shard in sources.shards]

    started_here = not ray.is_initialized()
    ready = time.perf_counter()
    if started_here:
        ray.init(address=job.address, logging_level="WARNING", configure_logging=True)
    startup = time.perf_counter() - ready
    try:
        started = time.perf_counter()
        counts = {"answered": 0, "failed": 0, "no_face": 0}
        if photos or shards:
            for batch in _pipeline(request, job, spec, photos, shards, folder, schema(request.probabilities)):
                for key in counts:
                    counts[key] += sum(batch.column(key).to_pylist())
        elapsed = time.perf_counter() - started
    finally:
        if started_here:
            ray.shutdown()
    handled = counts["answered"] + counts["failed"] + counts["no_face"]
    no_face = f", {counts['no_face']} skipped (no face)" if request.require_face else ""
    not_counted = f" (Ray start-up {startup:.1f} s not counted)" if started_here else ""
    print(
        f"{_photos(counts['answered'])} answered, {counts['failed']} failed{no_face}, "
        f"{len(done)} skipped (already in --out), {handled / max(elapsed, 1e-9):.1f} photos/s"
        f"{not_counted}; Parquet in {job.out}",
        file=sys.stderr if log is None else log,
    )
    return 1 if counts["failed"] else 0


def _pipeline(
    request: PredictRequest,
    job: RayJob,
    spec: InputSpec,
    photos: list[PhotoFile],
    shards: list[tuple[Shard, list[str]]],
    folder: OutputFolder,
    table_schema: pa.Schema,
) -> Iterator[pa.Table]:
    resources = ray.cluster_resources()
    cpu_nodes = sum(1 for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU"))
    stages = plan(resources.get("CPU", 1.0), resources.get("GPU", 0.0), cpu_nodes)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = False
    context.print_on_execution_start = False
    decode = {
        "batch_format": "pyarrow",
        "num_cpus": stages.task_cpus,
        "fn_kwargs": {
            "spec": spec,
            "detector": None if request.faces is None else str(request.detector),
            "faces": request.faces,
            "limits": _limits(),
            "chunk": request.batch_size,
        },
    }
    parts = []
    if photos:
        items = [{"path": photo.path, "size": photo.size} for photo in photos]
        parts.append(
            ray.data.from_items(items).map_batches(decode_photos, batch_size=request.batch_size, **decode)
        )
    if shards:
        items = [{"path": shard.path, "done": members} for shard, members in shards]
        parts.append(
            ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                decode_shards, batch_size=1, **decode
            )
        )
    dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    with warnings.catch_warnings():
        # One actor per CPU node needs Ray's SPREAD scheduling, which Ray 2.60 takes only through
        # the deprecated (still supported) remote args; requirements-ray.txt pins that version.
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = dataset.map_batches(
            AgeModel,
            batch_size=request.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=stages.actors),
            num_cpus=stages.actor_cpus,
            num_gpus=stages.actor_gpus,
            fn_constructor_kwargs={
                "model": job.model,
                "spec": spec,
                "table_schema": table_schema,
                "require_face": request.require_face,
                "whole_node": stages.actor_gpus == 0,
            },
            **({} if stages.actor_gpus else {"scheduling_strategy": "SPREAD"}),
        )
    dataset = dataset.map_batches(
        write_part,
        batch_size=BATCHES_PER_FILE * request.batch_size,
        batch_format="pyarrow",
        num_cpus=stages.task_cpus,
        fn_kwargs={"folder": folder},
    )
    yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow")


def input_spec(model: ModelChoice) -> InputSpec:
    """The model's input (size, resampling), read from open_clip without weights: the decode
    tasks need it before any actor has loaded the model. Missing weights fail here, on the
    driver, with the local engine's message."""
    import torch

    from clip_age.estimation import open_clip_model, weights

    located = weights.locate(model.model, model.pretrained)
    # The estimator's own call, on the meta device and without weights: it costs nothing, and
    # the tag's preprocessing applies as it does there.
    quiet = logging.root.manager.disable
    logging.disable(logging.WARNING)  # open_clip's "no pretrained weights loaded": none were asked for
    try:
        with torch.device("meta"):
            clip = open_clip_model.create(located, "meta", "fp32", load_weights=False)
    finally:
        logging.disable(quiet)
    config = clip.visual.preprocess_cfg
    size = config["size"]
    return InputSpec(
        size=size if isinstance(size, int) else int(size[0]),
        interpolation=config["interpolation"],
        resize_mode=config["resize_mode"],
    )


# Decode tasks ---------------------------------------------------------------------------------


def decode_photos(items: pa.Table, **options) -> Iterator[pa.Table]:
    """Photo files to model rows (one per face, or the whole photo), or their error."""
    limits = options["limits"]

    def sources() -> Iterator[tuple[str, bytes | str | InvalidImage]]:
        for item in items.to_pylist():
            try:
                yield item["path"], read_photo(PhotoFile(item["path"], item["size"]), limits)
            except InvalidImage as error:
                yield item["path"], error

    yield from _prepared_chunks(sources(), **options)


def decode_shards(items: pa.Table, **options) -> Iterator[pa.Table]:
    """A webdataset shard's image members to model rows, as decode_photos does for files."""
    for item in items.to_pylist():
        members = shard_members(Shard(item["path"]), set(item["done"] or ()), options["limits"])
        yield from _prepared_chunks(members, **options)


def _prepared_chunks(
    sources: Iterator[tuple[str, bytes | str | InvalidImage]],
    spec: InputSpec,
    detector: str | None,
    faces: FaceRequest | None,
    limits: DecodeLimits,
    chunk: int,
) -> Iterator[pa.Table]:
    found = _face_detector(detector) if detector else None
    rows: list[dict] = []
    for path, source in sources:
        try:
            if isinstance(source, InvalidImage):
                raise source
            prepared = pipeline.prepare(source, spec, found, faces or FaceRequest(), limits)
        except InvalidImage as error:
            rows.append({"path": path, "pixels": None, "boxes": [], "scores": [], "error": str(error)})
        else:
            rows.append(
                {
                    "path": path,
                    "pixels": np.ascontiguousarray(prepared.pixels).tobytes(),
                    "boxes": [list(face.box) for face in prepared.faces],
                    "scores": [face.score for face in prepared.faces],
                    "error": None,
                }
            )
        if len(rows) == chunk:
            yield pa.Table.from_pylist(rows, schema=PREPARED)
            rows = []
    if rows:
        yield pa.Table.from_pylist(rows, schema=PREPARED)


@cache
def _face_detector(path: str) -> FaceDetector:
    """One detector per worker process, reused across its tasks; OpenCV on one thread, as the
    tasks themselves are the parallelism."""
    import cv2

    cv2.setNumThreads(1)
    return FaceDetector(Path(path))


# What a decode task hands the actors for each photo: its rows of model input (uint8, one per
# face or one for the whole photo), its faces, or why it could not be used.
PREPARED = pa.schema(
    [
        ("path", pa.string()),
        ("pixels", pa.large_binary()),
        ("boxes", pa.list_(pa.list_(pa.int32()))),
        ("scores", pa.list_(pa.float64())),
        ("error", pa.string()),
    ]
)


# The actor --------------------------------------------------------------------------------------


class AgeModel:
    """One CLIP per actor: model rows in, one answer row per photo out (the JSON of the local
    engine, so both engines' rows compare field by field)."""

    def __init__(
        self,
        model: ModelChoice,
        spec: InputSpec,
        table_schema: pa.Schema,
        require_face: bool,
        whole_node: bool,
    ) -> None:
        import torch

        from clip_age.estimation.estimator import AgeEstimator

        if whole_node:
            # Ray gives an actor as many threads as CPUs it reserved; on a CPU-only node the
            # model is the node's main work and gets every core, as in the local engine.
            torch.set_num_threads(len(os.sched_getaffinity(0)))
        self.estimator = AgeEstimator(
            model.model,
            model.pretrained,
            device=model.device,
            cpu_precision=model.precision,
        )
        if self.estimator.input_spec != spec:
            raise RuntimeError(
                f"The model's input {self.estimator.input_spec} differs from {spec}, which the photos "
                "were prepared for: install the same open_clip on every node."
            )
        # The answer's columns, and whether --require-face leaves the photo out.
        self.schema = table_schema.append(pa.field("no_face", pa.bool_()))
        self.probabilities = "probabilities" in table_schema.names
        self.require_face = require_face

    def __call__(self, batch: pa.Table) -> pa.Table:
        shape = self.estimator.input_shape
        records = batch.to_pylist()
        pixels = [
            np.frombuffer(r["pixels"], np.uint8).reshape(-1, *shape) for r in records if r["error"] is None
        ]
        results = self.estimator.predict_pixels(np.concatenate(pixels)) if pixels else []
        faces = [
            [Face(tuple(box), score) for box, score in zip(r["boxes"], r["scores"], strict=True)]
            if r["error"] is None
            else []
            for r in records
        ]
        counts = [
            0 if r["error"] is not None else max(1, len(found))
            for r, found in zip(records, faces, strict=True)
        ]
        rows = []
        for record, found, distributions in zip(records, faces, split_batch(results, counts), strict=True):
            row = {"path": record["path"], "error": record["error"], "faces": [], "no_face": False}
            if record["error"] is None:
                answer = pipeline.photo_age(found, distributions)
                row.update(pipeline.to_json(answer, self.probabilities))
                row["no_face"] = self.require_face and not answer.faces
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=self.schema)


# Writing ----------------------------------------------------------------------------------------


def write_part(batch: pa.Table, folder: OutputFolder) -> pa.Table:
    """Write the batch's answers as one Parquet file; return what it held, for the summary."""
    no_face = batch.column("no_face")
    table = batch.filter(pyarrow.compute.invert(no_face)).drop_columns(["no_face"])
    if len(table):
        folder.write(table)
    failed = len(table) - table.column("error").null_count
    return pa.table(
        {"answered": [len(table) - failed], "failed": [failed], "no_face": [no_face.to_pylist().count(True)]}
    )


# Helpers ----------------------------------------------------------------------------------------


def _limits() -> DecodeLimits:
    from clip_age.settings import Settings

    return Settings.from_env().decode_limits


def _run_record(request: PredictRequest, model: ModelChoice) -> dict:
    """What must match for --resume to add to a folder: everything that changes an answer."""
    return {
        **asdict(model),
        "faces": None if request.faces is None else asdict(request.faces),
        "detector": None if request.faces is None else str(request.detector),
        "require_face": request.require_face,
        "probabilities": request.probabilities,
    }


def _below(finished: list[str], prefix: str) -> list[str]:
    """The finished paths that start with prefix (finished is sorted)."""
    found = []
    for path in finished[bisect_left(finished, prefix) :]:
        if not path.startswith(prefix):
            break
        found.append(path)
    return found


def _photos(count: int) -> str:
    return f"{count} photo" if count == 1 else f"{count} photos"
