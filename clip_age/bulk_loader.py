"""Load many photo files for the model: parallel decode workers, batches of model inputs in order."""

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from clip_age import pipeline
from clip_age.faces import Face, FaceDetector
from clip_age.images import InvalidImage
from clip_age.pipeline import FaceOptions
from clip_age.preprocess import InputSpec

IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".avif",
}


@dataclass(frozen=True)
class Item:
    """One file of a batch: its rows of the batch's pixels (faces, or the whole photo), or an error."""

    index: int
    path: str
    rows: int = 0
    faces: tuple[Face, ...] = ()
    error: str | None = None


def expand(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Files as given, and the image files inside folders (recursively, sorted)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(
                str(file)
                for file in path.rglob("*")
                if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            found.append(str(path))
    return found


class _Photos(Dataset):
    def __init__(self, paths: Sequence[str], spec: InputSpec, face_options: FaceOptions | None) -> None:
        self.paths, self.spec, self.face_options = list(paths), spec, face_options
        self._detector: FaceDetector | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray | None, Item]:
        path = self.paths[index]
        try:
            options = self.face_options
            if options is None:
                prepared = pipeline.prepare(path, self.spec)
            else:
                prepared = pipeline.prepare(
                    path, self.spec, self._face_detector(), options.min_face_size, options.max_faces
                )
        except InvalidImage as error:
            return None, Item(index, path, error=str(error))
        return prepared.pixels, Item(index, path, len(prepared.pixels), tuple(prepared.faces))

    def _face_detector(self) -> FaceDetector:
        # Made inside each worker process: OpenCV's network is not shared across a fork.
        if self._detector is None:
            self._detector = FaceDetector(self.face_options.detector_model)
        return self._detector


def _collate(samples: list[tuple[np.ndarray | None, Item]]) -> tuple[torch.Tensor, list[Item]]:
    rows = [pixels for pixels, _ in samples if pixels is not None]
    pixels = torch.from_numpy(np.concatenate(rows)) if rows else torch.empty(0, dtype=torch.uint8)
    return pixels, [item for _, item in samples]


def batches(
    paths: Sequence[str],
    spec: InputSpec,
    batch_size: int = 64,
    workers: int | None = None,
    face_options: FaceOptions | None = None,
) -> Iterator[tuple[torch.Tensor, list[Item]]]:
    """Batches of (uint8 pixels (rows, size, size, 3), the items those rows belong to, in order).

    Decoding runs in `workers` processes, ahead of the consumer, so the GPU does not wait for
    the CPU; on CUDA the batches arrive in pinned memory for a fast copy.
    """
    if face_options is not None:
        FaceDetector(face_options.detector_model)  # a missing model fails here, not once per file
    workers = min(16, os.cpu_count() or 1) if workers is None else workers
    loader = DataLoader(
        _Photos(paths, spec, face_options),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if workers else None,
    )
    yield from loader
