"""Read labelled age datasets in the layouts the literature uses, and label files (CSV, JSON, JSONL)."""

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clip_age.evaluation.metrics import FAIRFACE_BINS

PATH_COLUMNS = ("path", "file", "file_name", "image", "filename")
AGE_COLUMNS = ("age", "apparent_age_avg", "mean")
SIGMA_COLUMNS = ("std", "stdv", "apparent_age_std", "sigma")
# Numeric bookkeeping columns that are labels of their own, not groups to break errors down by.
NOT_GROUPS = {"num_ratings", "real_age", "service_test"}
# The oldest verified human lived to 122; a label above this is a typo (or months, or a year of birth).
MAX_AGE = 120
# A label cell (path, age, group) is a short text; Python's csv reader stops at this length, and
# JSON cells are held to the same.
MAX_CELL_CHARS = 131_072

UTK_NAME = re.compile(r"^(\d+)_(\d)_(\d)_")
UTK_GENDERS = {"0": "male", "1": "female"}
UTK_RACES = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "others"}


class DatasetError(ValueError):
    """The dataset's layout was not recognised; the message says which layouts are."""


class BadLabel(ValueError):
    """One row's label cannot be used; the message says why."""


@dataclass(frozen=True)
class Sample:
    path: str
    age: float | None = None  # years; None when the label is a FairFace bin
    age_bin: str | None = None
    sigma: float | None = None  # spread of apparent-age votes (APPA-REAL, LAP)
    groups: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    samples: list[Sample]
    bad_labels: dict[str, str] = field(default_factory=dict)  # path -> why its label is unusable

    @property
    def kind(self) -> str:
        if self.samples and all(s.age_bin is not None for s in self.samples):
            return "bins"
        if self.samples and all(s.sigma is not None for s in self.samples):
            return "apparent"
        return "age"


def load_dataset(
    location: Path, split: str = "test", path_column: str | None = None, age_column: str | None = None
) -> Dataset:
    """A label file (CSV with a header, a JSON list of objects or an object holding one such list,
    or JSON lines: `path`, `age` and group columns, FairFace or LAP-2016 style), an APPA-REAL
    folder (gt_avg_<split>.csv beside <split>/), or a folder of UTKFace names
    AGE_GENDER_RACE_*.jpg. path_column/age_column name the label file's columns when their names
    are not among the ones recognised."""
    location = Path(location)
    if location.is_file():
        return read_labels(location, location.parent, path_column, age_column)
    if not location.is_dir():
        raise DatasetError(f"{location}: no such label file (CSV, JSON, JSONL) or folder.")
    appa = location / f"gt_avg_{split}.csv"
    if appa.is_file():
        return read_appa_real(location, split, path_column, age_column)
    if list(location.glob("gt_avg_*.csv")):
        raise DatasetError(f"{location} looks like APPA-REAL but has no gt_avg_{split}.csv; choose --split.")
    if path_column is not None or age_column is not None:
        raise DatasetError(
            f"{location} is a UTKFace folder, whose labels are in the file names: --path-column and "
            "--age-column apply to label files only."
        )
    return read_utkface(location)


def read_labels(
    label_file: Path,
    root: Path,
    path_column: str | None = None,
    age_column: str | None = None,
    extra_groups: dict[str, dict[str, str]] | None = None,
) -> Dataset:
    """Samples from a label file; image paths are relative to root."""
    rows = _read_rows(label_file)
    if not rows:
        raise DatasetError(f"{label_file} has no rows.")
    # JSON rows may differ in keys; a CSV row with extra cells has them under None.
    names = list(dict.fromkeys(name for row in rows for name in row if isinstance(name, str)))
    path_column = _column(names, path_column, PATH_COLUMNS, label_file, "image path", "--path-column")
    age_column = _column(names, age_column, AGE_COLUMNS, label_file, "age", "--age-column")
    sigma_column = next((c for c in names if c.lower() in SIGMA_COLUMNS), None)
    used = {path_column, age_column, sigma_column}
    group_columns = [
        c
        for c in names
        if c not in used and c.lower() not in NOT_GROUPS and not any(_nested(row.get(c)) for row in rows)
    ]

    samples, bad_labels = [], {}
    for number, row in enumerate(rows, 1):
        name = _text(row.get(path_column))
        if not name:
            bad_labels[f"{label_file} row {number}"] = f"no image path in column {path_column!r}"
            continue
        path = str(root / name)
        groups = {c: _text(row.get(c)) for c in group_columns if _text(row.get(c))}
        groups.update((extra_groups or {}).get(name, {}))
        sigma = row.get(sigma_column) if sigma_column else None
        try:
            samples.append(_sample(path, row.get(age_column), sigma, groups))
        except BadLabel as error:
            bad_labels[path] = str(error)
    return Dataset(samples, bad_labels)


def read_appa_real(
    folder: Path, split: str, path_column: str | None = None, age_column: str | None = None
) -> Dataset:
    """APPA-REAL: apparent age (mean of votes) and its std; the `_face.jpg` crop when present;
    gender, race and the other attributes from allcategories_<split>.csv when present."""
    categories = folder / f"allcategories_{split}.csv"
    extra: dict[str, dict[str, str]] = {}
    if categories.is_file():
        with open(categories, newline="", encoding="utf-8-sig") as file:
            for row in csv.DictReader(file):
                name = row.pop("file", None) or row.pop("file_name", "")
                extra[name] = {key: value for key, value in row.items() if value}
    dataset = read_labels(folder / f"gt_avg_{split}.csv", folder / split, path_column, age_column, extra)
    samples = [Sample(_face_crop(s.path), s.age, s.age_bin, s.sigma, s.groups) for s in dataset.samples]
    return Dataset(samples, dataset.bad_labels)


