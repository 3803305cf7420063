"""The Cog HTTP server, started for real, as a client of the container sees it."""

import base64
import json
import re

import pytest

from tests.cog_server import LocalCogServer
from tests.conftest import EXAMPLES, data_uri

FIELDS = {"age", "expected_age", "age_low", "age_high", "probabilities", "faces"}
SEND_A_PHOTO = (
    "Send the photo as 'image': a data URI (data:image/jpeg;base64,...) or an http(s) URL. "
    "Accepted: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF or AVIF."
)
# What Cog puts before every failure's own words; the rest must be plain sentences.
PREFIX = "Prediction failed: Async prediction failed: Refused: "


def example(name: str) -> str:
    return data_uri((EXAMPLES / name).read_bytes(), "image/png" if name.endswith(".png") else "image/jpeg")


def refusal(prediction: dict) -> str:
    """The failure's message, checked to carry no exception names, paths or tracebacks."""
    assert prediction["status"] == "failed", prediction
    error = prediction["error"]
    assert error.startswith(PREFIX), error
    message = error.removeprefix(PREFIX)
    assert not re.search(r"Error\b|Exception|Traceback|/tmp/|/src/|clip_age|\.py\b", message), message
    return message


def test_an_example_photo_gets_every_output_field_with_its_json_type(cog_server):
    prediction, _ = cog_server.predict({"image": example("astronaut_face.jpg")})
    assert prediction["status"] == "succeeded", prediction
    output = prediction["output"]
    assert set(output) == FIELDS
    assert all(type(output[key]) is int for key in ("age", "age_low", "age_high"))
    assert 1 <= output["age_low"] <= output["age_high"] <= 99
    assert type(output["expected_age"]) is float and 1.0 <= output["expected_age"] <= 99.0
    assert output["probabilities"] == [] and output["faces"] == []


def test_the_metrics_say_where_the_requests_time_went(cog_server):
    prediction, _ = cog_server.predict({"image": example("astronaut_face.jpg")})
    metrics = prediction["metrics"]
    assert metrics["batch_size"] == 1
    # Inside Cog's own measure of the prediction: the decode worker, then the model.
    assert 0 < metrics["decode_time"] and 0 < metrics["model_time"]
    assert metrics["decode_time"] + metrics["model_time"] <= metrics["predict_time"]


def test_probabilities_on_request(cog_server):
    prediction, _ = cog_server.predict({"image": example("astronaut.png"), "return_probabilities": True})
    probabilities = prediction["output"]["probabilities"]
    assert len(probabilities) == 99
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    assert max(range(99), key=probabilities.__getitem__) + 1 == prediction["output"]["age"]


def test_detect_faces_returns_typed_faces_with_exactly_six_fields(cog_server, yunet_model):
    prediction, _ = cog_server.predict({"image": example("astronaut.png"), "detect_faces": True})
    assert prediction["status"] == "succeeded", prediction
    output = prediction["output"]
    [face] = output["faces"]
    assert set(face) == {"box", "score", "age", "expected_age", "age_low", "age_high"}
    assert [type(v) for v in face["box"]] == [int] * 4 and type(face["score"]) is float
    assert all(type(face[key]) is int for key in ("age", "age_low", "age_high"))
    assert type(face["expected_age"]) is float
    x, y, width, height = face["box"]
    assert 150 <= x + width / 2 <= 300 and 60 <= y + height / 2 <= 200  # her face
    assert {key: output[key] for key in ("age", "expected_age", "age_low", "age_high")} == {
        key: face[key] for key in ("age", "expected_age", "age_low", "age_high")
    }


def test_no_face_found_falls_back_to_the_whole_photo(cog_server, yunet_model):
    with_faces, _ = cog_server.predict({"image": example("coffee.png"), "detect_faces": True})
    without, _ = cog_server.predict({"image": example("coffee.png")})
    assert with_faces["output"]["faces"] == []
    assert with_faces["output"]["age"] == without["output"]["age"]
    assert with_faces["output"]["expected_age"] == pytest.approx(without["output"]["expected_age"], abs=0.05)


def test_garbage_fails_clearly_and_the_next_request_still_succeeds(cog_server):
    failed, _ = cog_server.predict({"image": data_uri(b"%PDF-1.7 not a photo", "application/pdf")})
    assert refusal(failed) == (
        "The file is not an image we can read (it looks like a PDF document). "
        "Accepted formats: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF or AVIF."
    )
    after, _ = cog_server.predict({"image": example("astronaut_face.jpg")})
    assert after["status"] == "succeeded"
    assert cog_server.health()["status"] == "READY"


