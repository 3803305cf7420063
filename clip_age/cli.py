"""The clip-age command: ages for photos on this machine, without Docker.

    clip-age download                 fetch the configured model's weights (once)
    clip-age predict PATH...          one JSON line per photo (files or folders)
    clip-age predict --csv PATH...    one CSV row per face
    clip-age evaluate DATASET         accuracy metrics, breakdowns, plots and a report

Options are checked before the model loads, with the limits and words of the HTTP API. Exit
status: 2 for a usage error, 1 if any photo failed, 0 otherwise. The heavy imports (torch,
open_clip) happen after the arguments are checked, so --help and mistakes answer quickly.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from clip_age import options
from clip_age.safe_text import printable

if TYPE_CHECKING:
    from clip_age.estimator import AgeEstimator

IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".heic",
    ".heif",
    ".avif",
)
WORKERS_RANGE = (1, 64)
BATCH_SIZE_RANGE = (1, 4096)
DRAW_SIDE = 2048  # --draw writes photos at most this many pixels on their longer side


class UsageError(ValueError):
    """A mistake in how the command was called; the message says what to do instead."""


@dataclass(frozen=True)
class PredictRequest:
    files: list[str]
    names: list[str]  # each file's path below the folder it was found in: --draw's file names
    faces: options.FaceRequest | None
    require_face: bool
    detector: Path
    draw: Path | None
    as_csv: bool
    probabilities: bool
    batch_size: int
    workers: int | None


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    out = sys.stdout if out is None else out
    try:
        if args.command == "download":
            return _download(args, out)
        request = _check(args)
        estimator = _load(args)
        if args.command == "predict":
            return predict(estimator, request, out)
        return _evaluate(estimator, request, args, out)
    # What a user can get wrong (options, paths, settings, weights, the device) ends in one
    # line that says what to do; a traceback only with --debug.
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        elif not _users_mistake(error):
            raise
        print(f"error: {printable(str(error))}", file=sys.stderr)
        return 2


def predict(estimator: AgeEstimator, request: PredictRequest, out: TextIO) -> int:
    """Write each photo's answer in input order; a photo that fails gets an error line. Returns
    1 when any photo failed, else 0."""
    from tqdm import tqdm

    from clip_age import bulk_loader, pipeline
    from clip_age.batch_split import split_batch
    from clip_age.outputs import AnswerWriter, Drawings
    from clip_age.settings import Settings

    settings = Settings.from_env()
    writer = AnswerWriter(out, request.as_csv, request.probabilities, request.faces is not None)
    search = None if request.faces is None else bulk_loader.FaceSearch(request.detector, request.faces)
    drawings = None
    if request.draw is not None:
        drawings = Drawings(request.draw, request.faces is not None, DRAW_SIDE, settings.decode_limits)
    counts = {"predicted": 0, "failed": 0, "skipped": 0}
    bar = tqdm(total=len(request.files), unit="photo", file=sys.stderr, disable=not sys.stderr.isatty())
    decoder = bulk_loader.BulkDecoder(
        estimator.input_spec, estimator.device, request.workers, search, settings
    )
    with bar, decoder:
        for pixels, items in decoder.batches(request.files, request.batch_size):
            results = estimator.predict_pixels(pixels) if len(pixels) else []
            for item, rows in zip(items, split_batch(results, [item.rows for item in items]), strict=True):
                bar.update(1)
                if item.error is not None:
                    counts["failed"] += 1
                    writer.error(item.path, item.error)
                    continue
                answer = pipeline.photo_age(list(item.faces), rows)
                if request.require_face and not answer.faces:
                    counts["skipped"] += 1
                    continue
                problem = None
                if drawings is not None:
                    problem = drawings.save(item.path, request.names[item.index], answer)
                if problem is not None:
                    counts["failed"] += 1
                    writer.error(item.path, problem)
                    continue
                counts["predicted"] += 1
                writer.answer(item.path, answer)
    skipped = f", {counts['skipped']} skipped (no face)" if request.require_face else ""
    print(f"{_photos(counts['predicted'])} predicted{skipped}, {counts['failed']} failed", file=sys.stderr)
    return 1 if counts["failed"] else 0


def _check(args: argparse.Namespace) -> PredictRequest:
    """Every option, before the model loads."""
    from clip_age.settings import Settings

    batch_size = options.whole_number("--batch-size", _number(args.batch_size), *BATCH_SIZE_RANGE)
    workers = (
        None
        if args.workers is None
        else options.whole_number("--workers", _number(args.workers), *WORKERS_RANGE)
    )
    if args.command == "evaluate":
        return PredictRequest([], [], None, False, Path(), None, False, False, batch_size, workers)
    faces = None
    detector = Path(args.detector) if args.detector else Settings.from_env().face_detector_model
    if args.faces:
        faces = options.face_request(
            _number(args.min_face_size, options.DEFAULT_MIN_FACE_SIZE),
            _number(args.max_faces, options.DEFAULT_MAX_FACES),
            cli=True,
        )
        from clip_age.faces import FaceDetector

        FaceDetector(detector)  # a file that is not a YuNet model fails now, not per photo
    elif args.require_face or args.min_face_size is not None or args.max_faces is not None:
        raise UsageError("--require-face, --min-face-size and --max-faces need --faces.")
    files, names = photo_files(args.paths)
    draw = Path(args.draw) if args.draw else None
    if draw is not None and draw.exists() and not draw.is_dir():
        raise UsageError(f"--draw {draw}: not a folder. Name a folder to write the drawn photos into.")
    return PredictRequest(
        files,
        names,
        faces,
        args.require_face,
        detector,
        draw,
        args.csv,
        args.probabilities,
        batch_size,
        workers,
    )


def photo_files(paths: list[str]) -> tuple[list[str], list[str]]:
    """The files as given, and the photos inside folders (recursively, sorted), each with its
    path below the folder it was found in; an empty set is a usage error."""
    files, names = [], []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            files += [str(file) for file in found]
            names += [str(file.relative_to(path)) for file in found]
        else:
            files.append(str(path))
            names.append(path.name)
    if not files:
        raise UsageError(
            f"No photos in {', '.join(paths)}: give photo files, or folders that hold "
            f"{', '.join(IMAGE_SUFFIXES)} files."
        )
    return files, names


def _load(args: argparse.Namespace) -> AgeEstimator:
    import clip_age

    return clip_age.load(args.model, args.pretrained, device=args.device, cpu_precision=args.precision)


def _evaluate(estimator: AgeEstimator, request: PredictRequest, args: argparse.Namespace, out: TextIO) -> int:
    from tqdm import tqdm

    from clip_age.evaluation import datasets, evaluate
    from clip_age.settings import Settings

    dataset = datasets.load_dataset(Path(args.dataset), args.split, args.path_column, args.age_column)
    sets = evaluate.read_template_sets(Path(args.templates)) if args.templates else None
    settings = Settings.from_env()
    model = args.model or settings.clip_model
    pretrained = settings.clip_pretrained if args.pretrained is None else args.pretrained
    label = model if model.startswith(("local-dir:", "hf-hub:")) else f"{model} / {pretrained}"
    with tqdm(
        total=len(dataset.samples), unit="photo", file=sys.stderr, disable=not sys.stderr.isatty()
    ) as bar:
        report = evaluate.run(
            estimator,
            dataset,
            Path(args.out),
            sets,
            request.batch_size,
            request.workers,
            progress=lambda done: bar.update(done - bar.n),
            model_label=label,
        )
    print(evaluate.table(report), file=out)
    print(f"Wrote report.html, metrics.json, predictions.csv and plots to {args.out}/", file=sys.stderr)
    return 0


def _download(args: argparse.Namespace, out: TextIO) -> int:
    # This one command is allowed the network: the Hugging Face client reads the setting when it
    # is first imported, which is below.
    os.environ["HF_HUB_OFFLINE"] = "0"
    from clip_age import download
    from clip_age.settings import Settings

    if args.list:
        print(download.listing(), file=out)
        return 0
    settings = Settings.from_env()
    model = args.model or settings.clip_model
    pretrained = args.pretrained if args.pretrained is not None else settings.clip_pretrained
    print(download.download(model, pretrained), file=out)
    return 0


def _users_mistake(error: Exception) -> bool:
    from clip_age.compute import DeviceError
    from clip_age.faces import DetectorUnavailable
    from clip_age.weights import WeightsError

    mistakes = (
        UsageError,
        options.OptionError,
        WeightsError,
        DeviceError,
        DetectorUnavailable,
        ValueError,
        OSError,
    )
    if isinstance(error, mistakes):
        return True
    from clip_age.download import DownloadError

    return isinstance(error, DownloadError)


def _number(value: str | None, default: int | None = None) -> object:
    """An option's text as an int where it is one, for options.whole_number to judge."""
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return value


