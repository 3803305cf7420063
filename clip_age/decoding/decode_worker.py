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
    """Answer jobs (path, FaceRequest | None) until the pipe closes.

    Answers are (status, payload, retire): ("ok", (shape, faces)) followed by the pixels' raw
    bytes, ("refused", message) for an upload we will not use, ("failed", message) for our own
    fault; retire asks to be replaced.
    """
    cv2.setNumThreads(1)  # one core per worker: the pool's size is the parallelism
    detector = FaceDetector(config.detector_model) if config.detector_model else None
    _cap_address_space(config.memory_bytes)
    baseline = _resident_bytes()
    connection.send(READY)
    while True:
        try:
            path, faces = connection.recv()
        except EOFError:
            return
        status, payload, retire = _prepare(path, faces, config, detector)
        retire = retire or _resident_bytes() - baseline > RETIRE_GROWTH_BYTES
        if status == "ok":
            pixels, found = payload
            connection.send((status, (pixels.shape, found), retire))
            # Raw and flat (a memoryview of a 4-D array counts its first axis): the parent
            # rebuilds the array from its shape.
            connection.send_bytes(np.ascontiguousarray(pixels).reshape(-1))
        else:
            connection.send((status, payload, retire))
        if retire:
            return


def _prepare(path: str, faces, config: WorkerConfig, detector: FaceDetector | None) -> tuple:
    try:
        if faces is None:
            prepared = pipeline.prepare(path, config.spec, limits=config.decode_limits)
        else:
            prepared = pipeline.prepare(path, config.spec, detector, faces, config.decode_limits)
        return "ok", (prepared.pixels, prepared.faces), False
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
