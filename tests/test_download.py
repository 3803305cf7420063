"""Fetching weights: `clip-age download` and the image build's step, against a Hugging Face Hub
on loopback. Both must leave the files where setup looks, and refuse a corrupted one."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.fake_hub import FakeHub, model_files

pytestmark = pytest.mark.slow

B32 = "timm/vit_base_patch32_clip_224.openai/open_clip_model.safetensors"
L14 = "timm/vit_large_patch14_clip_224.openai/open_clip_model.safetensors"
WEIGHTS = os.urandom(300_000)  # what is in the file does not matter to the fetching
BASH = shutil.which("bash")


def image_path(home: Path) -> str:
    """A PATH like the one Cog's CUDA image gives build steps: its Python is named `python3`
    only (there is no `python`). Here python3 is this interpreter, and nothing else is on it."""
    folder = home / "image-bin"
    folder.mkdir(exist_ok=True)
    python3 = folder / "python3"
    python3.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    python3.chmod(0o755)
    return str(folder)


def own_detector(home: Path) -> Path:
    path = home / "my-yunet.onnx"
    path.write_bytes(b"a YuNet model of the user's own")
    return path


def run(command: list[str], hub: FakeHub, home, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "1",  # as in the container: the download must switch it off itself
        "PATH": image_path(Path(home)),
        # A face detector of the user's own: `clip-age download` fetches weights only here
        # (tests/test_detector_file.py fetches the detector).
        "FACE_DETECTOR_MODEL": str(own_detector(Path(home))),
        **env,
    }
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)


def build(step: str, hub: FakeHub, home) -> subprocess.CompletedProcess:
    """A build step exactly as written, run by a shell whose PATH holds python3 only."""
    return run([BASH, "-c", step], hub, home)


def located(hub: FakeHub, home, model: str, pretrained: str) -> str:
    code = f"from clip_age.estimation import weights; print(weights.locate({model!r}, {pretrained!r}).checkpoint)"
    found = run([sys.executable, "-c", code], hub, home)
    assert found.returncode == 0, found.stderr
    return found.stdout.strip()


def test_download_fetches_verifies_and_leaves_the_file_where_setup_looks(tmp_path):
    with FakeHub({B32: WEIGHTS}) as hub:
        done = run(
            [sys.executable, "-m", "clip_age", "download", "--model", "ViT-B-32", "--pretrained", "openai"],
            hub,
            tmp_path,
        )
        assert done.returncode == 0, done.stderr
        path = located(hub, tmp_path, "ViT-B-32", "openai")
    assert open(path, "rb").read() == WEIGHTS
    assert f"{path} (0.3 MB): sha256 matches the Hugging Face Hub's" in done.stdout
    assert f"export CLIP_MODEL=ViT-B-32 CLIP_PRETRAINED=openai HF_HOME={tmp_path}" in done.stdout


def test_download_refuses_and_deletes_a_corrupted_file(tmp_path):
    with FakeHub({B32: WEIGHTS}, corrupt=frozenset({B32})) as hub:
        done = run(
            [sys.executable, "-m", "clip_age", "download", "--model", "ViT-B-32", "--pretrained", "openai"],
            hub,
            tmp_path,
        )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and " is corrupt: its sha256 is " in line and "It was deleted" in line
    assert not list(tmp_path.rglob("blobs/*"))


def test_download_defaults_to_the_configured_model(tmp_path):
    with FakeHub({L14: WEIGHTS}) as hub:
        done = run(
            [sys.executable, "-m", "clip_age", "download"],
            hub,
            tmp_path,
            CLIP_MODEL="ViT-L-14",
            CLIP_PRETRAINED="openai",
        )
        assert done.returncode == 0, done.stderr
        assert located(hub, tmp_path, "ViT-L-14", "openai").endswith("open_clip_model.safetensors")


def test_download_of_an_hf_hub_model_then_setup_offline(tmp_path, tiny_model_dir):
    with FakeHub(model_files(tiny_model_dir, "someone/tiny-clip")) as hub:
        done = run(
            [sys.executable, "-m", "clip_age", "download", "--model", "hf-hub:someone/tiny-clip"],
            hub,
            tmp_path,
        )
        assert done.returncode == 0, done.stderr
        code = "import clip_age; print(clip_age.load('hf-hub:someone/tiny-clip', device='cpu').input_shape)"
        loaded = run([sys.executable, "-c", code], hub, tmp_path)
        fetched = list(hub.requests)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "(224, 224, 3)"
    assert len(fetched) == len(hub.requests)  # setup asked the hub for nothing


def test_download_names_what_it_cannot_fetch(tmp_path):
    with FakeHub({}) as hub:
        wrong_tag = run(
            [sys.executable, "-m", "clip_age", "download", "--model", "ViT-B-32", "--pretrained", "nope"],
            hub,
            tmp_path,
        )
        missing = run(
            [sys.executable, "-m", "clip_age", "download", "--model", "ViT-B-32", "--pretrained", "openai"],
            hub,
            tmp_path,
        )
    assert wrong_tag.returncode == 2 and wrong_tag.stderr.startswith(
        "error: ViT-B-32 has no weights tagged 'nope'; its tags: openai, "
    )
    assert missing.returncode == 2 and missing.stderr.startswith(
        "error: Could not download ViT-B-32 / openai: "
    )
    assert "Traceback" not in wrong_tag.stderr + missing.stderr


def test_download_list_and_local_dir(tmp_path, tiny_model_dir):
    with FakeHub({}) as hub:
        listed = run([sys.executable, "-m", "clip_age", "download", "--list"], hub, tmp_path)
        local = run(
            [sys.executable, "-m", "clip_age", "download", "--model", f"local-dir:{tiny_model_dir}"],
            hub,
            tmp_path,
        )
    assert any(line.split() == ["ViT-L-14", "openai"] for line in listed.stdout.splitlines())
    assert (
        local.stdout.splitlines()[0]
        == f"Nothing to download: local-dir:{tiny_model_dir} is read from its folder."
    )


def build_step(config: str | None = None) -> str:
    """The build step that puts the weights into the image: cog.yaml's, or a README recipe's."""
    steps = yaml.safe_load(config or (REPO / "cog.yaml").read_text())["build"]["run"]
    [command] = [step for step in steps if "open_clip" in step]
    return command


def readme_vit_b_32_recipe() -> str:
    section = (REPO / "README.md").read_text().split("To run the **original model's ViT-B/32**", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_image_builds_weights_step_leaves_them_where_setup_looks(tmp_path):
    with FakeHub({L14: WEIGHTS}) as hub:
        built = build(build_step(), hub, tmp_path)
        assert built.returncode == 0, built.stderr
        path = located(hub, tmp_path, "ViT-L-14", "openai")
    assert open(path, "rb").read() == WEIGHTS
    assert built.stdout.startswith("verified ")


def test_the_image_builds_weights_step_fails_on_a_corrupted_file(tmp_path):
    with FakeHub({L14: WEIGHTS}, corrupt=frozenset({L14})) as hub:
        built = build(build_step(), hub, tmp_path)
    assert built.returncode != 0
    assert "is not the one the Hub lists" in built.stderr


def test_the_readmes_vit_b_32_recipe_builds_what_setup_loads(tmp_path):
    recipe = yaml.safe_load(readme_vit_b_32_recipe())
    assert recipe["environment"] == ["CLIP_MODEL=ViT-B-32"]
    with FakeHub({B32: WEIGHTS}) as hub:
        built = build(build_step(readme_vit_b_32_recipe()), hub, tmp_path)
        assert built.returncode == 0, built.stderr
        assert open(located(hub, tmp_path, "ViT-B-32", "openai"), "rb").read() == WEIGHTS
