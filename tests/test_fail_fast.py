"""Every usage mistake the README lists is refused in one line naming what the user typed, before
torch or open_clip is imported (importing them alone takes seconds): each run here has a torch
and an open_clip that fail on import, and must answer within 2 s."""

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

TRIPWIRE = 'raise ImportError("imported before the usage error was found")\n'


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory):
    """A folder that shadows torch and open_clip with modules that refuse to import."""
    folder = tmp_path_factory.mktemp("no-torch")
    for name in ("torch", "open_clip"):
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(TRIPWIRE)
    return folder


MISTAKES = [
    (["predict", "--faces", "--min-face-size", "0", "examples"], {}, "--min-face-size must be a whole number from 8 to 4096; got 0."),
    (["predict", "--faces", "--max-faces", "ten", "examples"], {}, "--max-faces must be a whole number from 1 to 50; got 'ten'."),
    (["predict", "--max-faces", "3", "examples"], {}, "--require-face, --min-face-size and --max-faces need --faces."),
    (["predict", "--batch-size", "0", "examples"], {}, "--batch-size must be a whole number from 1 to 4096; got 0."),
    (["predict", "--model", "ViT-B-99", "examples"], {"CLIP_MODEL": "ViT-B-32"}, "--model 'ViT-B-99' is not a model open_clip knows."),
    (["predict", "examples"], {"CLIP_MODEL": "ViT-B-99"}, "CLIP_MODEL='ViT-B-99' is not a model open_clip knows."),
    (["predict", "--pretrained", "laion", "examples"], {}, "--pretrained 'laion' is not a weights tag open_clip knows for ViT-L-14"),
    (["predict", "examples"], {"CLIP_PRETRAINED": "/nowhere/weights.pt"}, "CLIP_PRETRAINED='/nowhere/weights.pt': no such file."),
    (["predict", "--model", "local-dir:/nowhere", "examples"], {}, "--model 'local-dir:/nowhere': no open_clip_config.json in /nowhere."),
    (["predict", "examples"], {"CLIP_DEVICE": "gpu"}, "CLIP_DEVICE='gpu' is not valid: use one of auto, cuda, cpu"),
    (["predict", "examples"], {"MAX_UPLOAD_MB": "lots"}, "MAX_UPLOAD_MB='lots' is not valid: expected a number"),
    (["predict", "--faces", "--detector", "README.md", "examples"], {}, "--detector README.md is not a YuNet face detector model"),
    (["predict", "--faces", "--detector", "yunet.onnx", "examples"], {}, "--detector yunet.onnx: no such file."),
    (["predict", "--draw", "README.md/drawn", "examples"], {}, "--draw README.md/drawn: README.md is a file, not a folder."),
    # Linux lets nobody, root included, create files in /sys.
    (["predict", "--draw", "/sys/drawn", "examples"], {}, "--draw /sys/drawn: cannot write into /sys"),
    (["evaluate", "examples", "--out", "/sys/eval-out"], {}, "--out /sys/eval-out: cannot write into /sys"),
    (["evaluate", "labels.csv"], {}, "labels.csv: no such file or folder."),
    (["predict", "photo.jpg"], {}, "photo.jpg: no such file or folder."),
]  # fmt: skip


@pytest.mark.parametrize(("args", "env", "message"), MISTAKES, ids=[" ".join(m[0]) for m in MISTAKES])
def test_a_usage_error_is_one_line_within_two_seconds_and_before_torch(no_torch, args, env, message):
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("CLIP_")}
    environment = {**inherited, **env, "PYTHONPATH": os.pathsep.join([str(no_torch), str(REPO)])}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "clip_age", *args], cwd=REPO, env=environment, capture_output=True, text=True
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert elapsed < 2.0
