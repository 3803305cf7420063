"""Whether a model's CLIP weights are on this machine, and how to get them. Setup never downloads:
open_clip looks the model and tag up itself, in the Hugging Face cache that the image build and
`clip-age download` fill, with the Hub client held offline."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
from huggingface_hub import constants
from open_clip.pretrained import download_pretrained_from_hf, get_pretrained_cfg

MISSING = (
    "The weights of {} are not in the Hugging Face cache ({}); setup never downloads. A Cog image gets "
    "them in a build step (cog.yaml). Fetch them once with: clip-age download --model {}"
)


# The files open_clip takes as a local-dir: folder's checkpoint, hidden ones included (its glob
# matches names that start with a dot).
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pth")


class WeightsError(RuntimeError):
    """The configured model's weights are not on this machine, or do not load."""


class WeightsMissing(WeightsError):
    """The model is known but its weights were never fetched to this machine."""


@dataclass(frozen=True)
class ModelSpec:
    """open_clip's arguments, and the weights file it reads (which keys the CPU runtime's exports)."""

    model_name: str
    pretrained: str | None
    checkpoint: Path | None = None
    quick_gelu: bool = False  # open_clip only warns when a tag (OpenAI's) needs it and the config lacks it


def locate(model: str, pretrained: str | None) -> ModelSpec:
    """CLIP_MODEL / CLIP_PRETRAINED as open_clip will load them from this machine, or why it cannot."""
    if model.startswith("local-dir:"):
        if not Path(model.removeprefix("local-dir:"), "open_clip_config.json").is_file():
            raise WeightsError(f"CLIP_MODEL={model}: that folder holds no open_clip_config.json.")
        return ModelSpec(model, None)
    if model.startswith("hf-hub:"):  # as its cached folder, where the tokenizer finds the config too
        repo_id = model.removeprefix("hf-hub:")
        config = _cached(model, download_pretrained_from_hf, repo_id, "open_clip_config.json")
        return ModelSpec(f"local-dir:{config.parent}", None)
    if model not in open_clip.list_models():
        raise WeightsError(
            f"CLIP_MODEL={model!r} is no model open_clip knows (see clip-age download --list)."
        )
    if pretrained is None or pretrained.strip().lower() in ("", "none"):
        return ModelSpec(model, None)  # random init, for benchmarks
    if tag := get_pretrained_cfg(model, pretrained):
        checkpoint = _cached(f"{model} --pretrained {pretrained}", open_clip.download_pretrained, tag)
        return ModelSpec(model, pretrained, checkpoint, bool(tag.get("quick_gelu")))
    if not Path(pretrained).is_file():
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model))
        raise WeightsError(f"CLIP_PRETRAINED={pretrained!r} is no file, nor a tag of {model}: {tags}.")
    return ModelSpec(model, pretrained, Path(pretrained))


def offline(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """call(...) with the Hub client offline. It reads HF_HUB_OFFLINE once, at import, into the
    constant its requests check: setting the variable now would change nothing."""
    before, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        return call(*args, **kwargs)
    finally:
        constants.HF_HUB_OFFLINE = before


def _cached(download_args: str, find: Callable[..., str], *args: Any) -> Path:
    """The file open_clip's own look-up finds in the Hugging Face cache, or how to fetch it."""
    try:
        return Path(offline(find, *args))
    except FileNotFoundError:  # open_clip's answer to the Hub client's "not in the cache"
        label = download_args.replace(" --pretrained ", " / ")
        raise WeightsMissing(MISSING.format(label, constants.HF_HUB_CACHE, download_args)) from None
