"""Zero-shot age estimation with CLIP: one prompt embedding per age, cosine similarity, softmax."""

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import open_clip  # noqa: E402, I001  (after weights, on purpose)
import torch
from PIL import Image

from clip_age import weights  # first: it keeps open_clip's Hugging Face client offline
from clip_age.preprocess import InputSpec, to_model_input
from clip_age.results import AgeDistribution
from clip_age.settings import DEFAULT_WEIGHTS_DIR
from prompts import AGES, TEMPLATES, prompt_grid

log = logging.getLogger(__name__)

LOW_QUANTILE, HIGH_QUANTILE = 0.1, 0.9
# Batch sizes replayed from CUDA graphs; a request pads up to the next one.
GRAPH_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
# Bounds the activations of one forward pass; larger batches run in chunks.
MAX_CHUNK = 256
_STATS = 4  # age, expected age, low, high follow the probabilities in one packed row


class AgeEstimator:
    """Loads CLIP once, caches the age prompt embeddings and predicts age distributions."""

    def __init__(
        self,
        model_name: str = "ViT-L-14",
        pretrained: str | None = "openai",
        *,
        weights_dir: Path = DEFAULT_WEIGHTS_DIR,
        templates: Sequence[str] = TEMPLATES,
        device: str | None = None,
        cuda_graphs: bool = True,
    ) -> None:
        self.device = torch.device(device or _default_device())
        on_cuda = self.device.type == "cuda"
        # fp16 halves the GPU's work; the CPU has no fast fp16 path and keeps fp32.
        self.dtype = torch.float16 if on_cuda else torch.float32
        spec = weights.locate(model_name, pretrained, weights_dir)
        model = weights.create(spec, str(self.device), "fp16" if on_cuda else "fp32")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model_name)

        cfg = self.model.visual.preprocess_cfg
        size = cfg["size"]
        self.input_spec = InputSpec(
            size=size if isinstance(size, int) else int(size[0]),
            interpolation=cfg["interpolation"],
            resize_mode=cfg["resize_mode"],
        )
        mean = torch.tensor(cfg["mean"], device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(cfg["std"], device=self.device).view(1, 3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add on the device.
        self._scale = (1.0 / (255.0 * std)).to(self.dtype)
        self._shift = (-mean / std).to(self.dtype)
        self._ages = torch.tensor(AGES, dtype=torch.float32, device=self.device)
        self._quantiles = torch.tensor(
            [[LOW_QUANTILE, HIGH_QUANTILE]], dtype=torch.float32, device=self.device
        )
        with torch.inference_mode():
            self.logit_scale = float(self.model.logit_scale.exp())
        self.prompt_embeddings = self.embed_prompts(templates)
        self._lock = threading.Lock()
        self._graphs = self._capture_graphs() if on_cuda and cuda_graphs else None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one preprocessed image: (size, size, 3) uint8."""
        return (self.input_spec.size, self.input_spec.size, 3)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return to_model_input(image, self.input_spec)

    def predict(self, images: Sequence[Image.Image]) -> list[AgeDistribution]:
        """One distribution per RGB image, in order."""
        if not images:
            return []
        return self.predict_pixels(np.stack([self.preprocess(image) for image in images]))

    def predict_pixels(self, pixels: np.ndarray | torch.Tensor) -> list[AgeDistribution]:
        """One distribution per preprocessed image; pixels is uint8 (batch, size, size, 3)."""
        batch = torch.as_tensor(pixels)
        if batch.dtype != torch.uint8 or tuple(batch.shape[1:]) != self.input_shape:
            raise ValueError(
                f"Expected uint8 pixels of shape (batch, {', '.join(map(str, self.input_shape))}), "
                f"got {batch.dtype} {tuple(batch.shape)}."
            )
        rows = [self._predict_chunk(chunk) for chunk in batch.split(MAX_CHUNK)]
        return _unpack(torch.cat(rows).numpy()) if rows else []

    @torch.inference_mode()
    def encode_pixels(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Unit-length image embeddings (float32, on the device) for preprocessed pixels."""
        batch = torch.as_tensor(pixels)
        parts = [self._embed(chunk.to(self.device)) for chunk in batch.split(MAX_CHUNK)]
        return torch.cat(parts).float()

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-length text embeddings (float32, on the device)."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        return self.model.encode_text(tokens, normalize=True).float()

    def embed_prompts(self, templates: Sequence[str]) -> torch.Tensor:
        """One unit vector per age: each template's embedding, averaged over templates."""
        grid = prompt_grid(templates)
        flat = self.encode_text([prompt for row in grid for prompt in row])
        per_template = flat.view(len(grid), len(AGES), -1)
        return torch.nn.functional.normalize(per_template.mean(dim=0), dim=-1)

    @torch.inference_mode()
    def distributions(
        self, embeddings: torch.Tensor, prompt_embeddings: torch.Tensor | None = None
    ) -> list[AgeDistribution]:
        """Distributions for unit-length image embeddings, against these prompts (default: ours)."""
        prompts = self.prompt_embeddings if prompt_embeddings is None else prompt_embeddings
        logits = self.logit_scale * embeddings.float().to(self.device) @ prompts.float().T
        return _unpack(age_statistics(logits, self._ages, self._quantiles).cpu().numpy())

    def _capture_graphs(self) -> "_CudaGraphs | None":
        try:
            return _CudaGraphs(self._forward, GRAPH_BATCH_SIZES, self.input_shape)
        # Some open_clip towers hold operations a graph cannot capture (host syncs, dynamic
        # shapes); such a model still serves, eagerly, rather than failing setup.
        except RuntimeError as error:
            log.warning("CUDA graph capture failed, running without graphs: %s", error)
            torch.cuda.synchronize()
            return None

    def _predict_chunk(self, pixels: torch.Tensor) -> torch.Tensor:
        with self._lock:
            if self._graphs is not None and self._graphs.fits(len(pixels)):
                return self._graphs.run(pixels)
            with torch.inference_mode():
                return self._forward(pixels.to(self.device, non_blocking=True)).cpu()

    def _embed(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).to(self.dtype) * self._scale + self._shift
        return self.model.encode_image(x, normalize=True)

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits = self.logit_scale * self._embed(pixels).float() @ self.prompt_embeddings.T
        return age_statistics(logits, self._ages, self._quantiles)


def age_statistics(logits: torch.Tensor, ages: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Rows of [probabilities..., argmax age, expected age, low age, high age].

    logits is (batch, len(ages)); quantiles is (1, 2), the low and high cumulative
    probabilities. Computed where the logits are, so a GPU request costs one small copy.
    """
    probabilities = logits.softmax(dim=-1)
    top = ages[probabilities.argmax(dim=-1)]
    expected = probabilities @ ages
    cdf = probabilities.cumsum(dim=-1)
    targets = quantiles.expand(len(cdf), 2).contiguous()
    # The first age whose cumulative probability reaches the quantile.
    bounds = torch.searchsorted(cdf, targets).clamp(max=len(ages) - 1)
    stats = torch.stack([top, expected, ages[bounds[:, 0]], ages[bounds[:, 1]]], dim=1)
    return torch.cat([probabilities, stats], dim=1)


def _unpack(rows: np.ndarray) -> list[AgeDistribution]:
    results = []
    for row in rows:
        probabilities, (top, expected, low, high) = row[:-_STATS], row[-_STATS:]
        results.append(
            AgeDistribution(
                probabilities=probabilities.astype(np.float32),
                age=int(top),
                expected_age=float(expected),
                age_low=int(low),
                age_high=int(high),
            )
        )
    return results


def _default_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    log.warning("CUDA is not available: running CLIP on the CPU in fp32, which is much slower.")
    return "cpu"


class _CudaGraphs:
    """The forward pass captured as CUDA graphs, one per batch size, replayed per request.

    A ViT forward pass is hundreds of small kernels; at batch 1 launching them costs more
    than running them. Capture happens once at setup so no request pays for it.
    """

    def __init__(self, forward, batch_sizes: Sequence[int], input_shape: tuple[int, ...]) -> None:
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        pool = torch.cuda.graph_pool_handle()
        with torch.inference_mode():
            for size in sorted(batch_sizes, reverse=True):
                static_input = torch.zeros((size, *input_shape), dtype=torch.uint8, device="cuda")
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(3):
                        forward(static_input)
                torch.cuda.current_stream().wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool):
                    static_output = forward(static_input)
                self._graphs[size] = (graph, static_input, static_output)
        torch.cuda.synchronize()
        self._sizes = sorted(self._graphs)

    def fits(self, count: int) -> bool:
        return 0 < count <= self._sizes[-1]

    def run(self, pixels: torch.Tensor) -> torch.Tensor:
        count = len(pixels)
        size = next(size for size in self._sizes if size >= count)
        graph, static_input, static_output = self._graphs[size]
        # Rows past `count` keep the previous request's pixels; their outputs are dropped.
        static_input[:count].copy_(pixels, non_blocking=True)
        graph.replay()
        return static_output[:count].cpu()
