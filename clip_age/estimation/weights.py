"""Find CLIP weights on local disk for an open_clip model spec. Setup never downloads.

Every spec is resolved here to files on this machine before open_clip sees it, so open_clip
is never handed a name it would fetch: a tag becomes a checkpoint file (in the Hugging Face
cache, or open_clip's own download cache), an hf-hub: model becomes its cached folder. That holds whatever was imported first and whatever HF_HUB_OFFLINE
says.
"""

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
from huggingface_hub import try_to_load_from_cache
from open_clip.pretrained import get_pretrained_cfg

log = logging.getLogger(__name__)

RANDOM_INIT = ("", "none")
# Where open_clip's own downloader keeps files fetched from a URL (download_pretrained_from_url).
OPEN_CLIP_URL_CACHE = Path("~/.cache/clip").expanduser()
DOWNLOAD_COMMAND = "clip-age download"


class WeightsError(RuntimeError):
    """The configured model's weights are not on this machine, or do not load."""


class WeightsMissing(WeightsError):
    """The model is known but its weights were never fetched to this machine."""


@dataclass(frozen=True)
class ModelSpec:
    """Arguments for open_clip.create_model_and_transforms that load from local disk only."""

    model_name: str
    pretrained: str | None
    options: dict[str, Any] = field(default_factory=dict)


def locate(model_name: str, pretrained: str | None) -> ModelSpec:
    """Resolve CLIP_MODEL / CLIP_PRETRAINED to weights on this machine, or explain what is missing."""
    if model_name.startswith("local-dir:"):
        folder = Path(model_name.removeprefix("local-dir:"))
        if not (folder / "open_clip_config.json").is_file():
            raise WeightsError(
                f"CLIP_MODEL={model_name}: no open_clip_config.json in {folder}. A local-dir model "
                "folder holds open_clip_config.json and the weights (open_clip_model.safetensors)."
            )
        return ModelSpec(model_name, None)
    if model_name.startswith("hf-hub:"):
        return ModelSpec(f"local-dir:{_cached_hub_folder(model_name)}", None)
    if model_name not in open_clip.list_models():
        raise WeightsError(
            f"CLIP_MODEL={model_name!r} is not a model open_clip knows. Use one of "
            "`clip-age download --list` (for example ViT-L-14 or ViT-B-32), hf-hub:org/repo, or "
            "local-dir:/folder."
        )

    if pretrained is None or pretrained.strip().lower() in RANDOM_INIT:
        log.warning("No CLIP weights (CLIP_PRETRAINED is empty): random init, for benchmarks only.")
        return ModelSpec(model_name, None)

    tag = _tag_config(model_name, pretrained)
    if not tag:
        if Path(pretrained).is_file():
            return ModelSpec(model_name, pretrained)
        if _looks_like_a_path(pretrained):
            raise WeightsError(f"CLIP_PRETRAINED={pretrained}: no such file.")
        raise WeightsError(
            f"CLIP_PRETRAINED={pretrained!r} is not a weights tag open_clip knows for "
            f"{model_name}, nor a file. Tags for {model_name}: "
            f"{', '.join(open_clip.list_pretrained_tags_by_model(model_name))}."
        )

    # What open_clip would apply for this tag; passing a file path instead of the tag loses
    # it, and OpenAI's weights give wrong embeddings without QuickGELU.
    options: dict[str, Any] = {
        "force_quick_gelu": bool(tag.get("quick_gelu", False)),
        "image_mean": tag.get("mean"),
        "image_std": tag.get("std"),
        "image_interpolation": tag.get("interpolation"),
        "image_resize_mode": tag.get("resize_mode"),
    }
    for candidate in candidates(model_name, pretrained):
        if candidate.is_file():
            return ModelSpec(model_name, str(candidate), options)
    raise WeightsMissing(_missing_message(model_name, pretrained, tag))


def create(spec: ModelSpec, device: torch.device | str, precision: str) -> torch.nn.Module:
    """open_clip.create_model_and_transforms for the spec (its transform is not needed: the
    model records its preprocessing configuration, which preprocess.py follows)."""
    try:
        with warnings.catch_warnings():
            # torch.load's notes about TorchScript archives (OpenAI's .pt files) are not the user's
            # business; a file that does not load is reported below.
            warnings.simplefilter("ignore")
            model, _, _ = open_clip.create_model_and_transforms(
                spec.model_name,
                pretrained=spec.pretrained,
                device=device,
                precision=precision,
                **{key: value for key, value in spec.options.items() if value is not None},
            )
    # A checkpoint can fail to load in many ways (unpickling, shapes, dtypes); all mean the file
    # and the model do not match.
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(
            f"Could not load CLIP weights {spec.pretrained or ''} for CLIP_MODEL={spec.model_name}: "
            f"{reason}. Check that the file is an open_clip or OpenAI checkpoint of this model "
            f"(`{DOWNLOAD_COMMAND}` fetches the right one)."
        ) from error
    return model


def candidates(model_name: str, pretrained: str) -> list[Path]:
    """Files that may hold a tag's weights: the Hugging Face cache (where the image build and
    `clip-age download` put them), open_clip's URL download cache. Resolving the tag to a file
    here means open_clip never reaches for the network."""
    tag = _tag_config(model_name, pretrained)
    found = []
    if tag.get("hf_hub"):
        repo_id, filename = os.path.split(tag["hf_hub"])
        for name in hub_filenames(filename):
            cached = try_to_load_from_cache(repo_id, name)
            if isinstance(cached, str):
                found.append(Path(cached))
    if tag.get("url"):
        found.append(OPEN_CLIP_URL_CACHE / tag["url"].rsplit("/", 1)[-1])
    return found


def _cached_hub_folder(model_name: str) -> Path:
    repo_id = model_name.removeprefix("hf-hub:")
    config = try_to_load_from_cache(repo_id, "open_clip_config.json")
    if not isinstance(config, str):
        raise WeightsMissing(
            f"CLIP_MODEL={model_name}: not in the Hugging Face cache (setup never downloads). "
            f"Fetch it first: {DOWNLOAD_COMMAND} --model {model_name}"
        )
    return Path(config).parent


def _tag_config(model_name: str, pretrained: str) -> dict[str, Any]:
    return get_pretrained_cfg(model_name, pretrained) or {}


def _looks_like_a_path(value: str) -> bool:
    return os.sep in value or value.endswith((".pt", ".pth", ".bin", ".safetensors", ".npz"))


def hub_filenames(filename: str) -> list[str]:
    """The names open_clip tries in a hub repository, safetensors first."""
    if not filename:
        return ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    stem, suffix = os.path.splitext(filename)
    return [stem + ".safetensors", filename] if suffix in (".bin", ".pth") else [filename]


def _missing_message(model_name: str, pretrained: str, tag: dict[str, Any]) -> str:
    return (
        f"No CLIP weights for CLIP_MODEL={model_name} CLIP_PRETRAINED={pretrained} on this machine: "
        f"looked in the Hugging Face cache for {tag.get('hf_hub') or 'the tag'} and in "
        f"{OPEN_CLIP_URL_CACHE} (setup never downloads). Fetch them once with: "
        f"{DOWNLOAD_COMMAND} --model {model_name} --pretrained {pretrained}"
    )
