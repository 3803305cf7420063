"""Libraries that narrate on the root logger (open_clip, ONNX Runtime's quantiser), held to
errors while we call them for something their words would misdescribe."""

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def errors_only() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
