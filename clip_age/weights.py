"""Find CLIP weights on local disk for an open_clip model spec. Setup never downloads."""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# For hf-hub: models. huggingface_hub reads this when first imported, so it is set before
# open_clip imports it; cog.yaml sets it for the whole container as well.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import open_clip  # noqa: E402
import torch  # noqa: E402
from huggingface_hub import try_to_load_from_cache  # noqa: E402
from open_clip.pretrained import get_pretrained_cfg  # noqa: E402

log = logging.getLogger(__name__)

RANDOM_INIT = ("", "none")


class WeightsError(RuntimeError):
    """The configured model's weights are not on this machine, or do not load."""


@dataclass(frozen=True)
class ModelSpec:
    """Arguments for open_clip.create_model_and_transforms that load from local disk only."""

    model_name: str
    pretrained: str | None
    options: dict[str, Any] = field(default_factory=dict)


def download_url(model_name: str, pretrained: str) -> str | None:
    """The checksummed URL open_clip lists for this model and tag, if it lists one."""
    return _tag_config(model_name, pretrained).get("url") or None


def weights_file(model_name: str, pretrained: str, weights_dir: Path) -> Path | None:
    """Where the build step puts the file for a tag with a download URL."""
    url = download_url(model_name, pretrained)
    return weights_dir / url.rsplit("/", 1)[-1] if url else None


def locate(model_name: str, pretrained: str | None, weights_dir: Path) -> ModelSpec:
    """Resolve CLIP_MODEL / CLIP_PRETRAINED to weights on this machine, or explain what is missing."""
    if model_name.startswith("local-dir:"):
        folder = Path(model_name.removeprefix("local-dir:"))
        if not (folder / "open_clip_config.json").is_file():
            raise WeightsError(
                f"CLIP_MODEL={model_name}: no open_clip_config.json in {folder}. "
                "A local-dir model folder holds open_clip_config.json and the weights "
                "(open_clip_model.safetensors)."
            )
        return ModelSpec(model_name, None)
    if model_name.startswith("hf-hub:"):
        return ModelSpec(model_name, None)

    if pretrained is None or pretrained.strip().lower() in RANDOM_INIT:
        log.warning("No CLIP weights (CLIP_PRETRAINED is empty): random init, for benchmarks only.")
        return ModelSpec(model_name, None)

    tag = _tag_config(model_name, pretrained)
    if not tag:
        if Path(pretrained).is_file():
            return ModelSpec(model_name, pretrained)
        raise WeightsError(
            f"CLIP_PRETRAINED={pretrained!r} is neither a weights file nor a tag open_clip knows "
            f"for {model_name}. Known tags: {open_clip.list_pretrained_tags_by_model(model_name)}."
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
    for candidate in _candidates(model_name, pretrained, weights_dir, tag):
        if candidate.is_file():
            return ModelSpec(model_name, str(candidate), options)
    raise WeightsError(_missing_message(model_name, pretrained, weights_dir, tag))


def create(spec: ModelSpec, device: str, precision: str) -> torch.nn.Module:
    """open_clip.create_model_and_transforms for the spec (its transform is not needed: the
    model records its preprocessing configuration, which preprocess.py follows)."""
    try:
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
        raise WeightsError(
            f"Could not load CLIP weights {spec.pretrained or ''} for CLIP_MODEL={spec.model_name}: "
            f"{error}. Check that the file matches the model (see the README's Weights section)."
        ) from error
    return model


def _tag_config(model_name: str, pretrained: str) -> dict[str, Any]:
    return get_pretrained_cfg(model_name, pretrained) or {}


def _candidates(model_name: str, pretrained: str, weights_dir: Path, tag: dict[str, Any]) -> list[Path]:
    """Files that may hold a tag's weights: the build step's download, then the Hugging Face
    cache. Resolving the tag to a file here means open_clip never reaches for the network."""
    found = []
    local = weights_file(model_name, pretrained, weights_dir)
    if local is not None:
        found.append(local)
    if tag.get("hf_hub"):
        repo_id, filename = os.path.split(tag["hf_hub"])
        for name in _hub_filenames(filename):
            cached = try_to_load_from_cache(repo_id, name)
            if isinstance(cached, str):
                found.append(Path(cached))
    return found


def _hub_filenames(filename: str) -> list[str]:
    """The names open_clip tries in a hub repository, safetensors first."""
    if not filename:
        return ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    stem, suffix = os.path.splitext(filename)
    return [stem + ".safetensors", filename] if suffix in (".bin", ".pth") else [filename]


def _missing_message(model_name: str, pretrained: str, weights_dir: Path, tag: dict[str, Any]) -> str:
    local = weights_file(model_name, pretrained, weights_dir)
    looked = f"looked for {local} and " if local else "looked "
    return (
        f"No CLIP weights for CLIP_MODEL={model_name} CLIP_PRETRAINED={pretrained}: {looked}"
        f"in the Hugging Face cache for {tag.get('hf_hub') or 'the tag'} (setup never downloads). "
        "Put the weights into the image at build time (see cog.yaml build.run and the README's "
        "Weights section), set CLIP_PRETRAINED to a checkpoint file, or set "
        "CLIP_MODEL=local-dir:/folder with open_clip_config.json and the weights."
    )
