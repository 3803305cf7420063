"""Decode many photos for the model in the server's decode workers: the same header checks,
limits, deadline and memory cap as an upload (see decode_pool.py), for the clip-age command and
the Python API, where untrusted files arrive too.

The pool is asynchronous; here it runs on an event loop of its own thread, and callers get
ordinary results in input order.
"""

import asyncio
import contextlib
import dataclasses
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clip_age.decoding.decode_pool import DecodeFailed, DecodePool
from clip_age.decoding.faces import Face
from clip_age.decoding.images import InvalidImage
from clip_age.estimation.preprocess import InputSpec
from clip_age.pipeline import KeptPhoto, Prepared
from clip_age.request_options import FaceRequest
from clip_age.settings import Settings


@dataclass(frozen=True)
class Item:
    """One file of a batch: its rows of the batch's pixels (faces, or the whole photo), or an error;
    and the photo, when kept."""

    index: int
    path: str
    rows: int = 0
    faces: tuple[Face, ...] = ()
    error: str | None = None
    photo: KeptPhoto | None = None


@dataclass(frozen=True)
class FaceSearch:
    """Asking for one age per face: the YuNet model file, and which faces count."""

    detector_model: Path
    request: FaceRequest = FaceRequest()


def decodes_ahead(model_device: torch.device) -> bool:
    """Whether photos decode while the model runs: on a GPU, yes, so that it does not wait for the
    CPU; on a CPU, no.

    On a CPU, torch's threads already use every core, and decoders running beside them stall its
    parallel regions: on 2 cores with ViT-B-32 in bf16, 256 px faces went from 33.5 to 17.7
    photos/s with 2 decode workers beside the model, 4032x3024 JPEGs from 17.4 to 10.0. There the
    workers decode a batch while the model waits, and the model runs while they wait.
    """
    return model_device.type == "cuda"


class BulkDecoder:
    """Decode workers for one run of many photos; close() (or a with block) stops them.

    keep_side: each item also holds its photo, made smaller in the worker to at most that many
    pixels on its longer side, so that it is decoded once (clip-age --draw draws on it).
    """

    def __init__(
        self,
        spec: InputSpec,
        model_device: torch.device,
        workers: int | None = None,
        faces: FaceSearch | None = None,
        settings: Settings | None = None,
        keep_side: int | None = None,
    ) -> None:
        settings = Settings.from_env() if settings is None else settings
        limits = settings.pool_limits
        if workers is not None:
            if workers < 1:
                raise ValueError(f"Decoding needs at least one worker; got {workers}.")
            limits = dataclasses.replace(limits, workers=workers)
        self._ahead = decodes_ahead(model_device)
        self._pin = model_device.type == "cuda"
        self._faces = None if faces is None else faces.request
        self._keep_side = keep_side
        detector = None if faces is None else faces.detector_model
        self._pool = DecodePool(spec, detector, settings.decode_limits, limits)
        # Never more jobs in flight than workers: a job never waits in the pool for a worker, so
        # its whole deadline is its decode's.
        self._slots = asyncio.Semaphore(limits.workers)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bulk-decode", daemon=True)
        self._thread.start()

    def __enter__(self) -> "BulkDecoder":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def batches(self, paths: Sequence[str], batch_size: int) -> Iterator[tuple[torch.Tensor, list[Item]]]:
        """Batches of (uint8 pixels (rows, size, size, 3), the items those rows belong to, in order).

        The next batch decodes while the caller uses this one only when decodes_ahead; otherwise
        it starts when the caller asks for it.
        """
        submitted = self._submit(paths[:batch_size])
        for start in range(0, len(paths), batch_size):
            current = submitted
            following = paths[start + batch_size : start + 2 * batch_size]
            if self._ahead and following:
                submitted = self._submit(following)
            yield self._batch(start, paths[start : start + batch_size], current)
            if not self._ahead and following:
                submitted = self._submit(following)

    def prepare(self, sources: Sequence[str]) -> list[Prepared]:
        """Every file's rows, in order; the first file that cannot be used raises InvalidImage
        (or DecodeFailed: past the deadline or the memory cap)."""
        answers = [future.result() for future in self._submit(sources)]
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _submit(self, sources: Sequence[str]) -> list[Future]:
        return [asyncio.run_coroutine_threadsafe(self._one(source), self._loop) for source in sources]

    async def _one(self, source: str) -> Prepared | InvalidImage | DecodeFailed:
        async with self._slots:
            try:
                return await self._pool.prepare(source, self._faces, keep_side=self._keep_side)
            except (InvalidImage, DecodeFailed) as refusal:
                return refusal

    async def _close(self) -> None:
        self._pool.close()

    def _batch(
        self, start: int, paths: Sequence[str], futures: list[Future]
    ) -> tuple[torch.Tensor, list[Item]]:
        items, rows = [], []
        for index, (path, future) in enumerate(zip(paths, futures, strict=True), start):
            answer = future.result()
            if isinstance(answer, Exception):
                items.append(Item(index, path, error=str(answer)))
                continue
            items.append(Item(index, path, len(answer.pixels), tuple(answer.faces), photo=answer.photo))
            rows.append(answer.pixels)
        pixels = torch.from_numpy(np.concatenate(rows)) if rows else torch.empty(0, dtype=torch.uint8)
        return (pixels.pin_memory() if self._pin and rows else pixels), items


def prepare_photos(
    photos: Sequence[str | os.PathLike | bytes],
    spec: InputSpec,
    model_device: torch.device,
    faces: FaceSearch | None = None,
    settings: Settings | None = None,
) -> list[Prepared]:
    """Rows for each photo (a path or a file's bytes), decoded in workers as an upload would be;
    raises InvalidImage or DecodeFailed for the first photo that cannot be used."""
    settings = Settings.from_env() if settings is None else settings
    with tempfile.TemporaryDirectory(prefix="clip-age-") as folder:
        paths = []
        for index, photo in enumerate(photos):
            if isinstance(photo, bytes):
                # Workers read files, as they do a server's uploads.
                path = Path(folder) / f"photo{index}"
                path.write_bytes(photo)
                photo = path
            paths.append(os.fspath(photo))
        with _kept.use((spec, model_device, faces, settings)) as decoder:
            return decoder.prepare(paths)


class _KeptDecoder:
    """The Python API's decode workers, kept from one call to the next: starting them costs more
    than a photo's decode and forward pass (ViT-B-32 on 2 cores: 68 against 30 ms a call). One set
    is kept, for the latest settings; a call with other settings while it is in use gets workers
    of its own for that call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._decoder: BulkDecoder | None = None
        self._users = 0

    @contextlib.contextmanager
    def use(self, key: tuple) -> Iterator[BulkDecoder]:
        with self._lock:
            if key != self._key and self._users == 0:
                if self._decoder is not None:
                    self._decoder.close()
                    self._decoder = self._key = None
                self._decoder = BulkDecoder(*key[:2], None, *key[2:])
                self._key = key
            shared = key == self._key
            if shared:
                self._users += 1
                decoder = self._decoder
        if not shared:
            with BulkDecoder(*key[:2], None, *key[2:]) as decoder:
                yield decoder
            return
        try:
            yield decoder
        finally:
            with self._lock:
                self._users -= 1


_kept = _KeptDecoder()
