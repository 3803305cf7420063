"""The agreement gate for the CPU precisions, on a real-size ViT-B-32 (random init: agreement in
number format does not depend on what the weights learned)."""

import numpy as np
import pytest
import torch
from PIL import Image

from clip_age.dev.tiny_models import build_random_model
from clip_age.estimation import cpu_runtime, device_choice
from clip_age.estimation.estimator import AgeEstimator
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
def estimator_for(vit_b_32):
    """One estimator per precision for the whole module: each takes seconds to build."""
    made: dict[str, AgeEstimator] = {}

    def get(precision: str) -> AgeEstimator:
        if precision not in made:
            made[precision] = AgeEstimator(vit_b_32, device="cpu", cpu_precision=precision)
        return made[precision]

    return get


@pytest.fixture(scope="module")
def reference(estimator_for, photos):
    fp32 = estimator_for("fp32")
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
    vit_b_32, estimator_for, reference, export_dir, precision, runtime
):
    pixels, images, texts = reference
    if precision != "auto":  # a runtime serves only with auto: this is the module's estimator
        estimator = estimator_for(precision)
    else:
        estimator = AgeEstimator(
            vit_b_32,
            device="cpu",
            cpu_precision=precision,
            cpu_runtime_setting=runtime,
            export_dir=export_dir,
        )
    chosen = device_choice.cpu_precision("auto").name if precision == "auto" else precision
    assert estimator.precision.name == chosen
    if runtime != "torch":  # the image tower in the runtime passed the setup gate
        assert "was not used" not in estimator.serving and estimator.clip.image_tower is not None
    image_cosine = (estimator.encode_pixels(pixels) * images).sum(-1)
    text_cosine = (estimator.encode_text(PROMPTS) * texts).sum(-1)
    assert float(image_cosine.min()) >= 0.999, precision
    assert float(text_cosine.min()) >= 0.999, precision
    assert torch.isfinite(image_cosine).all()


def reference_rows(logit_scale: float, images: torch.Tensor, prompts: torch.Tensor) -> tuple[np.ndarray, ...]:
    """Probabilities and argmax/expected age in float64 from the spec: softmax(scale * cos)."""
    logits = logit_scale * images.double() @ prompts.double().T
    probabilities = logits.softmax(dim=-1).numpy()
    ages = np.arange(1, 100)
    return probabilities, ages[probabilities.argmax(axis=1)], probabilities @ ages


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_logits_and_softmax_are_computed_in_fp32_whatever_the_towers_run_in(
    estimator_for, reference, precision
):
    """Given the embeddings the towers produced, the answer is the float64 softmax of them to
    1e-5: bf16 logits at CLIP's scale of 100 (spacing 0.0625 at 8 to 16) move a probability by
    up to 3%, and a bf16 logit scale (4.594 for ln 100) by 1.1% everywhere."""
    pixels, _, _ = reference
    estimator = estimator_for(precision)
    assert estimator.logit_scale == pytest.approx(100, rel=1e-6)  # the checkpoint's, not rounded
    answers = estimator.predict_pixels(pixels)
    probabilities, ages, expected = reference_rows(
        100.0, estimator.encode_pixels(pixels), estimator.prompt_embeddings
    )
    got = np.stack([answer.probabilities for answer in answers])
    np.testing.assert_allclose(got, probabilities, rtol=1e-5, atol=1e-9)
    assert [answer.age for answer in answers] == ages.tolist()
    np.testing.assert_allclose([answer.expected_age for answer in answers], expected, atol=1e-4)


@pytest.mark.parametrize(("precision", "tolerance", "years"), [("bf16", 0.01, 0.5), ("int8", 0.03, 0.75)])
def test_probabilities_and_ages_agree_with_fp32(estimator_for, reference, precision, tolerance, years):
    """End to end against the fp32 model on 16 crops. The tolerance is what the embedding gate
    above lets through, measured (2026-12-01) with margin: a cosine of 0.999 leaves an embedding
    error of norm up to 0.045, which at a logit scale of 100 moves logits by tenths; on this
    model's flat distributions (top probability 0.07) that is up to 0.004 (bf16) and 0.016
    (int8) in a probability and 0.2 / 0.3 years in the expected age. Near-ties make the argmax
    age free to move to any age fp32 found about as likely."""
    pixels, _, _ = reference
    fp32 = estimator_for("fp32").predict_pixels(pixels)
    other = estimator_for(precision).predict_pixels(pixels)
    for want, got in zip(fp32, other, strict=True):
        assert np.abs(got.probabilities - want.probabilities).max() <= tolerance
        assert abs(got.expected_age - want.expected_age) <= years
        # The age it picks is one fp32 found as likely, within the tolerance, as fp32's own pick.
        assert want.probabilities[got.age - 1] >= want.probabilities.max() - tolerance
