"""Evaluate the age estimator on a labelled dataset: metrics, breakdowns, template comparison, plots."""

import csv
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clip_age import bulk_loader
from clip_age.estimator import AgeEstimator
from clip_age.evaluation import metrics
from clip_age.evaluation.datasets import Dataset, Sample
from prompts import TEMPLATES, check_template

ESTIMATES = ("argmax", "expected")


@dataclass(frozen=True)
class Predictions:
    samples: list[Sample]  # the readable ones, in order
    argmax: np.ndarray
    expected: np.ndarray


def read_template_sets(path: Path) -> dict[str, list[str]]:
    """Named template sets from a text file: a `[name]` line starts a set, each other non-empty
    line is a template with {age}; lines starting with # are comments."""
    sets: dict[str, list[str]] = {}
    current = None
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            sets[current] = []
        elif current is None:
            raise ValueError(f"{path}:{number}: a template before any [name] line.")
        else:
            sets[current].append(check_template(line))
    empty = [name for name, templates in sets.items() if not templates]
    if not sets or empty:
        raise ValueError(f"{path}: every [name] needs at least one template; empty: {empty or 'all'}.")
    return sets


def run(
    estimator: AgeEstimator,
    dataset: Dataset,
    out_dir: Path,
    template_sets: dict[str, Sequence[str]] | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    progress: Callable[[int], None] = lambda done: None,
) -> dict[str, Any]:
    """Embed every image once, score each template set on those embeddings, write the report."""
    sets = {"default": list(TEMPLATES), **(template_sets or {})}
    samples, embeddings, unreadable = _embed(estimator, dataset, batch_size, workers, progress)

    per_set = {}
    for name, templates in sets.items():
        prompts = estimator.embed_prompts(templates)
        results = estimator.distributions(embeddings, prompts) if len(samples) else []
        per_set[name] = Predictions(
            samples,
            np.array([r.age for r in results], dtype=np.float64),
            np.array([r.expected_age for r in results], dtype=np.float64),
        )

    primary = per_set["default"]
    report: dict[str, Any] = {
        "n": len(samples),
        "unreadable": sorted(unreadable),
        "unreadable_errors": dict(sorted(unreadable.items())),
        "labels": dataset.kind,
        **{estimate: _metrics(primary, estimate, dataset.kind) for estimate in ESTIMATES},
        "templates": {
            name: {
                "templates": list(sets[name]),
                **{estimate: _headline(_metrics(p, estimate, dataset.kind)) for estimate in ESTIMATES},
            }
            for name, p in per_set.items()
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    _write_predictions(out_dir / "predictions.csv", primary)
    if len(samples):
        _plot(out_dir, primary, dataset.kind)
    return report


def table(report: dict[str, Any]) -> str:
    """A short text table of the headline metrics."""
    lines = [f"n={report['n']}  unreadable={len(report['unreadable'])}  labels={report['labels']}"]
    names = ["mae", "rmse", "median_ae", "cs5", "cs10", "bias", "pearson_r"]
    extra = [k for k in ("bin_accuracy", "interval_mae", "epsilon_error") if k in report["argmax"]]
    lines.append(f"{'estimate':10}" + "".join(f"{n:>14}" for n in names + extra))
    for estimate in ESTIMATES:
        values = report[estimate]
        lines.append(f"{estimate:10}" + "".join(f"{_fmt(values.get(n)):>14}" for n in names + extra))
    if len(report["templates"]) > 1:
        lines.append("")
        lines.append(f"{'templates':24}{'argmax MAE':>14}{'expected MAE':>14}")
        for name, entry in report["templates"].items():
            lines.append(f"{name:24}{_fmt(entry['argmax']['mae']):>14}{_fmt(entry['expected']['mae']):>14}")
    return "\n".join(lines)


def _embed(estimator, dataset, batch_size, workers, progress):
    paths = [sample.path for sample in dataset.samples]
    readable, parts = [], []
    unreadable = dict(dataset.skipped)
    done = 0
    for pixels, items in bulk_loader.batches(paths, estimator.input_spec, batch_size, workers):
        if len(pixels):
            parts.append(estimator.encode_pixels(pixels))
        for item in items:
            if item.error is None:
                readable.append(dataset.samples[item.index])
            else:
                unreadable[item.path] = item.error
        done += len(items)
        progress(done)
    embeddings = torch.cat(parts) if parts else torch.empty(0)
    return readable, embeddings, unreadable


def _metrics(predictions: Predictions, estimate: str, kind: str) -> dict[str, Any]:
    if not predictions.samples:
        return {}
    predicted = getattr(predictions, estimate)
    samples = predictions.samples
    if kind == "bins":
        labels = [s.age_bin for s in samples]
        result: dict[str, Any] = metrics.bin_metrics(labels, predicted)
        result["mae"] = result["interval_mae"]
        keys = labels
    else:
        true = np.array([s.age for s in samples])
        result = metrics.error_metrics(true, predicted)
        if kind == "apparent":
            result["epsilon_error"] = metrics.epsilon_error(predicted, true, [s.sigma for s in samples])
        keys = [metrics.decade(age) for age in true]
    result["by_decade"] = _breakdown(keys, predictions, predicted, kind)
    groups = sorted({name for s in samples for name in s.groups})
    result["by_group"] = {
        group: _breakdown([s.groups.get(group, "(missing)") for s in samples], predictions, predicted, kind)
        for group in groups
    }
    return result


def _breakdown(keys: list[str], predictions: Predictions, predicted: np.ndarray, kind: str) -> dict[str, Any]:
    members: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        members[key].append(index)
    out = {}
    for key in sorted(members):
        index = members[key]
        chosen = [predictions.samples[i] for i in index]
        if kind == "bins":
            m = metrics.bin_metrics([s.age_bin for s in chosen], predicted[index])
            out[key] = {"n": len(index), "mae": m["interval_mae"], "bin_accuracy": m["bin_accuracy"]}
        else:
            m = metrics.error_metrics([s.age for s in chosen], predicted[index])
            out[key] = {"n": len(index), "mae": m["mae"], "bias": m["bias"]}
    return out


def _headline(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in ("by_decade", "by_group")}


def _write_predictions(path: Path, predictions: Predictions) -> None:
    groups = sorted({name for s in predictions.samples for name in s.groups})
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "age", "pred_age", "pred_expected_age", *groups])
        for sample, top, expected in zip(predictions.samples, predictions.argmax, predictions.expected):
            label = sample.age_bin if sample.age is None else f"{sample.age:g}"
            writer.writerow(
                [sample.path, label, int(top), f"{expected:.2f}", *(sample.groups.get(g, "") for g in groups)]
            )