def read_utkface(folder: Path) -> Dataset:
    samples, bad_labels = [], {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        match = UTK_NAME.match(file.name)
        if not match:
            bad_labels[str(file)] = "name does not start with AGE_GENDER_RACE_ (UTKFace layout)"
            continue
        age, gender, race = match.groups()
        groups = {"gender": UTK_GENDERS.get(gender, gender), "race": UTK_RACES.get(race, race)}
        try:
            samples.append(Sample(str(file), age=_age(float(age), age), groups=groups))
        except BadLabel as error:
            bad_labels[str(file)] = str(error)
    if not samples:
        raise DatasetError(
            f"No labelled images in {folder}: expected UTKFace names AGE_GENDER_RACE_*.jpg, an "
            "APPA-REAL folder (gt_avg_<split>.csv), or pass a label file (CSV, JSON or JSONL) with "
            "columns path,age."
        )
    return Dataset(samples, bad_labels)


def _read_rows(label_file: Path) -> list[dict[str, Any]]:
    text = label_file.read_text(encoding="utf-8-sig")
    # By content, not by name: a CSV header never starts with [ or {; JSON and JSON lines do.
    if text.lstrip()[:1] in ("[", "{"):
        rows = _json_rows(text, label_file)
        _check_cells(rows, label_file)
        return rows
    reader = csv.DictReader(io.StringIO(text))
    try:
        return list(reader)
    except csv.Error as error:
        if "field limit" in str(error):
            raise DatasetError(_too_long(f"{label_file} line {reader.line_num}")) from None
        raise DatasetError(f"{label_file} line {reader.line_num} is not valid CSV: {error}.") from None


def _check_cells(rows: list[dict[str, Any]], label_file: Path) -> None:
    for number, row in enumerate(rows, 1):
        if any(len(cell) > MAX_CELL_CHARS for item in row.items() for cell in item if isinstance(cell, str)):
            raise DatasetError(_too_long(f"{label_file} row {number}"))


def _too_long(where: str) -> str:
    return (
        f"{where} has a cell longer than {MAX_CELL_CHARS:,} characters; label cells (paths, ages, "
        "groups) must be shorter."
    )


def _parsed(text: str, label_file: Path) -> Any:
    """json.loads, with nesting too deep for Python's parser as one sentence."""
    try:
        return json.loads(text)
    except RecursionError:
        raise DatasetError(
            f"{label_file} is JSON nested too deep to read; a label file is a list of flat objects, "
            "one per image."
        ) from None


def _json_rows(text: str, label_file: Path) -> list[dict[str, Any]]:
    """A JSON document (a list of objects, an object with one list of objects, or one object),
    else JSON lines."""
    try:
        document = _parsed(text, label_file)
    except json.JSONDecodeError:
        return [_json_line(line, number, label_file) for number, line in _lines(text)]
    if isinstance(document, dict):
        lists = [key for key, value in document.items() if _is_records(value)]
        if len(lists) > 1:
            raise DatasetError(
                f"{label_file}: expected a list of objects, or an object with one list of objects; "
                f"its keys {lists} hold {len(lists)} such lists."
            )
        document = document[lists[0]] if lists else [document]
    if not isinstance(document, list) or not all(isinstance(row, dict) for row in document):
        raise DatasetError(f"{label_file}: expected a list of objects (one per image).")
    return document


def _lines(text: str) -> list[tuple[int, str]]:
    return [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _json_line(line: str, number: int, label_file: Path) -> dict[str, Any]:
    try:
        row = _parsed(line, label_file)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{label_file}:{number}: not JSON, nor a line of JSON lines: {error}.") from None
    if not isinstance(row, dict):
        raise DatasetError(
            f"{label_file}:{number}: expected an object (one per image), got {line.strip()!r}."
        )
    return row


def _nested(value: Any) -> bool:
    """A JSON list or object: a detail of the row (a box, landmarks), not a group to break errors down by."""
    return isinstance(value, list | dict)


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(row, dict) for row in value)


def _sample(path: str, label: Any, sigma: Any, groups: dict[str, str]) -> Sample:
    """One labelled image, or BadLabel saying why its label cannot be used."""
    text = _text(label)
    if text in FAIRFACE_BINS:
        return Sample(path, age_bin=text, groups=groups)
    if not text:
        raise BadLabel("no age")
    number = _number(text)
    if number is None:
        raise BadLabel(f"age {text!r} is neither a number nor a FairFace bin")
    return Sample(path, age=_age(number, text), sigma=_spread(_text(sigma)), groups=groups)


def _spread(text: str) -> float | None:
    """The spread of apparent-age votes; None when the row has none."""
    if not text:
        return None
    number = _number(text)
    if number is None or number < 0:
        raise BadLabel(f"age spread {text!r} is not a number >= 0")
    return number


def _age(number: float, text: str) -> float:
    if number < 0:
        raise BadLabel(f"age {text} is negative")
    if number > MAX_AGE:
        raise BadLabel(f"age {text} is over {MAX_AGE}")
    return number


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    """A cell as text: CSV gives strings (None for a short row), JSON also numbers, booleans or null."""
    return "" if value is None else str(value).strip()


def _column(
    names: list[str], chosen: str | None, known: tuple[str, ...], label_file: Path, what: str, option: str
) -> str:
    if chosen is not None:
        if chosen in names:
            return chosen
        raise DatasetError(f"{label_file} has no column {chosen!r} ({option}); its columns are {names}.")
    for name in names:
        if name.lower() in known:
            return name
    raise DatasetError(
        f"{label_file} has no {what} column: expected one of {', '.join(known)}; found {names}. "
        f"Name it with {option}."
    )


def _face_crop(path: str) -> str:
    crop = Path(f"{path}_face.jpg")
    return str(crop) if crop.is_file() else path
