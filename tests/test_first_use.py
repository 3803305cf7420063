"""`clip-age predict examples/` on a machine that has never had the weights: it fetches them once
(a note with size and destination, a progress bar, the sha256 checked), answers, and later runs and
--offline / HF_HUB_OFFLINE=1 never touch the network. The Hub is a stand-in on loopback."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save

from tests.conftest import REPO
from tests.fake_hub import FakeHub

B32 = "timm/vit_base_patch32_clip_224.openai/open_clip_model.safetensors"


def readme_commands() -> list[str]:
    """The commands of the README's first block, as a newcomer types them."""
    section = (REPO / "README.md").read_text().split("## The two commands", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def predict_command() -> list[str]:
    [command] = [c for c in readme_commands() if c.startswith("clip-age predict")]
    return shlex.split(command)


@pytest.fixture(scope="module")
def random_b32() -> bytes:
    """ViT-B-32 with random weights in fp16, as its Hub file (the real one is the same format)."""
    torch.manual_seed(0)
    config = {**open_clip.get_model_config("ViT-B-32"), "quick_gelu": True}
    model = open_clip.model.CLIP(**config).half()
    return save({name: tensor.contiguous() for name, tensor in model.state_dict().items()})


def clip_age(args: list[str], hub: FakeHub, home: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("CLIP_", "HF_"))},
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_XET": "1",
        # The default model is ViT-L-14 (1.7 GB); the original model's ViT-B-32 takes the same path.
        "CLIP_MODEL": "ViT-B-32",
        # Torch serves: exporting, quantising and timing ViT-B-32 for a CPU runtime has nothing to
        # do with fetching (test_cpu_runtime.py covers it) and would write into the user's cache.
        "CLIP_CPU_RUNTIME": "torch",
        **env,
    }
    command = [sys.executable, "-m", "clip_age", *args[1:]]  # `clip-age ...`, run by this interpreter
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)


def test_the_readme_starts_with_an_install_line_and_predict_examples():
    install, predict = readme_commands()
    assert (
        install.startswith("pip install ")
        and "--extra-index-url https://download.pytorch.org/whl/cpu" in install
    )
    assert predict_command() == ["clip-age", "predict", "examples/"]


@pytest.mark.slow
def test_first_predict_fetches_the_weights_once_then_answers_offline(random_b32, tmp_path):
    with FakeHub({B32: random_b32}) as hub:
        # The Hugging Face client draws its bar on a terminal only, or when TQDM_POSITION=-1 asks.
        first = clip_age(predict_command(), hub, tmp_path, TQDM_POSITION="-1")
        assert first.returncode == 0, first.stderr
        fetched = len(hub.requests)
        again = clip_age([*predict_command(), "--offline"], hub, tmp_path)
        assert again.returncode == 0, again.stderr
        assert len(hub.requests) == fetched  # the second run read the cache only
    note = (
        f"Downloading the ViT-B-32 / openai weights ({len(random_b32) / 1e6:.1f} MB) into {tmp_path / 'hub'}."
    )
    assert note in first.stderr.splitlines()[0]
    assert "--offline or HF_HUB_OFFLINE=1 never downloads" in first.stderr.splitlines()[0]
    assert "100%" in first.stderr  # the transfer's progress bar
    assert "sha256 matches the Hugging Face Hub's" in first.stderr
    answers = [json.loads(line) for line in first.stdout.splitlines()]
    assert [Path(a["path"]).name for a in answers] == ["astronaut.png", "astronaut_face.jpg", "coffee.png"]
    assert all(1 <= a["age"] <= 99 for a in answers)
    assert first.stdout == again.stdout
    assert "Downloading" not in again.stderr


def test_offline_never_fetches_and_says_how_to(tmp_path):
    with FakeHub({B32: b"never sent"}) as hub:
        flag = clip_age([*predict_command(), "--offline"], hub, tmp_path)
        variable = clip_age(predict_command(), hub, tmp_path, HF_HUB_OFFLINE="1")
        assert hub.requests == []
    for done, reason in ((flag, "--offline was given"), (variable, "HF_HUB_OFFLINE is on")):
        assert done.returncode == 2
        [line] = done.stderr.strip().splitlines()
        assert "clip-age download --model ViT-B-32 --pretrained openai" in line
        assert line.endswith(f"Nothing was downloaded: {reason}.")


@pytest.mark.slow
def test_a_corrupted_download_is_refused_and_deleted(tmp_path):
    weights = b"\x00" * 1000
    with FakeHub({B32: weights}, corrupt=frozenset({B32})) as hub:
        done = clip_age(predict_command(), hub, tmp_path)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and " is corrupt: its sha256 is " in last
    assert not list(tmp_path.rglob("blobs/*"))


def readme_no_network_command() -> str:
    section = (REPO / "README.md").read_text().split("**Without the network**", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0].strip()


@pytest.mark.slow
def test_the_no_network_try_out_runs_as_written_and_writes_under_the_cache(tmp_path):
    command = readme_no_network_command()
    assert command == "CLIP_MODEL=local-dir:$(python -m clip_age.dev.tiny_models) clip-age predict examples/"
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "examples").symlink_to(REPO / "examples")
    environment = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("CLIP_", "HF_"))},
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
        # `python` and `clip-age` are this environment's, as after the README's install line.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    done = subprocess.run(
        ["bash", "-c", command], cwd=checkout, env=environment, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3 and all(
        1 <= json.loads(line)["age"] <= 99 for line in done.stdout.splitlines()
    )
    assert (tmp_path / "cache" / "clip-age" / "tiny-clip" / "open_clip_config.json").is_file()
    assert sorted(path.name for path in checkout.iterdir()) == ["examples"]  # nothing left in the checkout
