from pathlib import Path

import pytest

from clip_age.settings import Settings
from tests.conftest import REPO


def test_defaults_are_the_documented_ones():
    settings = Settings.from_env({})
    assert (settings.clip_model, settings.clip_pretrained) == ("ViT-L-14", "openai")
    assert settings.weights_dir == Path("/weights")
    assert settings.face_detector_model == REPO / "clip_age" / "models" / "face_detection_yunet_2026may.onnx"
    assert (settings.max_batch_size, settings.batch_window_ms) == (64, 1.0)


def test_every_variable_is_read():
    settings = Settings.from_env(
        {
            "CLIP_MODEL": "local-dir:/m",
            "CLIP_PRETRAINED": "",
            "CLIP_WEIGHTS_DIR": "/w",
            "FACE_DETECTOR_MODEL": "/d.onnx",
            "MAX_BATCH_SIZE": "8",
            "BATCH_WINDOW_MS": "0",
        }
    )
    assert settings == Settings("local-dir:/m", "", Path("/w"), Path("/d.onnx"), 8, 0.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_BATCH_SIZE", "lots", "MAX_BATCH_SIZE='lots' is not valid: expected int >= 1 (default 64)."),
        ("MAX_BATCH_SIZE", "0", "MAX_BATCH_SIZE='0' is not valid: expected int >= 1 (default 64)."),
        ("BATCH_WINDOW_MS", "-1", "BATCH_WINDOW_MS='-1' is not valid: expected float >= 0 (default 1.0)."),
    ],
)
def test_bad_numbers_are_explained(name, value, message):
    with pytest.raises(ValueError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value) == message
