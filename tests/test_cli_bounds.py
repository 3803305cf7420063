"""The clip-age command and the Python API decode untrusted files with the server's bounds: the
same header checks and MAX_* limits, a deadline and a memory cap per photo, in worker processes;
and with CLIP on a CPU the workers never decode while the model runs."""

import io
import json
import os
import struct
import subprocess
import sys
import time

import pytest

import clip_age
from clip_age import cli
from clip_age.decoding import bulk_loader
from clip_age.decoding.decode_pool import DecodeFailed, DecodePool
from clip_age.decoding.images import InvalidImage
from tests import hostile_files as hostile
from tests.cog_server import _descendants, _parent
from tests.conftest import EXAMPLES, REPO


def bmp_rle8_bomb(width: int = 7_000_000, height: int = 16) -> bytes:
    """124 bytes: one pixel a row, then an end-of-line escape, which Pillow's RLE decoder pads
    to the full width in Python (47 s and 585 MB in process on a loaded 2-core VM)."""
    rows = b"\x01\x00\x00\x00" * height + b"\x00\x01"
    palette = b"\x00\x00\x00\x00"
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rows), 2835, 2835, 1, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + palette + rows


def predict(*args: str) -> tuple[int, list[dict]]:
    out = io.StringIO()
    status = cli.main(["predict", *args], out)
    return status, [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_command_applies_the_servers_limit_settings(model, monkeypatch):
    monkeypatch.setenv("MAX_MEGAPIXELS", "0.25")
    status, [coffee, astronaut] = predict(str(EXAMPLES / "coffee.png"), str(EXAMPLES / "astronaut.png"))
    assert status == 1
    assert "age" in coffee  # 600x400: 0.24 megapixels
    assert astronaut["error"].startswith("The image is 512x512 pixels (0.3 megapixels); the limit is 0.25")


def test_the_python_api_applies_them_to_paths_and_bytes(model, monkeypatch):
    from PIL import Image

    estimator = clip_age.load()
    monkeypatch.setenv("MAX_UPLOAD_MB", "0.01")  # 10 KB
    photo = EXAMPLES / "astronaut.png"
    for source in (photo, str(photo), photo.read_bytes()):
        with pytest.raises(InvalidImage, match=r"MAX_UPLOAD_MB"):
            clip_age.predict(estimator, [source])
    # A PIL image is already decoded: only the pixel limits apply to it, here, in process.
    [answer] = clip_age.predict(estimator, [Image.open(photo)])
    assert 1 <= answer.age <= 99


def test_the_api_keeps_its_decode_workers_from_one_call_to_the_next(model, monkeypatch):
    def decode_workers() -> set[int]:
        """This process's decode workers: the children of its own forkserver (a Cog server
        started by another test has one of its own, further down)."""
        ours = os.getpid()
        return {pid for pid in _descendants(ours) if _parent(_parent(pid) or 0) == ours}

    estimator = clip_age.load()
    before = decode_workers()
    monkeypatch.setenv("MAX_MEGAPIXELS", "49")  # settings no earlier call used: workers of their own
    clip_age.predict(estimator, [EXAMPLES / "coffee.png"])
    kept = decode_workers() - before
    clip_age.predict(estimator, [EXAMPLES / "coffee.png", EXAMPLES / "astronaut_face.jpg"])
    assert kept and decode_workers() - before == kept
    monkeypatch.setenv("MAX_MEGAPIXELS", "50")  # other limits: other workers, and the kept ones stop
    clip_age.predict(estimator, [EXAMPLES / "coffee.png"])
    assert decode_workers() - before and not decode_workers() & kept


def test_a_slow_bomb_gets_an_error_row_at_the_deadline_and_the_run_goes_on(model, tmp_path, monkeypatch):
    """A 350 KB PNG of 119 megapixels passes every header check and takes seconds to decode."""
    (tmp_path / "slow.png").write_bytes(hostile.png_flat())
    monkeypatch.setenv("DECODE_TIMEOUT_S", "0.3")
    started = time.perf_counter()
    status, [bomb, coffee] = predict(str(tmp_path / "slow.png"), str(EXAMPLES / "coffee.png"))
    elapsed = time.perf_counter() - started
    assert status == 1
    assert bomb["error"].startswith(
        "Decoding the photo took longer than 0.3 s, the limit for a file of 0.35 MB (DECODE_TIMEOUT_S)."
    )
    assert "age" in coffee
    assert elapsed < 15


@pytest.fixture(scope="module")
def memory_bomb() -> bytes:
    """A 201 KB TIFF of 64x64 pixels whose one tile is 8192x8192 RGB: 200 MB to decode."""
    return hostile.tiff_flat(64, 64, "RGB8", tile=(8192, 8192))


def test_a_memory_bomb_gets_an_error_row_at_the_memory_cap(model, tmp_path, monkeypatch, memory_bomb):
    (tmp_path / "tile.tif").write_bytes(memory_bomb)
    monkeypatch.setenv("DECODE_MEMORY_MB", "100")
    status, [bomb, coffee] = predict(str(tmp_path / "tile.tif"), str(EXAMPLES / "coffee.png"))
    assert status == 1
    # Pillow's TIFF decoder reports the failed allocation as a decoder error, so the message is
    # the one for a damaged file; in process, with no cap, the same file decodes.
    assert "age" not in bomb and bomb["error"].startswith("The TIFF image is truncated or corrupt")
    assert "age" in coffee


def test_with_clip_on_a_cpu_photos_decode_only_while_the_model_waits(estimator, monkeypatch):
    """The threads rule (BENCHMARKS.md): a batch decodes after the model has finished the last."""
    events: list[str] = []
    original = DecodePool.prepare

    async def recorded(self, path, *args, **kwargs):
        events.append(f"decode {path.rsplit('/', 1)[-1]}")
        return await original(self, path, *args, **kwargs)

    monkeypatch.setattr(DecodePool, "prepare", recorded)
    photos = [str(EXAMPLES / name) for name in ("coffee.png", "astronaut.png", "astronaut_face.jpg")]
    with bulk_loader.BulkDecoder(estimator.input_spec, estimator.device, workers=2) as decoder:
        for pixels, _ in decoder.batches(photos, batch_size=1):
            events.append("model starts")
            estimator.predict_pixels(pixels)
            time.sleep(0.3)  # room for a worker that had been given the next photo to start it
            events.append("model ends")
    assert events == [
        "decode coffee.png", "model starts", "model ends",
        "decode astronaut.png", "model starts", "model ends",
        "decode astronaut_face.jpg", "model starts", "model ends",
    ]  # fmt: skip


def test_the_api_raises_the_decode_failure(model, tmp_path, monkeypatch):
    (tmp_path / "slow.png").write_bytes(hostile.png_flat())
    monkeypatch.setenv("DECODE_TIMEOUT_S", "0.3")
    with pytest.raises(DecodeFailed, match=r"longer than 0.3 s"):
        clip_age.predict(clip_age.load(), [tmp_path / "slow.png"])


@pytest.mark.slow
def test_two_bombs_finish_within_the_default_deadline(model, tmp_path):
    """Default settings, the real command: a 124-byte RLE BMP that took 24-47 s in process and a
    783 KB TIFF whose one tile took 825 MB each get an error row, refused from their headers."""
    (tmp_path / "a.bmp").write_bytes(bmp_rle8_bomb())
    (tmp_path / "b.tif").write_bytes(hostile.tiff_flat(64, 64, "RGB8", tile=(16384, 16384)))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "clip_age", "predict", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 1, done.stderr
    assert [row["path"].rsplit("/", 1)[-1] for row in rows] == ["a.bmp", "b.tif"]
    assert "which is not supported" in rows[0]["error"], rows
    assert "(MAX_MEGAPIXELS)" in rows[1]["error"], rows
    print(f"\nclip-age predict, a 124-byte RLE BMP and a 783 KB tiled TIFF: {elapsed:.1f} s; {rows[1]}")
    assert elapsed < 25


def test_decode_workers_never_import_the_callers_script(tmp_path):
    """Multiprocessing re-imports the caller's main module in each new process; for a script that
    imports torch (tools/bench.py) that cost seconds per worker. A script that leaves a mark when
    imported under another name starts a pool, runs one photo, and must find no mark."""
    mark = tmp_path / "imported"
    script = tmp_path / "caller.py"
    script.write_text(
        "import asyncio, pathlib\n"
        "if __name__ != '__main__':\n"
        f"    pathlib.Path({str(mark)!r}).write_text(__name__)\n"
        "else:\n"
        "    from clip_age.decoding.decode_pool import DecodePool\n"
        "    from clip_age.decoding.upload_limits import DecodeLimits, PoolLimits\n"
        "    from clip_age.estimation.preprocess import InputSpec\n"
        "    pool = DecodePool(InputSpec(32), None, DecodeLimits(), PoolLimits(workers=1))\n"
        f"    prepared = asyncio.run(pool.prepare({str(EXAMPLES / 'coffee.png')!r}, None))\n"
        "    pool.close()\n"
        "    print(prepared.pixels.shape)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 32, 32, 3)"
    assert not mark.exists(), f"a decode worker imported the caller's script as {mark.read_text()}"
