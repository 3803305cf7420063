import threading
import time

import numpy as np
import pytest

from clip_age.batcher import MicroBatcher


class Recorder:
    """predict_rows that returns each row's first value and remembers the batches it saw."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.batches: list[int] = []
        self.delay_s, self.fail = delay_s, fail

    def __call__(self, rows: np.ndarray) -> list[int]:
        self.batches.append(len(rows))
        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("GPU fell over")
        return [int(row[0]) for row in rows]


def rows(*values: int) -> np.ndarray:
    return np.array([[v] for v in values])


def test_each_request_gets_its_own_rows_back():
    recorder = Recorder(delay_s=0.02)
    batcher = MicroBatcher(recorder, max_rows=64, window_s=0.005)
    futures = [batcher.submit(rows(i, i + 100)) for i in range(10)]
    assert [f.result(5).results for f in futures] == [[i, i + 100] for i in range(10)]
    batcher.close()


def test_requests_that_arrive_together_share_a_batch():
    recorder = Recorder(delay_s=0.05)
    batcher = MicroBatcher(recorder, max_rows=64, window_s=0.005)
    first = batcher.submit(rows(0))  # starts at once, alone
    time.sleep(0.01)
    others = [batcher.submit(rows(i)) for i in range(1, 9)]  # arrive while the first runs
    assert first.result(5).results == [0]
    assert [f.result(5).results for f in others] == [[i] for i in range(1, 9)]
    assert recorder.batches == [1, 8]
    assert first.result().batch_rows == 1
    assert {f.result().batch_rows for f in others} == {8}
    batcher.close()


def test_a_lone_request_does_not_wait_for_the_window():
    batcher = MicroBatcher(Recorder(), max_rows=64, window_s=1.0)
    started = time.perf_counter()
    assert batcher.submit(rows(7)).result(5).results == [7]
    assert time.perf_counter() - started < 0.5
    batcher.close()


def test_batches_never_exceed_max_rows_and_keep_requests_whole():
    recorder = Recorder(delay_s=0.02)
    batcher = MicroBatcher(recorder, max_rows=5, window_s=0.01)
    blocker = batcher.submit(rows(0))
    time.sleep(0.005)
    futures = [batcher.submit(rows(*range(10 * i, 10 * i + 3))) for i in range(1, 5)]  # 3 rows each
    blocker.result(5)
    assert [f.result(5).results for f in futures] == [list(range(10 * i, 10 * i + 3)) for i in range(1, 5)]
    assert recorder.batches == [1, 3, 3, 3, 3]
    batcher.close()


def test_a_request_larger_than_max_rows_runs_alone():
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_rows=2, window_s=0.0)
    assert batcher.submit(rows(1, 2, 3)).result(5).results == [1, 2, 3]
    batcher.close()


def test_a_failing_batch_fails_its_requests_and_the_worker_lives_on():
    recorder = Recorder(fail=True)
    batcher = MicroBatcher(recorder, max_rows=8, window_s=0.0)
    with pytest.raises(RuntimeError, match="GPU fell over"):
        batcher.submit(rows(1)).result(5)
    recorder.fail = False
    assert batcher.submit(rows(2)).result(5).results == [2]
    batcher.close()


def test_no_rows_no_work():
    recorder = Recorder()
    batcher = MicroBatcher(recorder)
    assert batcher.submit(rows()[:0]).result(1).results == []
    assert recorder.batches == []
    batcher.close()


def test_many_threads_at_once_all_answered_correctly():
    batcher = MicroBatcher(Recorder(delay_s=0.001), max_rows=16, window_s=0.001)
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


def test_a_request_cancelled_while_waiting_is_dropped_and_the_worker_lives_on():
    recorder = Recorder(delay_s=0.05)
    batcher = MicroBatcher(recorder, max_rows=8, window_s=0.0)
    busy = batcher.submit(rows(1))
    time.sleep(0.01)
    abandoned = batcher.submit(rows(2))
    assert abandoned.cancel()
    assert busy.result(5).results == [1]
    assert batcher.submit(rows(3)).result(5).results == [3]
    assert recorder.batches == [1, 1]  # the cancelled request never reached the model
    batcher.close()
