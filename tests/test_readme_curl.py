"""The README's curl command for your own photo, run as written against the real Cog server with
a multi-megabyte JPEG (a body on the command line fails from about 96 KB)."""

import json
import subprocess

import numpy as np
from PIL import Image

from tests.conftest import EXAMPLES, REPO, data_uri


def readme_curl_command() -> str:
    section = (REPO / "README.md").read_text().split("Your own photo, of any size", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def big_photo(path) -> int:
    """The astronaut in a 2400x2400 frame of noise at JPEG quality 95: some 6 MB."""
    noise = np.random.default_rng(0).integers(0, 256, (2400, 2400, 3), dtype=np.uint8)
    photo = Image.fromarray(noise)
    photo.paste(Image.open(EXAMPLES / "astronaut.png").convert("RGB"), (900, 900))
    photo.save(path, quality=95)
    return path.stat().st_size


def test_the_readmes_curl_answers_for_a_photo_of_several_megabytes(cog_server, tmp_path):
    size = big_photo(tmp_path / "photo.jpg")
    assert size > 5_000_000
    command = readme_curl_command()
    assert "http://localhost:5000/predictions" in command and "photo.jpg" in command
    # A request right after READY can meet a 409 with a slot free; curl would not retry it.
    cog_server.predict({"image": data_uri((EXAMPLES / "astronaut_face.jpg").read_bytes())})
    done = subprocess.run(
        ["bash", "-c", command.replace("http://localhost:5000", cog_server.url)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "succeeded", answer.get("error")
    assert 1 <= answer["output"]["age"] <= 99
    # detect_faces arrived, and so did the photo: the astronaut's face is where she was pasted.
    assert any(900 <= x and x + w <= 1412 and 900 <= y and y + h <= 1412 for x, y, w, h in (
        face["box"] for face in answer["output"]["faces"]
    ))  # fmt: skip
