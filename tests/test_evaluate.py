import base64
import csv
import io
import json
import re

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from clip_age import pipeline
from clip_age.evaluation import evaluate, html_report, plots
from clip_age.evaluation.datasets import Dataset, load_dataset
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
        for i, (path, p, offset) in enumerate(zip(paths, predicted, offsets, strict=True))
    ]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")

    report = evaluate.run(estimator, load_dataset(folder / "labels.csv"), tmp_path, workers=1)

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
    expected_error = [p.expected_age - (p.age - o) for p, o in zip(predicted, offsets, strict=True)]
    assert report["expected"]["mae"] == pytest.approx(np.mean(np.abs(expected_error)), abs=1e-3)


def test_the_whole_command_writes_every_file(estimator, photos, tmp_path):
    folder, paths = photos
    labels = ["path,age,gender"] + [f"{p.name},{20 + i},{'f' if i % 3 else 'm'}" for i, p in enumerate(paths)]
    labels += ["broken.jpg,30,f", "notes.jpg,40,m", "unlabelled.jpg,thirty,f", "missing.jpg,-3,m"]
    (folder / "all.csv").write_text("\n".join(labels) + "\n")
    templates = tmp_path / "templates.txt"
    templates.write_text(
        "# two ways to ask\n[photo]\na photo of a {age} year old person\n[both]\n"
        "this person is {age} years old\na photo of a {age} year old person\n"
    )
    out = tmp_path / "eval-out"

    report = evaluate.run(
        estimator,
        load_dataset(folder / "all.csv"),
        out,
        evaluate.read_template_sets(templates),
        workers=2,
        model_label="tiny <random> / init",
    )

    saved = json.loads((out / "metrics.json").read_text())
    assert saved["n"] == COUNT == report["n"]
    assert saved["unreadable"] == sorted([str(folder / "broken.jpg"), str(folder / "notes.jpg")])
    assert "it looks like a text file" in saved["unreadable_errors"][str(folder / "notes.jpg")]
    # A bad label is reported as such, and its photo not read (so not reported unreadable too).
    assert saved["bad_labels"] == {
        str(folder / "unlabelled.jpg"): "age 'thirty' is neither a number nor a FairFace bin",
        str(folder / "missing.jpg"): "age -3 is negative",
    }
    assert saved["model"] == "tiny <random> / init"
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
    assert lines[0] == "path,age,pred_age,pred_expected_age,pred_age_low,pred_age_high,gender"
    assert len(lines) == 1 + COUNT
    for name in ("scatter.png", "mae_by_decade.png", "error_histogram.png"):
        with Image.open(out / name) as plot:
            assert plot.format == "PNG"
            assert 800 <= plot.width <= 1600 and 400 <= plot.height <= 800, plot.size
    table = evaluate.table(report)
    assert table.splitlines()[0] == f"n={COUNT}  unreadable=2  labels=age  bad_labels=2"
    assert "argmax" in table and "both" in table

    html = (out / "report.html").read_text()
    numbers = re.findall(r"-?\d+\.\d{3}|n/a", table)
    assert len(numbers) == 2 * 7 + 3 * 2  # both estimates' seven metrics, three template sets' two
    for number in numbers:
        assert f"<td>{number}</td>" in html
    assert "tiny &lt;random&gt; / init" in html and "<random>" not in html
    assert "<td>photos evaluated</td><td>36</td>" in html and "<td>bad labels</td><td>2</td>" in html
    for heading, breakdown in [
        ("decade of true age", saved["argmax"]["by_decade"]),
        ("gender", saved["argmax"]["by_group"]["gender"]),
    ]:
        assert f"<h2>By {heading}</h2>" in html
        for key, entry in breakdown.items():
            assert f"<tr><td>{key}</td><td>{entry['n']}</td><td>{entry['mae']:.3f}</td>" in html
    assert "unlabelled.jpg</code>: age &#x27;thirty&#x27;" in html and "notes.jpg</code>" in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 3
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as plot:
            assert plot.format == "PNG" and plot.width >= 800
    # Nothing to fetch: every src is inline, and no address appears outside the inlined images.
    assert re.findall(r"(?:src|href)=\"(?!data:)", html) == []
    assert "http" not in re.sub(r"base64,[^\"]+", "", html)


