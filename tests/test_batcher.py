"""The micro-batcher, with the forward pass held on an event so every ordering is forced, not timed."""

import threading

import numpy as np
import pytest

from clip_age.estimation.batcher import MicroBatcher


class GatedModel:
    """predict_rows that returns each row's first value, records the batches it saw, and (when
    gated) holds each batch until the test releases it."""

    def __init__(self, gated: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = False
        self.started = threading.Semaphore(0)
        self._release = threading.Semaphore(0)
        self._gated = gated

    def __call__(self, rows: np.ndarray) -> list[int]:
        self.batches.append([int(row[0]) for row in rows])
        self.started.release()
        if self._gated:
            self._release.acquire()
        if self.fail:
            raise RuntimeError("GPU fell over")
        return [int(row[0]) for row in rows]

    def wait_until_running(self) -> None:
        assert self.started.acquire(timeout=5), "the batch never started"

    def release(self, batches: int = 1) -> None:
        for _ in range(batches):
            self._release.release()


def rows(*values: int) -> np.ndarray:
    return np.array([[v] for v in values])


@pytest.fixture
def gated():
    model = GatedModel(gated=True)
    batcher = MicroBatcher(model, max_rows=64)
    yield model, batcher
    model.release(100)
    batcher.close()


def test_a_lone_request_runs_at_once_and_gets_its_own_rows(gated):
    model, batcher = gated
    future = batcher.submit(rows(7, 8))
    model.wait_until_running()
    model.release()
    assert future.result(5).results == [7, 8]
    assert future.result().batch_rows == 2


def test_requests_queued_while_a_batch_runs_share_the_next_one(gated):
    model, batcher = gated
    first = batcher.submit(rows(0))
    model.wait_until_running()  # the first runs alone; the others queue behind it
    others = [batcher.submit(rows(i, i + 100)) for i in range(1, 9)]
    model.release(2)
    assert first.result(5).results == [0]
    assert [f.result(5).results for f in others] == [[i, i + 100] for i in range(1, 9)]
    assert model.batches == [[0], [v for i in range(1, 9) for v in (i, i + 100)]]
    assert {f.result().batch_rows for f in others} == {16}


def test_batches_never_exceed_max_rows_keep_requests_whole_and_in_order():
    model = GatedModel(gated=True)
    batcher = MicroBatcher(model, max_rows=5)
    blocker = batcher.submit(rows(0))
    model.wait_until_running()
    futures = [batcher.submit(rows(*range(10 * i, 10 * i + 3))) for i in range(1, 5)]  # 3 rows each
    model.release(5)
    blocker.result(5)
    assert [f.result(5).results for f in futures] == [list(range(10 * i, 10 * i + 3)) for i in range(1, 5)]
    assert model.batches == [[0]] + [list(range(10 * i, 10 * i + 3)) for i in range(1, 5)]
    batcher.close()


def test_a_request_larger_than_max_rows_runs_alone():
    batcher = MicroBatcher(GatedModel(), max_rows=2)
    assert batcher.submit(rows(1, 2, 3)).result(5).results == [1, 2, 3]
    batcher.close()


def test_a_failing_batch_fails_its_requests_and_the_worker_lives_on():
    model = GatedModel()
    batcher = MicroBatcher(model, max_rows=8)
    model.fail = True
    with pytest.raises(RuntimeError, match="GPU fell over"):
        batcher.submit(rows(1)).result(5)
    model.fail = False
    assert batcher.submit(rows(2)).result(5).results == [2]
    batcher.close()


def test_no_rows_no_work():
    model = GatedModel()
    batcher = MicroBatcher(model)
    assert batcher.submit(rows()[:0]).result(1).results == []
    assert model.batches == []
    batcher.close()


def test_many_threads_at_once_all_answered_correctly():
    batcher = MicroBatcher(GatedModel(), max_rows=16)
    answers = {}

    def client(i: int) -> None:
        answers[i] = batcher.submit(rows(i)).result(10).results

    threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {i: [i] for i in range(64)}
    batcher.close()


def test_a_request_cancelled_while_waiting_is_dropped_and_the_worker_lives_on(gated):
    model, batcher = gated
    busy = batcher.submit(rows(1))
    model.wait_until_running()
    abandoned = batcher.submit(rows(2))
    assert abandoned.cancel()
    model.release(2)
    assert busy.result(5).results == [1]
    assert batcher.submit(rows(3)).result(5).results == [3]
    assert model.batches == [[1], [3]]  # the cancelled request never reached the model
