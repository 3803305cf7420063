"""predict.Predictor in process: what setup builds and how run() batches face crops."""

import asyncio

import pytest
from cog import Path
from PIL import Image

from predict import Predictor, Refused
from tests.conftest import EXAMPLES


def started(env: dict[str, str]) -> Predictor:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"CLIP_DEVICE": "cpu", "CLIP_CPU_PRECISION": "fp32", **env}.items():
            patch.setenv(name, value)
        instance = Predictor()
        instance.setup()
    # Cog runs every request on one event loop; so do these tests.
    instance.loop = asyncio.new_event_loop()
    return instance


def stop(instance: Predictor) -> None:
    instance.batcher.close()
    instance.decoders.close()
    instance.loop.close()


@pytest.fixture(scope="module")
def predictor(tiny_model_dir):
    instance = started({"CLIP_MODEL": f"local-dir:{tiny_model_dir}"})
    yield instance
    stop(instance)


def predict(predictor, path, **options):
    inputs = {"return_probabilities": False, "detect_faces": False, "min_face_size": 32, "max_faces": 10}
    return predictor.loop.run_until_complete(predictor.run(image=Path(path), **{**inputs, **options}))


def test_all_faces_of_a_photo_go_through_the_encoder_in_one_call(predictor, yunet_model, astronaut, tmp_path):
    canvas = Image.new("RGB", (3 * 512, 2 * 512), "white")
    for column in range(3):
        for row in range(2):
            canvas.paste(astronaut, (column * 512, row * 512))
    path = tmp_path / "six.jpg"
    canvas.save(path, quality=92)
    calls = []
    hook = predictor.estimator.model.visual.register_forward_hook(
        lambda module, inputs, output: calls.append(inputs[0].shape[0])
    )
    try:
        output = predict(predictor, path, detect_faces=True)
    finally:
        hook.remove()
    assert calls == [6]
    assert len(output.faces) == 6


def test_faces_off_is_the_whole_photo_as_the_card_does(predictor):
    output = predict(predictor, EXAMPLES / "astronaut.png")
    [direct] = predictor.estimator.predict_images([Image.open(EXAMPLES / "astronaut.png").convert("RGB")])
    assert output.faces == [] and output.age == direct.age
    assert output.expected_age == pytest.approx(direct.expected_age, abs=0.01)


def test_top_level_fields_describe_the_largest_face(predictor, yunet_model, astronaut, tmp_path):
    canvas = Image.new("RGB", (1100, 600), "white")
    canvas.paste(astronaut.resize((300, 300)), (0, 0))
    canvas.paste(astronaut.rotate(10), (500, 40))
    path = tmp_path / "two.png"
    canvas.save(path)
    output = predict(predictor, path, detect_faces=True, return_probabilities=True)
    largest = output.faces[0]
    assert largest.box[0] >= 500
    assert (output.age, output.expected_age, output.age_low, output.age_high) == (
        largest.age,
        largest.expected_age,
        largest.age_low,
        largest.age_high,
    )
    assert len(output.probabilities) == 99


def test_without_the_detector_model_face_requests_fail_clearly(tiny_model_dir, tmp_path):
    instance = started(
        {"CLIP_MODEL": f"local-dir:{tiny_model_dir}", "FACE_DETECTOR_MODEL": str(tmp_path / "missing.onnx")}
    )
    try:
        assert predict(instance, EXAMPLES / "astronaut.png").faces == []
        with pytest.raises(Refused, match=f"no YuNet model at {tmp_path / 'missing.onnx'}"):
            predict(instance, EXAMPLES / "astronaut.png", detect_faces=True)
    finally:
        stop(instance)
