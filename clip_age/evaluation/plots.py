"""The evaluation's plots, each showing the argmax and the expected age. matplotlib is an optional
extra (`.[eval]`), so it is imported only when plots are drawn."""

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from clip_age.evaluation.summary import ESTIMATES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Above this many photos a scatter plot is a solid blob: the 6x6-inch panels hold a few thousand
# distinct markers, after which overlap (even half-transparent) hides where most photos are. A
# hexbin's colour counts them instead.
DENSITY_ABOVE = 2000
COLOURS = {"argmax": "tab:blue", "expected": "tab:orange"}
DPI = 100


def draw(
    out_dir: Path, true: np.ndarray, predicted: dict[str, np.ndarray], report: dict[str, Any]
) -> list[Path]:
    """scatter.png, mae_by_decade.png and error_histogram.png in out_dir; see figures()."""
    drawn = figures(true, predicted, report)
    import matplotlib.pyplot as plt  # after figures() has chosen the file-only backend

    paths = []
    for name, figure in drawn.items():
        figure.savefig(out_dir / name, dpi=DPI)
        plt.close(figure)
        paths.append(out_dir / name)
    return paths


def figures(
    true: np.ndarray, predicted: dict[str, np.ndarray], report: dict[str, Any]
) -> dict[str, "Figure"]:
    """The plots by file name. true holds the true ages (FairFace bins: the bin's centre),
    predicted each estimate's ages in the same order; the rest comes from the report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return {
        "scatter.png": _scatter(plt, true, predicted, report),
        "mae_by_decade.png": _mae_by_decade(plt, report),
        "error_histogram.png": _error_histogram(plt, true, predicted, report),
    }


def title(what: str, report: dict[str, Any]) -> str:
    """A plot's title: what it shows, the model, and the overall MAE of both estimates."""
    mae = "interval MAE" if report["labels"] == "bins" else "MAE"
    model = f" · {report['model']}" if report["model"] else ""
    scores = ", ".join(f"{estimate} {report[estimate]['mae']:.2f}" for estimate in ESTIMATES)
    return f"{what}{model}\n{mae} (years): {scores} · n={report['n']}"


def _scatter(
    plt: ModuleType, true: np.ndarray, predicted: dict[str, np.ndarray], report: dict[str, Any]
) -> "Figure":
    figure, panels = plt.subplots(1, 2, figsize=(12, 6.2), sharey=True, layout="constrained")
    top = max(100.0, float(true.max()), *(float(p.max()) for p in predicted.values())) + 1
    bins = " (bin centre)" if report["labels"] == "bins" else ""
    dense = len(true) > DENSITY_ABOVE
    cells = []
    for axes, estimate in zip(panels, ESTIMATES, strict=True):
        if dense:
            cells.append(
                axes.hexbin(
                    true, predicted[estimate], gridsize=50, extent=(0, top, 0, top), mincnt=1, bins="log"
                )
            )
        else:
            axes.scatter(true, predicted[estimate], s=8, alpha=0.5, color=COLOURS[estimate])
        axes.plot([0, top], [0, top], color="tab:red", linewidth=1, label="predicted = true")
        axes.set(
            xlim=(0, top),
            ylim=(0, top),
            aspect="equal",
            xlabel=f"true age{bins}",
            ylabel="predicted age",
            title=f"{estimate} age",
        )
        axes.legend(loc="upper left")
    if dense:
        # One colour scale for both panels, so that their densities compare.
        most = max(float(c.get_array().max()) for c in cells)
        for c in cells:
            c.set_clim(1, most)
        figure.colorbar(cells[0], ax=panels, label="photos per cell", shrink=0.8)
    figure.suptitle(title("Predicted vs true age", report))
    return figure


def _mae_by_decade(plt: ModuleType, report: dict[str, Any]) -> "Figure":
    figure, axes = plt.subplots(figsize=(10, 5), layout="constrained")
    keys = list(report["argmax"]["by_decade"])  # in order of age
    positions = np.arange(len(keys))
    width = 0.4
    for offset, estimate in zip((-width / 2, width / 2), ESTIMATES, strict=True):
        entries = [report[estimate]["by_decade"][key] for key in keys]
        bars = axes.bar(
            positions + offset, [e["mae"] for e in entries], width, label=estimate, color=COLOURS[estimate]
        )
        axes.bar_label(bars, labels=[f"n={e['n']}" for e in entries], padding=2, fontsize=7)
    axes.margins(y=0.12)  # room above the tallest bar for its n
    axes.set_xticks(positions, keys)
    what = "true age bin" if report["labels"] == "bins" else "decade of true age"
    axes.set(xlabel=what, ylabel="MAE (years)", title=title(f"MAE by {what}", report))
    axes.legend()
    return figure


def _error_histogram(
    plt: ModuleType, true: np.ndarray, predicted: dict[str, np.ndarray], report: dict[str, Any]
) -> "Figure":
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(figsize=(10, 5), layout="constrained")
    errors = [predicted[estimate] - true for estimate in ESTIMATES]
    edges = np.histogram_bin_edges(np.concatenate(errors), bins=40)
    for error, estimate in zip(errors, ESTIMATES, strict=True):
        axes.hist(error, bins=edges, histtype="step", linewidth=1.5, label=estimate, color=COLOURS[estimate])
    axes.axvline(0, color="black", linewidth=1)
    # The axis counts photos: on a small set matplotlib would otherwise put ticks at 0.5, 1.5, ...
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    bins = ", bin centre" if report["labels"] == "bins" else ""
    axes.set(xlabel=f"predicted - true (years{bins})", ylabel="photos", title=title("Signed error", report))
    axes.legend()
    return figure
