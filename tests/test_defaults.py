"""Every default has one home in the code, and what predict.py (whose Input() arguments must be
plain literals for `cog build`'s static parser) and the README's tables say is that value."""

import ast
import re

import pytest

from clip_age import request_options
from clip_age.decoding import images
from clip_age.decoding.upload_limits import DecodeLimits, PoolLimits
from clip_age.settings import Settings
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def readme_row(first_cell: str) -> list[str]:
    """The cells of the README table row that starts with first_cell."""
    for line in README.splitlines():
        if line.startswith(f"| {first_cell} |"):
            return [cell.strip() for cell in line.strip().strip("|").split("|")]
    raise AssertionError(f"no README table row starts with {first_cell!r}")


def predict_inputs() -> dict[str, dict[str, object]]:
    """The keyword literals of each Input() in predict.py's run()."""
    tree = ast.parse((REPO / "predict.py").read_text())
    [run] = [node for node in ast.walk(tree) if isinstance(node, ast.AsyncFunctionDef) and node.name == "run"]
    arguments = run.args.posonlyargs + run.args.args
    found = {}
    for argument, default in zip(arguments[-len(run.args.defaults) :], run.args.defaults, strict=True):
        assert isinstance(default, ast.Call) and ast.unparse(default.func) == "Input"
        found[argument.arg] = {keyword.arg: ast.literal_eval(keyword.value) for keyword in default.keywords}
    return found


def test_the_face_options_are_the_same_in_predict_py_the_api_the_cli_and_the_readme():
    import inspect

    import clip_age

    inputs = predict_inputs()
    api = inspect.signature(clip_age.predict).parameters
    for name, default, (low, high) in (
        ("min_face_size", request_options.DEFAULT_MIN_FACE_SIZE, request_options.MIN_FACE_SIZE_RANGE),
        ("max_faces", request_options.DEFAULT_MAX_FACES, request_options.MAX_FACES_RANGE),
    ):
        assert (inputs[name]["default"], inputs[name]["ge"], inputs[name]["le"]) == (default, low, high)
        assert api[name].default == default
        assert readme_row(f"`{name}`")[1:3] == [f"int, {low}..{high}", str(default)]
        assert request_options.FaceRequest().__getattribute__(name) == default


def test_the_accepted_formats_are_named_the_same_everywhere():
    import predict

    assert images.ACCEPTED_NAMES in inputs_description("image")
    assert predict.SEND_A_PHOTO.endswith(f"Accepted: {images.ACCEPTED_NAMES}.")
    assert images.ACCEPTED_NAMES in readme_row("`image`")[3]


def inputs_description(name: str) -> str:
    return str(predict_inputs()[name]["description"])


def test_the_upload_limits_in_the_image_description_are_the_defaults():
    limits = DecodeLimits()
    assert (
        f"at most {limits.max_upload_bytes / 1e6:g} MB and {limits.max_pixels / 1e6:g} megapixels"
        in inputs_description("image")
    )


@pytest.mark.parametrize(
    ("row", "setting", "value"),
    [
        ("file size", "MAX_UPLOAD_MB", f"{DecodeLimits().max_upload_bytes / 1e6:g} MB"),
        ("pixels", "MAX_MEGAPIXELS", f"{DecodeLimits().max_pixels / 1e6:g} megapixels"),
        ("scans of a progressive JPEG", "MAX_JPEG_SCANS", f"{DecodeLimits().max_jpeg_scans}"),
        ("pixels the face detector sees", "DETECT_MAX_MEGAPIXELS", f"{DecodeLimits().detect_max_pixels / 1e6:g} megapixels"),
        ("memory to decode", "MAX_DECODED_MB", f"{DecodeLimits().max_decoded_bytes / 1e6:,.0f} MB"),
        ("deadline per request", "DECODE_TIMEOUT_S", f"{PoolLimits().timeout_s:g} s"),
        ("longest wait for a free worker", "DECODE_QUEUE_TIMEOUT_S", f"{PoolLimits().queue_timeout_s:g} s"),
        ("memory a worker may add", "DECODE_MEMORY_MB", f"{PoolLimits().memory_bytes / 1e6:,.0f} MB"),
    ],
)  # fmt: skip
def test_the_readme_limits_tables_show_the_defaults(row, setting, value):
    [cells] = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in README.splitlines()
        if line.startswith(f"| {row}") and f"`{setting}`" in line
    ]
    assert cells[-2].startswith(value), cells


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("CLIP_MODEL", "clip_model"),
        ("CLIP_PRETRAINED", "clip_pretrained"),
        ("MAX_BATCH_SIZE", "max_batch_size"),
    ],
)
def test_the_configuration_table_shows_the_defaults(variable, field):
    shown = readme_row(f"`{variable}`")[1]
    assert re.sub(r"`", "", shown) == str(getattr(Settings(), field))


def test_the_library_takes_its_default_model_from_the_settings():
    import inspect

    from clip_age.estimation.estimator import AgeEstimator

    parameters = inspect.signature(AgeEstimator).parameters
    assert (parameters["model_name"].default, parameters["pretrained"].default) == (
        Settings().clip_model,
        Settings().clip_pretrained,
    )
