"""What the command writes is safe to open: no spreadsheet formula in a CSV (OWASP's CSV injection
rule), no terminal control in any text line, a drawing per photo that never overwrites another,
and label files that are too big or too deep refused in one line."""

import csv
import io
import json
import shutil
import unicodedata

import pytest

from clip_age import cli
from clip_age.evaluation.datasets import MAX_CELL_CHARS
from tests.conftest import EXAMPLES

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP: cells a spreadsheet may run
ESC = "\x1b"
HOSTILE_NAMES = ["=1+1.png", "+1.png", "-1.png", "@SUM(A1).png", "\tx.png", f"{ESC}[31mred.png"]


@pytest.fixture
def hostile_names(tmp_path, monkeypatch):
    """Photos whose names a spreadsheet or terminal would act on, in the current folder, so that
    each path cell starts with the name."""
    for name in HOSTILE_NAMES:
        shutil.copy(EXAMPLES / "coffee.png", tmp_path / name)
    (tmp_path / "=broken.jpg").write_bytes(b"not a photo")
    monkeypatch.chdir(tmp_path)
    return [*HOSTILE_NAMES, "=broken.jpg"]


def controls(text: str) -> list[str]:
    """Control characters in text, besides the line ends CSV and JSON lines use."""
    return [char for char in text if unicodedata.category(char) == "Cc" and char not in "\r\n"]


def test_csv_text_cells_are_never_formulas_and_numbers_stay_numbers(model, hostile_names, capsys):
    out = io.StringIO()
    status = cli.main(["predict", "--csv", "--", *hostile_names], out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert status == 1 and len(rows) == len(hostile_names)
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(FORMULA_STARTS), row
    assert [row["path"] for row in rows] == [
        "'=1+1.png", "'+1.png", "'-1.png", "'@SUM(A1).png", "'\\x09x.png", "\\x1b[31mred.png", "'=broken.jpg",
    ]  # fmt: skip
    assert all(row["age"].isdigit() and row["age_low"].isdigit() for row in rows[:-1])
    assert rows[-1]["error"].startswith("The file is not an image")
    assert controls(out.getvalue()) == []
    assert controls(capsys.readouterr().err) == []


def test_json_lines_keep_names_exact_and_escaped_by_json(model, hostile_names):
    out = io.StringIO()
    cli.main(["predict", "--", *hostile_names], out)
    assert controls(out.getvalue()) == []
    assert [json.loads(line)["path"] for line in out.getvalue().splitlines()] == hostile_names


def test_a_name_in_an_error_line_is_escaped(model, tmp_path, capsys):
    not_a_folder = tmp_path / f"{ESC}]0;pwned{ESC}\\"
    not_a_folder.write_text("a file")
    assert (
        cli.main(["predict", "--draw", str(not_a_folder), str(EXAMPLES / "coffee.png")], io.StringIO()) == 2
    )
    error = capsys.readouterr().err
    assert controls(error) == [] and "\\x1b]0;pwned\\x1b\\" in error


def test_draw_keeps_the_source_extension_and_reports_an_unusable_name(model, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(EXAMPLES / "astronaut_face.jpg", photos / "same.jpg")
    shutil.copy(EXAMPLES / "coffee.png", photos / "same.png")
    shutil.copy(EXAMPLES / "coffee.png", photos / "..jpg")  # Pillow sees no extension in it
    long_name = "x" * 248 + ".png"  # with .jpg added, longer than a file name may be
    shutil.copy(EXAMPLES / "coffee.png", photos / long_name)
    shutil.copy(EXAMPLES / "coffee.png", photos / "z.png")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(EXAMPLES / "astronaut.png", other / "z.png")  # the same name, from another folder
    drawn = tmp_path / "drawn"
    out = io.StringIO()
    status = cli.main(["predict", "--draw", str(drawn), str(photos), str(other)], out)
    rows = {json.loads(line)["path"]: json.loads(line) for line in out.getvalue().splitlines()}
    assert status == 1
    assert sorted(path.name for path in drawn.iterdir()) == [
        "..jpg", "same.jpg", "same.png.jpg", "z.png.jpg"
    ]  # fmt: skip
    assert rows[str(photos / long_name)]["error"].startswith("Not drawn: ")
    assert rows[str(other / "z.png")]["error"].startswith("Not drawn: its drawing ")
    assert all("age" in rows[str(photos / name)] for name in ("same.jpg", "same.png", "..jpg", "z.png"))


def test_predictions_csv_neutralises_paths_and_groups(model, tmp_path, monkeypatch):
    for name in ("=a.png", "b.png"):
        shutil.copy(EXAMPLES / "coffee.png", tmp_path / name)
    (tmp_path / "labels.csv").write_text("path,age,team\n=a.png,30,=1+1\nb.png,40,-5\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["evaluate", "labels.csv", "--out", "report"], io.StringIO()) == 0
    rows = list(csv.reader(open(tmp_path / "report" / "predictions.csv", newline="")))
    assert rows[0] == [
        "path",
        "age",
        "pred_age",
        "pred_expected_age",
        "pred_age_low",
        "pred_age_high",
        "team",
    ]
    assert [(row[0], row[1], row[-1]) for row in rows[1:]] == [
        ("'=a.png", "30", "'=1+1"),
        ("b.png", "40", "'-5"),
    ]
    assert all(row[2].isdigit() for row in rows[1:])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("long.csv", "path,age\n" + "a" * (MAX_CELL_CHARS + 1) + ",30\n", f"has a cell longer than {MAX_CELL_CHARS:,} characters"),
        ("long.json", json.dumps([{"path": "a" * (MAX_CELL_CHARS + 1), "age": 30}]), f"has a cell longer than {MAX_CELL_CHARS:,} characters"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, "is JSON nested too deep to read"),
        ("deep.jsonl", '{"path": "a.png", "age": 3}\n' + "[" * 100_000 + "]" * 100_000 + "\n", "is JSON nested too deep to read"),
    ],
)  # fmt: skip
def test_evaluate_refuses_oversized_cells_and_deep_nesting_in_one_line(
    model, tmp_path, capsys, name, content, message
):
    (tmp_path / name).write_text(content)
    assert cli.main(["evaluate", str(tmp_path / name), "--out", str(tmp_path / "out")], io.StringIO()) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / name}") and message in line
