"""The GPU's fast path (fp16, CUDA graphs), checked against fp32 at setup before it serves.

No test machine has a GPU, so this code checks itself wherever it runs: at setup a probe batch
goes through fp32 eagerly (the reference), fp16 eagerly, and fp16 replayed from CUDA graphs.
Each step must agree with the one before it, or the next one down serves: graphs, then fp16,
then fp32. A graph replay that fails during a request falls back to fp16 for good.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from clip_age.estimation import age_rows

log = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor], torch.Tensor]  # uint8 pixels -> rows [probabilities..., 4 stats]

# Batch sizes replayed from CUDA graphs; a batch pads up to the next one.
GRAPH_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
# fp16 against fp32: fp16 keeps about 3 significant digits, so an image-text cosine moves by
# about 1e-3 and a logit (x100, CLIP's scale) by about 0.1: the probabilities shift by a few
# percent at most, the expected age by well under a year. The argmax may flip only where fp32
# itself has a near tie.
FP16_EXPECTED_AGE_YEARS = 1.0
FP16_NEAR_TIE = 0.02  # fp32 probability within this of the top counts as a tie
# A graph replays the same kernels as the eager pass it was captured from.
GRAPH_PROBABILITY_ATOL = 1e-3


@dataclass
class Choice:
    forward: Forward
    name: str
    reasons: list[str] = field(default_factory=list)


def choose(
    probe: torch.Tensor,
    fp32: Forward,
    fp16: Forward,
    capture_graphs: Callable[[], "CudaGraphs"] | None,
) -> Choice:
    """The fastest of graphs / fp16 / fp32 that agrees with the one below it on the probe."""
    reference = fp32(probe)
    problem = _attempt(lambda: disagreement_fp16(fp16(probe), reference))
    if problem:
        return Choice(fp32, "fp32", [f"fp16 was not used: {problem}"])
    if capture_graphs is None:
        return Choice(fp16, "fp16", [])
    half = fp16(probe)
    graphs: CudaGraphs | None = None

    def check_graphs() -> str | None:
        nonlocal graphs
        graphs = capture_graphs()
        return disagreement_graphs(graphs(probe), half)

    problem = _attempt(check_graphs)
    if problem:
        return Choice(fp16, "fp16", [f"CUDA graphs were not used: {problem}"])
    return Choice(GuardedGraphs(graphs, fp16), "fp16 with CUDA graphs", [])


def disagreement_fp16(rows: torch.Tensor, reference: torch.Tensor) -> str | None:
    """Why fp16's answers are not fp32's, within the tolerances above; None when they agree."""
    probabilities = age_rows.probabilities(rows).float().cpu()
    expected = age_rows.column(rows, "expected_age").float().cpu()
    ref_probabilities = age_rows.probabilities(reference).float().cpu()
    ref_expected = age_rows.column(reference, "expected_age").float().cpu()
    if not torch.isfinite(probabilities).all():
        return "it gave non-finite probabilities"
    top = probabilities.argmax(dim=1)
    ref_top_value = ref_probabilities.max(dim=1).values
    chosen_value = ref_probabilities.gather(1, top[:, None])[:, 0]
    ties = ref_top_value - chosen_value <= FP16_NEAR_TIE
    if not ties.all():
        return f"its argmax age differs from fp32's on {int((~ties).sum())} of {len(rows)} probe images"
    worst = float((expected - ref_expected).abs().max())
    if worst > FP16_EXPECTED_AGE_YEARS:
        return f"its expected age differs from fp32's by up to {worst:.2f} years"
    return None


def disagreement_graphs(rows: torch.Tensor, eager: torch.Tensor) -> str | None:
    """Why a graph replay's answers are not the eager pass's; None when they agree."""
    difference = (age_rows.probabilities(rows).float() - age_rows.probabilities(eager).float()).abs().max()
    if not torch.isfinite(difference) or float(difference) > GRAPH_PROBABILITY_ATOL:
        return f"replayed probabilities differ from the eager pass by {float(difference):.2g}"
    if not torch.equal(age_rows.column(rows, "age").cpu(), age_rows.column(eager, "age").cpu()):
        return "replayed argmax ages differ from the eager pass"
    return None


def probe_images(size: int, count: int = 16, seed: int = 0) -> np.ndarray:
    """uint8 (count, size, size, 3) model inputs that look like photos to a model: smooth
    shapes and gradients with some texture, as different from each other as can be."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(count):
        channels = []
        for _ in range(3):
            a, b, c, d = rng.uniform(-4, 4, 4)
            wave = np.sin(a * x + b * y + rng.uniform(0, 6)) * np.cos(c * x - d * y)
            channels.append(wave + rng.normal(0, 0.15, (size, size)))
        image = np.stack(channels, axis=-1)
        image = (image - image.min()) / (np.ptp(image) + 1e-6) * 255
        images.append(image.astype(np.uint8))
    return np.stack(images)


class CudaGraphs:
    """The forward pass captured as CUDA graphs, one per batch size, replayed per request.

    A ViT forward pass is hundreds of small kernels; at batch 1 launching them costs more than
    running them. Capture happens once at setup so no request pays for it.
    """

    def __init__(self, forward: Forward, batch_sizes: Sequence[int], input_shape: tuple[int, ...]) -> None:
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

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        count = len(pixels)
        size = next(size for size in self._sizes if size >= count)
        graph, static_input, static_output = self._graphs[size]
        # Rows past `count` keep the previous batch's pixels; their outputs are dropped.
        static_input[:count].copy_(pixels, non_blocking=True)
        graph.replay()
        return static_output[:count].clone()


class GuardedGraphs:
    """Graph replay, falling back to the eager pass (for good) if a replay ever fails."""

    def __init__(self, graphs: "CudaGraphs", eager: Forward) -> None:
        self.graphs: CudaGraphs | None = graphs
        self.eager = eager

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.graphs is not None and self.graphs.fits(len(pixels)):
            try:
                return self.graphs(pixels)
            except Exception:
                log.exception("A CUDA graph replay failed; serving eagerly from now on.")
                self.graphs = None
        return self.eager(pixels)


def _attempt(check: Callable[[], str | None]) -> str | None:
    try:
        return check()
    # Whatever a fast path raises (a CUDA error, an unsupported op) rules that path out.
    except Exception as error:
        return f"it failed ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
