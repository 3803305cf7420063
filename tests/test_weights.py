"""Setup finds weights in the Hugging Face cache that the real download code fills (from a Hub on
loopback), open_clip resolves the model and tag there itself, offline, and what is missing is
named with the command that fetches it."""

import os
import shutil
import socket
import subprocess
import sys

import huggingface_hub.constants
import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU

from clip_age.estimation import download, open_clip_model, weights
from clip_age.estimation.estimator import AgeEstimator
from tests import tiny_tag
from tests.conftest import REPO
from tests.fake_hub import FakeHub, model_files

L14 = "timm/vit_large_patch14_clip_224.openai/open_clip_model.safetensors"
B32 = "timm/vit_base_patch32_clip_224.openai/open_clip_model.safetensors"
NOT_A_CHECKPOINT = b"not a checkpoint"


@pytest.fixture(scope="module")
def filled_cache(tmp_path_factory, tiny_model_dir):
    """A Hugging Face cache filled by `download.fetch` from a Hub on loopback: the tiny OpenAI-style
    tag, ViT-L-14 / openai (a placeholder: only located, never loaded), ViT-B-32 / openai (bytes that
    are no checkpoint) and the tiny model as hf-hub:someone/tiny-clip."""
    home = tmp_path_factory.mktemp("hf-home")
    files = {
        **tiny_tag.hub_files(),
        L14: b"ViT-L-14 placeholder",
        B32: NOT_A_CHECKPOINT,
        **model_files(tiny_model_dir, "someone/tiny-clip"),
    }
    pairs = ["ViT-L-14", "openai", "ViT-B-32", "openai", "hf-hub:someone/tiny-clip", ""]
    environment = {name: value for name, value in os.environ.items() if not name.startswith("HF_")}
    with FakeHub(files) as hub:
        environment.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_DISABLE_XET="1")
        fetched = subprocess.run(
            [sys.executable, "-m", "tests.tiny_tag", *pairs],
            cwd=REPO,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert fetched.returncode == 0, fetched.stderr
    return home / "hub"


@pytest.fixture
def cache(filled_cache, monkeypatch):
    """That cache as this process's, with the tiny tag registered in open_clip."""
    tiny_tag.register(monkeypatch.setitem)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(filled_cache))
    return filled_cache


