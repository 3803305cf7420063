"""The repository's shape: a small root, one installable package, a cheap import, the README's
Python example."""

import ast
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLES, REPO

ROOT_FILES = {
    ".ci", ".dockerignore", ".gitignore", "BENCHMARKS.md", "LICENSE", "README.md", "clip_age",
    "cog.yaml", "deploy", "examples", "predict.py", "prompts.py", "pyproject.toml", "requirements-dev.txt",
    "requirements-cpu.txt", "requirements-eval.txt", "requirements-ray.txt", "requirements.txt", "tests", "tools",
}  # fmt: skip


def tracked_files() -> list[str]:
    listing = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return listing.stdout.splitlines()


def test_the_root_holds_only_the_cog_files_and_what_every_python_project_has():
    assert {path.split("/")[0] for path in tracked_files()} == ROOT_FILES


def test_the_repository_holds_no_model_file():
    # Model files are fetched and verified (the CLIP weights, the face detector), never committed.
    models = [
        path for path in tracked_files() if path.endswith((".onnx", ".pt", ".pth", ".safetensors", ".bin"))
    ]
    assert models == []


def test_nothing_imports_from_tools():
    for path in tracked_files():
        if path.endswith(".py") and not path.startswith("tools/"):
            tree = ast.parse((REPO / path).read_text())
            for node in ast.walk(tree):
                names = (
                    [alias.name for alias in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                )  # fmt: skip
                assert not any(name == "tools" or name.startswith("tools.") for name in names), path


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env={**os.environ, **env}
    )


def test_importing_the_package_does_not_import_torch():
    run = python("import sys, clip_age; print('torch' in sys.modules, 'open_clip' in sys.modules)")
    assert run.stdout.split() == ["False", "False"], run.stderr


def test_help_answers_without_importing_torch():
    code = (
        "import sys, contextlib, io\n"
        "from clip_age.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['predict', '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules, '--faces' in out.getvalue())\n"
    )
    assert python(code).stdout.split() == ["False", "True"]


def readme_python_example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_example_runs(tiny_model_dir, yunet_model):
    run = python(
        readme_python_example(),
        CLIP_MODEL=f"local-dir:{tiny_model_dir}",
        FACE_DETECTOR_MODEL=str(yunet_model),
    )
    assert run.returncode == 0, run.stderr
    age, low, high, boxes = run.stdout.split(maxsplit=3)
    assert 1 <= int(low) <= int(age) <= 99 or 1 <= int(age) <= int(high) <= 99
    assert boxes.startswith("[[") or boxes.startswith("[(")  # the astronaut's face


@pytest.mark.slow
def test_pip_install_gives_the_clip_age_command(tmp_path, tiny_model_dir, yunet_model):
    source = tmp_path / "source"
    for path in tracked_files():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, source / path)
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert not list(target.rglob("*.onnx"))  # the detector is fetched, not shipped; its license is
    assert (target / "clip_age" / "models" / "LICENSE-YUNET.txt").is_file()
    env = {
        **os.environ,
        "PYTHONPATH": str(target),
        "CLIP_MODEL": f"local-dir:{tiny_model_dir}",
        "FACE_DETECTOR_MODEL": str(yunet_model),
    }
    command = [str(target / "bin" / "clip-age"), "predict", "--faces", str(EXAMPLES / "astronaut.png")]
    run = subprocess.run(command, cwd=elsewhere, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert '"faces": [{"box"' in run.stdout  # the face detector found her face
    located = subprocess.run(
        [sys.executable, "-c", "import clip_age, prompts; print(clip_age.__file__, prompts.__file__)"],
        cwd=elsewhere, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert all(path.startswith(str(target)) for path in located.stdout.split()), located.stdout


def test_the_errors_predict_raises_are_the_packages_own_names_and_load_lazily():
    code = (
        "import sys, clip_age; assert 'PIL' not in sys.modules; "
        "from clip_age.decoding.images import InvalidImage; from clip_age.decoding.decode_pool import DecodeFailed; "
        "assert clip_age.InvalidImage is InvalidImage and clip_age.DecodeFailed is DecodeFailed"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
