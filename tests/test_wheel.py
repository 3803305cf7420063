"""What needs a real photo works from an installed wheel, without the repository beside it: the
package ships small copies of the example photos."""

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from clip_age.dev.photos import phone_photo
from tests.conftest import EXAMPLES, REPO
from tests.test_layout import tracked_files

SHIPPED = REPO / "clip_age" / "example_photos"

# Run from the unpacked wheel, in a folder with no repository above it.
FROM_THE_WHEEL = """
import hashlib, json
import clip_age
from clip_age.estimation import cpu_runtime
from clip_age.dev.photos import phone_photo

print(json.dumps({
    "package": clip_age.__file__,
    "probe_photos": [str(path) for path in sorted(cpu_runtime.EXAMPLES.glob("*.jpg"))],
    "phone_photo": hashlib.sha256(phone_photo(1024, 768)).hexdigest(),
}))
"""


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize(
    ("shipped", "example"),
    [
        ("astronaut.jpg", "astronaut.png"),
        ("astronaut_face.jpg", "astronaut_face.jpg"),
        ("coffee.jpg", "coffee.png"),
    ],
)
def test_the_shipped_photos_are_the_examples(shipped, example):
    copy = Image.open(SHIPPED / shipped).convert("RGB")
    original = Image.open(EXAMPLES / example).convert("RGB")
    # JPEG quality 90 keeps about 36 dB; another photo of the same size is near 10 dB.
    assert copy.size == original.size and psnr(copy, original) >= 33


@pytest.mark.slow
def test_a_wheel_has_the_photos_the_dev_helpers_and_the_cpu_probe_use(tmp_path):
    source = tmp_path / "source"
    for path in tracked_files():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, source / path)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", FROM_THE_WHEEL], cwd=elsewhere, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["package"].startswith(str(site))
    assert [path.rsplit("/", 1)[-1] for path in found["probe_photos"]] == sorted(
        path.name for path in SHIPPED.glob("*.jpg")
    )
    assert all(path.startswith(str(site)) for path in found["probe_photos"])
    # The photo a checkout makes, from the same base photo.
    assert found["phone_photo"] == hashlib.sha256(phone_photo(1024, 768)).hexdigest()
