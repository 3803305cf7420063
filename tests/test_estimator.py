import numpy as np
import pytest
import torch

from clip_age.estimator import AgeEstimator, age_statistics
from prompts import AGES, CARD_TEMPLATE


@pytest.mark.parametrize("age", [1, 42, 99])
def test_oracle_image_embedding_equal_to_the_prompt_of_an_age_gives_that_age(estimator, age):
    embedding = estimator.encode_text([f"this person is {age} years old"])
    [result] = estimator.distributions(embedding)
    assert result.age == age
    assert result.probabilities.shape == (99,)
    assert result.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert AGES[int(result.probabilities.argmax())] == age
    assert result.age_low <= result.age_high
    assert 1 <= result.expected_age <= 99
    assert 1 <= result.age_low <= result.age_high <= 99


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


def test_the_same_image_twice_gives_the_same_answer(estimator, astronaut):
    first, second = estimator.predict([astronaut]), estimator.predict([astronaut])
    assert first[0].age == second[0].age
    np.testing.assert_array_equal(first[0].probabilities, second[0].probabilities)


def test_a_batch_gives_the_answers_of_one_by_one(estimator, astronaut):
    photos = [
        astronaut,
        astronaut.rotate(90),
        astronaut.resize((300, 200)),
        astronaut.crop((100, 0, 400, 300)),
    ]
    batched = estimator.predict(photos)
    single = [estimator.predict([photo])[0] for photo in photos]
    for together, alone in zip(batched, single):
        assert together.age == alone.age
        np.testing.assert_allclose(together.probabilities, alone.probabilities, atol=1e-5)
    assert len({round(float(result.expected_age), 4) for result in batched}) > 1


def test_prompt_embeddings_are_cached_unit_vectors_of_the_card_prompts(estimator):
    assert estimator.prompt_embeddings.shape[0] == 99
    norms = estimator.prompt_embeddings.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(99))
    direct = estimator.encode_text([CARD_TEMPLATE.replace("{age}", "7")])[0]
    torch.testing.assert_close(estimator.prompt_embeddings[6], direct)


def test_prompt_ensembling_averages_the_templates_per_age(estimator):
    templates = [CARD_TEMPLATE, "a photo of a {age} year old person"]
    ensemble = estimator.embed_prompts(templates)
    first = estimator.encode_text([CARD_TEMPLATE.replace("{age}", "30")])[0]
    second = estimator.encode_text(["a photo of a 30 year old person"])[0]
    expected = (first + second) / (first + second).norm()
    torch.testing.assert_close(ensemble[29], expected)


def test_uses_the_models_own_logit_scale(estimator):
    assert estimator.logit_scale == pytest.approx(float(estimator.model.logit_scale.detach().exp()))


def test_input_spec_comes_from_the_model_config(estimator):
    assert estimator.input_spec.size == 224
    assert estimator.input_spec.interpolation == "bicubic"
    assert estimator.input_shape == (224, 224, 3)


def test_empty_batch(estimator):
    assert estimator.predict([]) == []


def test_wrong_pixels_are_refused_clearly(estimator):
    with pytest.raises(ValueError, match=r"Expected uint8 pixels of shape \(batch, 224, 224, 3\)"):
        estimator.predict_pixels(np.zeros((1, 100, 100, 3), dtype=np.uint8))


def test_runs_on_the_cpu_in_fp32_without_cuda(estimator):
    assert estimator.device.type == "cpu"
    assert estimator.dtype == torch.float32
    assert next(estimator.model.parameters()).dtype == torch.float32


def test_other_templates_change_the_prompt_embeddings(tiny_model_dir):
    other = AgeEstimator(f"local-dir:{tiny_model_dir}", device="cpu", templates=["{age}"])
    default = AgeEstimator(f"local-dir:{tiny_model_dir}", device="cpu")
    assert not torch.allclose(other.prompt_embeddings, default.prompt_embeddings)
