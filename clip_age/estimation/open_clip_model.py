"""open_clip's model for located weights (weights.locate), built offline: open_clip reads the tag's
files from the Hugging Face cache and applies the tag's preprocessing itself."""

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import open_clip
import safetensors
import torch

from clip_age.estimation import library_logs, weights


def create(
    spec: weights.ModelSpec,
    device: torch.device | str,
    precision: str,
    load_weights: bool = True,
    image_tower: bool = True,
) -> torch.nn.Module:
    """The model, in the precision open_clip names ("fp32", "fp16"); preprocess.py follows the
    preprocessing configuration it records. load_weights=False: the architecture alone.
    image_tower=False: the image tower's weights are not read where the checkpoint allows it
    (a CPU runtime serves that tower); `visual` then only holds the preprocessing configuration."""
    if not image_tower and load_weights:
        model = _without_image_tower(spec, device, precision)
        if model is not None:
            return model
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


def _without_image_tower(
    spec: weights.ModelSpec, device: torch.device | str, precision: str
) -> torch.nn.Module | None:
    """The model with every weight but the image tower's read from a safetensors checkpoint, or
    None where the checkpoint is another format or its names need open_clip's conversions: the
    caller then reads it all. The image tower is 60-70% of a ViT CLIP's weights."""
    checkpoint = _checkpoint_file(spec)
    if checkpoint is None or checkpoint.suffix != ".safetensors":
        return None
    # open_clip warns that an architecture built without its weights is random: here the
    # checkpoint's weights follow.
    with _no_random_init(), library_logs.errors_only():
        model = create(spec, device, precision, load_weights=False)
    try:
        with safetensors.safe_open(str(checkpoint), framework="pt", device=str(device)) as weights_file:
            state = {
                name: weights_file.get_tensor(name)
                for name in weights_file.keys()
                if not name.startswith("visual.")
            }
        loaded = model.load_state_dict(state, strict=False)
    except Exception:  # a file that does not load this way is read the usual way, which reports it
        return None
    if loaded.unexpected_keys or any(not name.startswith("visual.") for name in loaded.missing_keys):
        return None
    model.visual = ImageTowerElsewhere(model.visual.preprocess_cfg)
    return model


class ImageTowerElsewhere(torch.nn.Module):
    """Stands in for the image tower where a CPU runtime serves it: no weights, the
    preprocessing configuration open_clip set on the tower."""

    def __init__(self, preprocess_cfg: dict) -> None:
        super().__init__()
        self.preprocess_cfg = preprocess_cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("This model's image tower runs in a CPU runtime, not in torch.")


def _checkpoint_file(spec: weights.ModelSpec) -> Path | None:
    """The file open_clip loads for these weights, where there is only one it can choose."""
    if spec.checkpoint is not None:
        return spec.checkpoint
    if not spec.model_name.startswith("local-dir:"):
        return None
    folder = Path(spec.model_name.removeprefix("local-dir:"))
    found = [path for suffix in weights.CHECKPOINT_SUFFIXES for path in folder.glob(f"*{suffix}")]
    return found[0] if len(found) == 1 else None


def _folder_holds_weights(model_name: str) -> bool:
    """Whether a local-dir: folder has a file open_clip loads as its checkpoint (it takes any
    .safetensors, .bin or .pth file there); without one, open_clip keeps the random weights."""
    if not model_name.startswith("local-dir:"):
        return False
    folder = Path(model_name.removeprefix("local-dir:"))
    return any(next(folder.glob(f"*{suffix}"), None) for suffix in weights.CHECKPOINT_SUFFIXES)


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
