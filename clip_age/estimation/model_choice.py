"""Which CLIP the command line asks for (--model / --pretrained, else CLIP_MODEL /
CLIP_PRETRAINED), checked before torch loads, each mistake named as the user typed it."""

import os
from dataclasses import dataclass
from pathlib import Path

from clip_age.estimation import open_clip_names
from clip_age.settings import Settings

RANDOM_INIT = ("", "none")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz")


class ModelChoiceError(ValueError):
    """The model or weights asked for do not exist; the message names the flag or variable."""


@dataclass(frozen=True)
class ModelChoice:
    model: str
    pretrained: str

    @property
    def label(self) -> str:
        """How messages name the choice: "ViT-L-14 / openai", or the model spec alone."""
        if self.model.startswith(("local-dir:", "hf-hub:")):
            return self.model
        return f"{self.model} / {self.pretrained}"

    @property
    def fetchable(self) -> bool:
        """Whether the weights come from the Hub (an hf-hub: model or a weights tag), rather than
        a folder, a checkpoint file or random init."""
        if self.model.startswith("local-dir:"):
            return False
        if self.model.startswith("hf-hub:"):
            return True
        return self.pretrained.strip().lower() not in RANDOM_INIT and not Path(self.pretrained).is_file()


def choose(model_flag: str | None, pretrained_flag: str | None, settings: Settings) -> ModelChoice:
    """The flags over the settings; a model or tag open_clip does not know, a missing local-dir
    folder or a missing checkpoint file is refused here, naming where the value came from."""
    model, model_name = (
        (model_flag, "--model") if model_flag is not None else (settings.clip_model, "CLIP_MODEL")
    )
    pretrained, pretrained_name = (
        (pretrained_flag, "--pretrained")
        if pretrained_flag is not None
        else (settings.clip_pretrained, "CLIP_PRETRAINED")
    )
    choice = ModelChoice(model, pretrained)
    if model.startswith("hf-hub:"):
        return choice  # whether the Hub has it is known once it is fetched
    if model.startswith("local-dir:"):
        folder = Path(model.removeprefix("local-dir:"))
        if not (folder / "open_clip_config.json").is_file():
            raise ModelChoiceError(
                f"{_named(model_name, model)}: no open_clip_config.json in {folder}. A local-dir model "
                "folder holds open_clip_config.json and the weights (open_clip_model.safetensors)."
            )
        return choice
    registry = open_clip_names.recorded()
    if registry is not None and model not in registry.models:
        raise ModelChoiceError(
            f"{_named(model_name, model)} is not a model open_clip knows. Use one of `clip-age download "
            "--list` (for example ViT-L-14 or ViT-B-32), hf-hub:org/repo, or local-dir:/folder."
        )
    if pretrained.strip().lower() in RANDOM_INIT or Path(pretrained).is_file():
        return choice
    if os.sep in pretrained or pretrained.endswith(CHECKPOINT_SUFFIXES):
        raise ModelChoiceError(f"{_named(pretrained_name, pretrained)}: no such file.")
    # open_clip reads a tag case-insensitively, with - for _ ("OpenAI" is "openai").
    if registry is not None and _tag(pretrained) not in map(_tag, registry.tags.get(model, ())):
        known = ", ".join(registry.tags.get(model, ())) or "none (give a checkpoint file)"
        raise ModelChoiceError(
            f"{_named(pretrained_name, pretrained)} is not a weights tag open_clip knows for {model}, "
            f"nor a file. Tags for {model}: {known}."
        )
    return choice


def _named(name: str, value: str) -> str:
    """A value as the user gave it: "--model 'ViT-B-99'" or "CLIP_MODEL='ViT-B-99'"."""
    return f"{name} {value!r}" if name.startswith("--") else f"{name}={value!r}"


def _tag(name: str) -> str:
    return name.lower().replace("-", "_")
