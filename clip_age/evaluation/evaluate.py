"""Evaluate the age estimator on a labelled dataset: metrics, breakdowns, template comparison, plots
and a self-contained HTML report."""

import csv
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clip_age.answers.results import AgeDistribution
from clip_age.answers.safe_text import spreadsheet_cell
from clip_age.decoding import bulk_loader
from clip_age.estimation.estimator import AgeEstimator
from clip_age.evaluation import html_report, metrics, plots
from clip_age.evaluation.datasets import Dataset, Sample
from clip_age.evaluation.summary import ESTIMATES, natural_order
from clip_age.evaluation.summary import table as table  # callers know it as evaluate.table
from prompts import TEMPLATES, check_template


class TemplateError(ValueError):
    """A --templates file that cannot be read as named template sets."""


@dataclass(frozen=True)
class Predictions:
    samples: list[Sample]  # the readable ones, in order
    argmax: np.ndarray
    expected: np.ndarray
    low: np.ndarray  # each photo's age_low and age_high (10% and 90% quantiles)
    high: np.ndarray


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
            raise TemplateError(f"{path}:{number}: a template before any [name] line.")
        else:
            try:
                sets[current].append(check_template(line))
            except ValueError as error:
                raise TemplateError(f"{path}:{number}: {error}") from None
    empty = [name for name, templates in sets.items() if not templates]
    if not sets or empty:
        raise TemplateError(f"{path}: every [name] needs at least one template; empty: {empty or 'all'}.")
    return sets


def run(
    estimator: AgeEstimator,
    dataset: Dataset,
    out_dir: Path,
    template_sets: dict[str, Sequence[str]] | None = None,
    batch_size: int = 64,
    workers: int | None = None,
    progress: Callable[[int], None] = lambda done: None,
    model_label: str = "",
) -> dict[str, Any]:
    """Embed every image once, score each template set on those embeddings, and write
    metrics.json, predictions.csv, the plots and report.html to out_dir. model_label (such as
    "ViT-L-14 / openai") names the model in the report's titles."""
    sets = {"default": list(TEMPLATES), **(template_sets or {})}
    samples, embeddings, unreadable = _embed(estimator, dataset, batch_size, workers, progress)

    per_set = {}
    for name, templates in sets.items():
        prompts = estimator.embed_prompts(templates)
        results = estimator.distributions(embeddings, prompts) if len(samples) else []
        per_set[name] = _predictions(samples, results)

    primary = per_set["default"]
    report: dict[str, Any] = {
        "n": len(samples),
        "unreadable": sorted(unreadable),
        "unreadable_errors": dict(sorted(unreadable.items())),
        "bad_labels": dict(sorted(dataset.bad_labels.items())),
        "labels": dataset.kind,
        "model": model_label,
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
    drawn = []
    if len(samples):
        drawn = plots.draw(out_dir, _true_ages(samples), _estimates(primary), report)
    html_report.write(out_dir / "report.html", report, drawn)
    return report


def _embed(
    estimator: AgeEstimator,
    dataset: Dataset,
    batch_size: int,
    workers: int | None,
    progress: Callable[[int], None],
) -> tuple[list[Sample], torch.Tensor, dict[str, str]]:
    """The readable samples in order, their embeddings, and path -> error for the unreadable."""
    paths = [sample.path for sample in dataset.samples]
    readable, parts = [], []
    unreadable: dict[str, str] = {}
    done = 0
    with bulk_loader.BulkDecoder(estimator.input_spec, estimator.device, workers) as decoder:
        for pixels, items in decoder.batches(paths, batch_size):
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


def _predictions(samples: list[Sample], results: list[AgeDistribution]) -> Predictions:
    def column(name: str) -> np.ndarray:
        return np.array([getattr(result, name) for result in results], dtype=np.float64)

    return Predictions(samples, column("age"), column("expected_age"), column("age_low"), column("age_high"))


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
    for key in sorted(members, key=natural_order):
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
        header = ["path", "age", "pred_age", "pred_expected_age", "pred_age_low", "pred_age_high", *groups]
        writer.writerow([spreadsheet_cell(name) for name in header])
        for index, sample in enumerate(predictions.samples):
            label = sample.age_bin if sample.age is None else f"{sample.age:g}"
            writer.writerow(
                [
                    spreadsheet_cell(sample.path),
                    label,
                    int(predictions.argmax[index]),
                    f"{predictions.expected[index]:.2f}",
                    int(predictions.low[index]),
                    int(predictions.high[index]),
                    *(spreadsheet_cell(sample.groups.get(g, "")) for g in groups),
                ]
            )


def _true_ages(samples: list[Sample]) -> np.ndarray:
    """True ages to plot against; a FairFace bin stands at its centre."""
    return np.array(
        [s.age if s.age is not None else np.mean(metrics.FAIRFACE_BINS[s.age_bin]) for s in samples]
    )


def _estimates(predictions: Predictions) -> dict[str, np.ndarray]:
    return {estimate: getattr(predictions, estimate) for estimate in ESTIMATES}
