"""The GPU fast path's self-check, run on the CPU with faults injected where CUDA would be.

No test machine has a GPU: the real fp32 eager pass of a tiny model is the reference here, and
the "fp16" and "graph" paths are that pass, broken on purpose in the ways a GPU path could be.
"""

from functools import partial

import numpy as np
import pytest
import torch

from clip_age.estimation import gpu_path
from clip_age.estimation.estimator import AgeEstimator


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    estimator = AgeEstimator(f"local-dir:{tiny_model_dir}", device="cpu", cpu_precision="fp32")
    return estimator, partial(estimator._rows, estimator.clip, estimator.prompt_embeddings)


@pytest.fixture(scope="module")
def probe():
    return torch.from_numpy(gpu_path.probe_images(224))


class FakeGraphs:
    """Stands in for CudaGraphs: replays `forward`, optionally broken."""

    def __init__(self, forward, broken=None, fail_after: int | None = None) -> None:
        self.forward, self.broken, self.fail_after, self.calls = forward, broken, fail_after, 0

    def fits(self, count: int) -> bool:
        return count <= 64

    def __call__(self, pixels):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        rows = self.forward(pixels)
        return rows if self.broken is None else self.broken(rows)


def shift_ages(rows: torch.Tensor) -> torch.Tensor:
    """Probabilities one age off, as a wrong kernel could make them."""
    shifted = rows.clone()
    shifted[:, :99] = torch.roll(rows[:, :99], 7, dims=1)
    shifted[:, -4] = torch.tensor(np.arange(1, 100), dtype=rows.dtype)[shifted[:, :99].argmax(1)]
    return shifted


def nudge(rows: torch.Tensor, amount: float) -> torch.Tensor:
    nudged = rows.clone()
    nudged[:, :99] = (rows[:, :99] + amount).clamp(min=0)
    return nudged


def fails(_):
    raise RuntimeError("no kernel image is available for execution on the device")


def test_a_path_that_agrees_all_the_way_serves_from_graphs(reference, probe):
    _, fp32 = reference
    choice = gpu_path.choose(probe, fp32, fp32, lambda: FakeGraphs(fp32))
    assert choice.name == "fp16 with CUDA graphs" and choice.reasons == []
    assert isinstance(choice.forward, gpu_path.GuardedGraphs)
    torch.testing.assert_close(choice.forward(probe), fp32(probe))


@pytest.mark.parametrize(
    ("fp16", "reason"),
    [
        (fails, "fp16 was not used: it failed (RuntimeError: no kernel image"),
        (
            lambda fp32: lambda px: shift_ages(fp32(px)),
            "fp16 was not used: its argmax age differs from fp32's on",
        ),
        (
            lambda fp32: lambda px: fp32(px) * float("nan"),
            "fp16 was not used: it gave non-finite probabilities",
        ),
    ],
    ids=["raises", "wrong ages", "nan"],
)
def test_fp16_that_fails_or_disagrees_steps_down_to_fp32(reference, probe, fp16, reason):
    _, fp32 = reference
    broken = fp16 if fp16 is fails else fp16(fp32)
    captured = []
    choice = gpu_path.choose(probe, fp32, broken, lambda: captured.append(1) or FakeGraphs(broken))
    assert choice.name == "fp32" and choice.forward is fp32
    assert choice.reasons[0].startswith(reason)
    assert captured == []  # graphs of a rejected path are never captured


@pytest.mark.parametrize(
    ("graphs", "reason"),
    [
        (lambda fp16: (_ for _ in ()).throw(RuntimeError("operation not permitted when stream is capturing")),
         "CUDA graphs were not used: it failed (RuntimeError: operation not permitted"),
        (lambda fp16: FakeGraphs(fp16, broken=lambda rows: nudge(rows, 0.01)),
         "CUDA graphs were not used: replayed probabilities differ from the eager pass by"),
        (lambda fp16: FakeGraphs(fp16, broken=shift_ages), "CUDA graphs were not used: replayed"),
    ],
    ids=["capture raises", "drift", "wrong ages"],
)  # fmt: skip
def test_graphs_that_fail_or_disagree_step_down_to_eager_fp16(reference, probe, graphs, reason):
    _, fp32 = reference
    choice = gpu_path.choose(probe, fp32, fp32, lambda: graphs(fp32))
    assert choice.name == "fp16" and choice.forward is fp32
    assert choice.reasons[0].startswith(reason)


def test_fp16_within_the_tolerance_is_kept(reference, probe):
    _, fp32 = reference
    close = lambda px: nudge(fp32(px), 1e-4)  # noqa: E731
    assert gpu_path.choose(probe, fp32, close, None).name == "fp16"


def test_an_argmax_flip_inside_a_near_tie_is_accepted_and_a_large_expected_age_shift_is_not():
    reference = torch.zeros(1, 103)
    reference[0, [29, 30]] = torch.tensor([0.50, 0.49])
    reference[0, -3] = 30.0
    flipped = reference.clone()
    flipped[0, [29, 30]] = torch.tensor([0.49, 0.50])
    assert gpu_path.disagreement_fp16(flipped, reference) is None
    moved = reference.clone()
    moved[0, -3] = 31.5
    assert (
        gpu_path.disagreement_fp16(moved, reference)
        == "its expected age differs from fp32's by up to 1.50 years"
    )


def test_a_graph_replay_that_fails_during_a_request_falls_back_to_eager_for_good(reference, probe, caplog):
    _, fp32 = reference
    graphs = FakeGraphs(fp32, fail_after=1)
    guarded = gpu_path.GuardedGraphs(graphs, fp32)
    torch.testing.assert_close(guarded(probe[:2]), fp32(probe[:2]))
    torch.testing.assert_close(guarded(probe[:3]), fp32(probe[:3]))  # the replay failed: answered eagerly
    assert guarded.graphs is None and "serving eagerly from now on" in caplog.text
    guarded(probe[:1])
    assert graphs.calls == 2  # never replayed again


def test_the_estimator_serves_what_the_check_chose(tiny_model_dir, probe):
    estimator = AgeEstimator(f"local-dir:{tiny_model_dir}", device="cpu", cpu_precision="fp32")
    good = estimator._forward(probe)
    estimator._forward = lambda px: shift_ages(good[: len(px)])  # a broken fast path
    from clip_age.estimation import open_clip_model, weights

    reference = type(estimator.clip)(
        open_clip_model.create(weights.locate(f"local-dir:{tiny_model_dir}", None), "cpu", "fp32"),
        torch.float32,
    )
    estimator._choose_gpu_path(reference, cuda_graphs=True)
    assert estimator.clip is reference
    assert estimator.serving.startswith("fp32 on the GPU (checked against fp32 at setup); fp16 was not used")
    torch.testing.assert_close(estimator._forward(probe), good)


def test_probe_images_are_photo_sized_and_all_different():
    images = gpu_path.probe_images(160, count=16)
    assert images.shape == (16, 160, 160, 3) and images.dtype == np.uint8
    assert len({image.tobytes() for image in images}) == 16
    assert all(image.std() > 30 for image in images)  # not flat
