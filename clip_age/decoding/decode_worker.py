"""What runs inside a decode worker process (see decode_pool.py).

The forkserver imports this module once, so every worker forked from it starts with Pillow,
pillow-heif, OpenCV and numpy loaded, and without torch.
"""

import logging
import os
import resource
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import cv2
import numpy as np

from clip_age import pipeline
from clip_age.decoding.faces import FaceDetector
from clip_age.decoding.images import InvalidImage
from clip_age.decoding.upload_limits import DecodeLimits
from clip_age.estimation.preprocess import InputSpec

log = logging.getLogger(__name__)

READY = "ready"
# A worker whose resident memory grew this much past its start has kept freed memory (the
# allocator does not always give it back); it exits after answering and is replaced.
RETIRE_GROWTH_BYTES = 200_000_000


@dataclass(frozen=True)
class WorkerConfig:
    spec: InputSpec
    detector_model: Path | None
    decode_limits: DecodeLimits
    memory_bytes: int  # address space the worker may add to what it has once started


def serve(connection: Connection, config: WorkerConfig) -> None:
    """Answer jobs (path, FaceRequest | None, keep_side | None) until the pipe closes.

    Answers are (status, payload, retire): ("ok", (shape, faces, kept)) followed by the pixels'
    raw bytes and, when the job asked to keep the photo, the photo's (kept is then its shape and
    scale, else None); ("refused", message) for an upload we will not use, ("failed", message)
    for our own fault; retire asks to be replaced.
    """
    cv2.setNumThreads(1)  # one core per worker: the pool's size is the parallelism
    detector = FaceDetector(config.detector_model) if config.detector_model else None
    _cap_address_space(config.memory_bytes)
    baseline = _resident_bytes()
    connection.send(READY)
    while True:
        try:
            path, faces, keep_side = connection.recv()
        except EOFError:
            return
        status, payload, retire = _prepare(path, faces, keep_side, config, detector)
        retire = retire or _resident_bytes() - baseline > RETIRE_GROWTH_BYTES
        if status == "ok":
            prepared: pipeline.Prepared = payload
            photo = prepared.photo
            kept = None if photo is None else (photo.pixels.shape, photo.scale)
            connection.send((status, (prepared.pixels.shape, prepared.faces, kept), retire))
            # Raw and flat (a memoryview of a 4-D array counts its first axis): the parent
            # rebuilds the arrays from their shapes.
            connection.send_bytes(np.ascontiguousarray(prepared.pixels).reshape(-1))
            if photo is not None:
                connection.send_bytes(np.ascontiguousarray(photo.pixels).reshape(-1))
            del prepared, photo, payload  # the kept photo's megabytes, before waiting for the next job
        else:
            connection.send((status, payload, retire))
        if retire:
            return


def _prepare(
    path: str, faces, keep_side: int | None, config: WorkerConfig, detector: FaceDetector | None
) -> tuple:
    try:
        limits = config.decode_limits
        if faces is None:
            prepared = pipeline.prepare(path, config.spec, limits=limits, keep_side=keep_side)
        else:
            prepared = pipeline.prepare(path, config.spec, detector, faces, limits, keep_side)
        return "ok", prepared, False
    except InvalidImage as refusal:
        return "refused", str(refusal), False
    except MemoryError:
        return "refused", _memory_message(config), True
    # A decoder failing in a way we did not foresee is our fault, not the uploader's; the
    # traceback goes to the server log, the request gets a plain message.
    except Exception:
        log.exception("A decode worker failed on an upload.")
        return "failed", "The photo could not be processed because of an error on our side.", True


def _memory_message(config: WorkerConfig) -> str:
    return (
        f"Decoding the photo needed more than {config.memory_bytes / 1e6:,.0f} MB of memory, the "
        "limit (DECODE_MEMORY_MB). Send a smaller photo, or an ordinary 8-bit JPEG or PNG."
    )


def _cap_address_space(extra_bytes: int) -> None:
    """RLIMIT_AS = what the worker maps now + extra_bytes: a runaway decode gets a MemoryError
    in this process instead of the kernel's OOM killer choosing a process of the server."""
    current = _virtual_bytes()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = current + extra_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _virtual_bytes() -> int:
    return _status_field("VmSize")


def _resident_bytes() -> int:
    return _status_field("VmRSS")


def _status_field(name: str) -> int:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    return 0
