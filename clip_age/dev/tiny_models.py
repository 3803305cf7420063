"""Write open_clip models as local-dir: folders; build a tiny random-init one for tests and demos."""

import json
import math
import os
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import save_file

# ViT-B/32's input geometry and OpenAI's QuickGELU, with towers a few MB in size.
TINY_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def save_model_dir(
    model: torch.nn.Module, config: dict[str, Any], folder: Path, preprocess: dict[str, Any] | None = None
) -> Path:
    """open_clip_config.json and open_clip_model.safetensors, loadable as local-dir:folder.
    preprocess: open_clip's preprocess_cfg keys (mean, std, interpolation, resize_mode)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": config, "preprocess_cfg": preprocess or {}}, indent=2)
    )
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder


def build_tiny_model(
    folder: Path, seed: int = 0, image_size: int = 224, preprocess: dict[str, Any] | None = None
) -> Path:
    """A tiny random-init model; image_size (a multiple of 32) and preprocess vary what the
    model asks of its input, as real open_clip models do."""
    config = {**TINY_CONFIG, "vision_cfg": {**TINY_CONFIG["vision_cfg"], "image_size": image_size}}
    torch.manual_seed(seed)
    return save_model_dir(open_clip.model.CLIP(**config), config, folder, preprocess)


def build_random_model(model_name: str, folder: Path, seed: int = 0) -> Path:
    """A built-in architecture (ViT-B-32, ViT-L-14, ...) with random weights, OpenAI-style, and
    the logit scale trained CLIP ends with (100, where OpenAI's training clamps it), so that the
    softmax is as sensitive to rounding as a real model's."""
    config = {**open_clip.get_model_config(model_name), "quick_gelu": True}
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**config)
    model.logit_scale.data.fill_(math.log(100))
    return save_model_dir(model, config, folder)


def default_folder() -> Path:
    """Where the try-out model goes unless told: a cache folder, not the current directory."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "clip-age" / "tiny-clip"


if __name__ == "__main__":
    import sys

    # python -m clip_age.dev.tiny_models [FOLDER]: a model to try the commands with, no weights
    # needed. It prints the folder, for CLIP_MODEL=local-dir:$(python -m clip_age.dev.tiny_models).
    print(build_tiny_model(Path(sys.argv[1]) if len(sys.argv) > 1 else default_folder()))
