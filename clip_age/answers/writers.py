"""How `clip-age predict` writes its answers: JSON lines or CSV, one row per face, and drawings.

CSV text cells (path, note, error) are shown safe for a spreadsheet and a terminal
(safe_text.spreadsheet_cell); the numbers are written as they are.
"""

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from PIL import Image

from clip_age import pipeline
from clip_age.answers.results import PhotoAge
from clip_age.answers.safe_text import printable, spreadsheet_cell

NO_FACE = "no face found: the ages are the whole photo's"
CSV_COLUMNS = [
    "path", "face", "x", "y", "width", "height", "score",
    "age", "expected_age", "age_low", "age_high", "note", "error",
]  # fmt: skip
TEXT_COLUMNS = ("path", "note", "error")


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
            self._row({"path": path, **pipeline.ages_json(answer.ages), "note": NO_FACE if no_face else ""})
        else:
            for index, face in enumerate(answer.faces):
                x, y, width, height = face.box
                box = {"x": x, "y": y, "width": width, "height": height, "score": round(face.score, 4)}
                self._row({"path": path, "face": index, **box, **pipeline.ages_json(face.ages)})

    def error(self, path: str, message: str) -> None:
        if self._csv is None:
            self._out.write(json.dumps({"path": path, "error": message}) + "\n")
        else:
            self._row({"path": path, "error": message})

    def _row(self, row: dict[str, Any]) -> None:
        self._csv.writerow(
            {name: spreadsheet_cell(value) if name in TEXT_COLUMNS else value for name, value in row.items()}
        )


class Drawings:
    """--draw: each photo with its answer drawn, below one folder as the inputs are laid out.

    A drawing is named after its photo, source extension kept (same.png -> same.png.jpg, beside
    same.jpg), so that two photos never share a drawing; a name that cannot be written is that
    photo's error, and the run goes on. The photo drawn on is the one its decode worker kept, so
    that no photo is decoded twice.
    """

    def __init__(self, folder: Path, faces_searched: bool) -> None:
        self._folder, self._faces_searched = folder, faces_searched
        self._drawn: dict[Path, str] = {}  # drawing -> the photo it shows

    def save(self, path: str, name: str, photo: pipeline.KeptPhoto, answer: PhotoAge) -> str | None:
        """Draw the answer on the photo from path (found as name below its folder); None, or why
        it was not drawn."""
        target = self._folder / drawing_name(name)
        if target in self._drawn:
            return (
                f"Not drawn: its drawing {printable(str(target))} would replace the one of "
                f"{printable(self._drawn[target])}. Draw photos of the same name in separate runs."
            )
        try:
            save_drawing(photo, answer, self._faces_searched, target)
        except OSError as error:
            return f"Not drawn: {printable(str(target))} cannot be written ({error.strerror or error})."
        self._drawn[target] = path
        return None


def drawing_name(name: str) -> str:
    """A drawing's file name: a JPEG's own, any other photo's with .jpg added after its extension."""
    return name if Path(name).suffix.lower() in (".jpg", ".jpeg") else name + ".jpg"


def save_drawing(photo: pipeline.KeptPhoto, answer: PhotoAge, faces_searched: bool, target: Path) -> None:
    """The photo with its boxes and ages drawn on it, as a JPEG at target."""
    from clip_age.answers.drawing import draw_answer

    image = Image.fromarray(photo.pixels)
    if photo.scale != 1.0:
        faces = [replace(face, box=_scaled(face.box, photo.scale)) for face in answer.faces]
        answer = replace(answer, faces=faces)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The format named, not read from the name: Pillow sees no extension in a name like "..jpg".
    draw_answer(image, answer, faces_searched).save(target, "JPEG", quality=90)


def _scaled(box: tuple[int, int, int, int], scale: float) -> tuple[int, int, int, int]:
    x, y, width, height = box
    return (round(x * scale), round(y * scale), round(width * scale), round(height * scale))
