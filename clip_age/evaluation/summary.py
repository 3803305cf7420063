"""The headline numbers of an evaluation report, as the text table and the HTML report both show them."""

import re
from typing import Any

ESTIMATES = ("argmax", "expected")
HEADLINE = ("mae", "rmse", "median_ae", "cs5", "cs10", "bias", "pearson_r")
# Shown only for the label kinds that have them: FairFace bins, LAP/APPA-REAL vote spreads.
EXTRA = ("bin_accuracy", "interval_mae", "epsilon_error")


def counts_line(report: dict[str, Any]) -> str:
    return (
        f"n={report['n']}  unreadable={len(report['unreadable'])}  labels={report['labels']}"
        f"  bad_labels={len(report['bad_labels'])}"
    )


def headline(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The metric names, and one row per estimate: its name, then each metric formatted."""
    names = list(HEADLINE) + [k for k in EXTRA if k in report["argmax"]]
    rows = [[estimate] + [fmt(report[estimate].get(n)) for n in names] for estimate in ESTIMATES]
    return names, rows


def table(report: dict[str, Any]) -> str:
    """A short text table of the headline metrics."""
    names, rows = headline(report)
    lines = [counts_line(report), f"{'estimate':10}" + "".join(f"{n:>14}" for n in names)]
    lines += [f"{row[0]:10}" + "".join(f"{value:>14}" for value in row[1:]) for row in rows]
    if len(report["templates"]) > 1:
        lines.append("")
        lines.append(f"{'templates':24}{'argmax MAE':>14}{'expected MAE':>14}")
        for name, entry in report["templates"].items():
            lines.append(f"{name:24}{fmt(entry['argmax']['mae']):>14}{fmt(entry['expected']['mae']):>14}")
    return "\n".join(lines)


def natural_order(key: str) -> tuple[float, str]:
    """Sort key for breakdown names: by their first number ('3-9' before '10-19', 'more than 70'
    last among bins), then by name; names without a number after all others."""
    number = re.search(r"\d+", key)
    return (int(number.group()) if number else float("inf"), key)


def fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
