"""Group the images of requests that arrive together into one forward pass."""

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from clip_age.estimation.batch_split import split_batch

Result = TypeVar("Result")
_STOP = object()


@dataclass(frozen=True)
class Batched(Generic[Result]):
    """One request's results, and how many rows the forward pass that computed them held."""

    results: list[Result]
    batch_rows: int


@dataclass
class _Request(Generic[Result]):
    rows: np.ndarray
    future: "Future[Batched[Result]]"


class MicroBatcher(Generic[Result]):
    """Runs `predict_rows` on one worker thread over the rows of many requests at once.

    A request is an array of rows (one per image or face) and gets back one result per row.
    The worker never waits for company: it takes whatever is queued when it becomes free (up to
    max_rows), so a lone request runs at once and requests that arrive while a batch runs share
    the next one.
    """

    def __init__(self, predict_rows: Callable[[np.ndarray], Sequence[Result]], max_rows: int = 64) -> None:
        self._predict_rows = predict_rows
        self._max_rows = max_rows
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._held: _Request | None = None
        self._thread = threading.Thread(target=self._work, name="micro-batcher", daemon=True)
        self._thread.start()

    def submit(self, rows: np.ndarray) -> "Future[Batched[Result]]":
        future: Future[Batched[Result]] = Future()
        if len(rows) == 0:
            future.set_result(Batched([], 0))
        else:
            self._queue.put(_Request(rows, future))
        return future

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def _work(self) -> None:
        while True:
            first = self._held or self._queue.get()
            self._held = None
            if first is _STOP:
                return
            batch, stop = self._gather(first)
            self._run(batch)
            if stop:
                return

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        batch, count = [first], len(first.rows)
        while count < self._max_rows:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            if count + len(item.rows) > self._max_rows:
                self._held = item  # first in the next batch, so no request waits behind later ones
                break
            batch.append(item)
            count += len(item.rows)
        return batch, False

    def _run(self, batch: list[_Request]) -> None:
        # A request cancelled while it waited (its client went away) is dropped; the others can
        # no longer be cancelled once this returns True, so setting their results is safe.
        batch = [request for request in batch if request.future.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            results = self._predict_rows(np.concatenate([request.rows for request in batch]))
            split = split_batch(results, [len(request.rows) for request in batch])
        # Whatever broke the forward pass is each waiting request's answer; the worker lives on.
        except Exception as error:
            for request in batch:
                request.future.set_exception(error)
            return
        for request, own in zip(batch, split, strict=True):
            request.future.set_result(Batched(own, len(results)))
