import json

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from clip_age import pipeline
from clip_age.evaluation import evaluate
from clip_age.evaluation.datasets import load_dataset
from tests.conftest import EXAMPLES

COUNT = 36


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A few dozen different photos made from the example ones, and two files that are not photos."""
    folder = tmp_path_factory.mktemp("photos")
    sources = [Image.open(EXAMPLES / name).convert("RGB") for name in ("astronaut.png", "coffee.png")]
    paths = []
    for index in range(COUNT):
        photo = sources[index % 2].rotate(index * 7, expand=True)
        photo = ImageEnhance.Color(photo).enhance(0.5 + index / COUNT)
        photo = photo.crop((index, index, photo.width - index, photo.height - index))
        path = folder / f"photo{index:02d}.jpg"
        photo.save(path, quality=90)
        paths.append(path)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 nothing more")
    (folder / "notes.jpg").write_bytes(b"just some text")
    return folder, paths


def own_predictions(estimator, paths):
    """What the estimator says for each photo, through the single-photo path."""
    results = []
    for path in paths:
        prepared = pipeline.prepare(path, estimator.input_spec)
        results.append(estimator.predict_pixels(prepared.pixels)[0])
    return results


def test_oracle_labels_give_an_exactly_known_mae(estimator, photos, tmp_path):
    folder, paths = photos
    predicted = own_predictions(estimator, paths)
    offsets = [(-1) ** i * (i % 7) for i in range(COUNT)]  # true = predicted - offset
    rows = ["path,age,group"] + [
        f"{path.name},{p.age - offset},{'even' if i % 2 == 0 else 'odd'}"
        for i, (path, p, offset) in enumerate(zip(paths, predicted, offsets))
    ]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")

    report = evaluate.run(estimator, load_dataset(folder / "labels.csv"), tmp_path, workers=0)

    assert report["n"] == COUNT
    assert report["argmax"]["mae"] == pytest.approx(np.mean(np.abs(offsets)))
    assert report["argmax"]["bias"] == pytest.approx(np.mean(offsets))
    assert report["argmax"]["cs5"] == pytest.approx(np.mean(np.abs(offsets) <= 5))
    even = [abs(o) for i, o in enumerate(offsets) if i % 2 == 0]
    assert report["argmax"]["by_group"]["group"]["even"] == {
        "n": len(even),
        "mae": pytest.approx(np.mean(even)),
        "bias": pytest.approx(np.mean(offsets[::2])),
    }
    expected_error = [p.expected_age - (p.age - o) for p, o in zip(predicted, offsets)]
    assert report["expected"]["mae"] == pytest.approx(np.mean(np.abs(expected_error)), abs=1e-3)


def test_the_whole_command_writes_every_file(estimator, photos, tmp_path):
    folder, paths = photos
    labels = ["path,age,gender"] + [f"{p.name},{20 + i},{'f' if i % 3 else 'm'}" for i, p in enumerate(paths)]
    labels += ["broken.jpg,30,f", "notes.jpg,40,m"]
    (folder / "all.csv").write_text("\n".join(labels) + "\n")
    templates = tmp_path / "templates.txt"
    templates.write_text(
        "# two ways to ask\n[photo]\na photo of a {age} year old person\n[both]\n"
        "this person is {age} years old\na photo of a {age} year old person\n"
    )
    out = tmp_path / "eval-out"

    report = evaluate.run(
        estimator, load_dataset(folder / "all.csv"), out, evaluate.read_template_sets(templates), workers=2
    )

    saved = json.loads((out / "metrics.json").read_text())
    assert saved["n"] == COUNT == report["n"]
    assert saved["unreadable"] == sorted([str(folder / "broken.jpg"), str(folder / "notes.jpg")])
    assert "it looks like a text file" in saved["unreadable_errors"][str(folder / "notes.jpg")]
    for estimate in ("argmax", "expected"):
        assert set(saved[estimate]) >= {
            "mae",
            "rmse",
            "median_ae",
            "cs5",
            "cs10",
            "bias",
            "pearson_r",
            "by_decade",
            "by_group",
        }
        assert sum(entry["n"] for entry in saved[estimate]["by_decade"].values()) == COUNT
        assert set(saved[estimate]["by_group"]["gender"]) == {"f", "m"}
    assert list(saved["templates"]) == ["default", "photo", "both"]
    assert saved["templates"]["photo"]["argmax"]["mae"] != saved["templates"]["default"]["argmax"]["mae"]

    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0] == "path,age,pred_age,pred_expected_age,gender"
    assert len(lines) == 1 + COUNT
    for name, size in [
        ("scatter.png", (600, 600)),
        ("mae_by_decade.png", (800, 500)),
        ("error_histogram.png", (800, 500)),
    ]:
        with Image.open(out / name) as plot:
            assert plot.format == "PNG" and plot.size == size
    table = evaluate.table(report)
    assert table.splitlines()[0] == f"n={COUNT}  unreadable=2  labels=age"
    assert "argmax" in table and "both" in table


def test_template_sets_file_errors(tmp_path):
    bad = tmp_path / "t.txt"
    bad.write_text("this person is {age}\n")
    with pytest.raises(ValueError, match="a template before any \\[name\\] line"):
        evaluate.read_template_sets(bad)
    bad.write_text("[x]\nno age here\n")
    with pytest.raises(ValueError, match="exactly once"):
        evaluate.read_template_sets(bad)