@pytest.fixture
def no_network(monkeypatch):
    """Any connection or name lookup fails, and fails the test even where a caller swallows the
    error (the Hub client falls back to its cache when it cannot connect); the client is online."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] or kwargs)
        raise AssertionError(f"setup reached for the network: {args[1:] or kwargs}")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield
    assert attempts == [], "setup reached for the network"


def image_features(model: torch.nn.Module) -> torch.Tensor:
    torch.manual_seed(0)
    with torch.inference_mode():
        return model.encode_image(torch.randn(2, 3, 224, 224))


def test_an_openai_tag_loads_from_the_cache_as_open_clips_quickgelu_model(cache, no_network, monkeypatch):
    estimator = AgeEstimator(tiny_tag.NAME, "openai", device="cpu", cpu_precision="fp32")
    activations = {type(m) for m in estimator.model.modules() if "GELU" in type(m).__name__}
    assert activations == {QuickGELU}

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # the references, offline
    # open_clip's own model for these weights: the QuickGELU twin it defines for every OpenAI tag.
    reference = open_clip.create_model(f"{tiny_tag.NAME}-quickgelu", "openai")
    torch.testing.assert_close(image_features(estimator.model), image_features(reference))
    # The tag's preprocessing, applied by open_clip.
    assert estimator.model.visual.preprocess_cfg == reference.visual.preprocess_cfg
    assert estimator.input_spec.interpolation == "bilinear"
    assert reference.visual.preprocess_cfg["mean"] == tiny_tag.TAG["mean"]
    # Given the tag alone, open_clip only warns: its GELU model answers differently.
    with pytest.warns(UserWarning, match="QuickGELU mismatch"):
        plain = open_clip.create_model(tiny_tag.NAME, "openai")
    assert not torch.allclose(image_features(plain), image_features(reference), atol=1e-3)


def test_setup_resolves_a_tag_from_the_cache_without_the_network(cache, no_network):
    # The whole setup, the CPU runtime's choice included (cpu_precision "auto").
    estimator = AgeEstimator(tiny_tag.NAME, "openai", device="cpu")
    assert estimator.predict_pixels(torch.zeros(1, 224, 224, 3, dtype=torch.uint8))


def test_the_default_model_is_vit_l_14_with_openai_weights_and_quick_gelu(cache, no_network):
    spec = weights.locate("ViT-L-14", "openai")
    assert (spec.model_name, spec.pretrained, spec.quick_gelu) == ("ViT-L-14", "openai", True)
    assert spec.checkpoint.read_bytes() == b"ViT-L-14 placeholder"
    assert spec.checkpoint.is_relative_to(cache / "models--timm--vit_large_patch14_clip_224.openai")


def test_setup_finds_an_hf_hub_model_in_the_cache_without_the_network(cache, no_network):
    spec = weights.locate("hf-hub:someone/tiny-clip", None)
    assert spec.model_name.startswith(f"local-dir:{cache / 'models--someone--tiny-clip' / 'snapshots'}")
    estimator = AgeEstimator("hf-hub:someone/tiny-clip", None, device="cpu", cpu_precision="fp32")
    assert estimator.input_shape == (224, 224, 3)


def test_missing_weights_name_the_cache_and_the_download_command(tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(weights.WeightsMissing) as raised:
        AgeEstimator("ViT-B-32", "openai", device="cpu")
    assert str(raised.value) == (
        f"The weights of ViT-B-32 / openai are not in the Hugging Face cache ({tmp_path}); setup never "
        "downloads. A Cog image gets them in a build step (cog.yaml). Fetch them once with: "
        "clip-age download --model ViT-B-32 --pretrained openai"
    )


def test_an_hf_hub_model_not_in_the_cache_names_the_download_command(tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(weights.WeightsMissing) as raised:
        weights.locate("hf-hub:someone/elsewhere", None)
    assert str(raised.value) == (
        f"The weights of hf-hub:someone/elsewhere are not in the Hugging Face cache ({tmp_path}); setup "
        "never downloads. A Cog image gets them in a build step (cog.yaml). Fetch them once with: "
        "clip-age download --model hf-hub:someone/elsewhere"
    )


def test_a_cached_file_that_is_not_a_checkpoint_is_explained(cache):
    with pytest.raises(weights.WeightsError) as raised:
        AgeEstimator("ViT-B-32", "openai", device="cpu")
    path = weights.locate("ViT-B-32", "openai").checkpoint
    assert path.read_bytes() == NOT_A_CHECKPOINT
    assert str(raised.value).startswith(f"Could not load CLIP weights {path} for CLIP_MODEL=ViT-B-32: ")


def test_missing_local_dir_is_explained(tmp_path):
    with pytest.raises(weights.WeightsError) as raised:
        weights.locate(f"local-dir:{tmp_path}", "openai")
    assert (
        str(raised.value) == f"CLIP_MODEL=local-dir:{tmp_path}: that folder holds no open_clip_config.json."
    )


def test_a_local_dir_loads_through_the_same_path(tiny_model_dir, no_network):
    spec = weights.locate(f"local-dir:{tiny_model_dir}", "openai")
    assert (spec.pretrained, spec.checkpoint) == (None, None)  # open_clip reads the folder
    assert open_clip_model.create(spec, "cpu", "fp32").visual.preprocess_cfg["size"] == (224, 224)


def test_weights_loaded_without_drawing_random_ones_first_are_open_clips_own(tiny_model_dir, tmp_path):
    ours = open_clip_model.create(weights.locate(f"local-dir:{tiny_model_dir}", None), "cpu", "fp32")
    reference = open_clip.create_model(f"local-dir:{tiny_model_dir}")
    assert ours.state_dict().keys() == reference.state_dict().keys()
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=0, atol=0, msg=name)
    # A folder without a checkpoint keeps open_clip's random init, drawn as open_clip draws it.
    for path in tiny_model_dir.iterdir():
        if path.suffix != ".safetensors":
            shutil.copy(path, tmp_path / path.name)
    torch.manual_seed(0)
    ours = open_clip_model.create(weights.locate(f"local-dir:{tmp_path}", None), "cpu", "fp32")
    torch.manual_seed(0)
    reference = open_clip.create_model(f"local-dir:{tmp_path}")
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=0, atol=0, msg=name)


def test_without_the_image_tower_every_other_weight_is_open_clips_own(tiny_model_dir, tmp_path, monkeypatch):
    spec = weights.locate(f"local-dir:{tiny_model_dir}", None)
    read = []
    real_open = open_clip_model.safetensors.safe_open

    class Recording:
        def __init__(self, *args, **kwargs):
            self.file = real_open(*args, **kwargs)

        def __enter__(self):
            self.file.__enter__()
            return self

        def __exit__(self, *exc):
            return self.file.__exit__(*exc)

        def keys(self):
            return self.file.keys()

        def get_tensor(self, name):
            read.append(name)
            return self.file.get_tensor(name)

    monkeypatch.setattr(open_clip_model.safetensors, "safe_open", Recording)
    ours = open_clip_model.create(spec, "cpu", "fp32", image_tower=False)
    assert read and not [name for name in read if name.startswith("visual.")]
    reference = open_clip.create_model(f"local-dir:{tiny_model_dir}")
    assert isinstance(ours.visual, open_clip_model.ImageTowerElsewhere)
    assert list(ours.visual.parameters()) == []  # nothing of the tower was read or allocated
    assert ours.visual.preprocess_cfg == reference.visual.preprocess_cfg
    kept = {name: value for name, value in reference.state_dict().items() if not name.startswith("visual.")}
    assert ours.state_dict().keys() == kept.keys()
    for name, value in kept.items():
        torch.testing.assert_close(ours.state_dict()[name], value, rtol=0, atol=0, msg=name)
    # A checkpoint in another format is read whole, the way open_clip reads it.
    for path in tiny_model_dir.iterdir():
        if path.suffix != ".safetensors":
            shutil.copy(path, tmp_path / path.name)
    torch.save(reference.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    whole = open_clip_model.create(
        weights.locate(f"local-dir:{tmp_path}", None), "cpu", "fp32", image_tower=False
    )
    assert whole.state_dict().keys() == reference.state_dict().keys()


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(
        weights.WeightsError,
        match=r"^CLIP_PRETRAINED='not-a-tag' is no file, nor a tag of ViT-B-32: openai, ",
    ):
        weights.locate("ViT-B-32", "not-a-tag")


def test_an_unknown_model_is_named_as_the_model_not_the_weights():
    with pytest.raises(weights.WeightsError) as raised:
        weights.locate("banana", "openai")
    assert (
        str(raised.value) == "CLIP_MODEL='banana' is no model open_clip knows (see clip-age download --list)."
    )


def test_a_missing_checkpoint_file_is_not_found(tmp_path):
    with pytest.raises(weights.WeightsError, match="^CLIP_PRETRAINED=.* is no file, nor a tag of ViT-B-32"):
        weights.locate("ViT-B-32", str(tmp_path / "ViT-B-32.pt"))


def test_a_checkpoint_file_is_used_as_given(tmp_path):
    checkpoint = tmp_path / "mine.safetensors"
    checkpoint.write_bytes(b"x")
    spec = weights.locate("ViT-B-32", str(checkpoint))
    assert (spec.pretrained, spec.checkpoint, spec.quick_gelu) == (str(checkpoint), checkpoint, False)


def test_empty_pretrained_means_random_init_for_benchmarks():
    assert weights.locate("ViT-B-32", "") == weights.ModelSpec("ViT-B-32", None)


def test_a_file_that_is_not_a_checkpoint_is_one_clear_error_without_warnings(tmp_path, recwarn):
    wrong = tmp_path / "mine.pt"
    wrong.write_bytes(NOT_A_CHECKPOINT)
    with pytest.raises(weights.WeightsError) as raised:
        AgeEstimator("ViT-B-32", str(wrong), device="cpu")
    assert str(raised.value).startswith(f"Could not load CLIP weights {wrong} for CLIP_MODEL=ViT-B-32: ")
    assert "clip-age download" in str(raised.value)
    assert [str(w.message) for w in recwarn] == []


def test_hf_hub_file_names_follow_open_clip():
    assert download.hub_filenames("") == ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    assert download.hub_filenames("model.bin") == ["model.safetensors", "model.bin"]
    assert download.hub_filenames("model.npz") == ["model.npz"]


def test_the_cpu_runtimes_exports_are_keyed_by_the_file_a_tag_resolves_to(cache):
    from clip_age.estimation.cpu_runtime import weights_digest

    l14, b32 = weights.locate("ViT-L-14", "openai"), weights.locate("ViT-B-32", "openai")
    other_file = weights.ModelSpec(l14.model_name, l14.pretrained, b32.checkpoint, l14.quick_gelu)
    assert len({weights_digest(l14), weights_digest(other_file)}) == 2
    assert weights_digest(weights.ModelSpec("ViT-L-14", None)) is None
