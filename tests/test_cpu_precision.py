"""The agreement gate for the CPU precisions, on a real-size ViT-B-32 (random init: agreement in
number format does not depend on what the weights learned)."""

import numpy as np
import pytest
import torch
from PIL import Image

from clip_age import compute, cpu_runtime
from clip_age.dev.tiny_models import build_random_model
from clip_age.estimator import AgeEstimator
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.slow

PROMPTS = [f"this person is {age} years old" for age in range(1, 100)]


@pytest.fixture(scope="module")
def vit_b_32(tmp_path_factory):
    folder = build_random_model("ViT-B-32", tmp_path_factory.mktemp("vit-b-32"))
    return f"local-dir:{folder}"


@pytest.fixture(scope="module")
def photos():
    astronaut = Image.open(EXAMPLES / "astronaut.png").convert("RGB")
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(16):
        left, top = rng.integers(0, 200, 2)
        side = int(rng.integers(200, 312))
        crops.append(astronaut.crop((left, top, left + side, top + side)).rotate(float(rng.uniform(-20, 20))))
    return crops


@pytest.fixture(scope="module")
def reference(vit_b_32, photos):
    fp32 = AgeEstimator(vit_b_32, device="cpu", cpu_precision="fp32")
    pixels = np.stack([fp32.preprocess(photo) for photo in photos])
    return pixels, fp32.encode_pixels(pixels), fp32.encode_text(PROMPTS)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("exports")


# CLIP_CPU_RUNTIME's values are the packages' names.
RUNTIMES = [
    package for name, package in cpu_runtime.RUNTIME_PACKAGES.items() if name in cpu_runtime.installed()
]


@pytest.mark.parametrize(
    ("precision", "runtime"),
    [("auto", "torch"), ("bf16", "torch"), ("int8", "torch"), *(("auto", name) for name in RUNTIMES)],
)
def test_image_and_text_embeddings_stay_within_a_cosine_of_0_999_of_fp32(
    vit_b_32, reference, export_dir, precision, runtime
):
    pixels, images, texts = reference
    estimator = AgeEstimator(
        vit_b_32, device="cpu", cpu_precision=precision, cpu_runtime_setting=runtime, export_dir=export_dir
    )
    chosen = compute.cpu_precision("auto").name if precision == "auto" else precision
    assert estimator.precision.name == chosen
    if runtime != "torch":  # the image tower in the runtime passed the setup gate
        assert "was not used" not in estimator.serving and estimator.clip.image_tower is not None
    image_cosine = (estimator.encode_pixels(pixels) * images).sum(-1)
    text_cosine = (estimator.encode_text(PROMPTS) * texts).sum(-1)
    assert float(image_cosine.min()) >= 0.999, precision
    assert float(text_cosine.min()) >= 0.999, precision
    assert torch.isfinite(image_cosine).all()
