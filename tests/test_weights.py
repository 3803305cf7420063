import copy
import re
import socket

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU

from clip_age.dev.tiny_models import TINY_CONFIG
from clip_age.estimation import weights
from clip_age.estimation.estimator import AgeEstimator

SHA = "0" * 64


@pytest.fixture
def openai_style_tag(monkeypatch, tmp_path):
    """A built-in-style model and 'openai' tag, like ViT-L-14/openai, but tiny: its config has
    no QuickGELU and its tag says the weights need it, exactly as OpenAI's do."""
    name = "TinyCLIP-test"
    config = copy.deepcopy(TINY_CONFIG)
    config.pop("quick_gelu")
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, name, config)
    url = f"https://openaipublic.azureedge.net/clip/models/{SHA}/{name}.pt"
    tag = open_clip.pretrained._pcfg(url=url, quick_gelu=True)
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, name, {"openai": tag})
    torch.manual_seed(1)
    trained = open_clip.model.CLIP(**config, quick_gelu=True)
    # Where open_clip's own downloader would have put the file from the tag's URL.
    monkeypatch.setattr(weights, "OPEN_CLIP_URL_CACHE", tmp_path / "clip")
    (tmp_path / "clip").mkdir()
    torch.save(trained.state_dict(), tmp_path / "clip" / f"{name}.pt")
    return name, trained


def test_openai_weights_load_from_the_local_file_with_quick_gelu(openai_style_tag):
    name, trained = openai_style_tag
    estimator = AgeEstimator(name, "openai", device="cpu", cpu_precision="fp32")
    activations = {type(m) for m in estimator.model.modules() if "GELU" in type(m).__name__}
    assert activations == {QuickGELU}
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(estimator.model.state_dict()[key], value)


def test_the_default_model_is_vit_l_14_with_openai_weights_and_quick_gelu(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "OPEN_CLIP_URL_CACHE", tmp_path)
    (tmp_path / "ViT-L-14.pt").write_bytes(b"placeholder")
    spec = weights.locate("ViT-L-14", "openai")
    assert spec.pretrained == str(tmp_path / "ViT-L-14.pt")
    assert spec.options["force_quick_gelu"] is True
    assert spec.options["image_interpolation"] == "bicubic"


def test_missing_weights_name_the_places_looked_in_and_the_download_command(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(weights, "OPEN_CLIP_URL_CACHE", tmp_path / "clip")
    with pytest.raises(weights.WeightsError) as raised:
        AgeEstimator("ViT-B-32", "openai", device="cpu")
    message = str(raised.value)
    assert "looked in the Hugging Face cache for timm/vit_base_patch32_clip_224.openai" in message
    assert f" and in {tmp_path / 'clip'} (setup never downloads)" in message
    assert message.endswith("Fetch them once with: clip-age download --model ViT-B-32 --pretrained openai")


def test_missing_local_dir_is_explained(tmp_path):
    with pytest.raises(weights.WeightsError, match=re.escape(f"no open_clip_config.json in {tmp_path}")):
        weights.locate(f"local-dir:{tmp_path}", "openai")


def test_unknown_tag_lists_the_known_ones(tmp_path):
    with pytest.raises(
        weights.WeightsError,
        match=r"is not a weights tag open_clip knows for ViT-B-32, nor a file\. Tags for ViT-B-32: openai, ",
    ):
        weights.locate("ViT-B-32", "not-a-tag")


def test_an_unknown_model_is_named_as_the_model_not_the_weights(tmp_path):
    with pytest.raises(weights.WeightsError) as raised:
        weights.locate("banana", "openai")
    assert str(raised.value).startswith("CLIP_MODEL='banana' is not a model open_clip knows.")


def test_a_missing_checkpoint_file_is_not_found(tmp_path):
    with pytest.raises(weights.WeightsError) as raised:
        weights.locate("ViT-B-32", str(tmp_path / "ViT-B-32.pt"))
    assert str(raised.value) == f"CLIP_PRETRAINED={tmp_path / 'ViT-B-32.pt'}: no such file."


def test_hf_hub_file_names_follow_open_clip():
    assert weights.hub_filenames("") == ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    assert weights.hub_filenames("model.bin") == ["model.safetensors", "model.bin"]
    assert weights.hub_filenames("model.npz") == ["model.npz"]


def test_a_checkpoint_file_is_used_as_given(tmp_path):
    checkpoint = tmp_path / "mine.safetensors"
    checkpoint.write_bytes(b"x")
    assert weights.locate("ViT-B-32", str(checkpoint)).pretrained == str(checkpoint)


def test_empty_pretrained_means_random_init_for_benchmarks(tmp_path):
    assert weights.locate("ViT-B-32", "").pretrained is None


def test_a_tag_found_in_the_hugging_face_cache_is_loaded_as_a_file(tmp_path, monkeypatch):
    cached = tmp_path / "open_clip_model.safetensors"
    cached.write_bytes(b"x")
    asked = []

    def in_cache(repo_id, filename):
        asked.append((repo_id, filename))
        return str(cached) if filename == "open_clip_model.safetensors" else None

    monkeypatch.setattr(weights, "try_to_load_from_cache", in_cache)
    spec = weights.locate("ViT-B-32", "laion2b_s34b_b79k")
    assert spec.pretrained == str(cached)
    assert asked[0] == ("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip_model.safetensors")


def test_a_weights_file_that_does_not_fit_the_model_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "OPEN_CLIP_URL_CACHE", tmp_path)  # where the tag's file is found
    wrong = tmp_path / "ViT-B-32.pt"
    wrong.write_bytes(b"not a checkpoint")
    with pytest.raises(
        weights.WeightsError, match="Could not load CLIP weights .*ViT-B-32.pt for CLIP_MODEL=ViT-B-32"
    ):
        AgeEstimator("ViT-B-32", "openai", device="cpu")


