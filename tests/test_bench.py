"""tools/bench.py's quick mode runs on the CPU (as CI does) and prints every section."""

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_quick_benchmark_prints_every_table(tmp_path):
    out = tmp_path / "report.md"
    printed = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--quick", "--http", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert printed.returncode == 0, printed.stderr
    report = out.read_text()
    assert report in printed.stdout
    assert report.startswith("# bench.py on ")
    for title in [
        "### Per request, in process: tiny",
        "### Batch throughput, preprocessed images: tiny, batch 16",
        "fp16 vs fp32 argmax agreement, tiny",
        "Bulk `clip-age predict` over 32 256 px face JPEGs, tiny",
        "Setup, process start to READY (Cog server, weights on local disk), tiny",
        "### HTTP through the Cog server, 256 px face JPEG: tiny",
        "HTTP overhead, tiny: one-client p50",
    ]:
        assert title in report
    assert re.search(r"\| added by detect_faces \| -?[\d.]+ \|", report)
    for photo in ("256 px face JPEG", "1920x1440 JPEG", "4032x3024 JPEG"):
        assert re.search(rf"\| {photo} \| [\d.]+ \| [\d.]+ \| [\d.]+x \|", report)
    assert re.search(r"\| 4 \| \d+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d,.]+ \| [\d.]+x \|", report)
