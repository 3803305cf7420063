"""Read labelled age datasets in the layouts the literature uses."""

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from clip_age.evaluation.metrics import FAIRFACE_BINS

PATH_COLUMNS = ("path", "file", "file_name", "image", "filename")
AGE_COLUMNS = ("age", "apparent_age_avg", "mean")
SIGMA_COLUMNS = ("std", "stdv", "apparent_age_std", "sigma")
# Numeric bookkeeping columns that are labels of their own, not groups to break errors down by.
NOT_GROUPS = {"num_ratings", "real_age", "service_test"}

UTK_NAME = re.compile(r"^(\d+)_(\d)_(\d)_")
UTK_GENDERS = {"0": "male", "1": "female"}
UTK_RACES = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "others"}


class DatasetError(ValueError):
    """The dataset's layout was not recognised; the message says which layouts are."""


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
    skipped: dict[str, str]  # path -> why it has no usable label

    @property
    def kind(self) -> str:
        if self.samples and all(s.age_bin is not None for s in self.samples):
            return "bins"
        if self.samples and all(s.sigma is not None for s in self.samples):
            return "apparent"
        return "age"


def load_dataset(location: Path, split: str = "test") -> Dataset:
    """A CSV (`path,age[,group...]`, FairFace or LAP-2016 style), an APPA-REAL folder
    (gt_avg_<split>.csv beside <split>/), or a folder of UTKFace names AGE_GENDER_RACE_*.jpg."""
    location = Path(location)
    if location.is_file():
        return read_csv(location, location.parent)
    if not location.is_dir():
        raise DatasetError(f"{location} is neither a CSV file nor a folder.")
    appa = location / f"gt_avg_{split}.csv"
    if appa.is_file():
        return read_appa_real(location, split)
    if list(location.glob("gt_avg_*.csv")):
        raise DatasetError(f"{location} looks like APPA-REAL but has no gt_avg_{split}.csv; choose --split.")
    return read_utkface(location)


def read_csv(csv_path: Path, root: Path, extra_groups: dict[str, dict[str, str]] | None = None) -> Dataset:
    with open(csv_path, newline="", encoding="utf-8-sig") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        raise DatasetError(f"{csv_path} has no rows.")
    columns = list(rows[0])
    path_column = _pick(columns, PATH_COLUMNS, csv_path, "image path")
    age_column = _pick(columns, AGE_COLUMNS, csv_path, "age")
    sigma_column = next((c for c in columns if c.lower() in SIGMA_COLUMNS), None)
    used = {path_column, age_column, sigma_column}
    group_columns = [c for c in columns if c not in used and c.lower() not in NOT_GROUPS]

    samples, skipped = [], {}
    for row in rows:
        path = str(root / row[path_column])
        label = (row[age_column] or "").strip()
        groups = {c: row[c] for c in group_columns if row[c] not in (None, "")}
        groups.update((extra_groups or {}).get(row[path_column], {}))
        if label in FAIRFACE_BINS:
            samples.append(Sample(path, age_bin=label, groups=groups))
            continue
        try:
            age = float(label)
        except ValueError:
            skipped[path] = f"age {label!r} is neither a number nor a FairFace bin"
            continue
        sigma = float(row[sigma_column]) if sigma_column and row[sigma_column] else None
        samples.append(Sample(path, age=age, sigma=sigma, groups=groups))
    return Dataset(samples, skipped)


def read_appa_real(folder: Path, split: str) -> Dataset:
    """APPA-REAL: apparent age (mean of votes) and its std; the `_face.jpg` crop when present;
    gender, race and the other attributes from allcategories_<split>.csv when present."""
    categories = folder / f"allcategories_{split}.csv"
    extra: dict[str, dict[str, str]] = {}
    if categories.is_file():
        with open(categories, newline="", encoding="utf-8-sig") as file:
            for row in csv.DictReader(file):
                name = row.pop("file", None) or row.pop("file_name", "")
                extra[name] = {key: value for key, value in row.items() if value}
    dataset = read_csv(folder / f"gt_avg_{split}.csv", folder / split, extra)
    samples = [Sample(_face_crop(s.path), s.age, s.age_bin, s.sigma, s.groups) for s in dataset.samples]
    return Dataset(samples, dataset.skipped)


def read_utkface(folder: Path) -> Dataset:
    samples, skipped = [], {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        match = UTK_NAME.match(file.name)
        if not match:
            skipped[str(file)] = "name does not start with AGE_GENDER_RACE_ (UTKFace layout)"
            continue
        age, gender, race = match.groups()
        groups = {"gender": UTK_GENDERS.get(gender, gender), "race": UTK_RACES.get(race, race)}
        samples.append(Sample(str(file), age=float(age), groups=groups))
    if not samples:
        raise DatasetError(
            f"No labelled images in {folder}: expected UTKFace names AGE_GENDER_RACE_*.jpg, an "
            "APPA-REAL folder (gt_avg_<split>.csv), or pass a CSV file with columns path,age."
        )
    return Dataset(samples, skipped)


def _pick(columns: list[str], names: tuple[str, ...], csv_path: Path, what: str) -> str:
    for column in columns:
        if column.lower() in names:
            return column
    raise DatasetError(
        f"{csv_path} has no {what} column: expected one of {', '.join(names)}; found {columns}."
    )


def _face_crop(path: str) -> str:
    crop = Path(f"{path}_face.jpg")
    return str(crop) if crop.is_file() else path
