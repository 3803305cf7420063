"""Split one forward pass's results back into the photos (or requests) whose rows it held."""

from collections.abc import Sequence
from itertools import accumulate
from typing import TypeVar

Result = TypeVar("Result")


def split_batch(results: Sequence[Result], rows: Sequence[int]) -> list[list[Result]]:
    """results[i] belongs to the row i of the batch; rows[k] is how many rows the k-th photo gave
    (0 for one that failed). Each photo's results, in order. Counts that do not add up to the
    results raise ValueError: a miscount would hand one photo's answers to another."""
    ends = list(accumulate(rows))
    if any(count < 0 for count in rows) or (ends[-1] if ends else 0) != len(results):
        raise ValueError(f"{len(results)} results cannot be split into photos of {list(rows)} rows.")
    return [list(results[end - count : end]) for count, end in zip(rows, ends, strict=True)]