def test_template_sets_file_errors(tmp_path):
    bad = tmp_path / "t.txt"
    bad.write_text("this person is {age}\n")
    with pytest.raises(ValueError, match="a template before any \\[name\\] line"):
        evaluate.read_template_sets(bad)
    bad.write_text("[x]\nno age here\n")
    with pytest.raises(ValueError, match="exactly once"):
        evaluate.read_template_sets(bad)


@pytest.mark.parametrize("layout", ["csv", "json", "jsonl"])
def test_label_files_with_named_columns_bad_labels_and_unreadable_photos(estimator, photos, tmp_path, layout):
    folder, paths = photos
    rows = [
        {"picture": p.name, "years": 20 + 5 * i, "site": "a" if i % 2 else "b"}
        for i, p in enumerate(paths[:6])
    ]
    rows += [
        {"picture": paths[6].name, "years": "thirty", "site": "a"},
        {"picture": paths[7].name, "years": -3, "site": "b"},
        {"picture": "broken.jpg", "years": 40, "site": "a"},
    ]
    label_file = tmp_path / f"labels.{layout}"
    if layout == "csv":
        label_file.write_text(
            "picture,years,site\n" + "".join(f"{r['picture']},{r['years']},{r['site']}\n" for r in rows)
        )
    elif layout == "json":
        label_file.write_text(json.dumps({"images": rows}))
    else:
        label_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    # Photo paths in the label file are relative to its folder.
    for path in [*paths[:8], folder / "broken.jpg"]:
        (tmp_path / path.name).symlink_to(path)
    out = tmp_path / "out"

    dataset = load_dataset(label_file, path_column="picture", age_column="years")
    report = evaluate.run(estimator, dataset, out, workers=1)

    assert report["n"] == 6
    assert report["bad_labels"] == {
        str(tmp_path / paths[6].name): "age 'thirty' is neither a number nor a FairFace bin",
        str(tmp_path / paths[7].name): "age -3 is negative",
    }
    assert report["unreadable"] == [str(tmp_path / "broken.jpg")]
    assert json.loads((out / "metrics.json").read_text())["bad_labels"] == report["bad_labels"]
    with open(out / "predictions.csv", newline="") as file:
        predicted = list(csv.DictReader(file))
    assert list(predicted[0]) == [
        "path", "age", "pred_age", "pred_expected_age", "pred_age_low", "pred_age_high", "site",
    ]  # fmt: skip
    own = own_predictions(estimator, paths[:6])
    assert [(row["path"], row["age"], row["site"]) for row in predicted] == [
        (str(tmp_path / r["picture"]), str(r["years"]), r["site"]) for r in rows[:6]
    ]
    assert [
        (int(row["pred_age"]), int(row["pred_age_low"]), int(row["pred_age_high"])) for row in predicted
    ] == [(p.age, p.age_low, p.age_high) for p in own]
    assert (out / "report.html").is_file()


def synthetic_report(true, predicted):
    """What plots.draw reads from a report, worked out for made-up predictions."""
    report = {"labels": "age", "model": "made up", "n": len(true)}
    for estimate, ages in predicted.items():
        error = np.abs(ages - true)
        by_decade = {
            f"{start}-{start + 9}": {"n": int(inside.sum()), "mae": float(error[inside].mean())}
            for start in range(0, 100, 10)
            if (inside := (true >= start) & (true < start + 10)).any()
        }
        report[estimate] = {"mae": float(error.mean()), "by_decade": by_decade}
    return report


