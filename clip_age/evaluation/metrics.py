"""Age-estimation error metrics as the literature reports them."""

import math
from collections.abc import Sequence

import numpy as np

# FairFace's nine age bins (its `age` column), as closed intervals of years.
FAIRFACE_BINS: dict[str, tuple[int, int]] = {
    "0-2": (0, 2),
    "3-9": (3, 9),
    "10-19": (10, 19),
    "20-29": (20, 29),
    "30-39": (30, 39),
    "40-49": (40, 49),
    "50-59": (50, 59),
    "60-69": (60, 69),
    "more than 70": (70, 120),
}


def error_metrics(true: Sequence[float], predicted: Sequence[float]) -> dict[str, float | None]:
    """MAE, RMSE, median absolute error, CS@5 and CS@10 (share with absolute error <= 5 or 10
    years), bias (mean of predicted - true) and Pearson's r."""
    true_ages = np.asarray(true, dtype=np.float64)
    error = np.asarray(predicted, dtype=np.float64) - true_ages
    absolute = np.abs(error)
    return {
        "mae": float(absolute.mean()),
        "rmse": float(math.sqrt((error**2).mean())),
        "median_ae": float(np.median(absolute)),
        "cs5": float((absolute <= 5).mean()),
        "cs10": float((absolute <= 10).mean()),
        "bias": float(error.mean()),
        "pearson_r": pearson(true_ages, true_ages + error),
    }


def pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's correlation; None when either side is constant (it is undefined)."""
    x, y = x - x.mean(), y - y.mean()
    scale = math.sqrt(float((x**2).sum() * (y**2).sum()))
    return float((x * y).sum() / scale) if scale > 0 else None


def epsilon_error(predicted: Sequence[float], mean: Sequence[float], sigma: Sequence[float]) -> float:
    """ChaLearn LAP apparent-age error: mean of 1 - exp(-(x - mu)^2 / (2 sigma^2))."""
    x, mu = np.asarray(predicted, dtype=np.float64), np.asarray(mean, dtype=np.float64)
    s = np.maximum(np.asarray(sigma, dtype=np.float64), 1e-6)
    return float(np.mean(1.0 - np.exp(-((x - mu) ** 2) / (2.0 * s**2))))


def age_bin(age: float) -> str:
    """The FairFace bin an age in years falls in (ages are rounded to whole years first)."""
    years = round(age)
    for name, (low, high) in FAIRFACE_BINS.items():
        if low <= years <= high:
            return name
    return "more than 70"


def bin_metrics(true_bins: Sequence[str], predicted: Sequence[float]) -> dict[str, float]:
    """9-bin accuracy, and the MAE to the true bin's interval (0 inside it), since bins have no
    single true age."""
    inside = [age_bin(age) == label for label, age in zip(true_bins, predicted, strict=True)]
    distances = [
        max(FAIRFACE_BINS[label][0] - age, age - FAIRFACE_BINS[label][1], 0.0)
        for label, age in zip(true_bins, predicted, strict=True)
    ]
    return {"bin_accuracy": float(np.mean(inside)), "interval_mae": float(np.mean(distances))}


def decade(age: float) -> str:
    """A decade label such as '20-29'; 90 and over share '90+'."""
    start = min(int(age // 10) * 10, 90)
    return "90+" if start == 90 else f"{start}-{start + 9}"
