"""Time bulk `clip-age predict` alone: 256 px face JPEGs, ViT-B-32 (random init), bf16, batch 64.

    python -m tools.bench_bulk [--photos 128] [--repeats 3] [--workdir DIR]

Prints the first run (decode workers and their forkserver starting) and the median of the runs
after it, as photos/s. Run it in two checkouts in turn (A B A B) to compare their decoding on a
shared machine; --workdir keeps the model and photos between runs.
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
    args = parser.parse_args(argv)
    # Imported here, not above: decode workers import the main module again (as multiprocessing
    # does), and the clip-age command's own main module is as light as this one's top.
    from clip_age.dev.tiny_models import build_random_model
    from clip_age.estimator import AgeEstimator

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
        request = cli.PredictRequest(files, names, None, False, Path(), None, False, False, 64, None)
        times = []
        for _ in range(args.repeats + 1):
            started = time.perf_counter()
            cli.predict(estimator, request, io.StringIO())
            times.append(time.perf_counter() - started)
    print(
        f"{len(files)} photos: first run {times[0]:.2f} s; then {[round(t, 2) for t in times[1:]]} s, "
        f"median {len(files) / statistics.median(times[1:]):.1f} photos/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
