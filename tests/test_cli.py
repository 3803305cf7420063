"""The clip-age command as a newcomer uses it: answers, per-face rows, drawings, and a clear
one-line message with exit status 2 for every mistake, before the model loads."""

import csv
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import clip_age
from clip_age import cli
from clip_age.request_options import FaceRequest
from tests.conftest import EXAMPLES, REPO


@pytest.fixture
def folder(tmp_path):
    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    shutil.copy(EXAMPLES / "astronaut.png", photos / "a_astronaut.png")
    shutil.copy(EXAMPLES / "astronaut_face.jpg", photos / "nested" / "b_face.jpg")
    (photos / "c_broken.jpg").write_bytes(b"%PDF-1.4 pretending")
    (photos / "readme.txt").write_text("not picked up: not an image suffix")
    shutil.copy(EXAMPLES / "coffee.png", photos / "d_coffee.png")
    return photos


def run(*args):
    out = io.StringIO()
    status = cli.main(["predict", *args], out)
    return status, out.getvalue()


def records(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def test_predict_a_folder_prints_one_json_line_per_photo_in_order(model, folder, capsys):
    status, output = run("--workers", "2", str(folder))
    found = records(output)
    assert [r["path"] for r in found] == [
        str(folder / "a_astronaut.png"),
        str(folder / "c_broken.jpg"),
        str(folder / "d_coffee.png"),
        str(folder / "nested" / "b_face.jpg"),
    ]
    assert set(found[0]) == {"path", "age", "expected_age", "age_low", "age_high", "faces"}
    assert found[1] == {
        "path": str(folder / "c_broken.jpg"),
        "error": "The file is not an image we can read (it looks like a PDF document). "
        "Accepted formats: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF or AVIF.",
    }
    assert status == 1  # one photo failed; the others were still predicted
    assert capsys.readouterr().err.strip().endswith("3 photos predicted, 1 failed")


def test_predict_matches_the_python_api(model, capsys):
    status, output = run("--probabilities", str(EXAMPLES / "coffee.png"))
    [record] = records(output)
    [direct] = clip_age.predict(clip_age.load(), [EXAMPLES / "coffee.png"])
    assert status == 0
    assert record["age"] == direct.age
    assert record["probabilities"] == pytest.approx(direct.ages.probabilities.tolist(), abs=1e-6)
    assert capsys.readouterr().err.strip().endswith("1 photo predicted, 0 failed")


def group_photo(path):
    astronaut = Image.open(EXAMPLES / "astronaut.png").convert("RGB")
    canvas = Image.new("RGB", (1024, 512), "white")
    canvas.paste(astronaut, (0, 0))
    canvas.paste(astronaut.resize((384, 384)), (600, 60))
    canvas.save(path, quality=92)
    return path


def test_csv_with_faces_has_one_row_per_face_and_a_row_saying_so_for_a_photo_without(
    model, folder, yunet_model
):
    group_photo(folder / "e_two.jpg")
    status, output = run("--csv", "--faces", "--workers", "1", str(folder))
    rows = list(csv.DictReader(io.StringIO(output)))
    assert list(rows[0]) == cli_columns()
    by_photo: dict[str, list[dict]] = {}
    for row in rows:
        by_photo.setdefault(row["path"].rsplit("/", 1)[-1], []).append(row)
    assert [row["face"] for row in by_photo["e_two.jpg"]] == ["0", "1"]
    first, second = by_photo["e_two.jpg"]
    assert int(first["width"]) * int(first["height"]) > int(second["width"]) * int(second["height"])
    assert int(first["x"]) < 512 <= int(second["x"]) and float(first["score"]) > 0.5
    [coffee] = by_photo["d_coffee.png"]
    assert coffee["face"] == "" and coffee["note"] == "no face found: the ages are the whole photo's"
    assert coffee["age"].isdigit()
    [broken] = by_photo["c_broken.jpg"]
    assert broken["error"].startswith("The file is not an image we can read") and broken["age"] == ""
    assert status == 1


def cli_columns() -> list[str]:
    from clip_age.answers.writers import CSV_COLUMNS

    return CSV_COLUMNS


def test_json_with_faces_says_when_no_face_was_found(model, yunet_model):
    _, output = run("--faces", str(EXAMPLES / "coffee.png"), str(EXAMPLES / "astronaut.png"))
    coffee, astronaut = records(output)
    assert coffee["faces"] == [] and coffee["note"] == "no face found: the ages are the whole photo's"
    assert len(astronaut["faces"]) == 1 and "note" not in astronaut


def test_require_face_skips_photos_without_one(model, capsys, yunet_model):
    status, output = run(
        "--faces", "--require-face", str(EXAMPLES / "coffee.png"), str(EXAMPLES / "astronaut.png")
    )
    assert [r["path"] for r in records(output)] == [str(EXAMPLES / "astronaut.png")]
    assert status == 0
    assert capsys.readouterr().err.strip().endswith("1 photo predicted, 1 skipped (no face), 0 failed")


def test_draw_writes_each_photo_with_its_boxes_and_ages(model, folder, tmp_path, yunet_model):
    group_photo(folder / "e_two.jpg")
    big = Image.open(EXAMPLES / "astronaut.png").convert("RGB").resize((4000, 4000))
    big.save(folder / "nested" / "f_big.png")
    drawn = tmp_path / "drawn"
    status, output = run("--faces", "--draw", str(drawn), "--workers", "1", str(folder))
    assert status == 1  # the broken file
    names = sorted(str(path.relative_to(drawn)) for path in drawn.rglob("*.jpg"))
    assert names == [
        "a_astronaut.png.jpg", "d_coffee.png.jpg", "e_two.jpg", "nested/b_face.jpg", "nested/f_big.png.jpg",
    ]  # fmt: skip
    assert Image.open(drawn / "nested" / "f_big.png.jpg").size == (2048, 2048)  # capped on its longer side
    two = Image.open(drawn / "e_two.jpg")
    assert two.size == (1024, 512)
    before = np.asarray(Image.open(folder / "e_two.jpg").convert("RGB"), dtype=np.int16)
    after = np.asarray(two.convert("RGB"), dtype=np.int16)
    changed = np.abs(after - before).max(axis=2) > 60
    [record] = [r for r in records(output) if r["path"].endswith("e_two.jpg")]
    for face in record["faces"]:
        x, y, width, height = face["box"]
        assert changed[y + height // 2, max(0, x - 3) : x + 4].any()  # the box's left edge is drawn
    assert not changed[470:505, 980:1015].any()  # white paper far from both faces is untouched


class PhotosReplacedBeforeTheModel:
    """The real estimator; by the time it runs, each photo's file holds a black picture of the
    same size, so a drawing made from a second read of the file would be black."""

    def __init__(self, estimator, photos):
        self._estimator, self._photos = estimator, photos

    def __getattr__(self, name):
        return getattr(self._estimator, name)

    def predict_pixels(self, pixels):
        for photo in self._photos:
            Image.new("RGB", Image.open(photo).size).save(photo, "PNG" if photo.suffix == ".png" else "JPEG")
        return self._estimator.predict_pixels(pixels)


@pytest.mark.parametrize("faces", [True, False])
def test_draw_draws_on_the_photo_decoded_for_the_model(estimator, yunet_model, tmp_path, faces):
    """Each photo is decoded once, in its worker: a large one kept at drawing size, its face
    boxes scaled with it; a small one as it is."""
    photos = tmp_path / "photos"
    photos.mkdir()
    wide = Image.new("RGB", (4096, 2048), (40, 120, 200))
    wide.paste(Image.open(EXAMPLES / "astronaut.png").convert("RGB").resize((1200, 1200)), (400, 400))
    wide.save(photos / "wide.jpg", quality=92)
    shutil.copy(EXAMPLES / "coffee.png", photos / "coffee.png")
    originals = {path.name: Image.open(path).convert("RGB") for path in photos.iterdir()}
    files, names = cli.photo_files([str(photos)])
    request = cli.PredictRequest(
        files=files,
        names=names,
        faces=FaceRequest() if faces else None,
        detector=yunet_model,
        draw=tmp_path / "drawn",
    )
    out = io.StringIO()
    status = cli.run_predict_command(
        PhotosReplacedBeforeTheModel(estimator, list(photos.iterdir())), request, out
    )
    coffee, wide_answer = records(out.getvalue())
    assert status == 0 and "age" in coffee and "age" in wide_answer
    drawing = np.asarray(Image.open(tmp_path / "drawn" / "wide.jpg"), dtype=np.int16)
    expected = np.asarray(
        originals["wide.jpg"].resize((2048, 1024), Image.Resampling.LANCZOS), dtype=np.int16
    )
    assert drawing.shape == expected.shape  # at most 2048 pixels on its longer side
    changed = np.abs(drawing - expected).max(axis=2) > 60
    assert changed.mean() < 0.05 and not changed[800:1000, 1500:2000].any()  # the photo, a label or two on it
    if faces:
        [face] = wide_answer["faces"]
        x, y, width, height = (round(side / 2) for side in face["box"])  # at half the size
        assert changed[y + height // 2, x - 3 : x + 4].any() and changed[y - 3 : y + 4, x + width // 2].any()
        assert not changed[y + height // 2, x + 10 : x + width - 10].any()  # inside the box: the photo
    small = np.asarray(Image.open(tmp_path / "drawn" / "coffee.png.jpg"), dtype=np.int16)
    photo = np.asarray(originals["coffee.png"], dtype=np.int16)
    assert small.shape == photo.shape and (np.abs(small - photo).max(axis=2) > 60).mean() < 0.1


def test_evaluate_reads_the_columns_named_and_names_the_model(model, tmp_path):
    shutil.copy(EXAMPLES / "coffee.png", tmp_path / "a.png")
    shutil.copy(EXAMPLES / "astronaut.png", tmp_path / "b.png")
    # Neither column has a name clip-age would guess, and "age" holds no ages.
    (tmp_path / "labels.csv").write_text("picture,years,age\na.png,30,x\nb.png,40,y\n")
    out = tmp_path / "report"
    args = ["--path-column", "picture", "--age-column", "years", "--batch-size", "1", "--workers", "1"]
    status = cli.main(["evaluate", str(tmp_path / "labels.csv"), "--out", str(out), *args], io.StringIO())
    report = json.loads((out / "metrics.json").read_text())
    assert status == 0
    assert (report["n"], report["bad_labels"], report["model"]) == (2, {}, f"local-dir:{model}")
    ages = [row.split(",")[1] for row in (out / "predictions.csv").read_text().splitlines()[1:]]
    assert ages == ["30", "40"]


# Mistakes: exit status 2, one line that says what to do, no traceback, and no model loaded.


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--faces", "--min-face-size", "0"],
            "--min-face-size must be a whole number from 8 to 4096; got 0.",
        ),
        (["--faces", "--max-faces", "-1"], "--max-faces must be a whole number from 1 to 50; got -1."),
        (["--faces", "--max-faces", "0"], "--max-faces must be a whole number from 1 to 50; got 0."),
        (["--faces", "--max-faces", "500"], "--max-faces must be a whole number from 1 to 50; got 500."),
        (["--faces", "--max-faces", "ten"], "--max-faces must be a whole number from 1 to 50; got 'ten'."),
        (["--workers", "0"], "--workers must be a whole number from 1 to 64; got 0."),
        (["--batch-size", "0"], "--batch-size must be a whole number from 1 to 4096; got 0."),
        (["--max-faces", "3"], "--require-face, --min-face-size and --max-faces need --faces."),
        (["--require-face"], "--require-face, --min-face-size and --max-faces need --faces."),
        (["--faces", "--detector", str(REPO / "README.md")], "is not a YuNet face detector model"),
    ],
)
def test_bad_options_are_usage_errors_before_the_model_loads(model, monkeypatch, capsys, args, message):
    monkeypatch.setattr(clip_age, "load", lambda *a, **k: pytest.fail("the model was loaded"))
    status, _ = run(*args, str(EXAMPLES / "coffee.png"))
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("error: ") and message in error and len(error.strip().splitlines()) == 1


def test_an_empty_folder_is_a_usage_error(model, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no photos here")
    assert run(str(tmp_path))[0] == 2
    assert capsys.readouterr().err.startswith(
        f"error: No photos in {tmp_path}: give photo files, or folders that hold .jpg"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLIP_MODEL": "banana"}, "error: CLIP_MODEL='banana' is not a model open_clip knows."),
        ({"CLIP_MODEL": "ViT-B-32", "CLIP_PRETRAINED": "/nowhere/ViT-B-32.pt"}, "error: CLIP_PRETRAINED='/nowhere/ViT-B-32.pt': no such file."),
        ({"CLIP_DEVICE": "cuda"}, "error: CLIP_DEVICE=cuda, but no GPU can be used:"),
        ({"CLIP_CPU_PRECISION": "fp16"}, "error: CLIP_CPU_PRECISION='fp16' is not valid: use one of auto, bf16, int8, fp32"),
        ({"CLIP_MODEL": "ViT-B-32", "CLIP_PRETRAINED": "openai", "HF_HUB_OFFLINE": "1"}, "clip-age download --model ViT-B-32 --pretrained openai Nothing was downloaded: HF_HUB_OFFLINE is on."),
    ],
)  # fmt: skip
def test_setting_mistakes_name_the_right_setting(model, monkeypatch, capsys, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status, _ = run(str(EXAMPLES / "coffee.png"))
    error = capsys.readouterr().err
    assert status == 2 and message in error and "Traceback" not in error


def test_a_file_that_is_not_a_checkpoint_is_one_line_without_warnings(model, monkeypatch, tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"not a checkpoint at all")
    env = {"CLIP_MODEL": "ViT-B-32", "CLIP_PRETRAINED": str(tmp_path / "weights.pt")}
    done = subprocess.run(
        [sys.executable, "-m", "clip_age", "predict", str(EXAMPLES / "coffee.png")],
        capture_output=True, text=True, env={**__import__("os").environ, **env},
    )  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(
        f"error: Could not load CLIP weights {tmp_path / 'weights.pt'} for CLIP_MODEL=ViT-B-32: "
    )


def test_debug_shows_the_traceback(model, monkeypatch, capsys):
    monkeypatch.setenv("CLIP_MODEL", "banana")
    assert run("--debug", str(EXAMPLES / "coffee.png"))[0] == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def broken_photo_age(error: type[Exception]):
    """A bug in the library: a numpy call on nothing (ValueError) or a read of a file that is not
    there (OSError), the kinds of error a user's mistake used to be told from by type alone."""

    def photo_age(faces, rows):
        if error is ValueError:
            np.stack([])
        open("/nonexistent/clip-age/state.json").close()

    return photo_age


@pytest.mark.parametrize("error", [ValueError, OSError])
def test_a_bug_exits_1_with_one_line_naming_debug(model, monkeypatch, capsys, error):
    from clip_age import pipeline

    monkeypatch.setattr(pipeline, "photo_age", broken_photo_age(error))
    assert run(str(EXAMPLES / "coffee.png"))[0] == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        f"error: clip-age stopped on an unexpected problem ({error.__name__ if error is ValueError else 'FileNotFoundError'}: "
    )
    assert line.endswith("Run the command again with --debug to see where.")
    assert run("--debug", str(EXAMPLES / "coffee.png"))[0] == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_help_is_quick_and_lists_every_command():
    done = subprocess.run(
        [sys.executable, "-m", "clip_age", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0
    assert "{predict,evaluate,download}" in done.stdout


FORKED_AFTER_THREADS = """
import io
from pathlib import Path
from PIL import Image
import clip_age
from clip_age import cli
from clip_age.decoding.faces import FaceDetector
from clip_age.request_options import FaceRequest
from clip_age.settings import Settings

DETECTOR = Settings.from_env().face_detector_model

def main():
    estimator = clip_age.load(device="cpu")
    big = Image.open("examples/astronaut.png").convert("RGB").resize((1920, 1920))
    detector = FaceDetector(DETECTOR)
    for _ in range(3):
        detector.detect(big, 32, 10)  # OpenCV's threads now run in this process
    estimator.predict_images([big])  # and torch's
    files, names = cli.photo_files(["examples"])
    request = cli.PredictRequest(
        files=files, names=names, faces=FaceRequest(), detector=DETECTOR, batch_size=8, workers=2
    )
    print(cli.run_predict_command(estimator, request, io.StringIO()))

if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
def test_decode_workers_start_clean_after_the_caller_has_run_threads(model, yunet_model, tmp_path):
    """Forking a process whose OpenCV and torch threads have run left decode workers waiting on
    a lock forever; they now start from a forkserver."""
    script = tmp_path / "scenario.py"
    script.write_text(FORKED_AFTER_THREADS)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
