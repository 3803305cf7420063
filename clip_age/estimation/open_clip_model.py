"""open_clip's model for located weights (weights.locate), built offline: open_clip reads the tag's
files from the Hugging Face cache and applies the tag's preprocessing itself."""

import warnings

import open_clip
import torch

from clip_age.estimation import weights


def create(
    spec: weights.ModelSpec, device: torch.device | str, precision: str, load_weights: bool = True
) -> torch.nn.Module:
    """The model, in the precision open_clip names ("fp32", "fp16"); preprocess.py follows the
    preprocessing configuration it records. load_weights=False: the architecture alone."""
    try:
        with warnings.catch_warnings():
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
