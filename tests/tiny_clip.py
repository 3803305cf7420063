"""Build a tiny random-init open_clip model folder (local-dir:) so tests run the real loading code."""

import json
from pathlib import Path

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


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Write open_clip_config.json and open_clip_model.safetensors into folder; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**TINY_CONFIG)
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_CONFIG, "preprocess_cfg": {}}, indent=2)
    )
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder


if __name__ == "__main__":
    import sys

    print(build_tiny_model(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-clip")))
