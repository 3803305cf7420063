"""Fetch a model's weights, once, into the Hugging Face cache where setup looks: `clip-age download`, and
`clip-age predict` / `evaluate` on first use.

The files come from the Hugging Face Hub copy that open_clip lists for the tag (every tag has
one, and open_clip reads that copy when given the tag), the file open_clip itself would pick
(safetensors first). Every file is then checked: the Hub stores each large file under its sha256.
"""

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import open_clip
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import EntryNotFoundError
from open_clip.pretrained import get_pretrained_cfg

Checked = tuple[Path, str]  # a file and how it was checked


class DownloadError(RuntimeError):
    """The weights could not be fetched or did not match their checksum."""


def download(model_name: str, pretrained: str) -> str:
    """Fetch and verify; return what to tell the user (where the files are, what to export)."""
    if model_name.startswith("local-dir:"):
        return f"Nothing to download: {model_name} is read from its folder."
    files = fetch(model_name, pretrained)
    return _done(model_name, None if model_name.startswith("hf-hub:") else pretrained, files)


def fetch(
    model_name: str, pretrained: str, announce: Callable[[str], None] = lambda note: None
) -> list[Checked]:
    """Fetch a model's files into the Hugging Face cache and check each one. announce gets one
    line, before the transfer, with the size and the destination; the Hugging Face client shows
    the transfer's progress."""
    if model_name.startswith("hf-hub:"):
        repo_id = model_name.removeprefix("hf-hub:")
        config = _fetch_hub(repo_id, "open_clip_config.json")
        name, size = _hub_weights(repo_id, hub_filenames(""), model_name)
        announce(_note(model_name, size))
        return [config, _fetch_hub(repo_id, name)]
    tag = get_pretrained_cfg(model_name, pretrained)
    label = f"{model_name} / {pretrained}"
    if not tag:
        known = open_clip.list_pretrained_tags_by_model(model_name)
        if not known:
            raise DownloadError(
                f"{model_name!r} is not a model open_clip knows; see `clip-age download --list`."
            )
        raise DownloadError(
            f"{model_name} has no weights tagged {pretrained!r}; its tags: {', '.join(known)}."
        )
    # The Hub copy, as open_clip's own downloader (and the image build) takes it.
    repo_id, filename = os.path.split(tag["hf_hub"])
    name, size = _hub_weights(repo_id, hub_filenames(filename), label)
    announce(_note(label, size))
    return [_fetch_hub(repo_id, name, label)]


def describe(files: list[Checked]) -> list[str]:
    """One line per file: where it is, its size, how it was checked."""
    return [f"{path} ({_size(path.stat().st_size)}): {check}" for path, check in files]


def verify(path: Path) -> Checked:
    """The file and how it was checked: the Hugging Face cache stores a large file under its
    sha256 (blobs/<sha256>); a small one (a config) under its git hash, which is not checked."""
    blob = path.resolve()
    if not re.fullmatch(r"[0-9a-f]{64}", blob.name):
        return path, "no checksum published"
    digest = _sha256(blob)
    if digest != blob.name:
        blob.unlink()
        raise DownloadError(
            f"{path} is corrupt: its sha256 is {digest}, the Hub lists {blob.name}. It was "
            "deleted; run the command again."
        )
    return path, "sha256 matches the Hugging Face Hub's"


def listing() -> str:
    """Every model and weights tag open_clip can fetch, one per line."""
    return "\n".join(f"{model:36} {tag}" for model, tag in open_clip.list_pretrained())


def _fetch_hub(repo_id: str, filename: str, label: str | None = None) -> Checked:
    try:
        return verify(Path(hf_hub_download(repo_id, filename)))
    except DownloadError:
        raise
    except Exception as error:
        raise DownloadError(
            f"Could not download {label or filename + ' of hf-hub:' + repo_id}: {error}"
        ) from None


def _hub_weights(repo_id: str, names: list[str], label: str) -> tuple[str, int]:
    """The first of names the Hub repository holds, and its size, as open_clip would pick it."""
    for name in names:
        try:
            return name, get_hf_file_metadata(hf_hub_url(repo_id, name)).size or 0
        except EntryNotFoundError:
            continue
        except Exception as error:
            raise DownloadError(f"Could not download {label}: {error}") from None
    raise DownloadError(f"Could not download {label}: hf-hub:{repo_id} holds none of {', '.join(names)}.")


def _note(label: str, size: int) -> str:
    return f"Downloading the {label} weights ({_size(size)}) into {constants.HF_HUB_CACHE}."


def _size(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def _done(model_name: str, pretrained: str | None, files: list[Checked]) -> str:
    export = f"CLIP_MODEL={model_name}" + (f" CLIP_PRETRAINED={pretrained}" if pretrained else "")
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        export += f" HF_HOME={hf_home}"
    return "\n".join(
        [
            *describe(files),
            "Setup finds these files there, without the network. Use them with:",
            f"  export {export}",
        ]
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hub_filenames(filename: str) -> list[str]:
    """The names open_clip tries in a hub repository, safetensors first."""
    if not filename:
        return ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    stem, suffix = os.path.splitext(filename)
    return [stem + ".safetensors", filename] if suffix in (".bin", ".pth") else [filename]