@pytest.mark.parametrize("count", [300, plots.DENSITY_ABOVE + 1])
def test_plots_show_both_estimates_the_model_the_mae_and_each_bars_n(tmp_path, count):
    import matplotlib.pyplot as plt
    from matplotlib.collections import PathCollection, PolyCollection

    rng = np.random.default_rng(count)
    true = rng.uniform(1, 99, count)
    predicted = {
        "argmax": np.round(true + rng.normal(0, 9, count)),
        "expected": true + rng.normal(0, 6, count),
    }
    report = synthetic_report(true, predicted)
    mae = [f"{estimate} {report[estimate]['mae']:.2f}" for estimate in ("argmax", "expected")]

    figures = plots.figures(true, predicted, report)

    assert list(figures) == ["scatter.png", "mae_by_decade.png", "error_histogram.png"]
    scatter, bars, histogram = figures.values()
    titles = [scatter.get_suptitle(), bars.axes[0].get_title(), histogram.axes[0].get_title()]
    for title in titles:
        assert "made up" in title and all(m in title for m in mae) and f"n={count}" in title
    panels = scatter.axes[:2]
    assert [axes.get_title() for axes in panels] == ["argmax age", "expected age"]
    # Past the threshold, a density of hexagons (with its colour bar) instead of one dot per photo.
    kind = PolyCollection if count > plots.DENSITY_ABOVE else PathCollection
    assert all(type(axes.collections[0]) is kind for axes in panels)
    assert len(scatter.axes) == (3 if count > plots.DENSITY_ABOVE else 2)
    decades = [f"{start}-{start + 9}" for start in range(0, 100, 10)]
    assert [tick.get_text() for tick in bars.axes[0].get_xticklabels()] == decades
    labels = [text.get_text() for text in bars.axes[0].texts]
    assert labels == 2 * [f"n={report['argmax']['by_decade'][d]['n']}" for d in decades]  # on every bar
    assert [bar.get_height() for bar in bars.axes[0].patches] == pytest.approx(
        [report[estimate]["by_decade"][d]["mae"] for estimate in ("argmax", "expected") for d in decades]
    )
    assert [t.get_text() for t in histogram.axes[0].get_legend().get_texts()] == ["argmax", "expected"]
    for figure in figures.values():
        plt.close(figure)

    written = plots.draw(tmp_path, true, predicted, report)
    for path in written:
        with Image.open(path) as plot:
            assert plot.format == "PNG" and 800 <= plot.width <= 1600 and 400 <= plot.height <= 800


@pytest.mark.parametrize("count", [3, 7, 300])
def test_the_error_histogram_counts_photos_in_whole_numbers(count):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(count)
    true = rng.uniform(1, 99, count)
    predicted = {
        "argmax": np.round(true + rng.normal(0, 9, count)),
        "expected": true + rng.normal(0, 6, count),
    }
    histogram = plots.figures(true, predicted, synthetic_report(true, predicted))["error_histogram.png"]
    axes = histogram.axes[0]
    histogram.canvas.draw()
    low, high = axes.get_ylim()
    ticks = [tick for tick in axes.get_yticks() if low <= tick <= high]
    assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks), ticks
    plt.close("all")


def test_fairface_bins(estimator, photos, tmp_path):
    folder, paths = photos
    bins = ["more than 70", "3-9", "10-19", "0-2", "3-9", "20-29"]
    (tmp_path / "fairface.csv").write_text(
        "file,age,race\n"
        + "".join(
            f"{p},{b},{'x' if i % 2 else 'y'}\n" for i, (p, b) in enumerate(zip(paths, bins, strict=False))
        )
    )
    out = tmp_path / "out"

    report = evaluate.run(estimator, load_dataset(tmp_path / "fairface.csv"), out, workers=1)

    assert report["labels"] == "bins"
    assert report["argmax"]["mae"] == report["argmax"]["interval_mae"]
    assert 0 <= report["argmax"]["bin_accuracy"] <= 1
    # By bin, in order of age (not of text, which puts 3-9 after 20-29).
    assert list(report["argmax"]["by_decade"]) == ["0-2", "3-9", "10-19", "20-29", "more than 70"]
    assert report["argmax"]["by_decade"]["3-9"]["n"] == 2
    html = (out / "report.html").read_text()
    assert "<h2>By true age bin</h2>" in html and "<th>bin_accuracy</th>" in html
    assert html.count("data:image/png;base64,") == 3


def test_with_no_usable_photo_the_report_still_says_why(estimator, tmp_path):
    bad = {f"/photos/{i:03d}.jpg": "age 'x' is neither a number nor a FairFace bin" for i in range(150)}

    report = evaluate.run(estimator, Dataset([], bad), tmp_path, workers=1)

    assert report["n"] == 0 and len(report["bad_labels"]) == 150
    assert evaluate.table(report).splitlines()[0] == "n=0  unreadable=0  labels=age  bad_labels=150"
    assert not list(tmp_path.glob("*.png"))
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Bad labels (150)</h2>" in html and "<td>n/a</td>" in html
    assert html.count("<li>") == html_report.MAX_LISTED and "and 50 more: see metrics.json" in html