def test_a_file_that_is_not_a_checkpoint_is_one_clear_error_without_warnings(tmp_path, recwarn):
    wrong = tmp_path / "mine.pt"
    wrong.write_bytes(b"not a checkpoint")
    with pytest.raises(weights.WeightsError) as raised:
        AgeEstimator("ViT-B-32", str(wrong), device="cpu")
    assert str(raised.value).startswith(f"Could not load CLIP weights {wrong} for CLIP_MODEL=ViT-B-32: ")
    assert "clip-age download" in str(raised.value)
    assert [str(w.message) for w in recwarn] == []


@pytest.fixture
def no_network(monkeypatch):
    """Any connection or name lookup fails the test, with the Hugging Face client online."""
    import huggingface_hub.constants

    def refuse(*args, **kwargs):
        raise AssertionError(f"setup reached for the network: {args[1:] or kwargs}")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def hub_cache(root, repo_id: str, files: dict[str, bytes]):
    """A Hugging Face cache holding these files of repo_id, laid out as huggingface_hub does."""
    folder = root / f"models--{repo_id.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def test_setup_resolves_a_tag_to_a_local_file_without_the_network(openai_style_tag, no_network):
    name, _ = openai_style_tag
    # fp32: CLIP_CPU_PRECISION=auto would export, quantise and time the image tower (seconds,
    # tests of their own in test_cpu_runtime.py); the weights resolve the same way for each.
    estimator = AgeEstimator(name, "openai", device="cpu", cpu_precision="fp32")
    assert estimator.predict_pixels(torch.zeros(1, 224, 224, 3, dtype=torch.uint8))


def test_setup_finds_an_hf_hub_model_in_the_cache_without_the_network(
    tiny_model_dir, tmp_path, monkeypatch, no_network
):
    import huggingface_hub.constants

    files = {path.name: path.read_bytes() for path in tiny_model_dir.iterdir()}
    snapshot = hub_cache(tmp_path, "someone/tiny-clip", files)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    spec = weights.locate("hf-hub:someone/tiny-clip", None)
    assert spec.model_name == f"local-dir:{snapshot}"
    estimator = AgeEstimator("hf-hub:someone/tiny-clip", None, device="cpu", cpu_precision="fp32")
    assert estimator.input_shape == (224, 224, 3)


def test_an_hf_hub_model_not_in_the_cache_names_the_download_command(tmp_path, monkeypatch, no_network):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(weights.WeightsError) as raised:
        weights.locate("hf-hub:someone/elsewhere", None)
    assert str(raised.value) == (
        "CLIP_MODEL=hf-hub:someone/elsewhere: not in the Hugging Face cache (setup never downloads). "
        "Fetch it first: clip-age download --model hf-hub:someone/elsewhere"
    )
