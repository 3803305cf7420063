"""Time bulk `clip-age predict` alone: 256 px face JPEGs, ViT-B-32 (random init), bf16, batch 64.

    python -m tools.bench_bulk [--photos 128] [--repeats 3] [--workdir DIR]
    python -m tools.bench_bulk --decode-only [--repeats 5]

Prints the first run (decode workers and their forkserver starting) and the median of the runs
after it, as photos/s. Run it in two checkouts in turn (A B A B) to compare their decoding on a
shared machine; --workdir keeps the model and photos between runs. --decode-only times the
decoding of the same photos in batches of 64, alternately in this process (unbounded) and in the
decode workers, without the model: with CLIP on a CPU nothing decodes while it runs, so this is
the whole difference between the two.
"""

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from clip_age import cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", help="keeps the model and the photos (default: a temporary folder)")
    parser.add_argument(
        "--decode-only", action="store_true", help="decoding alone, in process and in workers"
    )
    args = parser.parse_args(argv)
    if args.decode_only:
        return decode_only(args)
    # Imported here, not above: decode workers import the main module again (as multiprocessing
    # does), and the clip-age command's own main module is as light as this one's top.
    from clip_age.dev.tiny_models import build_random_model
    from clip_age.estimation.estimator import AgeEstimator

    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as temporary:
        work = Path(args.workdir or temporary)
        model = work / "ViT-B-32"
        if not (model / "open_clip_config.json").is_file():
            build_random_model("ViT-B-32", model)
        folder = work / f"faces-{args.photos}"
        if not folder.is_dir():
            folder.mkdir(parents=True)
            face = (EXAMPLES / "astronaut_face.jpg").read_bytes()
            for index in range(args.photos):
                (folder / f"face{index:05d}.jpg").write_bytes(face)
        estimator = AgeEstimator(f"local-dir:{model}", device="cpu", cpu_precision="bf16")
        files, names = cli.photo_files([str(folder)])
        request = cli.PredictRequest(files=files, names=names)
        times = []
        for _ in range(args.repeats + 1):
            started = time.perf_counter()
            cli.run_predict_command(estimator, request, io.StringIO())
            times.append(time.perf_counter() - started)
    print(
        f"{len(files)} photos: first run {times[0]:.2f} s; then {[round(t, 2) for t in times[1:]]} s, "
        f"median {len(files) / statistics.median(times[1:]):.1f} photos/s"
    )
    return 0


def decode_only(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from clip_age import pipeline
    from clip_age.decoding import bulk_loader
    from clip_age.estimation.preprocess import InputSpec

    spec = InputSpec(224)
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as folder:
        face = (EXAMPLES / "astronaut_face.jpg").read_bytes()
        for index in range(args.photos):
            (Path(folder) / f"face{index:05d}.jpg").write_bytes(face)
        files, _ = cli.photo_files([folder])
        times: dict[str, list[float]] = {"in process": [], "2 workers": [], "1 worker": [], "start": []}
        for _ in range(args.repeats):
            started = time.perf_counter()
            for start in range(0, len(files), 64):
                np.concatenate([pipeline.prepare(path, spec).pixels for path in files[start : start + 64]])
            times["in process"].append(time.perf_counter() - started)
            for workers in (2, 1):
                started = time.perf_counter()
                with bulk_loader.BulkDecoder(spec, torch.device("cpu"), workers) as decoder:
                    if workers == 2:
                        times["start"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    for _ in decoder.batches(files, 64):
                        pass
                    times[f"{workers} worker{'s' if workers > 1 else ''}"].append(
                        time.perf_counter() - started
                    )
    print(f"Decoding {len(files)} 256 px face JPEGs, median of {args.repeats} (ms):")
    for name, values in times.items():
        label = "starting 2 workers" if name == "start" else name
        print(
            f"  {label}: {statistics.median(values) * 1000:.0f} ({', '.join(f'{v * 1000:.0f}' for v in values)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