def _photos(count: int) -> str:
    return f"{count} photo" if count == 1 else f"{count} photos"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clip-age",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    predict_command = commands.add_parser("predict", help="ages of the people in photos (files or folders)")
    predict_command.add_argument("paths", nargs="+", help="photo files and/or folders (searched recursively)")
    predict_command.add_argument(
        "--csv", action="store_true", help="write CSV (one row per face) instead of JSON lines"
    )
    predict_command.add_argument("--faces", action="store_true", help="one age per detected face")
    predict_command.add_argument(
        "--require-face", action="store_true", help="with --faces: skip photos without a face"
    )
    predict_command.add_argument(
        "--min-face-size", help=f"with --faces: smallest face, in pixels ({options.MIN_FACE_SIZE_RANGE[0]} to "
        f"{options.MIN_FACE_SIZE_RANGE[1]}, default {options.DEFAULT_MIN_FACE_SIZE})",
    )  # fmt: skip
    predict_command.add_argument(
        "--max-faces", help=f"with --faces: the largest this many ({options.MAX_FACES_RANGE[0]} to "
        f"{options.MAX_FACES_RANGE[1]}, default {options.DEFAULT_MAX_FACES})",
    )  # fmt: skip
    predict_command.add_argument(
        "--detector", help="YuNet .onnx file (default: FACE_DETECTOR_MODEL, or the one shipped)"
    )
    predict_command.add_argument(
        "--probabilities", action="store_true", help="include the 99 probabilities (JSON)"
    )
    predict_command.add_argument(
        "--draw", metavar="DIR", help="also write each photo with its boxes and ages drawn on it"
    )

    evaluate_command = commands.add_parser("evaluate", help="measure accuracy on a labelled dataset")
    evaluate_command.add_argument(
        "dataset", help="a CSV/JSON/JSONL label file, an APPA-REAL folder or a UTKFace folder"
    )
    evaluate_command.add_argument("--split", default="test", help="APPA-REAL split (default: test)")
    evaluate_command.add_argument("--path-column", help="the label file's column (key) with the image paths")
    evaluate_command.add_argument("--age-column", help="the label file's column (key) with the ages")
    evaluate_command.add_argument(
        "--templates", help="file of [name] sections of prompt templates to compare"
    )
    evaluate_command.add_argument("--out", default="eval-out", help="output folder (default: eval-out)")

    for command in (predict_command, evaluate_command):
        command.add_argument("--model", help="open_clip model (default: CLIP_MODEL, else ViT-L-14)")
        command.add_argument(
            "--pretrained", help="weights tag or file (default: CLIP_PRETRAINED, else openai)"
        )
        command.add_argument(
            "--device", choices=("auto", "cuda", "cpu"), help="default: CLIP_DEVICE, else auto"
        )
        command.add_argument(
            "--precision",
            choices=("auto", "bf16", "int8", "fp32"),
            help="on a CPU (default: CLIP_CPU_PRECISION, else auto)",
        )
        command.add_argument(
            "--batch-size",
            default="64",
            help=f"photos per forward pass ({BATCH_SIZE_RANGE[0]} to {BATCH_SIZE_RANGE[1]}, default 64)",
        )
        command.add_argument(
            "--workers",
            help="decode processes (1 to 64; default: DECODE_WORKERS, else one per core up to 8); with CLIP on a CPU they decode while the model waits",
        )

    download_command = commands.add_parser("download", help="fetch a model's weights once, for setup to find")
    download_command.add_argument(
        "--model", help="open_clip model or hf-hub:org/repo (default: CLIP_MODEL, else ViT-L-14)"
    )
    download_command.add_argument("--pretrained", help="weights tag (default: CLIP_PRETRAINED, else openai)")
    download_command.add_argument(
        "--list", action="store_true", help="list every model and tag open_clip can fetch"
    )
    for command in (predict_command, evaluate_command, download_command):
        command.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser
