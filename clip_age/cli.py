"""The clip-age command: ages for photos on this machine, without Docker.

    clip-age download                 fetch the model's weights and the face detector (once)
    clip-age predict PATH...          one JSON line per photo (files or folders)
    clip-age predict --csv PATH...    one CSV row per face
    clip-age predict --engine ray --out DIR SOURCE...   Parquet, on a Ray cluster (the ray extra)
    clip-age evaluate DATASET         accuracy metrics, breakdowns, plots and a report

Every option and setting is checked before torch and open_clip are imported (which takes
seconds), with the limits and words of the HTTP API, so --help and mistakes answer at once.
`predict` and `evaluate` fetch the configured model's weights on first use, unless --offline or
HF_HUB_OFFLINE=1 says not to. Exit status: 2 for a usage error, 1 if any photo failed or
clip-age itself failed (--debug shows where), 0 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from clip_age import request_options
from clip_age.answers.safe_text import printable
from clip_age.estimation import model_choice
from clip_age.settings import Settings

if TYPE_CHECKING:
    from clip_age.estimation.estimator import AgeEstimator

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


@dataclass(frozen=True, kw_only=True)
class PredictRequest:
    """`clip-age predict`, its options checked. The local engine reads files and names; the Ray
    engine lists its sources itself and leaves them empty."""

    files: list[str]
    names: list[str]  # each file's path below the folder it was found in: --draw's file names
    faces: request_options.FaceRequest | None = None  # None: one age per photo
    require_face: bool = False
    detector: Path | None = None  # the YuNet file; None: FACE_DETECTOR_MODEL's
    draw: Path | None = None
    as_csv: bool = False
    probabilities: bool = False
    batch_size: int = 64
    workers: int | None = None  # None: DECODE_WORKERS


@dataclass(frozen=True, kw_only=True)
class EvaluateRequest:
    """`clip-age evaluate`, its options checked."""

    dataset: Path
    split: str
    path_column: str | None
    age_column: str | None
    templates: Path | None
    out: Path
    batch_size: int
    workers: int | None


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    out = sys.stdout if out is None else out
    try:
        if args.command == "download":
            return _download(args, out)
        settings = Settings.from_env()  # a wrong variable is named here, before anything loads
        choice = model_choice.choose(args.model, args.pretrained, settings)
        if args.command == "evaluate":
            evaluation = _check_evaluate(args)
            return _evaluate(_load(args, choice, settings), evaluation, choice, out)
        request = _check_predict(args, settings)
        if args.engine == "ray":
            return _predict_on_ray(request, args, choice, settings)
        return run_predict_command(_load(args, choice, settings), request, out)
    # What a user can get wrong (options, paths, settings, weights, the device) ends in one
    # line that says what to do, exit status 2. Anything else is a fault of clip-age's: one line
    # that says how to see it, exit status 1. The traceback only with --debug.
    except Exception as error:
        if args.debug:
            traceback.print_exc()
        if _users_mistake(error):
            print(f"error: {printable(str(error))}", file=sys.stderr)
            return 2
        reason = printable((str(error).strip().splitlines() or [""])[0])
        print(
            f"error: clip-age stopped on an unexpected problem ({type(error).__name__}"
            f"{': ' + reason if reason else ''}). Run the command again with --debug to see where.",
            file=sys.stderr,
        )
        return 1


def run_predict_command(estimator: AgeEstimator, request: PredictRequest, out: TextIO) -> int:
    """Write each photo's answer in input order; a photo that fails gets an error line. Returns
    1 when any photo failed, else 0."""
    from tqdm import tqdm

    from clip_age import pipeline
    from clip_age.answers.writers import AnswerWriter, Drawings
    from clip_age.decoding import bulk_loader
    from clip_age.estimation.batch_split import split_batch
    from clip_age.settings import Settings

    settings = Settings.from_env()
    writer = AnswerWriter(out, request.as_csv, request.probabilities, request.faces is not None)
    detector = settings.face_detector_model if request.detector is None else request.detector
    search = None if request.faces is None else bulk_loader.FaceSearch(detector, request.faces)
    drawings = None if request.draw is None else Drawings(request.draw, request.faces is not None)
    counts = {"predicted": 0, "failed": 0, "skipped": 0}
    bar = tqdm(total=len(request.files), unit="photo", file=sys.stderr, disable=not sys.stderr.isatty())
    # With --draw, each photo of a batch is also kept, at drawing size, until it is drawn.
    keep_side = None if drawings is None else DRAW_SIDE
    decoder = bulk_loader.BulkDecoder(
        estimator.input_spec, estimator.device, request.workers, search, settings, keep_side
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
                    problem = drawings.save(item.path, request.names[item.index], item.photo, answer)
                if problem is not None:
                    counts["failed"] += 1
                    writer.error(item.path, problem)
                    continue
                counts["predicted"] += 1
                writer.answer(item.path, answer)
    skipped = f", {counts['skipped']} skipped (no face)" if request.require_face else ""
    print(f"{_photos(counts['predicted'])} predicted{skipped}, {counts['failed']} failed", file=sys.stderr)
    return 1 if counts["failed"] else 0


def _check_evaluate(args: argparse.Namespace) -> EvaluateRequest:
    """Every option of `evaluate`, before the model loads."""
    batch_size, workers = _batching(args)
    if not Path(args.dataset).exists():
        raise UsageError(
            f"{args.dataset}: no such file or folder. Give a label file (CSV, JSON or JSON lines), "
            "an APPA-REAL folder or a folder of UTKFace photos."
        )
    if args.templates and not Path(args.templates).is_file():
        raise UsageError(f"--templates {args.templates}: no such file. Give a file of [name] sections.")
    return EvaluateRequest(
        dataset=Path(args.dataset),
        split=args.split,
        path_column=args.path_column,
        age_column=args.age_column,
        templates=Path(args.templates) if args.templates else None,
        out=writable_folder("--out", args.out),
        batch_size=batch_size,
        workers=workers,
    )


def _batching(args: argparse.Namespace) -> tuple[int, int | None]:
    """--batch-size and --workers (None: DECODE_WORKERS), checked."""
    batch_size = request_options.whole_number("--batch-size", _number(args.batch_size), *BATCH_SIZE_RANGE)
    if args.workers is None:
        return batch_size, None
    return batch_size, request_options.whole_number("--workers", _number(args.workers), *WORKERS_RANGE)


def _check_predict(args: argparse.Namespace, settings: Settings) -> PredictRequest:
    """Every option of `predict`, before the model loads."""
    batch_size, workers = _batching(args)
    faces = None
    detector = Path(args.detector) if args.detector else settings.face_detector_model
    if args.detector and not detector.is_file():
        raise UsageError(
            f"--detector {args.detector}: no such file. Give a YuNet .onnx face detector model, or leave "
            "--detector out to use FACE_DETECTOR_MODEL or the one `clip-age download` fetches."
        )
    if args.faces:
        faces = request_options.face_request(
            _number(args.min_face_size, request_options.DEFAULT_MIN_FACE_SIZE),
            _number(args.max_faces, request_options.DEFAULT_MAX_FACES),
            cli=True,
        )
        from clip_age.decoding.faces import DetectorUnavailable, FaceDetector

        if not args.detector and not detector.exists():
            _fetch_detector(args, settings, detector)
        try:
            FaceDetector(detector)  # a file that is not a YuNet model fails now, not per photo
        except DetectorUnavailable:
            if not args.detector:
                raise  # it names FACE_DETECTOR_MODEL
            raise UsageError(
                f"--detector {args.detector} is not a YuNet face detector model (OpenCV could not load it). "
                "Give a YuNet .onnx file, or leave --detector out to use FACE_DETECTOR_MODEL or the one "
                "`clip-age download` fetches."
            ) from None
    elif args.require_face or args.min_face_size is not None or args.max_faces is not None:
        raise UsageError("--require-face, --min-face-size and --max-faces need --faces.")
    if args.engine == "ray":
        _check_ray_options(args)
        files, names = [], []  # the Ray engine lists its sources itself: URIs, shards, listings
    else:
        if args.out or args.address or args.resume:
            raise UsageError("--out, --address and --resume are for --engine ray.")
        files, names = photo_files(args.paths)
    draw = writable_folder("--draw", args.draw) if args.draw else None
    return PredictRequest(
        files=files,
        names=names,
        faces=faces,
        require_face=args.require_face,
        detector=detector,
        draw=draw,
        as_csv=args.csv,
        probabilities=args.probabilities,
        batch_size=batch_size,
        workers=workers,
    )


def _check_ray_options(args: argparse.Namespace) -> None:
    if not args.out:
        raise UsageError("--engine ray writes Parquet files: name their folder with --out DIR.")
    if args.csv or args.draw or args.workers is not None:
        raise UsageError(
            "--csv, --draw and --workers are for the local engine: --engine ray writes Parquet to "
            "--out and runs as many decode tasks as the cluster has room for."
        )


def _predict_on_ray(
    request: PredictRequest, args: argparse.Namespace, choice: model_choice.ModelChoice, settings: Settings
) -> int:
    try:
        from clip_age.ray_cluster import engine
    except ImportError as missing:
        if missing.name not in ("ray", "pyarrow") and not (missing.name or "").startswith("ray."):
            raise
        raise UsageError(
            '--engine ray needs Ray Data, which is not installed: pip install "clip-age-predictor[ray]" '
            '(in a clone: pip install -e ".[ray]").'
        ) from None
    model = engine.ModelChoice(
        model=choice.model,
        pretrained=choice.pretrained,
        device=args.device or settings.device,
        precision=args.precision or settings.cpu_precision,
    )
    job = engine.RayJob(args.paths, args.out, args.address, args.resume, model)
    return engine.run(request, job)


def photo_files(paths: list[str]) -> tuple[list[str], list[str]]:
    """The files as given, and the photos inside folders (recursively, sorted), each with its
    path below the folder it was found in; a path that does not exist, or no photo at all, is a
    usage error."""
    files, names = [], []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            files += [str(file) for file in found]
            names += [str(file.relative_to(path)) for file in found]
        elif path.exists():
            files.append(str(path))
            names.append(path.name)
        else:
            raise UsageError(
                f"{path}: no such file or folder. Give photo files, or folders that hold photos."
            )
    if not files:
        raise UsageError(
            f"No photos in {', '.join(paths)}: give photo files, or folders that hold "
            f"{', '.join(IMAGE_SUFFIXES)} files."
        )
    return files, names


def writable_folder(flag: str, value: str) -> Path:
    """The folder an option names, checked before the model loads: it is a folder, or can be
    made below one, where this user can create files. Nothing is created yet."""
    folder = Path(value)
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag} {value}: {existing} is a file, not a folder. Name a folder to write into.")
    try:
        tempfile.NamedTemporaryFile(dir=existing).close()
    except OSError as error:
        raise UsageError(
            f"{flag} {value}: cannot write into {existing} ({error.strerror}). Name a folder you can write to."
        ) from None
    return folder


def _load(args: argparse.Namespace, choice: model_choice.ModelChoice, settings: Settings) -> AgeEstimator:
    """The model, its weights fetched first if this machine has never had them (the HTTP server
    never fetches: its weights are put into the image when it is built)."""
    import clip_age
    from clip_age.estimation import weights

    try:
        if choice.fetchable:
            weights.locate(choice.model, choice.pretrained)
    except weights.WeightsMissing as missing:
        offline = (
            "--offline was given" if args.offline else "HF_HUB_OFFLINE is on" if settings.hub_offline else ""
        )
        if offline:
            raise weights.WeightsMissing(f"{missing} Nothing was downloaded: {offline}.") from None
        _fetch(choice)
    return clip_age.load(choice.model, choice.pretrained, device=args.device, cpu_precision=args.precision)


def _fetch(choice: model_choice.ModelChoice) -> None:
    from clip_age.estimation import download

    def announce(note: str) -> None:
        print(
            f"{note} Once: later runs read them from there; --offline or HF_HUB_OFFLINE=1 never downloads.",
            file=sys.stderr,
        )

    for line in download.describe(download.fetch(choice.model, choice.pretrained, announce)):
        print(line, file=sys.stderr)


def _fetch_detector(args: argparse.Namespace, settings: Settings, target: Path) -> None:
    """The face detector, fetched on first use into the place the default FACE_DETECTOR_MODEL
    names; a FACE_DETECTOR_MODEL set to a missing file is left to say so."""
    from clip_age.decoding import detector_file
    from clip_age.settings import default_face_detector

    if target != default_face_detector(os.environ):
        return
    offline = (
        "--offline was given" if args.offline else "HF_HUB_OFFLINE is on" if settings.hub_offline else ""
    )
    if offline:
        from clip_age.decoding.faces import DetectorUnavailable

        raise DetectorUnavailable(
            f"Face detection needs the YuNet face detector, not yet at {target}; nothing was downloaded: "
            f"{offline}. Run `clip-age download` to fetch it."
        )
    print(f"Downloading the YuNet face detector (0.2 MB) into {target.parent}. Once.", file=sys.stderr)
    print(detector_file.describe(detector_file.fetch(target)), file=sys.stderr)


def _evaluate(
    estimator: AgeEstimator, request: EvaluateRequest, choice: model_choice.ModelChoice, out: TextIO
) -> int:
    from tqdm import tqdm

    from clip_age.evaluation import datasets, evaluate

    dataset = datasets.load_dataset(request.dataset, request.split, request.path_column, request.age_column)
    sets = evaluate.read_template_sets(request.templates) if request.templates else None
    with tqdm(
        total=len(dataset.samples), unit="photo", file=sys.stderr, disable=not sys.stderr.isatty()
    ) as bar:
        report = evaluate.run(
            estimator,
            dataset,
            request.out,
            sets,
            request.batch_size,
            request.workers,
            progress=lambda done: bar.update(done - bar.n),
            model_label=choice.label,
        )
    print(evaluate.table(report), file=out)
    print(f"Wrote report.html, metrics.json, predictions.csv and plots to {request.out}/", file=sys.stderr)
    return 0


def _download(args: argparse.Namespace, out: TextIO) -> int:
    # This one command is allowed the network: the Hugging Face client reads the setting when it
    # is first imported, which is below.
    os.environ["HF_HUB_OFFLINE"] = "0"
    from clip_age.estimation import download
    from clip_age.settings import Settings

    if args.list:
        print(download.listing(), file=out)
        return 0
    settings = Settings.from_env()
    model = args.model or settings.clip_model
    pretrained = args.pretrained if args.pretrained is not None else settings.clip_pretrained
    print(download.download(model, pretrained), file=out)
    # The face detector comes the same way, into the place the default FACE_DETECTOR_MODEL names,
    # unless FACE_DETECTOR_MODEL names a file of the user's own.
    from clip_age.decoding import detector_file
    from clip_age.settings import default_face_detector

    default = default_face_detector(os.environ)
    if settings.face_detector_model != default and settings.face_detector_model.is_file():
        print(
            f"{settings.face_detector_model}: the face detector FACE_DETECTOR_MODEL names, left as it is.",
            file=out,
        )
    else:
        print(detector_file.describe(detector_file.fetch(default)), file=out)
    return 0


# What a user can get wrong: each kind of mistake has an exception type of its own whose message
# says what to do. Several live in modules that import torch, open_clip or OpenCV; an error of
# such a type can only come from a module already imported, so only those are looked at: a usage
# error must not wait for torch to load.
MISTAKES = (
    ("clip_age.request_options", "OptionError"),
    ("clip_age.settings", "SettingError"),
    ("clip_age.estimation.model_choice", "ModelChoiceError"),
    ("clip_age.estimation.weights", "WeightsError"),
    ("clip_age.estimation.device_choice", "DeviceError"),
    ("clip_age.decoding.faces", "DetectorUnavailable"),
    ("clip_age.estimation.download", "DownloadError"),
    ("clip_age.decoding.detector_file", "DetectorDownloadError"),
    ("clip_age.evaluation.datasets", "DatasetError"),
    ("clip_age.evaluation.evaluate", "TemplateError"),
)


def _users_mistake(error: Exception) -> bool:
    return isinstance(error, UsageError) or any(
        isinstance(error, getattr(sys.modules[module], name))
        for module, name in MISTAKES
        if module in sys.modules
    )


def _number(value: str | None, default: int | None = None) -> object:
    """An option's text as an int where it is one, for request_options.whole_number to judge."""
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
        "--min-face-size", help=f"with --faces: smallest face, in pixels ({request_options.MIN_FACE_SIZE_RANGE[0]} to "
        f"{request_options.MIN_FACE_SIZE_RANGE[1]}, default {request_options.DEFAULT_MIN_FACE_SIZE})",
    )  # fmt: skip
    predict_command.add_argument(
        "--max-faces", help=f"with --faces: the largest this many ({request_options.MAX_FACES_RANGE[0]} to "
        f"{request_options.MAX_FACES_RANGE[1]}, default {request_options.DEFAULT_MAX_FACES})",
    )  # fmt: skip
    predict_command.add_argument(
        "--detector",
        help="YuNet .onnx file (default: FACE_DETECTOR_MODEL, else the one clip-age download fetches)",
    )
    predict_command.add_argument(
        "--probabilities", action="store_true", help="include the 99 probabilities (JSON)"
    )
    predict_command.add_argument(
        "--draw", metavar="DIR", help="also write each photo with its boxes and ages drawn on it"
    )
    predict_command.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this machine, answers on stdout (default); ray: a Ray cluster, Parquet in --out",
    )
    predict_command.add_argument(
        "--out", metavar="DIR", help="with --engine ray: folder or URI for the Parquet files"
    )
    predict_command.add_argument(
        "--address",
        help="with --engine ray: the Ray cluster to join (default: Ray's own rule, else a local one)",
    )
    predict_command.add_argument(
        "--resume",
        action="store_true",
        help="with --engine ray: finish the run in --out, skipping photos done",
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
        command.add_argument(
            "--offline",
            action="store_true",
            help="never download weights (as HF_HUB_OFFLINE=1); without it, missing weights are fetched once",
        )

    download_command = commands.add_parser(
        "download", help="fetch a model's weights and the face detector once, for setup to find"
    )
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
