"""`clip-age download`: fetch a model's weights, once, into the caches that setup searches.

open_clip's own downloader does the fetching (the Hugging Face Hub copy where open_clip lists
one, else the tag's URL). Every file is then checked: the Hub stores each large file under its
sha256, and OpenAI's URLs carry theirs (open_clip checks those itself while downloading).
"""

import hashlib
import os
import re
from pathlib import Path

import open_clip
from huggingface_hub import hf_hub_download
from open_clip.pretrained import get_pretrained_cfg


class DownloadError(RuntimeError):
    """The weights could not be fetched or did not match their checksum."""


def download(model_name: str, pretrained: str) -> str:
    """Fetch and verify; return what to tell the user (where the files are, what to export)."""
    if model_name.startswith("local-dir:"):
        return f"Nothing to download: {model_name} is read from its folder."
    if model_name.startswith("hf-hub:"):
        repo_id = model_name.removeprefix("hf-hub:")
        files = [_fetch_hub(repo_id, "open_clip_config.json"), _fetch_hub_weights(repo_id)]
        return _done(model_name, None, files)
    tag = get_pretrained_cfg(model_name, pretrained)
    if not tag:
        known = open_clip.list_pretrained_tags_by_model(model_name)
        if not known:
            raise DownloadError(
                f"{model_name!r} is not a model open_clip knows; see `clip-age download --list`."
            )
        raise DownloadError(
            f"{model_name} has no weights tagged {pretrained!r}; its tags: {', '.join(known)}."
        )
    try:
        path = Path(open_clip.download_pretrained(tag))
    # Network failures, missing files and open_clip's own checksum failure all end the same way.
    except Exception as error:
        raise DownloadError(f"Could not download {model_name} / {pretrained}: {error}") from None
    return _done(model_name, pretrained, [verify(path)])


def verify(path: Path) -> tuple[Path, str]:
    """The file and how it was checked. A file in the Hugging Face cache is stored under its
    sha256 (blobs/<sha256>); a file fetched from a URL was checked by open_clip if the URL
    carries a checksum."""
    blob = path.resolve()
    if re.fullmatch(r"[0-9a-f]{64}", blob.name):
        digest = _sha256(blob)
        if digest != blob.name:
            blob.unlink()
            raise DownloadError(
                f"{path} is corrupt: its sha256 is {digest}, the Hub lists {blob.name}. It was "
                "deleted; run the command again."
            )
        return path, "sha256 matches the Hugging Face Hub's"
    return path, "sha256 checked by open_clip against the URL" if _url_has_sha(
        path
    ) else "no checksum published"


def listing() -> str:
    """Every model and weights tag open_clip can fetch, one per line."""
    return "\n".join(f"{model:36} {tag}" for model, tag in open_clip.list_pretrained())


def _fetch_hub(repo_id: str, filename: str) -> tuple[Path, str]:
    try:
        return verify(Path(hf_hub_download(repo_id, filename)))
    except DownloadError:
        raise
    except Exception as error:
        raise DownloadError(f"Could not download {filename} of hf-hub:{repo_id}: {error}") from None


def _fetch_hub_weights(repo_id: str) -> tuple[Path, str]:
    try:
        return _fetch_hub(repo_id, "open_clip_model.safetensors")
    except DownloadError:
        return _fetch_hub(repo_id, "open_clip_pytorch_model.bin")


def _done(model_name: str, pretrained: str | None, files: list[tuple[Path, str]]) -> str:
    lines = [f"{path} ({path.stat().st_size / 1e6:,.0f} MB): {check}" for path, check in files]
    export = f"CLIP_MODEL={model_name}" + (f" CLIP_PRETRAINED={pretrained}" if pretrained else "")
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        export += f" HF_HOME={hf_home}"
    return "\n".join(
        [*lines, "Setup finds these files there, without the network. Use them with:", f"  export {export}"]
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _url_has_sha(path: Path) -> bool:
    return any(
        tag.get("url", "").endswith("/" + path.name) and "openaipublic" in tag.get("url", "")
        for model, name in open_clip.list_pretrained()
        for tag in [get_pretrained_cfg(model, name)]
    )
