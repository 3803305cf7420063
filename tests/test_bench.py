"""tools/bench.py's quick mode runs on the CPU (as CI does) and prints every section."""

import re
import subprocess
import sys

import pytest

from clip_age.estimation import cpu_runtime
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_quick_benchmark_prints_every_table(tmp_path):
    out = tmp_path / "report.md"
    printed = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--quick", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    report = out.read_text()
    assert report in printed.stdout
    assert report.startswith("# bench.py on ")
    for title in [
        "### Per request, in process: tiny (median of 3, ms)",
        "### CLIP image tower alone: tiny, ",
        "### Per request with one core busy with other work: tiny, 256 px face JPEG (median of 3, ms)",
        "### Agreement with fp32, tiny (same random weights, 16 photo crops)",
        "### Bulk, 16 256 px face JPEGs: tiny",
        "Decode isolation, 256 px face JPEG: ",
        "### Faces, 1920x1080 JPEG with one face: tiny",
        "### Setup, process start to READY (Cog server, weights on local disk, median of 1 taking turns): tiny",
        "### HTTP through the Cog server, 256 px face JPEG: tiny, torch on one thread per core",
    ]:
        assert title in report
    for photo in ("256 px face JPEG", "1920x1440 JPEG", "4032x3024 JPEG"):
        assert re.search(rf"\| {photo} \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", report)
    assert re.search(r"\| int8 \| 0\.\d+ \| 0\.\d+ \| [\d.]+% \| [\d.]+ \|", report)
    assert re.search(r"\| 4 \| 16 \| [\d.]+ \| [\d.]+ \| [\d,.]+ \| [\d.]+x \|", report)
    assert re.search(r"\| auto \| torch \| [\d.]+ \| [\d.]+ \| 1\.00 \|", report)
    # One client over HTTP against the same request in process, measured taking turns.
    assert re.search(r"\| 1 \| 4 \| [\d.]+ \| [\d.]+ \| [\d,.]+ \| [\d.]+x \| [\d.]+ \|", report)
    assert "ours in process, taking turns with the one client's requests: " in report
    assert re.search(r"\| 1 \| [\d.]+ \| .* \| [\d.]+ \| \d+% \|", report)  # the roofline fraction
    assert "clip-age predict, bf16, one core busy" in report or "no native bf16" in report
    if cpu_runtime.installed():
        assert "CPU runtime, tiny: setup " in report and "| auto | auto | " in report
