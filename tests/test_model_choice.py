"""The model choice is checked without open_clip, from a record of its registry: the record must be
open_clip's own, and every refusal must be one open_clip would make."""

import json

import open_clip
import pytest
from open_clip.pretrained import get_pretrained_cfg

from clip_age.estimation import model_choice, open_clip_names
from clip_age.settings import Settings


def test_the_record_is_the_installed_open_clips_registry():
    recorded = json.loads(open_clip_names.RECORD.read_text())
    assert recorded == open_clip_names.from_open_clip(), "run: python -m clip_age.estimation.open_clip_names"


def test_a_record_of_another_open_clip_version_is_not_used(monkeypatch, tmp_path):
    record = tmp_path / "names.json"
    record.write_text(json.dumps({**json.loads(open_clip_names.RECORD.read_text()), "version": "0.0.1"}))
    monkeypatch.setattr(open_clip_names, "RECORD", record)
    assert open_clip_names.recorded() is None
    # Without a record that fits, the name is left for open_clip to judge when it loads.
    assert model_choice.choose("ViT-B-99", None, Settings()).model == "ViT-B-99"


@pytest.mark.parametrize(
    ("model", "tag"),
    [
        ("ViT-L-14", "openai"),
        ("ViT-B-32", "OpenAI"),
        ("ViT-B-32", "laion2b-s34b-b79k"),
        ("ViT-B-32-quickgelu", "openai"),
        ("ViT-L-14", "laion2b_e16"),
        ("ViT-B-99", "openai"),
        ("RN50", "yfcc15m"),
        ("convnext_base", "laion400m_s13b_b51k"),
    ],
)
def test_accepts_exactly_what_open_clip_resolves(model, tag):
    known = model in open_clip.list_models() and bool(get_pretrained_cfg(model, tag))
    try:
        model_choice.choose(model, tag, Settings())
        accepted = True
    except model_choice.ModelChoiceError:
        accepted = False
    assert accepted == known


def test_flags_win_over_settings_and_errors_name_the_one_used():
    settings = Settings(clip_model="ViT-B-99", clip_pretrained="nope")
    with pytest.raises(model_choice.ModelChoiceError, match=r"^CLIP_MODEL='ViT-B-99' "):
        model_choice.choose(None, None, settings)
    with pytest.raises(model_choice.ModelChoiceError, match=r"^CLIP_PRETRAINED='nope' .* for ViT-B-32"):
        model_choice.choose("ViT-B-32", None, settings)
    with pytest.raises(model_choice.ModelChoiceError, match=r"^--pretrained 'nope' .* for ViT-B-32"):
        model_choice.choose("ViT-B-32", "nope", Settings())
    assert model_choice.choose("ViT-B-32", "openai", settings).label == "ViT-B-32 / openai"


def test_what_is_fetched_from_the_hub(tiny_model_dir, tmp_path):
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"")
    assert model_choice.ModelChoice("ViT-L-14", "openai").fetchable
    assert model_choice.ModelChoice("hf-hub:someone/tiny-clip", "openai").fetchable
    assert not model_choice.ModelChoice(f"local-dir:{tiny_model_dir}", "openai").fetchable
    assert not model_choice.ModelChoice("ViT-B-32", str(checkpoint)).fetchable
    assert not model_choice.ModelChoice("ViT-B-32", "").fetchable
