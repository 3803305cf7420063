"""report.html: one self-contained page (plots inlined as base64 PNG, no links out) with the
numbers of metrics.json, to open or send as it is."""

import base64
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from clip_age.evaluation.summary import ESTIMATES, fmt, headline

# Thousands of failed files would bury the numbers; the page lists this many and metrics.json all.
MAX_LISTED = 100
STYLE = """
body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""


def write(path: Path, report: dict[str, Any], plots: list[Path]) -> None:
    """The page for this report, with these plot files inlined, at path."""
    model = f" · {escape(report['model'])}" if report["model"] else ""
    parts = [
        f"<h1>Age evaluation{model}</h1>",
        _counts(report),
        "<h2>Headline</h2>",
        _headline(report),
        *_breakdowns(report),
        *_templates(report),
        "<h2>Plots</h2>" if plots else "",
        *(_image(plot) for plot in plots),
        _listing("Unreadable images", report["unreadable_errors"]),
        _listing("Bad labels", report["bad_labels"]),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Age evaluation{model}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(part for part in parts if part)
        + "\n</body>\n</html>\n"
    )
    path.write_text(page, encoding="utf-8")


def _counts(report: dict[str, Any]) -> str:
    rows = [
        ["photos evaluated", str(report["n"])],
        ["unreadable images", str(len(report["unreadable"]))],
        ["bad labels", str(len(report["bad_labels"]))],
    ]
    return f"<p>Labels: {escape(report['labels'])}</p>\n" + _table(["", "count"], rows)


def _headline(report: dict[str, Any]) -> str:
    names, rows = headline(report)
    return _table(["estimate", *names], rows)


def _breakdowns(report: dict[str, Any]) -> list[str]:
    """By decade (or FairFace bin) of the true age, then by each group column."""
    if not report["n"]:
        return []
    what = "true age bin" if report["labels"] == "bins" else "decade of true age"
    parts = [f"<h2>By {what}</h2>", _breakdown(report, lambda values: values["by_decade"])]
    for group in report["argmax"]["by_group"]:
        parts.append(f"<h2>By {escape(group)}</h2>")
        parts.append(_breakdown(report, lambda values, group=group: values["by_group"][group]))
    return parts


def _breakdown(report: dict[str, Any], pick: Callable[[dict[str, Any]], dict[str, Any]]) -> str:
    """One row per key: n, then each metric of each estimate side by side."""
    per_estimate = {estimate: pick(report[estimate]) for estimate in ESTIMATES}
    first = per_estimate["argmax"]
    metrics = [name for name in next(iter(first.values())) if name != "n"]
    header = ["", "n"] + [f"{estimate} {name}" for name in metrics for estimate in ESTIMATES]
    rows = [
        [key, str(first[key]["n"])]
        + [fmt(per_estimate[estimate][key][name]) for name in metrics for estimate in ESTIMATES]
        for key in first
    ]
    return _table(header, rows)


def _templates(report: dict[str, Any]) -> list[str]:
    if len(report["templates"]) < 2:
        return []
    rows = [
        [name, fmt(entry["argmax"].get("mae")), fmt(entry["expected"].get("mae"))]
        for name, entry in report["templates"].items()
    ]
    sets = "".join(
        f"<dt>{escape(name)}</dt>" + "".join(f"<dd><code>{escape(t)}</code></dd>" for t in entry["templates"])
        for name, entry in report["templates"].items()
    )
    return [
        "<h2>Prompt templates</h2>",
        _table(["set", "argmax mae", "expected mae"], rows),
        f"<dl>{sets}</dl>",
    ]


def _listing(title: str, reasons: dict[str, str]) -> str:
    if not reasons:
        return ""
    items = "".join(
        f"<li><code>{escape(path)}</code>: {escape(reason)}</li>"
        for path, reason in list(reasons.items())[:MAX_LISTED]
    )
    more = len(reasons) - MAX_LISTED
    rest = f"<p>... and {more} more: see metrics.json.</p>" if more > 0 else ""
    return f"<h2>{title} ({len(reasons)})</h2>\n<ul>{items}</ul>{rest}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(path.stem)}" src="data:image/png;base64,{data}">'