@pytest.mark.parametrize(
    "image",
    [
        None,
        "",
        "/etc/hostname",
        "/etc/no-such-file",
        "/tmp",
        "relative/photo.jpg",
        "file:///etc/hostname",
        12345,
        [1],
    ],
    ids=[
        "missing",
        "empty",
        "a server file",
        "no such file",
        "a directory",
        "relative",
        "file URL",
        "a number",
        "a list",
    ],
)
def test_anything_but_a_file_cog_made_is_refused_with_the_same_words(cog_server, image):
    inputs = {} if image is None else {"image": image}
    prediction, _ = cog_server.predict(inputs)
    assert refusal(prediction) == SEND_A_PHOTO


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"detect_faces": "false"}, "detect_faces must be true or false; got 'false'."),
        ({"return_probabilities": 1}, "return_probabilities must be true or false; got 1."),
        ({"max_faces": 0}, "max_faces must be a whole number from 1 to 50; got 0."),
        ({"max_faces": 3.5}, "max_faces must be a whole number from 1 to 50; got 3.5."),
        ({"max_faces": "3"}, "max_faces must be a whole number from 1 to 50; got '3'."),
        ({"min_face_size": 5000}, "min_face_size must be a whole number from 8 to 4096; got 5000."),
        ({"min_face_size": True}, "min_face_size must be a whole number from 8 to 4096; got true."),
    ],
)
def test_inputs_are_checked_strictly_without_a_built_schema(cog_server, inputs, message):
    prediction, _ = cog_server.predict({"image": example("astronaut_face.jpg"), **inputs})
    assert refusal(prediction) == message


def test_a_whole_float_counts_as_an_integer_as_cogs_schema_validation_accepts_it(cog_server, yunet_model):
    prediction, _ = cog_server.predict(
        {"image": example("astronaut.png"), "detect_faces": True, "max_faces": 1.0}
    )
    assert prediction["status"] == "succeeded", prediction


def test_unknown_inputs_are_dropped_as_a_built_image_does_and_never_leak_the_signature(cog_server):
    prediction, _ = cog_server.predict({"image": example("astronaut_face.jpg"), "detect_face": True})
    assert prediction["status"] == "succeeded", prediction
    assert prediction["output"]["faces"] == []
    assert "Ignoring 1 unknown input(s): 'detect_face'" in cog_server.log()


def test_the_server_has_the_slots_the_decorator_declares(cog_server):
    assert '"max_concurrency":8' in cog_server.log().replace(" ", "")


def test_setup_failure_names_the_missing_weights(tmp_path):
    with LocalCogServer({"CLIP_MODEL": f"local-dir:{tmp_path}"}) as server:
        health = server.wait_until_ready()
    assert health["status"] == "SETUP_FAILED"
    assert f"local-dir:{tmp_path}: that folder holds no open_clip_config.json." in health["setup"]["logs"]


def test_a_gpu_image_on_a_machine_without_one_fails_setup_saying_what_to_do(tiny_model_dir):
    with LocalCogServer({"CLIP_MODEL": f"local-dir:{tiny_model_dir}", "CLIP_DEVICE": "cuda"}) as server:
        health = server.wait_until_ready()
    assert health["status"] == "SETUP_FAILED"
    assert "CLIP_DEVICE=cuda, but no GPU can be used" in health["setup"]["logs"]
    assert "NVIDIA driver 580 or newer" in health["setup"]["logs"]
    assert "set CLIP_DEVICE=cpu" in health["setup"]["logs"]


def test_auto_serves_on_the_cpu_with_a_warning_in_the_setup_log(cog_server, tiny_model_dir):
    with LocalCogServer({"CLIP_MODEL": f"local-dir:{tiny_model_dir}", "CLIP_DEVICE": "auto"}) as server:
        health = server.wait_until_ready()
        assert health["status"] == "READY"
        log = server.log()
    assert "No usable GPU" in log and "on the CPU" in log


def test_the_example_request_body_is_the_example_face(cog_server):
    body = json.loads((EXAMPLES / "request.json").read_text())
    header, encoded = body["input"]["image"].split(",", 1)
    assert header == "data:image/jpeg;base64"
    assert base64.b64decode(encoded) == (EXAMPLES / "astronaut_face.jpg").read_bytes()
    prediction, _ = cog_server.predict(body["input"])
    assert prediction["status"] == "succeeded"
