"""Zero-shot age estimation with CLIP: one prompt embedding per age, cosine similarity, softmax."""

import logging
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from clip_age import settings
from clip_age.answers.results import AgeDistribution
from clip_age.estimation import age_rows, cpu_runtime, device_choice, gpu_path, open_clip_model, weights
from clip_age.estimation.preprocess import InputSpec, to_model_input
from prompts import AGES, TEMPLATES, prompt_grid

log = logging.getLogger(__name__)

LOW_QUANTILE, HIGH_QUANTILE = 0.1, 0.9
# Bounds the activations of one forward pass; larger batches run in chunks.
MAX_CHUNK = 256


class AgeEstimator:
    """Loads CLIP once, caches the age prompt embeddings and predicts age distributions."""

    def __init__(
        self,
        model_name: str = "ViT-L-14",
        pretrained: str | None = "openai",
        *,
        templates: Sequence[str] = TEMPLATES,
        device: str = "auto",
        cpu_precision: str = "auto",
        cuda_graphs: bool = True,
        cpu_runtime_setting: str = "auto",
        export_dir: Path | None = None,
        fault: cpu_runtime.Fault | None = None,
    ) -> None:
        self.device = device_choice.resolve_device(device)
        on_cuda = self.device.type == "cuda"
        spec = weights.locate(model_name, pretrained)
        self.precision = (
            device_choice.Precision("fp16", "a GPU")
            if on_cuda
            else device_choice.cpu_precision(cpu_precision)
        )
        export_dir = export_dir or settings.export_dir()
        runtime_to_serve = (
            not on_cuda
            and cpu_precision == "auto"
            and cpu_runtime.expected(spec, cpu_runtime_setting, export_dir, f"torch {self.precision.name}")
        )
        self.clip = self._load_clip(spec, image_tower=not runtime_to_serve)
        self.tokenizer = open_clip.get_tokenizer(spec.model_name)

        cfg = self.model.visual.preprocess_cfg
        size = cfg["size"]
        self.input_spec = InputSpec(
            size=size if isinstance(size, int) else int(size[0]),
            interpolation=cfg["interpolation"],
            resize_mode=cfg["resize_mode"],
        )
        mean = torch.tensor(cfg["mean"], device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(cfg["std"], device=self.device).view(1, 3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add, in fp32 whatever the model computes in.
        self._scale, self._shift = 1.0 / (255.0 * std), -mean / std
        self._ages = torch.tensor(AGES, dtype=torch.float32, device=self.device)
        self._quantiles = torch.tensor(
            [[LOW_QUANTILE, HIGH_QUANTILE]], dtype=torch.float32, device=self.device
        )
        with torch.inference_mode():
            self.logit_scale = float(self.model.logit_scale.float().exp())
        self.templates = list(templates)
        self.prompt_embeddings = self.embed_prompts(self.templates)
        self._lock = threading.Lock()
        self._forward: gpu_path.Forward = partial(self._rows, self.clip, self.prompt_embeddings)
        place = "GPU" if on_cuda else "CPU"
        self.serving = f"{self.precision.name} on the {place} ({self.precision.reason})"
        if on_cuda:
            self._choose_gpu_path(
                _Clip(open_clip_model.create(spec, self.device, "fp32"), torch.float32), cuda_graphs
            )
        elif cpu_precision == "auto":
            self._choose_cpu_runtime(spec, cpu_runtime_setting, export_dir, fault)
        log.info("CLIP serves %s.", self.serving)

    def _load_clip(self, spec: weights.ModelSpec, image_tower: bool = True) -> "_Clip":
        """CLIP in the serving precision; image_tower=False leaves the image tower's weights
        unread where the checkpoint allows it, for a CPU runtime to serve that tower."""
        if self.device.type == "cuda":
            return _Clip(open_clip_model.create(spec, self.device, "fp16"), torch.float16)
        module = open_clip_model.create(spec, self.device, "fp32", image_tower=image_tower)
        if self.precision.name == "bf16":
            # Cast here rather than by open_clip ("pure_bf16"), keeping logit_scale in fp32: CLIP's
            # ln(100) rounded to bf16 is 4.594, a softmax 1.1% too cool.
            logit_scale = module.logit_scale.detach().clone()
            module = module.to(torch.bfloat16)
            module.logit_scale.data = logit_scale
            return _Clip(module, torch.bfloat16)
        if self.precision.name == "int8":
            return _Clip(_quantize_linear_layers(module), torch.float32)
        return _Clip(module, torch.float32)

    @property
    def model(self) -> torch.nn.Module:
        return self.clip.module

    @property
    def dtype(self) -> torch.dtype:
        return self.clip.dtype

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one preprocessed image: (size, size, 3) uint8."""
        return (self.input_spec.size, self.input_spec.size, 3)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return to_model_input(image, self.input_spec)

    def predict_images(self, images: Sequence[Image.Image]) -> list[AgeDistribution]:
        """One distribution per upright RGB image, in order (the whole image: no faces are
        looked for; clip_age.predict takes photos as files and finds faces)."""
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
        rows = [self._rows_for_chunk(chunk) for chunk in batch.split(MAX_CHUNK)]
        return _unpack(torch.cat(rows).numpy()) if rows else []

    @torch.inference_mode()
    def encode_pixels(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Unit-length image embeddings (float32, on the device) for preprocessed pixels."""
        batch = torch.as_tensor(pixels)
        parts = [self._embed(self.clip, chunk.to(self.device)) for chunk in batch.split(MAX_CHUNK)]
        return torch.cat(parts).float()

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-length text embeddings (float32, on the device)."""
        return self._encode_text(self.clip, texts)

    def embed_prompts(self, templates: Sequence[str], clip: "_Clip | None" = None) -> torch.Tensor:
        """One unit vector per age: each template's embedding, averaged over templates."""
        grid = prompt_grid(templates)
        flat = self._encode_text(clip or self.clip, [prompt for row in grid for prompt in row])
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

    def _rows_for_chunk(self, pixels: torch.Tensor) -> torch.Tensor:
        with self._lock:
            return self._forward(pixels.to(self.device, non_blocking=True)).cpu()

    @torch.inference_mode()
    def _encode_text(self, clip: "_Clip", texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        if _context_can_be_cut(clip.module):
            features = _encode_text_prefix(clip.module, tokens)
        else:
            features = clip.module.encode_text(tokens)
        return _unit(features)

    def _embed(self, clip: "_Clip", pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float() * self._scale + self._shift
        return _unit(clip.encode_image(x))

    @torch.inference_mode()
    def _rows(self, clip: "_Clip", prompts: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """The model's rows for uint8 pixels on the device: probabilities, then the 4 stats."""
        logits = self.logit_scale * self._embed(clip, pixels).float() @ prompts.T
        return age_statistics(logits, self._ages, self._quantiles)

    def _choose_cpu_runtime(
        self, spec: weights.ModelSpec, setting: str, export_dir: Path, fault: cpu_runtime.Fault | None
    ) -> None:
        """Serve the image tower from a CPU runtime where one is installed, measured faster and
        agrees with fp32 on the probe photos; torch in its precision, then fp32, where not."""
        fp32: list[torch.nn.Module] = []

        def load_fp32() -> torch.nn.Module:
            if not fp32:
                fp32.append(_Clip(open_clip_model.create(spec, self.device, "fp32"), torch.float32).module)
            return fp32[0]

        def torch_tower(x: torch.Tensor) -> torch.Tensor:
            if isinstance(self.model.visual, open_clip_model.ImageTowerElsewhere):
                # The runtime expected to serve did not: torch's image tower is read after all.
                # The text tower's weights and precision are the same, so the prompts stand.
                self.clip = self._load_clip(spec)
            return self.model.encode_image(x.to(self.dtype))

        model = cpu_runtime.Model(
            spec=spec,
            size=self.input_spec.size,
            torch_name=f"torch {self.precision.name}",
            torch_tower=torch_tower,
            load_fp32=load_fp32,
            normalise=lambda pixels: pixels.permute(0, 3, 1, 2).float() * self._scale + self._shift,
            prompts=self.prompt_embeddings,
            logit_scale=self.logit_scale,
        )
        served = cpu_runtime.choose(
            model,
            setting,
            export_dir,
            partial(cpu_runtime.probe_photos, self.input_spec.size, self.preprocess),
            fault,
        )
        if served is None:
            return
        if served.name == model.torch_name and not served.reasons:
            self.serving += "; the CPU runtimes were timed slower"
            return
        if served.name == "torch fp32":
            self.clip = _Clip(load_fp32(), torch.float32)
            with torch.inference_mode():
                self.logit_scale = float(self.model.logit_scale.exp())
            self.prompt_embeddings = self.embed_prompts(self.templates)
            self.precision = device_choice.Precision("fp32", "the faster paths disagreed with fp32 at setup")
        self.clip = _Clip(self.clip.module, self.clip.dtype, served)
        self._forward = partial(self._rows, self.clip, self.prompt_embeddings)
        self.serving = f"the image tower in {served.name} on the CPU (checked against fp32 at setup)"
        for reason in served.reasons:
            log.warning("%s", reason)
            self.serving += f"; {reason}"

    def _choose_gpu_path(self, reference: "_Clip", cuda_graphs: bool) -> None:
        reference_prompts = self.embed_prompts(self.templates, reference)
        fp32 = partial(self._rows, reference, reference_prompts)

        def capture() -> gpu_path.CudaGraphs:
            return gpu_path.CudaGraphs(self._forward, gpu_path.GRAPH_BATCH_SIZES, self.input_shape)

        probe = torch.from_numpy(gpu_path.probe_images(self.input_spec.size)).to(self.device)
        choice = gpu_path.choose(probe, fp32, self._forward, capture if cuda_graphs else None)
        if choice.name == "fp32":
            self.clip, self.prompt_embeddings = reference, reference_prompts
        del reference, reference_prompts, fp32
        torch.cuda.empty_cache()
        self._forward = choice.forward
        self.serving = f"{choice.name} on the GPU (checked against fp32 at setup)"
        for reason in choice.reasons:
            log.warning("%s", reason)
            self.serving += f"; {reason}"


@dataclass(frozen=True)
class _Clip:
    """CLIP in one number format: the module, and the dtype its inputs are given in."""

    module: torch.nn.Module
    dtype: torch.dtype
    # The image tower where it runs outside this module (a CPU runtime); the text tower stays here.
    image_tower: cpu_runtime.Tower | None = None

    def __post_init__(self) -> None:
        self.module.eval().requires_grad_(False)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Image features for normalised float32 pixels."""
        if self.image_tower is not None:
            return self.image_tower(x)
        return self.module.encode_image(x.to(self.dtype))


def _unit(features: torch.Tensor) -> torch.Tensor:
    """Unit length in fp32: in bf16 the model's own normalize is off by up to 0.3%, enough to
    move a cosine past 1."""
    return torch.nn.functional.normalize(features.float(), dim=-1)


def _context_can_be_cut(model: torch.nn.Module) -> bool:
    """Whether a text embedding depends only on the tokens up to the end-of-text token: an
    open_clip CLIP text tower with a causal mask that pools at the end-of-text token."""
    return (
        type(model) is open_clip.model.CLIP
        and getattr(model, "text_pool_type", None) == "argmax"
        and getattr(model, "attn_mask", None) is not None
    )


def _encode_text_prefix(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's CLIP.encode_text run over the tokens up to the last end-of-text token only.

    The prompts are about 8 tokens of a 77-token context; with a causal mask nothing after the
    end-of-text token reaches it, so cutting the context there gives the same embeddings
    (tested to 1e-6) at a tenth of the cost, which is most of setup on a CPU.
    """
    length = int(tokens.argmax(dim=-1).max()) + 1  # CLIP's end-of-text token has the largest id
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
    x = x[torch.arange(len(tokens), device=tokens.device), tokens.argmax(dim=-1)]
    return (
        model.text_projection(x)
        if isinstance(model.text_projection, torch.nn.Linear)
        else x @ model.text_projection
    )


def _quantize_linear_layers(model: torch.nn.Module) -> torch.nn.Module:
    """int8 weights for every Linear layer, activations quantised on the fly (CPU only)."""
    with warnings.catch_warnings():
        # torch marks its eager quantisation API deprecated in favour of torchao; it still
        # works in the pinned torch and is what was measured (BENCHMARKS.md).
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    # open_clip reads its blocks' dtype from mlp.c_fc.weight, a method once quantised; this is the
    # attribute open_clip itself consults for int8 layers.
    for module in quantized.modules():
        if hasattr(module, "mlp") and hasattr(module.mlp, "c_fc"):
            module.mlp.c_fc.int8_original_dtype = torch.float32
    return quantized


def age_statistics(logits: torch.Tensor, ages: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Rows of the probabilities, then the statistics in age_rows.STATISTICS' order.

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
    stats = {
        "age": top,
        "expected_age": expected,
        "age_low": ages[bounds[:, 0]],
        "age_high": ages[bounds[:, 1]],
    }
    return torch.cat(
        [probabilities, torch.stack([stats[name] for name in age_rows.STATISTICS], dim=1)], dim=1
    )


def _unpack(rows: np.ndarray) -> list[AgeDistribution]:
    return [
        AgeDistribution(
            probabilities=age_rows.probabilities(row).astype(np.float32),
            age=int(age_rows.column(row, "age")),
            expected_age=float(age_rows.column(row, "expected_age")),
            age_low=int(age_rows.column(row, "age_low")),
            age_high=int(age_rows.column(row, "age_high")),
        )
        for row in rows
    ]
