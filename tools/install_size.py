"""How much disk the packages of an install take, run in the environment to measure:

    python -m tools.install_size              # what `pip install -e ".[dev]"` brings
    python -m tools.install_size --extras ""  # what `pip install .` brings

Sums the files each installed distribution lists (its RECORD) over the requirements files and
everything they require, and how much of that is NVIDIA's CUDA libraries and Triton, which
PyTorch's CPU wheels leave out.
"""

import argparse
import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
EXTRAS = {"": ["requirements.txt"], "eval": ["requirements-eval.txt"], "dev": ["requirements-dev.txt"]}
GPU_ONLY = ("nvidia-", "cuda-", "triton")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions of roots and of everything they require (no extras)."""
    installed = {_name(d.metadata["Name"]): d for d in metadata.distributions()}
    found: dict[str, metadata.Distribution] = {}
    todo = [_name(root) for root in roots]
    while todo:
        name = todo.pop()
        if name in found or name not in installed:
            continue
        found[name] = installed[name]
        for line in installed[name].requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(_name(requirement.name))
    return found


def size(distribution: metadata.Distribution) -> int:
    paths = (Path(distribution.locate_file(file)) for file in distribution.files or [])
    return sum(path.stat().st_size for path in paths if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extras", default="dev", help="'' (the library), eval or dev (default)")
    extras = parser.parse_args().extras
    files = (
        EXTRAS[""]
        + (EXTRAS["eval"] if extras in ("eval", "dev") else [])
        + (EXTRAS["dev"] if extras == "dev" else [])
    )
    roots = [
        line.split("==")[0].strip()
        for file in files
        for line in (REPO / file).read_text().splitlines()
        if "==" in line and not line.startswith("#")
    ]
    sizes = {name: size(distribution) for name, distribution in closure(roots).items()}
    gpu_only = sum(value for name, value in sizes.items() if name.startswith(GPU_ONLY))
    print(
        f"{len(sizes)} packages, {sum(sizes.values()) / 1e9:.2f} GB; NVIDIA CUDA libraries and Triton: {gpu_only / 1e9:.2f} GB"
    )
    for name, value in sorted(sizes.items(), key=lambda item: -item[1])[:10]:
        print(f"  {name:32} {value / 1e6:8,.0f} MB")


if __name__ == "__main__":
    main()
