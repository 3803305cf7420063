from pathlib import Path

import pytest

from clip_age.limits import DecodeLimits, PoolLimits
from clip_age.settings import DEFAULT_EXPORT_DIR, Settings
from tests.conftest import REPO


def test_defaults_are_the_documented_ones():
    settings = Settings.from_env({})
    assert (settings.clip_model, settings.clip_pretrained) == ("ViT-L-14", "openai")
    assert settings.weights_dir == Path("/weights")
    assert settings.face_detector_model == REPO / "clip_age" / "models" / "face_detection_yunet_2026may.onnx"
    assert (settings.device, settings.cpu_precision, settings.max_batch_size) == ("auto", "auto", 64)
    assert settings.cpu_runtime == "auto"
    assert settings.export_dir == DEFAULT_EXPORT_DIR
    assert DEFAULT_EXPORT_DIR.parts[-2:] == ("clip-age", "exports")
    assert settings.decode_limits == DecodeLimits(
        max_upload_bytes=64_000_000,
        max_pixels=120_000_000,
        max_decoded_bytes=1_000_000_000,
        max_jpeg_scans=64,
        detect_max_pixels=4_000_000,
    )
    assert (settings.pool_limits.timeout_s, settings.pool_limits.memory_bytes) == (10.0, 1_500_000_000)


def test_every_variable_is_read():
    settings = Settings.from_env(
        {
            "CLIP_MODEL": "local-dir:/m",
            "CLIP_PRETRAINED": "",
            "CLIP_WEIGHTS_DIR": "/w",
            "FACE_DETECTOR_MODEL": "/d.onnx",
            "CLIP_DEVICE": "CPU",
            "CLIP_CPU_PRECISION": "int8",
            "MAX_BATCH_SIZE": "8",
            "MAX_UPLOAD_MB": "10",
            "MAX_MEGAPIXELS": "50",
            "MAX_DECODED_MB": "300",
            "MAX_JPEG_SCANS": "20",
            "DETECT_MAX_MEGAPIXELS": "2.5",
            "DECODE_WORKERS": "3",
            "DECODE_TIMEOUT_S": "4.5",
            "DECODE_MEMORY_MB": "700",
            "CLIP_CPU_RUNTIME": "OpenVINO",
            "CLIP_EXPORT_DIR": "/e",
        }
    )
    assert settings == Settings(
        "local-dir:/m",
        "",
        Path("/w"),
        Path("/d.onnx"),
        "cpu",
        "int8",
        8,
        DecodeLimits(10_000_000, 50_000_000, 300_000_000, 20, 2_500_000),
        PoolLimits(3, 4.5, 700_000_000),
        "openvino",
        Path("/e"),
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_BATCH_SIZE", "lots", "MAX_BATCH_SIZE='lots' is not valid: expected a whole number from 1 to 4096 (default 64)."),
        ("MAX_BATCH_SIZE", "0", "MAX_BATCH_SIZE='0' is not valid: expected a whole number from 1 to 4096 (default 64)."),
        ("DECODE_TIMEOUT_S", "-1", "DECODE_TIMEOUT_S='-1' is not valid: expected a number from 0.1 to 600 (default 10)."),
        ("CLIP_DEVICE", "gpu", "CLIP_DEVICE='gpu' is not valid: use one of auto, cuda, cpu (default auto)."),
        ("CLIP_CPU_PRECISION", "fp16", "CLIP_CPU_PRECISION='fp16' is not valid: use one of auto, bf16, int8, fp32 (default auto)."),
        ("CLIP_CPU_RUNTIME", "tensorrt", "CLIP_CPU_RUNTIME='tensorrt' is not valid: use one of auto, openvino, onnxruntime, torch (default auto)."),
    ],
)  # fmt: skip
def test_bad_values_are_explained(name, value, message):
    with pytest.raises(ValueError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value) == message
