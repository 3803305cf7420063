"""Decode uploads, find faces and crop them in worker processes, so that a hostile file can only
ever hurt a worker: never the server, which cannot recover if its own process dies.

Each worker is forked from a forkserver that imported only the decoding libraries (no torch, no
CUDA state), caps its own address space (RLIMIT_AS), and gets a wall-clock deadline per job. A
worker that overruns its deadline, or whose request is cancelled, is killed and replaced; one that
ran out of memory or grew large exits after answering and is replaced, so no memory is kept.
Jobs are a path and the face options; answers are the model's uint8 rows (150 KB a face at 224
px), and the decoded photo only when a job asks to keep it, made smaller (clip-age --draw).
"""

import asyncio
import logging
import multiprocessing
import os
import sys
import threading
import types
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from clip_age.decoding import decode_worker
from clip_age.decoding.images import InvalidImage
from clip_age.decoding.upload_limits import DecodeLimits, PoolLimits
from clip_age.estimation.preprocess import InputSpec
from clip_age.pipeline import KeptPhoto, Prepared
from clip_age.request_options import FaceRequest

log = logging.getLogger(__name__)


class DecodeFailed(RuntimeError):
    """A worker died, overran its deadline or its memory: the upload cannot be used as sent."""


class Busy(DecodeFailed):
    """No decode worker came free in time: the request may succeed if sent again later."""


class DecodePool:
    """A fixed number of decode workers shared by the concurrent requests of one event loop."""

    def __init__(
        self,
        spec: InputSpec,
        detector_model: Path | None,
        decode_limits: DecodeLimits,
        limits: PoolLimits,
    ) -> None:
        self._config = decode_worker.WorkerConfig(spec, detector_model, decode_limits, limits.memory_bytes)
        self._limits, self._decode_limits = limits, decode_limits
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["clip_age.decoding.decode_worker"])
        self._closed = False
        # Idle workers. Made on the event loop at the first request (setup runs outside it).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Queue[_Worker] | None = None
        self._started = [_Worker(self._context, self._config) for _ in range(limits.workers)]

    async def prepare(
        self,
        path: str,
        faces: FaceRequest | None,
        started: float | None = None,
        keep_side: int | None = None,
    ) -> Prepared:
        """Model rows for the photo at path (a file this server made for the request).

        started is when the request arrived (the event loop's clock; default now): its deadline
        covers the wait for a worker as well as the decode. keep_side: also the photo, at most
        that many pixels on its longer side (made smaller within the deadline too)."""
        loop = asyncio.get_running_loop()
        deadline = (loop.time() if started is None else started) + self._limits.timeout_s
        worker = await self._acquire(min(self._limits.queue_timeout_s, deadline - loop.time()))
        size = _size(path)
        allowance = self._limits.decode_allowance_s(size, self._decode_limits.max_upload_bytes)
        budget = min(allowance, deadline - loop.time())
        try:
            status, payload, retire = await worker.run((path, faces, keep_side), budget)
        except asyncio.CancelledError:
            # The prediction was cancelled: stop its decode now, not when it would have finished.
            self._replace(worker, "its request was stopped")
            raise
        except _Overran:
            self._replace(worker, "it overran its deadline")
            raise DecodeFailed(
                f"Decoding the photo took longer than {allowance:.3g} s, the limit for a file of "
                f"{size / 1e6:.2g} MB (DECODE_TIMEOUT_S). "
                "Send a smaller or simpler photo: an ordinary JPEG or PNG."
            ) from None
        except _Died:
            self._replace(worker, "it died")
            raise DecodeFailed(
                "The photo could not be decoded: the decoder stopped on it. Export or save the "
                "photo again as an ordinary JPEG or PNG and re-upload it."
            ) from None
        if retire:
            self._replace(worker, "it held on to memory")
        else:
            self._release(worker)
        if status == "refused":
            raise InvalidImage(payload)
        if status == "failed":
            raise DecodeFailed(payload)
        return payload

    def close(self) -> None:
        self._closed = True
        workers = list(self._started)
        while self._idle is not None and not self._idle.empty():
            workers.append(self._idle.get_nowait())
        for worker in workers:
            worker.kill()

    async def _acquire(self, wait_s: float) -> "_Worker":
        """An idle worker, waiting at most wait_s (first come, first served); else Busy."""
        if self._idle is None:
            self._loop, self._idle = asyncio.get_running_loop(), asyncio.Queue()
            for worker in self._started:
                self._idle.put_nowait(worker)
            self._started = []
        give_up = self._loop.time() + wait_s
        while True:
            try:
                worker = self._idle.get_nowait()
            except asyncio.QueueEmpty:
                worker = None
            try:
                if worker is None:
                    worker = await asyncio.wait_for(self._idle.get(), give_up - self._loop.time())
            except TimeoutError:
                raise Busy(
                    f"The server is busy with other photos and could not start on this one within "
                    f"{self._limits.queue_timeout_s:g} s (DECODE_QUEUE_TIMEOUT_S). Retry in a few seconds."
                ) from None
            if worker.alive():
                return worker
            # Killed while idle (by the kernel's OOM killer, say): no request should pay for it.
            self._replace(worker, "it had died while idle")

    def _release(self, worker: "_Worker") -> None:
        """Give a worker back; callable from any thread."""
        if self._closed:
            worker.kill()
        else:
            self._loop.call_soon_threadsafe(self._idle.put_nowait, worker)

    def _replace(self, worker: "_Worker", why: str) -> None:
        log.info("Replacing a decode worker: %s.", why)

        def replace() -> None:
            worker.kill()
            if not self._closed:
                self._release(_Worker(self._context, self._config))

        # Killing and starting processes takes milliseconds: off the event loop and off the
        # request's time.
        threading.Thread(target=replace, name="decode-replace", daemon=True).start()


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # the worker words what is wrong with it


