"""The library declares ranges, the image installs a lock: the lock lies inside the ranges, and
`pip install .` keeps a compatible torch that is already installed."""

import base64
import hashlib
import json
import shutil
import subprocess
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO
from tests.test_layout import tracked_files

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def lock() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            [pin] = requirement.specifier
            assert pin.operator == "==", line
            pins[canonicalize_name(requirement.name)] = Version(pin.version)
    return pins


def ranges() -> list[Requirement]:
    return [Requirement(line) for line in PROJECT["dependencies"]]


def test_the_library_declares_ranges_not_the_images_pins():
    assert "dependencies" not in PROJECT.get("dynamic", [])
    for requirement in ranges():
        assert not any(spec.operator in ("==", "===") for spec in requirement.specifier), requirement
        assert requirement.specifier, f"{requirement.name}: give at least the lowest version it works with"


def test_the_images_lock_satisfies_the_librarys_ranges():
    pins = lock()
    for requirement in ranges():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is a dependency but requirements.txt does not pin it"
        assert requirement.specifier.contains(pins[name], prereleases=True), (requirement, pins[name])


def fake_wheel(folder: Path, name: str, version: str, requires: str = "") -> Path:
    """A wheel that installs only metadata: a distribution named name at version, for pip's
    resolver to find installed. What is inside torch does not matter to what pip decides."""
    dist_info = f"{name}-{version}.dist-info"
    depends = f"Requires-Dist: {requires}\n" if requires else ""
    files = {
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{depends}",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},{len(text)}"
        for path, text in files.items()
    ]
    files[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.mark.slow
def test_pip_install_keeps_a_compatible_torch_already_installed(tmp_path):
    """A fresh venv (nothing from this one) holding torch 2.13.0, an older release inside the
    range than the image's 2.14.1, with its torchvision 0.28.0 as PyTorch installs the pair:
    pip's plan for installing the package leaves both alone (exact pins replaced both)."""
    source = tmp_path / "source"
    for path in tracked_files():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, source / path)
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = str(environment / "bin" / "python")
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    torch = fake_wheel(tmp_path, "torch", "2.13.0")
    torchvision = fake_wheel(tmp_path, "torchvision", "0.28.0", requires="torch==2.13.0")
    subprocess.run(
        [*pip, "install", "--quiet", "--no-deps", "--no-index", str(torch), str(torchvision)], check=True
    )
    report = tmp_path / "report.json"
    plan = subprocess.run(
        [*pip, "install", "--quiet", "--dry-run", "--report", str(report), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    installs = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert "open-clip-torch" in installs and "clip-age-predictor" in installs  # the plan was made
    assert "torch" not in installs and "torchvision" not in installs, installs
