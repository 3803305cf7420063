import hashlib
import inspect
import json
import re

import pytest
import yaml

import predict
from clip_age import images, weights
from clip_age.settings import DEFAULT_FACE_DETECTOR, Settings
from tests.conftest import REPO, SHARED

CONFIG = yaml.safe_load((REPO / "cog.yaml").read_text())


def test_names_the_predictor_and_asks_for_a_gpu():
    assert CONFIG["predict"] == "predict.py:Predictor"
    assert CONFIG["build"]["gpu"] is True
    assert str(CONFIG["build"]["python_version"]) == "3.12"
    assert CONFIG["build"]["python_requirements"] == "requirements.txt"
    assert CONFIG["build"]["sdk_version"] == "0.23.1"


def test_validates_against_cogs_config_schema():
    schema_file = SHARED / "cog" / "config_schema_v1.0.json"
    if not schema_file.is_file():
        pytest.skip(f"Cog's config schema is not at {schema_file}")
    import jsonschema

    jsonschema.validate(CONFIG, json.loads(schema_file.read_text()))


def test_build_cuda_matches_the_pinned_torch():
    # PyPI's torch 2.14.1 wheels are built for CUDA 13.0; Cog's matrix stops at torch 2.11.0.
    requirements = (REPO / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.14\.1$", requirements, re.M)
    assert CONFIG["build"]["cuda"] == "13.0"


def test_every_requirement_is_pinned():
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.+\-]*", line), line


def test_build_downloads_the_default_weights_and_checks_their_sha256():
    settings = Settings()
    url = weights.download_url(settings.clip_model, settings.clip_pretrained)
    target = weights.weights_file(settings.clip_model, settings.clip_pretrained, settings.weights_dir)
    sha = url.split("/")[-2]
    commands = " ".join(CONFIG["build"]["run"])
    assert url in commands
    assert f'echo "{sha}  {target}" | sha256sum -c -' in commands


def test_the_face_detector_ships_in_the_package_unchanged():
    digest = hashlib.sha256(DEFAULT_FACE_DETECTOR.read_bytes()).hexdigest()
    assert digest == "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"
    assert "yunet" not in " ".join(CONFIG["build"]["run"]).lower()  # nothing to download


def test_concurrency_matches_the_predictor():
    assert CONFIG["concurrency"]["max"] == predict.MAX_CONCURRENCY
    assert predict.Predictor.predict.__cog_concurrent_max__ == predict.MAX_CONCURRENCY


def test_input_bounds_in_the_signature_match_the_checks_in_predict():
    parameters = inspect.signature(predict.Predictor.predict).parameters
    min_face = parameters["min_face_size"].default
    max_faces = parameters["max_faces"].default
    assert (min_face.ge, min_face.le) == predict.MIN_FACE_SIZE_RANGE
    assert (max_faces.ge, max_faces.le) == (1, predict.pipeline.MAX_FACES_LIMIT)
    assert min_face.default == predict.pipeline.DEFAULT_MIN_FACE_SIZE
    assert max_faces.default == predict.pipeline.DEFAULT_MAX_FACES


def test_the_image_description_states_the_real_formats_and_limits():
    description = inspect.signature(predict.Predictor.predict).parameters["image"].default.description
    assert images.ACCEPTED_NAMES in description
    assert (
        f"at most {images.MAX_FILE_BYTES / 1e6:.0f} MB and {images.MAX_PIXELS / 1e6:.0f} megapixels"
        in description
    )
