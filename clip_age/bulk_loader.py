"""Load many photo files for the model: parallel decode workers, batches of model inputs in order."""

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from clip_age import pipeline
from clip_age.faces import Face, FaceDetector
from clip_age.images import InvalidImage
from clip_age.options import FaceRequest
from clip_age.preprocess import InputSpec


@dataclass(frozen=True)
class Item:
    """One file of a batch: its rows of the batch's pixels (faces, or the whole photo), or an error."""

    index: int
    path: str
    rows: int = 0
    faces: tuple[Face, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class FaceSearch:
    """Asking for one age per face: the YuNet model file, and which faces count."""

    detector_model: Path
    request: FaceRequest = FaceRequest()


class _Photos(Dataset):
    def __init__(self, paths: Sequence[str], spec: InputSpec, faces: FaceSearch | None) -> None:
        self.paths, self.spec, self.faces = list(paths), spec, faces
        self._detector: FaceDetector | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[np.ndarray | None, Item]:
        path = self.paths[index]
        try:
            if self.faces is None:
                prepared = pipeline.prepare(path, self.spec)
            else:
                prepared = pipeline.prepare(path, self.spec, self._face_detector(), self.faces.request)
        except InvalidImage as error:
            return None, Item(index, path, error=str(error))
        return prepared.pixels, Item(index, path, len(prepared.pixels), tuple(prepared.faces))

    def _face_detector(self) -> FaceDetector:
        # Made inside each worker process: OpenCV's network is not shared across a fork.
        if self._detector is None:
            self._detector = FaceDetector(self.faces.detector_model)
        return self._detector


def _collate(samples: list[tuple[np.ndarray | None, Item]]) -> tuple[torch.Tensor, list[Item]]:
    rows = [pixels for pixels, _ in samples if pixels is not None]
    pixels = torch.from_numpy(np.concatenate(rows)) if rows else torch.empty(0, dtype=torch.uint8)
    return pixels, [item for _, item in samples]


def _clean_processes() -> multiprocessing.context.BaseContext:
    """Workers forked from a forkserver that only imported this module, not from the caller:
    forking a process whose model or face detector has started threads leaves locks held in
    the child (seen: decode workers stuck for good after a face-detection run)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["clip_age.bulk_loader"])
    return context


def _one_thread_each(_: int) -> None:
    """Each decode process computes on one core (torch sets its own threads to one in a
    DataLoader worker; OpenCV would start one per core): the processes are the parallelism."""
    cv2.setNumThreads(1)


def default_workers(model_device: torch.device) -> int:
    """Decode processes beside the model: one per core (up to 16) when CLIP runs on a GPU, none
    when it runs on the CPU.

    On a CPU, torch's threads already use every core, and decoders running beside them stall its
    parallel regions: on 2 cores with ViT-B-32 in bf16, 256 px faces went from 33.5 to 17.7
    photos/s with 2 decode workers, 4032x3024 JPEGs from 17.4 to 10.0. Decoding between batches
    in the calling process is faster there. On a GPU the cores are free to decode ahead.
    """
    return min(16, os.cpu_count() or 1) if model_device.type == "cuda" else 0


def batches(
    paths: Sequence[str],
    spec: InputSpec,
    model_device: torch.device,
    batch_size: int = 64,
    workers: int | None = None,
    faces: FaceSearch | None = None,
) -> Iterator[tuple[torch.Tensor, list[Item]]]:
    """Batches of (uint8 pixels (rows, size, size, 3), the items those rows belong to, in order).

    Decoding runs in `workers` processes (default: default_workers), ahead of the consumer, so
    a GPU does not wait for the CPU; for CUDA the batches arrive in pinned memory for a fast copy.
    """
    if faces is not None:
        FaceDetector(faces.detector_model)  # a missing model fails here, not once per file
    workers = default_workers(model_device) if workers is None else workers
    loader = DataLoader(
        _Photos(paths, spec, faces),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=model_device.type == "cuda",
        prefetch_factor=4 if workers else None,
        worker_init_fn=_one_thread_each,
        multiprocessing_context=_clean_processes() if workers else None,
    )
    yield from loader
