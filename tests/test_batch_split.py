"""One function hands a forward pass's results back to the photos whose rows it held; every path
uses it, so a miscount cannot give one photo another's answer."""

import io
import json
import shutil

import pytest

import clip_age
from clip_age import cli
from clip_age.estimation.batch_split import split_batch
from tests.conftest import EXAMPLES
from tests.test_cli import group_photo


def test_each_photo_gets_its_own_rows_in_order():
    assert split_batch(list("abcdef"), [1, 0, 3, 2]) == [["a"], [], ["b", "c", "d"], ["e", "f"]]
    assert split_batch([], [0, 0]) == [[], []]
    assert split_batch([], []) == []


@pytest.mark.parametrize("rows", [[1, 1], [2, 1, 1], [1, -1, 3], []])
def test_counts_that_do_not_add_up_are_refused(rows):
    with pytest.raises(ValueError, match="cannot be split"):
        split_batch(list("abc"), rows)


def test_an_unreadable_file_mid_folder_leaves_every_other_line_as_its_photo_alone(model, tmp_path):
    """One batch holds a two-face photo, a broken file, a photo without a face and one face:
    each line must equal that photo's answer when it is predicted on its own."""
    folder = tmp_path / "photos"
    folder.mkdir()
    group_photo(folder / "a_two.jpg")
    (folder / "b_broken.jpg").write_bytes(b"GIF89a but no more")
    shutil.copy(EXAMPLES / "coffee.png", folder / "c_coffee.png")
    shutil.copy(EXAMPLES / "astronaut.png", folder / "d_astronaut.png")
    out = io.StringIO()
    assert cli.main(["predict", "--faces", "--probabilities", str(folder)], out) == 1
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["path"].rsplit("/", 1)[-1] for line in lines] == [
        "a_two.jpg", "b_broken.jpg", "c_coffee.png", "d_astronaut.png"
    ]  # fmt: skip
    assert "error" in lines[1]
    estimator = clip_age.load()
    for line in (lines[0], lines[2], lines[3]):
        [alone] = clip_age.predict(estimator, [line["path"]], faces=True)
        assert line["age"] == alone.age
        assert line["probabilities"] == pytest.approx(alone.ages.probabilities.tolist(), abs=1e-5)
        assert [face["box"] for face in line["faces"]] == [list(face.box) for face in alone.faces]
        assert [face["expected_age"] for face in line["faces"]] == pytest.approx(
            [face.ages.expected_age for face in alone.faces], abs=0.01
        )
    assert len(lines[0]["faces"]) == 2 and lines[2]["faces"] == []
