import logging

import numpy as np
import pytest
import torch

from clip_age.dev.tiny_models import build_tiny_model
from clip_age.estimation import device_choice
from clip_age.estimation.estimator import AgeEstimator, age_statistics
from prompts import AGES, CARD_TEMPLATE


@pytest.mark.parametrize("age", [1, 42, 99])
def test_oracle_image_embedding_equal_to_the_prompt_of_an_age_gives_that_age(estimator, age):
    embedding = estimator.encode_text([f"this person is {age} years old"])
    [result] = estimator.distributions(embedding)
    assert result.age == age
    assert result.probabilities.shape == (99,)
    assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert AGES[int(result.probabilities.argmax())] == age
    assert 1 <= result.age_low <= result.age_high <= 99
    assert 1 <= result.expected_age <= 99


def test_summary_statistics_of_a_known_distribution():
    probabilities = np.full(99, 0.0)
    probabilities[[29, 39, 49]] = [0.5, 0.3, 0.2]  # ages 30, 40, 50
    logits = torch.tensor(np.log(np.where(probabilities > 0, probabilities, 1e-30)))[None].float()
    ages = torch.tensor(AGES, dtype=torch.float32)
    row = age_statistics(logits, ages, torch.tensor([[0.1, 0.9]])).numpy()[0]
    assert row[:99] == pytest.approx(probabilities, abs=1e-6)
    age, expected, low, high = row[99:]
    assert age == 30
    assert expected == pytest.approx(0.5 * 30 + 0.3 * 40 + 0.2 * 50, abs=1e-3)  # 37
    assert low == 30  # P(age <= 30) = 0.5 >= 0.1
    assert high == 50  # P(age <= 40) = 0.8 < 0.9 <= P(age <= 50)


def test_quantiles_on_a_uniform_distribution():
    logits = torch.zeros(1, 99)
    row = age_statistics(logits, torch.tensor(AGES, dtype=torch.float32), torch.tensor([[0.1, 0.9]]))
    _, expected, low, high = row[0, 99:].tolist()
    assert expected == pytest.approx(50.0, abs=1e-3)
    # 10% of 99 is 9.9 ages: age 10 is the first whose cumulative share reaches it.
    assert (low, high) == (10, 90)


def test_a_quantile_reached_exactly_is_reached_at_that_age():
    # Ages 1..10 equally likely: exactly 0.1 of the mass is at or below age 1.
    logits = torch.full((1, 99), float("-inf"))
    logits[0, :10] = 0.0
    row = age_statistics(logits, torch.tensor(AGES, dtype=torch.float32), torch.tensor([[0.1, 0.9]]))
    assert row[0, 0].item() == torch.tensor(0.1).item()  # the tie is exact in float32
    assert row[0, 99 + 2].item() == 1


def test_a_batch_gives_the_answers_of_one_by_one_in_order(estimator, astronaut):
    photos = [
        astronaut,
        astronaut.rotate(90),
        astronaut.resize((300, 200)),
        astronaut.crop((100, 0, 400, 300)),
    ]
    batched = estimator.predict_images(photos)
    single = [estimator.predict_images([photo])[0] for photo in photos]
    for together, alone in zip(batched, single, strict=True):
        assert together.age == alone.age
        np.testing.assert_allclose(together.probabilities, alone.probabilities, atol=1e-5)
    assert len({round(float(result.expected_age), 4) for result in batched}) == len(photos)


def test_prompt_embeddings_are_cached_unit_vectors_of_the_card_prompts_in_age_order(estimator):
    assert estimator.prompt_embeddings.shape[0] == 99
    torch.testing.assert_close(estimator.prompt_embeddings.norm(dim=-1), torch.ones(99))
    for age in (1, 7, 99):
        direct = estimator.encode_text([f"this person is {age} years old"])[0]
        torch.testing.assert_close(estimator.prompt_embeddings[age - 1], direct)


def test_prompt_ensembling_averages_the_templates_per_age(estimator):
    templates = [CARD_TEMPLATE, "a photo of a {age} year old person"]
    ensemble = estimator.embed_prompts(templates)
    first = estimator.encode_text([CARD_TEMPLATE.replace("{age}", "30")])[0]
    second = estimator.encode_text(["a photo of a 30 year old person"])[0]
    expected = (first + second) / (first + second).norm()
    torch.testing.assert_close(ensemble[29], expected)


def test_the_model_configs_logit_scale_and_input_are_used(tmp_path, astronaut):
    """A model whose logit scale and input differ from the defaults: the probabilities are
    softmax(its scale x cosine), from an input of its own size."""
    folder = build_tiny_model(tmp_path / "m", image_size=160, preprocess={"interpolation": "bilinear"})
    weights = folder / "open_clip_model.safetensors"
    from safetensors.torch import load_file, save_file

    state = load_file(weights)
    state["logit_scale"] = torch.tensor(np.log(37.0), dtype=torch.float32)
    save_file(state, weights)
    estimator = AgeEstimator(f"local-dir:{folder}", device="cpu", cpu_precision="fp32")
    assert estimator.input_shape == (160, 160, 3) and estimator.input_spec.interpolation == "bilinear"
    embedding = estimator.encode_pixels(estimator.preprocess(astronaut)[None])
    cosines = (embedding @ estimator.prompt_embeddings.T)[0]
    [result] = estimator.predict_images([astronaut])
    np.testing.assert_allclose(result.probabilities, (37.0 * cosines).softmax(-1).numpy(), atol=1e-6)