def _plot(out_dir: Path, predictions: Predictions, kind: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if kind == "bins":
        true = np.array([np.mean(metrics.FAIRFACE_BINS[s.age_bin]) for s in predictions.samples])
    else:
        true = np.array([s.age for s in predictions.samples])
    predicted = predictions.argmax

    figure, axes = plt.subplots(figsize=(6, 6), dpi=100)
    axes.scatter(true, predicted, s=8, alpha=0.5)
    axes.plot([0, 100], [0, 100], color="black", linewidth=1, label="predicted = true")
    axes.set(
        xlim=(0, 100),
        ylim=(0, 100),
        xlabel="true age" + (" (bin centre)" if kind == "bins" else ""),
        ylabel="predicted age (argmax)",
        title="Predicted vs true age",
    )
    axes.legend(loc="upper left")
    figure.savefig(out_dir / "scatter.png")
    plt.close(figure)

    decades = sorted({metrics.decade(age) for age in true}, key=lambda d: int(d.split("-")[0].rstrip("+")))
    errors = {d: np.abs(predicted - true)[[metrics.decade(a) == d for a in true]].mean() for d in decades}
    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    axes.bar(list(errors), list(errors.values()))
    axes.set(xlabel="true age", ylabel="MAE (years, argmax)", title="MAE by decade of true age")
    figure.savefig(out_dir / "mae_by_decade.png")
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
    axes.hist(predicted - true, bins=40)
    axes.axvline(0, color="black", linewidth=1)
    axes.set(xlabel="predicted - true (years, argmax)", ylabel="images", title="Error histogram")
    figure.savefig(out_dir / "error_histogram.png")
    plt.close(figure)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
