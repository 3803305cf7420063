"""The models and weights tags open_clip knows, readable without importing open_clip.

Importing open_clip imports torch, which takes seconds; a mistyped --model or CLIP_PRETRAINED
should be refused before that. open_clip_names.json records open_clip's registry for the
version requirements.txt pins; a test compares it with open_clip's own lists. Refresh it after
changing that pin with `python -m clip_age.estimation.open_clip_names`.
"""

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

RECORD = Path(__file__).resolve().parent / "open_clip_names.json"
DISTRIBUTION = "open_clip_torch"


@dataclass(frozen=True)
class Registry:
    version: str
    models: frozenset[str]
    tags: dict[str, tuple[str, ...]]  # model name -> its weights tags, in open_clip's order


def recorded() -> Registry | None:
    """The record, when it was made from the open_clip installed here; None otherwise (then only
    open_clip itself can say what it knows)."""
    data = json.loads(RECORD.read_text())
    try:
        installed = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    if data["version"] != installed:
        return None
    return Registry(
        data["version"], frozenset(data["models"]), {m: tuple(t) for m, t in data["tags"].items()}
    )


def from_open_clip() -> dict:
    """open_clip's registry as the record stores it (imports open_clip)."""
    import open_clip

    tags: dict[str, list[str]] = {}
    for model, tag in open_clip.list_pretrained():
        tags.setdefault(model, []).append(tag)
    return {"version": metadata.version(DISTRIBUTION), "models": open_clip.list_models(), "tags": tags}


if __name__ == "__main__":
    RECORD.write_text(json.dumps(from_open_clip(), indent=1) + "\n")
    print(RECORD)
