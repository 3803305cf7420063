"""cog.yaml and predict.py as Cog 0.23's loader and static parser read them (see the README's
Build notes for the check with Cog's own Go packages, which cannot run in CI)."""

import ast
import inspect
import io
import json
import re
import tokenize

import pytest
import yaml
from cog import BaseModel, BaseRunner

import predict
from clip_age import request_options
from clip_age.decoding.images import ACCEPTED_NAMES
from clip_age.decoding.upload_limits import DecodeLimits
from tests.cog_server import decorator_concurrency
from tests.conftest import REPO, SHARED

CONFIG = yaml.safe_load((REPO / "cog.yaml").read_text())
RUN = inspect.signature(predict.Predictor.run).parameters


def test_run_names_a_base_runner_with_an_async_run_method_and_nothing_deprecated():
    module, name = CONFIG["run"].split(":")
    assert (REPO / module).is_file() and module == "predict.py"
    runner = getattr(predict, name)
    assert issubclass(runner, BaseRunner)
    assert inspect.iscoroutinefunction(runner.run) and "predict" not in vars(runner)
    assert "predict" not in CONFIG and "concurrency" not in CONFIG
    assert "BasePredictor" not in (REPO / "predict.py").read_text()


def test_concurrency_comes_from_the_decorator_as_an_integer_literal():
    # cog build reads @cog.concurrent(max=N) statically and bakes N into COG_MAX_CONCURRENCY.
    assert decorator_concurrency() == predict.Predictor.run.__cog_concurrent_max__ == 8


def cog_config_schema() -> dict:
    schema_file = SHARED / "cog" / "config_schema_v1.0.json"
    if not schema_file.is_file():
        pytest.skip(
            "needs Cog's config schema: fetch pkg/config/data/config_schema_v1.0.json from Cog's "
            "source (github.com/replicate/cog) into $SHARED_DIR/cog/"
        )
    return json.loads(schema_file.read_text())


def test_validates_against_cogs_config_schema():
    import jsonschema

    jsonschema.validate(CONFIG, cog_config_schema())


def test_the_readmes_cpu_only_variant_is_a_valid_config():
    schema = cog_config_schema()
    import jsonschema

    section = (REPO / "README.md").read_text().split("**CPU-only image**", 1)[1]
    change = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    variant = {**CONFIG, "build": {**CONFIG["build"], **change["build"]}, "environment": [
        *(line for line in CONFIG["environment"] if not line.startswith("CLIP_DEVICE=")), *change["environment"]
    ]}  # fmt: skip
    del variant["build"]["cuda"]
    jsonschema.validate(variant, schema)
    assert variant["build"]["gpu"] is False and "CLIP_DEVICE=cpu" in variant["environment"]


def test_asks_for_a_gpu_and_fails_setup_rather_than_serving_on_the_cpu_by_accident():
    assert CONFIG["build"]["gpu"] is True
    assert "CLIP_DEVICE=cuda" in CONFIG["environment"]
    assert str(CONFIG["build"]["python_version"]) == "3.12"
    assert CONFIG["build"]["sdk_version"] == "0.23.1"


def test_build_cuda_matches_the_pinned_torch():
    # PyPI's torch 2.14.1 wheels are built for CUDA 13.0; Cog's matrix stops at torch 2.11.0.
    requirements = (REPO / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.14\.1$", requirements, re.M)
    assert CONFIG["build"]["cuda"] == "13.0"


@pytest.mark.parametrize(
    "name", ["requirements.txt", "requirements-eval.txt", "requirements-dev.txt", "requirements-ray.txt"]
)
def test_every_requirement_is_pinned(name):
    for line in (REPO / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[0-9][0-9A-Za-z.+\-]*", line), line


def test_the_image_installs_what_serving_needs_and_not_the_evaluation_extras():
    serving = (REPO / "requirements.txt").read_text()
    assert "matplotlib" not in serving and "cog" not in re.findall(r"^(\w+)==", serving, re.M)
    assert not {"ray", "pyarrow"} & set(re.findall(r"^([\w\-]+)", serving, re.M))  # the ray extra


def test_output_faces_are_a_typed_model_with_the_six_fields():
    assert issubclass(predict.Face, BaseModel)
    assert predict.Face.__annotations__ == {
        "box": list[int],
        "score": float,
        "age": int,
        "expected_age": float,
        "age_low": int,
        "age_high": int,
    }
    assert predict.Output.__annotations__["faces"] == list[predict.Face]
    tree = ast.parse((REPO / "predict.py").read_text())
    module_level = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert {"Face", "Output"} <= module_level  # the static parser types only module-level models


def test_input_bounds_and_defaults_in_the_signature_are_the_ones_run_checks():
    min_face, max_faces = RUN["min_face_size"].default, RUN["max_faces"].default
    assert (min_face.ge, min_face.le) == request_options.MIN_FACE_SIZE_RANGE
    assert (max_faces.ge, max_faces.le) == request_options.MAX_FACES_RANGE
    assert (min_face.default, max_faces.default) == (
        request_options.DEFAULT_MIN_FACE_SIZE,
        request_options.DEFAULT_MAX_FACES,
    )


def test_input_descriptions_state_the_real_formats_and_default_limits():
    limits = DecodeLimits()
    image = RUN["image"].default.description
    assert ACCEPTED_NAMES in image
    assert f"at most {limits.max_upload_bytes / 1e6:g} MB and {limits.max_pixels / 1e6:g} megapixels" in image
    faces = RUN["detect_faces"].default.description
    assert f"shrunk to at most {limits.detect_max_pixels / 1e6:g} megapixels" in faces


def test_descriptions_are_plain_literals_for_the_static_parser():
    # Cog's parser drops f-strings and garbles implicitly concatenated strings.
    source = (REPO / "predict.py").read_text()
    run = next(
        n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.AsyncFunctionDef) and n.name == "run"
    )
    for default in run.args.defaults:
        for keyword in default.keywords:
            assert isinstance(keyword.value, ast.Constant), ast.unparse(keyword.value)
    signature = "\n".join(source.splitlines()[run.lineno - 1 : run.body[0].lineno - 1])
    kinds = [
        token.type
        for token in tokenize.generate_tokens(io.StringIO(signature).readline)
        if token.type
        not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)
    ]
    assert all(not (a == b == tokenize.STRING) for a, b in zip(kinds, kinds[1:], strict=False))
