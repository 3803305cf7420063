"""How `clip-age predict` writes its answers: JSON lines or CSV, one row per face."""

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from PIL import Image

from clip_age import pipeline
from clip_age.results import PhotoAge

NO_FACE = "no face found: the ages are the whole photo's"
CSV_COLUMNS = [
    "path", "face", "x", "y", "width", "height", "score",
    "age", "expected_age", "age_low", "age_high", "note", "error",
]  # fmt: skip


class AnswerWriter:
    """Writes one record per photo (JSON lines) or one row per face (CSV), in input order."""

    def __init__(self, out: TextIO, as_csv: bool, probabilities: bool, faces_searched: bool) -> None:
        self._out, self._probabilities, self._faces_searched = out, probabilities, faces_searched
        self._csv = csv.DictWriter(out, CSV_COLUMNS) if as_csv else None
        if self._csv is not None:
            self._csv.writeheader()

    def answer(self, path: str, answer: PhotoAge) -> None:
        no_face = self._faces_searched and not answer.faces
        if self._csv is None:
            record: dict[str, Any] = {"path": path, **pipeline.to_json(answer, self._probabilities)}
            if not self._probabilities:
                del record["probabilities"]
            if no_face:
                record["note"] = NO_FACE
            self._out.write(json.dumps(record) + "\n")
        elif not answer.faces:
            self._csv.writerow(
                {"path": path, **pipeline.ages_json(answer.ages), "note": NO_FACE if no_face else ""}
            )
        else:
            for index, face in enumerate(answer.faces):
                x, y, width, height = face.box
                box = {"x": x, "y": y, "width": width, "height": height, "score": round(face.score, 4)}
                self._csv.writerow({"path": path, "face": index, **box, **pipeline.ages_json(face.ages)})

    def error(self, path: str, message: str) -> None:
        if self._csv is None:
            self._out.write(json.dumps({"path": path, "error": message}) + "\n")
        else:
            self._csv.writerow({"path": path, "error": message})


def save_drawing(path: str, answer: PhotoAge, faces_searched: bool, target: Path, max_side: int) -> Path:
    """The photo with its boxes and ages drawn on it, at most max_side pixels on its longer
    side, as a JPEG at target (its suffix made .jpg)."""
    from clip_age.drawing import draw_answer
    from clip_age.images import load_image

    image = load_image(path)
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        image = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS
        )
        answer = replace(answer, faces=[replace(face, box=_scaled(face.box, scale)) for face in answer.faces])
    target = target.with_suffix(".jpg") if target.suffix.lower() not in (".jpg", ".jpeg") else target
    target.parent.mkdir(parents=True, exist_ok=True)
    draw_answer(image, answer, faces_searched).save(target, quality=90)
    return target


def _scaled(box: tuple[int, int, int, int], scale: float) -> tuple[int, int, int, int]:
    x, y, width, height = box
    return (round(x * scale), round(y * scale), round(width * scale), round(height * scale))
