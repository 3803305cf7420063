import os
from pathlib import Path

import pytest

from clip_age.decoding.upload_limits import DecodeLimits, PoolLimits
from clip_age.settings import DEFAULT_EXPORT_DIR, Settings, default_face_detector


def test_defaults_are_the_documented_ones():
    settings = Settings.from_env({})
    assert (settings.clip_model, settings.clip_pretrained) == ("ViT-L-14", "openai")
    assert settings.face_detector_model == default_face_detector({})
    assert (settings.device, settings.cpu_precision, settings.max_batch_size) == ("auto", "auto", 64)
    assert settings.hub_offline is False
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
    assert settings.pool_limits == PoolLimits(
        workers=min(8, os.cpu_count() or 1), timeout_s=10.0, memory_bytes=1_500_000_000, queue_timeout_s=2.0
    )


def test_the_default_detector_lies_in_the_hugging_face_clients_own_cache_folder(monkeypatch, tmp_path):
    from huggingface_hub import constants

    name = "face_detection_yunet_2026may.onnx"
    assert default_face_detector(os.environ) == Path(constants.HF_HOME) / "clip-age" / name
    assert default_face_detector({}) == Path.home() / ".cache" / "huggingface" / "clip-age" / name
    assert default_face_detector({"XDG_CACHE_HOME": "/c"}) == Path("/c/huggingface/clip-age") / name
    assert default_face_detector({"XDG_CACHE_HOME": "/c", "HF_HOME": "/h"}) == Path("/h/clip-age") / name
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert Settings().face_detector_model == tmp_path / "clip-age" / name


def test_every_variable_is_read():
    settings = Settings.from_env(
        {
            "CLIP_MODEL": "local-dir:/m",
            "CLIP_PRETRAINED": "",
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
            "DECODE_QUEUE_TIMEOUT_S": "0.5",
            "HF_HUB_OFFLINE": "1",
            "CLIP_CPU_RUNTIME": "OpenVINO",
            "CLIP_EXPORT_DIR": "/e",
        }
    )
    assert settings == Settings(
        "local-dir:/m",
        "",
        Path("/d.onnx"),
        "cpu",
        "int8",
        8,
        DecodeLimits(10_000_000, 50_000_000, 300_000_000, 20, 2_500_000),
        PoolLimits(3, 4.5, 700_000_000, 0.5),
        hub_offline=True,
        cpu_runtime="openvino",
        export_dir=Path("/e"),
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