class _Overran(Exception):
    pass


class _Died(Exception):
    pass


class _Worker:
    def __init__(self, context, config: "decode_worker.WorkerConfig") -> None:
        parent, child = context.Pipe()
        self._process = context.Process(target=decode_worker.serve, args=(child, config), daemon=True)
        with _callers_main_hidden():
            self._process.start()
        child.close()
        self._connection: Connection = parent
        # The worker answers once it has set its memory cap and loaded the face detector.
        if not parent.poll(60) or parent.recv() != decode_worker.READY:
            self.kill()
            raise RuntimeError("A decode worker did not start.")

    async def run(self, job: tuple, timeout_s: float) -> tuple:
        """The worker's answer: (status, payload, retire). Raises _Overran or _Died.

        The event loop itself waits on the pipe (no thread hop), and the model's rows arrive
        as raw bytes after a small header (pickling an array costs five times more).
        """
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        fd = self._connection.fileno()
        try:
            self._connection.send(job)
            loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
            try:
                await asyncio.wait_for(readable, timeout_s)
            except TimeoutError:
                raise _Overran() from None
            finally:
                loop.remove_reader(fd)
            status, payload, retire = self._connection.recv()
            if status == "ok":
                shape, faces, kept = payload
                pixels = np.frombuffer(self._connection.recv_bytes(), dtype=np.uint8).reshape(shape)
                photo = None
                if kept is not None:
                    photo_shape, scale = kept
                    photo_pixels = np.frombuffer(self._connection.recv_bytes(), dtype=np.uint8)
                    photo = KeptPhoto(photo_pixels.reshape(photo_shape), scale)
                payload = Prepared(pixels.copy(), faces, photo)  # the rows writable, for torch
            return status, payload, retire
        except (EOFError, OSError):
            raise _Died() from None

    def alive(self) -> bool:
        return self._process.is_alive()

    def kill(self) -> None:
        """Stop the process; the pipe closes once nothing waits on it any more."""
        self._process.kill()
        self._process.join(timeout=5)


_MAIN_SWAP = threading.Lock()


@contextmanager
def _callers_main_hidden():
    """Multiprocessing makes every new process import the caller's main module again (a tool
    run with `python -m`, a console script): seconds of torch imports per worker, and torch in a
    process meant to hold only the decoders. The worker needs nothing from it, so it is started
    as if the caller had no main module. The lock keeps two starting threads from swapping twice;
    a caller without a main file or module (the Cog worker, `python -c`) is left alone."""
    with _MAIN_SWAP:
        main = sys.modules["__main__"]
        if getattr(main, "__file__", None) is None and getattr(main, "__spec__", None) is None:
            yield
            return
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main
