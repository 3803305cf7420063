"""Our one-pass resize must give what open_clip's reference transform gives."""

import io

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from clip_age import pipeline
from clip_age.decoding.images import load_image
from clip_age.dev.photos import phone_photo
from clip_age.estimation.preprocess import InputSpec, source_box, to_model_input
from tests.conftest import EXAMPLES

MEAN = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(3, 1, 1)
STD = torch.tensor(open_clip.OPENAI_DATASET_STD).view(3, 1, 1)


def reference(image: Image.Image, resize_mode: str = "shortest") -> np.ndarray:
    """open_clip's own inference transform, un-normalised back to 0..255 HWC."""
    config = open_clip.transform.PreprocessCfg(size=224, resize_mode=resize_mode)
    transform = open_clip.transform.image_transform_v2(config, is_train=False)
    tensor = transform(image) * STD + MEAN
    return (tensor * 255).permute(1, 2, 0).numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("size", [(512, 512), (640, 427), (427, 640), (300, 451), (1001, 223), (100, 80)])
def test_one_pass_resize_equals_resize_then_centre_crop(size):
    photo = Image.open(EXAMPLES / "astronaut.png").convert("RGB").resize(size)
    ours = to_model_input(photo, InputSpec(224))
    assert ours.shape == (224, 224, 3) and ours.dtype == np.uint8
    assert psnr(ours, reference(photo)) >= 40


def test_squash_mode_matches_open_clip():
    photo = Image.open(EXAMPLES / "coffee.png").convert("RGB")
    assert psnr(to_model_input(photo, InputSpec(224, resize_mode="squash")), reference(photo, "squash")) >= 40


@pytest.mark.parametrize(
    "name", ["astronaut.png", "coffee.png", "astronaut_face.jpg", "1920x1440", "4032x3024", "3024x4032"]
)
def test_fast_path_with_draft_decoding_is_at_least_30_db_from_the_reference(name):
    if "x" in name and not name.endswith((".png", ".jpg")):
        data = phone_photo(*map(int, name.split("x")))
    else:
        data = (EXAMPLES / name).read_bytes()
    spec = InputSpec(224)
    fast = to_model_input(load_image(data, draft_side=spec.draft_side), spec)
    full = reference(Image.open(io.BytesIO(data)).convert("RGB"))
    assert psnr(fast, full) >= 30


def test_draft_decoding_decodes_fewer_pixels_of_a_phone_photo():
    image = load_image(phone_photo(4032, 3024), draft_side=224)
    assert image.size == (504, 378)  # 1/8 scale, the shorter side still >= 224


def test_a_photo_kept_for_drawing_comes_from_the_decode_the_model_input_is_cut_from():
    """clip-age --draw: a large JPEG decodes at the drawing's size; the model input barely moves."""
    data = phone_photo(4032, 3024)
    plain = pipeline.prepare(data, InputSpec(224))
    kept = pipeline.prepare(data, InputSpec(224), keep_side=2048)
    assert plain.photo is None and kept.photo.pixels.shape == (1536, 2048, 3)
    full = load_image(data).resize((2048, 1536), Image.Resampling.LANCZOS)
    assert psnr(kept.photo.pixels, np.asarray(full)) >= 40  # the photo itself, made smaller
    assert psnr(kept.pixels, plain.pixels) >= 40


def test_source_box_of_a_landscape_photo():
    # 640x427 -> torchvision resizes to 335x224 (int(224 * 640 / 427) = 335), crops 56 on the left.
    left, top, right, bottom = source_box(640, 427, InputSpec(224))
    scale = 640 / 335
    assert (left, top) == pytest.approx((56 * scale, 0))
    assert (right, bottom) == pytest.approx((280 * scale, 427))


@pytest.mark.parametrize(("field", "value"), [("interpolation", "cubic"), ("resize_mode", "longest")])
def test_unsupported_settings_are_refused(field, value):
    with pytest.raises(ValueError, match="is not supported"):
        InputSpec(224, **{field: value})
