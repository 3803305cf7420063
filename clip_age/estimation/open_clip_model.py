"""open_clip's model for located weights (weights.locate), built offline: open_clip reads the tag's
files from the Hugging Face cache and applies the tag's preprocessing itself."""

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import open_clip
import torch

from clip_age.estimation import weights


def create(
    spec: weights.ModelSpec, device: torch.device | str, precision: str, load_weights: bool = True
) -> torch.nn.Module:
    """The model, in the precision open_clip names ("fp32", "fp16"); preprocess.py follows the
    preprocessing configuration it records. load_weights=False: the architecture alone."""
    # A checkpoint overwrites every weight (open_clip loads it strictly), so drawing random ones
    # first is wasted: 2.2-3.3 s of a ViT-L-14 setup on 2 cores.
    weights_follow = load_weights and (spec.checkpoint is not None or _folder_holds_weights(spec.model_name))
    try:
        with warnings.catch_warnings(), _no_random_init() if weights_follow else contextlib.nullcontext():
            # torch.load's notes about TorchScript archives (OpenAI's .pt files) are not the user's
            # business; a file that does not load is reported below.
            warnings.simplefilter("ignore")
            return weights.offline(
                open_clip.create_model,
                spec.model_name,
                pretrained=spec.pretrained,
                precision=precision,
                device=device,
                force_quick_gelu=spec.quick_gelu,
                load_weights=load_weights,
            )
    # A checkpoint can fail to load in many ways (unpickling, shapes, dtypes); all mean the file
    # and the model do not match.
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise weights.WeightsError(
            f"Could not load CLIP weights {spec.checkpoint or ''} for CLIP_MODEL={spec.model_name}: "
            f"{reason}. Check that the file is an open_clip or OpenAI checkpoint of this model "
            "(`clip-age download` fetches the right one)."
        ) from error


def _folder_holds_weights(model_name: str) -> bool:
    """Whether a local-dir: folder has a file open_clip loads as its checkpoint (it takes any
    .safetensors, .bin or .pth file there); without one, open_clip keeps the random weights."""
    if not model_name.startswith("local-dir:"):
        return False
    folder = Path(model_name.removeprefix("local-dir:"))
    return any(next(folder.glob(pattern), None) for pattern in ("*.safetensors", "*.bin", "*.pth"))


@contextlib.contextmanager
def _no_random_init() -> Iterator[None]:
    """torch.nn.init's fills as no-ops while the model is built: layers keep the memory they were
    given until the checkpoint's values are copied in."""
    fills = {
        name: fill for name, fill in vars(torch.nn.init).items() if name.endswith("_") and callable(fill)
    }
    for name in fills:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fill in fills.items():
            setattr(torch.nn.init, name, fill)
