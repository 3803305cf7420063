"""A tiny model that open_clip lists as a built-in with an OpenAI-style weights tag, as it lists
ViT-L-14 / openai: the model's config has no QuickGELU while the tag says its weights need it, and
the tag names the weights' Hub copy and a preprocessing of its own. Registered in this process
only; `python -m tests.tiny_tag [MODEL TAG]...` fetches its weights (and each MODEL TAG pair's)
with the real download code, from the Hub HF_ENDPOINT names into the cache under HF_HOME."""

import copy
import operator
import sys
from collections.abc import Callable
from typing import Any

import open_clip
import torch
from safetensors.torch import save

from clip_age.dev.tiny_models import TINY_CONFIG

NAME = "TinyCLIP-test"
REPO_ID = "someone/tiny-clip-openai"
CONFIG = {key: value for key, value in TINY_CONFIG.items() if key != "quick_gelu"}
TAG = open_clip.pretrained._pcfg(
    hf_hub=f"{REPO_ID}/",
    quick_gelu=True,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    interpolation="bilinear",
)


def register(setitem: Callable[[dict, str, Any], None] = operator.setitem) -> None:
    """NAME / openai, and NAME-quickgelu / openai as open_clip pairs its own (ViT-L-14-quickgelu)."""
    setitem(open_clip.factory._MODEL_CONFIGS, NAME, copy.deepcopy(CONFIG))
    setitem(
        open_clip.factory._MODEL_CONFIGS, f"{NAME}-quickgelu", {**copy.deepcopy(CONFIG), "quick_gelu": True}
    )
    for name in (NAME, f"{NAME}-quickgelu"):
        setitem(open_clip.pretrained._PRETRAINED, name, {"openai": TAG})


def hub_files() -> dict[str, bytes]:
    """The weights as the Hub holds them (for tests.fake_hub): trained with QuickGELU, as OpenAI's."""
    torch.manual_seed(1)
    state = open_clip.model.CLIP(**CONFIG, quick_gelu=True).state_dict()
    weights = save({name: tensor.contiguous() for name, tensor in state.items()})
    return {f"{REPO_ID}/open_clip_model.safetensors": weights}


if __name__ == "__main__":
    from clip_age.estimation import download

    register()
    pairs = [(NAME, "openai"), *zip(sys.argv[1::2], sys.argv[2::2], strict=True)]
    for model, tag in pairs:
        print("\n".join(download.describe(download.fetch(model, tag))))
