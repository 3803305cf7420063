"""The Cog HTTP server, started for real, as a client of the container sees it."""

import pytest

from tests.cog_server import LocalCogServer
from tests.conftest import EXAMPLES, data_uri

FIELDS = {"age", "expected_age", "age_low", "age_high", "probabilities", "faces"}


def example(name: str) -> str:
    return data_uri((EXAMPLES / name).read_bytes(), "image/png" if name.endswith(".png") else "image/jpeg")


def test_an_example_photo_gets_every_output_field(cog_server):
    prediction, _ = cog_server.predict({"image": example("astronaut_face.jpg")})
    assert prediction["status"] == "succeeded", prediction
    output = prediction["output"]
    assert set(output) == FIELDS
    assert isinstance(output["age"], int) and 1 <= output["age"] <= 99
    assert 1 <= output["age_low"] <= output["age_high"] <= 99
    assert 1.0 <= output["expected_age"] <= 99.0
    assert output["probabilities"] == [] and output["faces"] == []


def test_probabilities_on_request(cog_server):
    prediction, _ = cog_server.predict({"image": example("astronaut.png"), "return_probabilities": True})
    probabilities = prediction["output"]["probabilities"]
    assert len(probabilities) == 99
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    assert max(range(99), key=probabilities.__getitem__) + 1 == prediction["output"]["age"]


def test_garbage_fails_clearly_and_the_next_request_still_succeeds(cog_server):
    failed, _ = cog_server.predict({"image": data_uri(b"%PDF-1.7 not a photo", "application/pdf")})
    assert failed["status"] == "failed"
    assert "The file is not an image we can read (it looks like a PDF document)" in failed["error"]
    assert "Accepted formats: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF or AVIF" in failed["error"]
    assert "Traceback" not in failed["error"]
    after, _ = cog_server.predict({"image": example("astronaut_face.jpg")})
    assert after["status"] == "succeeded"
    assert cog_server.health()["status"] == "READY"


def test_a_missing_image_is_explained(cog_server):
    failed, _ = cog_server.predict({})
    assert failed["status"] == "failed"
    assert "No image was given" in failed["error"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"max_faces": 0}, "max_faces must be a whole number from 1 to 50; got 0."),
        ({"min_face_size": 5000}, "min_face_size must be a whole number from 8 to 4096; got 5000."),
    ],
)
def test_out_of_range_options_are_explained(cog_server, inputs, message):
    failed, _ = cog_server.predict({"image": example("astronaut_face.jpg"), **inputs})
    assert failed["status"] == "failed"
    assert message in failed["error"]


def test_same_photo_same_answer_over_http(cog_server):
    first, _ = cog_server.predict({"image": example("astronaut.png"), "return_probabilities": True})
    second, _ = cog_server.predict({"image": example("astronaut.png"), "return_probabilities": True})
    assert first["output"] == second["output"]


def test_detect_faces_returns_the_faces_list(cog_server):
    prediction, _ = cog_server.predict({"image": example("astronaut.png"), "detect_faces": True})
    assert prediction["status"] == "succeeded", prediction
    output = prediction["output"]
    [face] = output["faces"]
    assert set(face) == {"box", "score", "age", "expected_age", "age_low", "age_high"}
    x, y, width, height = face["box"]
    assert 150 <= x + width / 2 <= 300 and 60 <= y + height / 2 <= 200  # her face
    assert {key: output[key] for key in ("age", "expected_age", "age_low", "age_high")} == {
        key: face[key] for key in ("age", "expected_age", "age_low", "age_high")
    }


def test_no_face_found_falls_back_to_the_whole_photo(cog_server):
    with_faces, _ = cog_server.predict({"image": example("coffee.png"), "detect_faces": True})
    without, _ = cog_server.predict({"image": example("coffee.png")})
    assert with_faces["output"]["faces"] == []
    assert with_faces["output"]["age"] == without["output"]["age"]
    assert with_faces["output"]["expected_age"] == pytest.approx(without["output"]["expected_age"], abs=0.05)


def test_setup_failure_names_the_missing_weights(tmp_path):
    with LocalCogServer({"CLIP_MODEL": f"local-dir:{tmp_path}"}) as server:
        health = server.wait_until_ready()
    assert health["status"] == "SETUP_FAILED"
    assert f"no open_clip_config.json in {tmp_path}" in health["setup"]["logs"]


def test_the_example_request_body_is_the_example_face(cog_server):
    import base64
    import json

    body = json.loads((EXAMPLES / "request.json").read_text())
    header, encoded = body["input"]["image"].split(",", 1)
    assert header == "data:image/jpeg;base64"
    assert base64.b64decode(encoded) == (EXAMPLES / "astronaut_face.jpg").read_bytes()
    prediction, _ = cog_server.predict(body["input"])
    assert prediction["status"] == "succeeded"
