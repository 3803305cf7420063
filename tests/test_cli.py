import csv
import io
import json
import shutil

import pytest
from PIL import Image

from clip_age import cli
from tests.conftest import EXAMPLES


@pytest.fixture
def folder(tmp_path):
    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    shutil.copy(EXAMPLES / "astronaut.png", photos / "a_astronaut.png")
    shutil.copy(EXAMPLES / "astronaut_face.jpg", photos / "nested" / "b_face.jpg")
    (photos / "c_broken.jpg").write_bytes(b"%PDF-1.4 pretending")
    (photos / "readme.txt").write_text("not picked up: not an image suffix")
    return photos


def run(tiny_model_dir, *args):
    out = io.StringIO()
    status = cli.main(["predict", "--model", f"local-dir:{tiny_model_dir}", "--device", "cpu", *args], out)
    return status, out.getvalue()


def test_predict_a_folder_prints_one_json_line_per_photo_in_order(tiny_model_dir, folder):
    status, output = run(tiny_model_dir, "--workers", "2", str(folder))
    records = [json.loads(line) for line in output.splitlines()]
    assert [r["path"] for r in records] == [
        str(folder / "a_astronaut.png"),
        str(folder / "c_broken.jpg"),
        str(folder / "nested" / "b_face.jpg"),
    ]
    good = records[0]
    assert set(good) == {"path", "age", "expected_age", "age_low", "age_high", "faces"}
    assert 1 <= good["age_low"] <= good["age_high"] <= 99
    assert records[1] == {
        "path": str(folder / "c_broken.jpg"),
        "error": "The file is not an image we can read (it looks like a PDF document). "
        "Accepted formats: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF or AVIF.",
    }
    assert "age" in records[2]
    assert status == 1  # one photo failed; the others were still predicted


def test_predict_matches_the_estimator(tiny_model_dir, estimator):
    status, output = run(tiny_model_dir, "--probabilities", str(EXAMPLES / "coffee.png"))
    [record] = [json.loads(line) for line in output.splitlines()]
    [direct] = estimator.predict([Image.open(EXAMPLES / "coffee.png").convert("RGB")])
    assert status == 0
    assert record["age"] == direct.age
    assert record["probabilities"] == pytest.approx(direct.probabilities.tolist(), abs=1e-6)


def test_predict_csv(tiny_model_dir, folder):
    _, output = run(tiny_model_dir, "--csv", "--workers", "0", str(folder))
    rows = list(csv.DictReader(io.StringIO(output)))
    assert list(rows[0]) == ["path", "age", "expected_age", "age_low", "age_high", "faces", "error"]
    assert [bool(row["error"]) for row in rows] == [False, True, False]
    assert rows[0]["faces"] == "0" and rows[0]["age"].isdigit()


def test_faces_with_the_cli(tiny_model_dir, yunet_model, tmp_path):
    astronaut = Image.open(EXAMPLES / "astronaut.png").convert("RGB")
    canvas = Image.new("RGB", (1024, 512), "white")
    canvas.paste(astronaut, (0, 0))
    canvas.paste(astronaut.resize((384, 384)), (600, 60))
    canvas.save(tmp_path / "two.jpg", quality=92)
    _, output = run(tiny_model_dir, "--faces", "--detector", str(yunet_model), str(tmp_path / "two.jpg"))
    [record] = [json.loads(line) for line in output.splitlines()]
    assert len(record["faces"]) == 2
    first, second = record["faces"]
    assert first["box"][2] * first["box"][3] > second["box"][2] * second["box"][3]
    assert first["box"][0] < 512 <= second["box"][0]
    assert record["age"] == first["age"]


def test_a_missing_detector_is_one_clear_line(tiny_model_dir, tmp_path, capsys):
    status, _ = run(tiny_model_dir, "--faces", "--detector", str(tmp_path / "none.onnx"), str(EXAMPLES))
    assert status == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            f"error: Face detection is unavailable: no YuNet model at {tmp_path / 'none.onnx'}. "
            "Set FACE_DETECTOR_MODEL to a YuNet .onnx file, or leave it unset to use the one that ships with clip_age."
        )
    )


def test_evaluate_command_prints_a_table(tiny_model_dir, tmp_path, capsys):
    for age in (20, 30):
        shutil.copy(EXAMPLES / "astronaut_face.jpg", tmp_path / f"{age}_1_0_2017.jpg")
    status = cli.main(
        [
            "evaluate",
            str(tmp_path),
            "--model",
            f"local-dir:{tiny_model_dir}",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert printed.splitlines()[0] == "n=2  unreadable=0  labels=age"
    assert (tmp_path / "out" / "metrics.json").is_file()
