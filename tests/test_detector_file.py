"""The face detector comes one way, as the CLIP weights do: cog.yaml's build step and `clip-age
download` (or `predict --faces` on first use) fetch it, check its sha256 and leave it where the
default FACE_DETECTOR_MODEL points. Fetched here from a server on loopback."""

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clip_age import cli
from clip_age.decoding import detector_file
from clip_age.settings import default_face_detector
from tests.conftest import EXAMPLES, REPO
from tests.fake_hub import FakeHub
from tests.test_download import BASH, image_path

KEY = f"opencv/opencv_zoo/{detector_file.NAME}"


@pytest.fixture
def zoo(yunet_model):
    """(server, url): the detector file served on loopback, and its URL there."""
    with FakeHub({KEY: yunet_model.read_bytes()}) as server:
        yield server, f"{server.url}/opencv/opencv_zoo/resolve/main/{detector_file.NAME}"


@pytest.fixture
def bad_zoo(yunet_model):
    """A server whose copy is corrupted on the way."""
    with FakeHub({KEY: yunet_model.read_bytes()}, corrupt=frozenset({KEY})) as server:
        yield server, f"{server.url}/opencv/opencv_zoo/resolve/main/{detector_file.NAME}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_pinned_release_is_opencvs_yunet_2026may():
    assert detector_file.SHA256 == "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"
    assert detector_file.SIZE == 229_738
    assert detector_file.URL.startswith("https://github.com/opencv/opencv_zoo/")


def test_fetch_checks_the_file_and_fetches_it_once(zoo, tmp_path):
    server, url = zoo
    target = tmp_path / "cache" / detector_file.NAME
    assert detector_file.fetch(target, url) == target
    assert sha256(target) == detector_file.SHA256
    detector_file.fetch(target, url)
    assert len(server.requests) == 1  # a verified copy is not fetched again
    assert [path.name for path in target.parent.iterdir()] == [detector_file.NAME]


def test_a_corrupted_download_is_refused_and_nothing_is_left(bad_zoo, tmp_path):
    _, url = bad_zoo
    with pytest.raises(
        detector_file.DetectorDownloadError, match="is not YuNet 2026may .* Nothing was saved"
    ):
        detector_file.fetch(tmp_path / detector_file.NAME, url)
    assert list(tmp_path.iterdir()) == []


def build_step() -> str:
    [step] = [
        step for step in yaml.safe_load((REPO / "cog.yaml").read_text())["build"]["run"] if "yunet" in step
    ]
    return step


def test_the_build_step_fetches_the_same_release():
    step = build_step()
    assert step.count(detector_file.URL) == 1 and detector_file.SHA256 in step


@pytest.mark.parametrize("corrupt", [False, True])
def test_the_build_step_puts_the_checked_file_where_the_default_points(zoo, bad_zoo, tmp_path, corrupt):
    _, url = bad_zoo if corrupt else zoo
    home = tmp_path / "hf-home"
    env = {**os.environ, "HF_HOME": str(home), "PATH": image_path(tmp_path)}
    env.pop("FACE_DETECTOR_MODEL", None)
    step = build_step().replace(detector_file.URL, url)
    done = subprocess.run([BASH, "-c", step], env=env, capture_output=True, text=True, timeout=120)
    target = default_face_detector({"HF_HOME": str(home)})
    if corrupt:
        assert done.returncode != 0 and "is not the YuNet 2026may release" in done.stderr
        assert not target.exists()
    else:
        assert done.returncode == 0, done.stderr
        assert sha256(target) == detector_file.SHA256


@pytest.fixture
def fresh_cache(zoo, tmp_path, monkeypatch):
    """No FACE_DETECTOR_MODEL and an empty cache folder; the release's URL points at loopback."""
    monkeypatch.delenv("FACE_DETECTOR_MODEL", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(detector_file, "URL", zoo[1])
    return default_face_detector(os.environ)


def test_clip_age_download_fetches_the_detector_for_local_use(fresh_cache, tiny_model_dir, capsys):
    out = io.StringIO()
    assert cli.main(["download", "--model", f"local-dir:{tiny_model_dir}"], out) == 0
    assert sha256(fresh_cache) == detector_file.SHA256
    assert f"{fresh_cache} (0.2 MB): the YuNet face detector" in out.getvalue()


def test_clip_age_download_leaves_a_detector_of_the_users_own_alone(
    fresh_cache, tiny_model_dir, monkeypatch, tmp_path
):
    own = tmp_path / "my-yunet.onnx"
    own.write_bytes(b"mine")
    monkeypatch.setenv("FACE_DETECTOR_MODEL", str(own))
    out = io.StringIO()
    assert cli.main(["download", "--model", f"local-dir:{tiny_model_dir}"], out) == 0
    assert own.read_bytes() == b"mine" and not fresh_cache.exists()
    assert f"{own}: the face detector FACE_DETECTOR_MODEL names, left as it is." in out.getvalue()


@pytest.fixture
def tiny(tiny_model_dir, monkeypatch):
    for name, value in {
        "CLIP_MODEL": f"local-dir:{tiny_model_dir}",
        "CLIP_DEVICE": "cpu",
        "CLIP_CPU_PRECISION": "fp32",
    }.items():
        monkeypatch.setenv(name, value)


def test_predict_faces_fetches_the_detector_on_first_use(fresh_cache, tiny, capsys):
    out = io.StringIO()
    assert cli.main(["predict", "--faces", str(EXAMPLES / "astronaut.png")], out) == 0
    assert '"faces": [{"box"' in out.getvalue()
    assert (
        f"Downloading the YuNet face detector (0.2 MB) into {fresh_cache.parent}" in capsys.readouterr().err
    )
    assert sha256(fresh_cache) == detector_file.SHA256


def test_predict_faces_offline_without_the_detector_says_how_to_get_it(fresh_cache, tiny, capsys):
    status = cli.main(["predict", "--faces", "--offline", str(EXAMPLES / "astronaut.png")])
    [line] = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and not fresh_cache.exists()
    assert line == (
        f"error: Face detection needs the YuNet face detector, not yet at {fresh_cache}; nothing was "
        "downloaded: --offline was given. Run `clip-age download` to fetch it."
    )


def test_a_detector_setting_naming_a_missing_file_says_how_to_get_one(tmp_path, tiny):
    missing = tmp_path / "yunet.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "clip_age", "predict", "--faces", str(EXAMPLES / "astronaut.png")],
        env={**os.environ, "FACE_DETECTOR_MODEL": str(missing)}, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: Face detection is unavailable: no YuNet model at {missing}. Set FACE_DETECTOR_MODEL "
        "to a YuNet .onnx file, or leave it unset and run `clip-age download` to fetch one."
    )