def test_empty_batch(estimator):
    assert estimator.predict_images([]) == []


def test_wrong_pixels_are_refused_clearly(estimator):
    with pytest.raises(ValueError, match=r"Expected uint8 pixels of shape \(batch, 224, 224, 3\)"):
        estimator.predict_pixels(np.zeros((1, 100, 100, 3), dtype=np.uint8))


def test_other_templates_change_the_prompt_embeddings(tiny_model_dir):
    other = AgeEstimator(
        f"local-dir:{tiny_model_dir}", device="cpu", cpu_precision="fp32", templates=["{age}"]
    )
    default = AgeEstimator(f"local-dir:{tiny_model_dir}", device="cpu", cpu_precision="fp32")
    assert not torch.allclose(other.prompt_embeddings, default.prompt_embeddings)


# Device and precision: what serves, and why.


def test_cuda_asked_for_without_a_gpu_fails_naming_the_driver_and_the_cpu_setting(tiny_model_dir):
    with pytest.raises(device_choice.DeviceError) as raised:
        AgeEstimator(f"local-dir:{tiny_model_dir}", device="cuda")
    message = str(raised.value)
    assert message.startswith("CLIP_DEVICE=cuda, but no GPU can be used: PyTorch sees no NVIDIA GPU")
    assert "NVIDIA driver 580 or newer" in message and "set CLIP_DEVICE=cpu" in message


def test_auto_falls_back_to_the_cpu_with_a_warning(tiny_model_dir, caplog):
    with caplog.at_level(logging.WARNING):
        estimator = AgeEstimator(f"local-dir:{tiny_model_dir}", device="auto", cpu_precision="fp32")
    assert estimator.device.type == "cpu"
    assert (
        "No usable GPU" in caplog.text
        and "To choose the CPU and not see this notice, set CLIP_DEVICE=cpu" in caplog.text
    )


@pytest.mark.parametrize(
    ("setting", "dtype", "linear"),
    [("fp32", torch.float32, "torch.nn"), ("bf16", torch.bfloat16, "torch.nn"), ("int8", torch.float32, "quantized.dynamic")],
)  # fmt: skip
def test_each_cpu_precision_serves_and_says_so(tiny_model_dir, astronaut, setting, dtype, linear):
    estimator = AgeEstimator(f"local-dir:{tiny_model_dir}", device="cpu", cpu_precision=setting)
    assert estimator.serving.startswith(f"{setting} on the CPU (set by CLIP_CPU_PRECISION)")
    assert estimator.dtype == dtype
    layer = estimator.model.visual.transformer.resblocks[0].mlp.c_fc
    assert linear in type(layer).__module__
    if setting != "int8":
        assert layer.weight.dtype == dtype
    [result] = estimator.predict_images([astronaut])
    assert 1 <= result.age <= 99 and result.probabilities.sum() == pytest.approx(1.0, abs=1e-3)


def test_auto_picks_bf16_exactly_when_the_cpu_has_it_natively(monkeypatch):
    monkeypatch.setattr(device_choice, "native_bf16", lambda: True)
    assert device_choice.cpu_precision("auto").name == "bf16"
    monkeypatch.setattr(device_choice, "native_bf16", lambda: False)
    assert device_choice.cpu_precision("auto").name == "int8"
    assert device_choice.cpu_precision("fp32") == device_choice.Precision("fp32", "set by CLIP_CPU_PRECISION")


def test_native_bf16_is_what_torch_and_onednn_report_for_this_cpu():
    hardware = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert device_choice.native_bf16() is (hardware and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_text_embeddings_from_the_cut_context_equal_open_clips_full_context(estimator):
    texts = [f"this person is {age} years old" for age in range(1, 100)]
    texts.append("a close-up photo of a person who is 30 years old, smiling at the camera in a park")
    full = estimator.model.encode_text(estimator.tokenizer(texts), normalize=True)
    torch.testing.assert_close(estimator.encode_text(texts), full, atol=1e-5, rtol=0)


def test_a_text_tower_without_a_causal_mask_keeps_the_full_context(tiny_model_dir, monkeypatch):
    from clip_age.estimation import estimator as module

    estimator = AgeEstimator(f"local-dir:{tiny_model_dir}", device="cpu", cpu_precision="fp32")
    estimator.model.attn_mask = None  # every token would see every other: cutting would change answers
    monkeypatch.setattr(module, "_encode_text_prefix", lambda *a: pytest.fail("the context was cut"))
    assert estimator.encode_text(["this person is 7 years old"]).shape == (1, 32)
