"""Local use without Docker.

    clip-age predict PATH...        one JSON line per photo (files or folders)
    clip-age predict --csv PATH...  the same as CSV
    clip-age evaluate DATASET       accuracy metrics, breakdowns and plots

The heavy imports (torch, open_clip) happen after the arguments are parsed, so --help is quick.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from clip_age import pipeline

if TYPE_CHECKING:
    from clip_age.estimator import AgeEstimator
    from clip_age.evaluation.datasets import Dataset

CSV_COLUMNS = ["path", "age", "expected_age", "age_low", "age_high", "faces", "error"]


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    from clip_age.faces import DetectorUnavailable
    from clip_age.weights import WeightsError

    try:
        return _run(args, sys.stdout if out is None else out)
    # Mistakes a user can make (a wrong path, layout, template or setting) end with one line.
    except (WeightsError, DetectorUnavailable, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, out: TextIO) -> int:
    import clip_age
    from clip_age.faces import FaceDetector
    from clip_age.settings import Settings

    settings = Settings.from_env()
    if args.command == "evaluate":
        from clip_age.evaluation import datasets, evaluate

        dataset = datasets.load_dataset(Path(args.dataset), args.split)
        sets = evaluate.read_template_sets(Path(args.templates)) if args.templates else None
    face_options = None
    if args.command == "predict" and args.faces:
        face_options = pipeline.FaceOptions(
            Path(args.detector or settings.face_detector_model), args.min_face_size, args.max_faces
        )
        FaceDetector(face_options.detector_model)  # a missing detector fails before the model loads
    estimator = clip_age.load(args.model, args.pretrained, device=args.device)
    if args.command == "predict":
        return predict(
            estimator,
            args.paths,
            out,
            args.csv,
            face_options,
            args.probabilities,
            args.batch_size,
            args.workers,
        )
    return run_evaluation(estimator, dataset, sets, args)


def predict(
    estimator: AgeEstimator,
    paths: list[str],
    out: TextIO,
    as_csv: bool = False,
    face_options: pipeline.FaceOptions | None = None,
    probabilities: bool = False,
    batch_size: int = 64,
    workers: int | None = None,
) -> int:
    """Write one line per photo, in order; a photo that fails gets an error line. Returns the
    exit status: 0 when every photo was predicted, 1 when any failed."""
    from tqdm import tqdm

    from clip_age import bulk_loader

    files = bulk_loader.expand(paths)
    writer = csv.DictWriter(out, CSV_COLUMNS) if as_csv else None
    if writer:
        writer.writeheader()
    failed = 0
    folders = any(Path(path).is_dir() for path in paths)
    with tqdm(total=len(files), unit="photo", disable=not folders or None, file=sys.stderr) as bar:
        for pixels, items in bulk_loader.batches(
            files, estimator.input_spec, batch_size, workers, face_options
        ):
            results = estimator.predict_pixels(pixels) if len(pixels) else []
            start = 0
            for item in items:
                if item.error is not None:
                    failed += 1
                    record: dict[str, Any] = {"path": item.path, "error": item.error}
                else:
                    rows = results[start : start + item.rows]
                    start += item.rows
                    answer = pipeline.photo_age(list(item.faces), rows)
                    record = {"path": item.path, **pipeline.to_json(answer, probabilities)}
                    if not probabilities:
                        record.pop("probabilities")
                _write(record, out, writer)
            bar.update(len(items))
    print(f"{len(files) - failed} photos predicted, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def run_evaluation(
    estimator: AgeEstimator,
    dataset: Dataset,
    template_sets: dict[str, list[str]] | None,
    args: argparse.Namespace,
) -> int:
    from tqdm import tqdm

    from clip_age.evaluation import evaluate

    with tqdm(total=len(dataset.samples), unit="photo", file=sys.stderr) as bar:
        report = evaluate.run(
            estimator,
            dataset,
            Path(args.out),
            template_sets,
            args.batch_size,
            args.workers,
            progress=lambda done: bar.update(done - bar.n),
        )
    print(evaluate.table(report))
    print(f"Wrote metrics.json, predictions.csv and plots to {args.out}/", file=sys.stderr)
    return 0


def _write(record: dict[str, Any], out: TextIO, writer: csv.DictWriter | None) -> None:
    if writer is None:
        out.write(json.dumps(record) + "\n")
        return
    row = {key: record.get(key, "") for key in CSV_COLUMNS}
    row["faces"] = len(record.get("faces", []))
    writer.writerow(row)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clip-age", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    predict_command = commands.add_parser("predict", help="predict the age in photos (files or folders)")
    predict_command.add_argument("paths", nargs="+", help="photo files and/or folders (searched recursively)")
    predict_command.add_argument("--csv", action="store_true", help="write CSV instead of JSON lines")
    predict_command.add_argument("--faces", action="store_true", help="one age per detected face")
    predict_command.add_argument("--min-face-size", type=int, default=pipeline.DEFAULT_MIN_FACE_SIZE)
    predict_command.add_argument("--max-faces", type=int, default=pipeline.DEFAULT_MAX_FACES)
    predict_command.add_argument("--detector", help="YuNet .onnx file (default: FACE_DETECTOR_MODEL)")
    predict_command.add_argument("--probabilities", action="store_true", help="include the 99 probabilities")

    evaluate_command = commands.add_parser("evaluate", help="measure accuracy on a labelled dataset")
    evaluate_command.add_argument(
        "dataset", help="a CSV path,age[,group...], an APPA-REAL folder or a UTKFace folder"
    )
    evaluate_command.add_argument("--split", default="test", help="APPA-REAL split (default: test)")
    evaluate_command.add_argument(
        "--templates", help="file of [name] sections of prompt templates to compare"
    )
    evaluate_command.add_argument("--out", default="eval-out", help="output folder (default: eval-out)")

    for command in (predict_command, evaluate_command):
        command.add_argument("--model", help="open_clip model (default: CLIP_MODEL or ViT-L-14)")
        command.add_argument("--pretrained", help="weights tag or file (default: CLIP_PRETRAINED or openai)")
        command.add_argument("--device", help="cuda or cpu (default: cuda when available)")
        command.add_argument("--batch-size", type=int, default=64)
        command.add_argument("--workers", type=int, help="decode processes (default: one per core, up to 16)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
