"""Benchmark this model against the original clip-age-predictor approach, in one run.

    python -m tools.bench                  ViT-B-32 and ViT-L-14 (random init: speed does not
                                           depend on weight values), on CUDA when present
    python -m tools.bench --http           also drive the real Cog server with 1 and 32 clients
    python -m tools.bench --quick --http   a tiny model and a few repeats: what CI runs

The original approach, as the old Replicate model did it: PIL decodes the whole photo,
open_clip's torchvision transform resizes it, CLIP runs in fp32 one image at a time and the
argmax comes back with .item(). Ours: JPEG draft decoding, one resize of the cropped region,
normalisation on the device, fp16 and CUDA graphs on a GPU, batched requests.
"""

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from clip_age import cli, pipeline
from clip_age.dev.photos import phone_photo
from clip_age.dev.tiny_models import build_random_model, build_tiny_model
from clip_age.estimator import AgeEstimator
from clip_age.faces import FaceDetector
from clip_age.settings import Settings
from prompts import AGES, PROMPTS
from tests.cog_server import LocalCogServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PHOTO_SIZES = {"256 px face JPEG": None, "1920x1440 JPEG": (1920, 1440), "4032x3024 JPEG": (4032, 3024)}


class OriginalApproach:
    """The original predictor's per-request path, kept here as the baseline."""

    def __init__(self, model_name: str, device: str) -> None:
        self.device = device
        self.model, _, self.transform = open_clip.create_model_and_transforms(model_name, device=device)
        self.model.eval()
        tokenizer = open_clip.get_tokenizer(model_name)
        with torch.no_grad():
            text = self.model.encode_text(tokenizer(PROMPTS).to(device))
            self.text_features = text / text.norm(dim=-1, keepdim=True)

    def predict(self, path: str) -> int:
        with torch.no_grad():
            image = self.transform(Image.open(path).convert("RGB")).unsqueeze(0).to(self.device)
            return AGES[self._similarity(image).argmax().item()]

    def predict_batch(self, images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return self._similarity(images.to(self.device)).argmax(dim=-1).cpu().numpy()

    def _similarity(self, images: torch.Tensor) -> torch.Tensor:
        features = self.model.encode_image(images)
        features = features / features.norm(dim=-1, keepdim=True)
        return features @ self.text_features.T


def median_ms(run: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def rate(value: float) -> str:
    """Three significant figures at least, so a slow CPU's rates do not round to 0 or 1."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.photos = self._photos()
        self.sections: list[str] = []

    def run(self) -> str:
        for name in self.args.models:
            folder = self._model_dir(name)
            spec = f"local-dir:{folder}"
            ours = AgeEstimator(spec, device=self.device)
            original = OriginalApproach(spec, self.device)
            in_process = self.per_request(name, ours, original)
            self.batch_throughput(name, ours, original)
            self.precision_agreement(name, ours, original)
            self.faces(name, ours)
            self.bulk(name, ours)
            del ours, original
            if self.device == "cuda":
                torch.cuda.empty_cache()
            self.setup_time(name, spec)
            if self.args.http:
                self.http(name, spec, in_process)
        return "\n\n".join(self.sections)

    def per_request(self, name: str, ours: AgeEstimator, original: OriginalApproach) -> float:
        rows = []
        face_ms = 0.0
        for label, path in self.photos.items():

            def ours_once(path: str = path) -> object:
                prepared = pipeline.prepare(path, ours.input_spec)
                return ours.predict_pixels(prepared.pixels)[0].age

            before = median_ms(lambda path=path: original.predict(path), self.args.repeats)
            after = median_ms(ours_once, self.args.repeats)
            face_ms = after if label.startswith("256") else face_ms
            rows.append([label, f"{before:.1f}", f"{after:.1f}", f"{before / after:.1f}x"])
        self._table(
            f"Per request, in process: {name} (median of {self.args.repeats})",
            ["photo", "original ms", "ours ms", "speed-up"],
            rows,
        )
        return face_ms

    def batch_throughput(self, name: str, ours: AgeEstimator, original: OriginalApproach) -> None:
        size = self.args.batch
        face = Image.open(self.photos["256 px face JPEG"]).convert("RGB")
        pixels = np.stack([ours.preprocess(face)] * size)
        tensors = torch.stack([original.transform(face)] * size)
        before = median_ms(lambda: original.predict_batch(tensors), self.args.repeats)
        after = median_ms(lambda: ours.predict_pixels(pixels), self.args.repeats)
        self._table(
            f"Batch throughput, preprocessed images: {name}, batch {size}",
            ["approach", "ms per batch", "images/s", "ratio"],
            [
                ["original (fp32)", f"{before:.1f}", rate(size / before * 1000), "1.0x"],
                [
                    f"ours ({str(ours.dtype).removeprefix('torch.')})",
                    f"{after:.1f}",
                    rate(size / after * 1000),
                    f"{before / after:.1f}x",
                ],
            ],
        )

    def precision_agreement(self, name: str, ours: AgeEstimator, original: OriginalApproach) -> None:
        if ours.dtype == torch.float32:
            self.sections.append(f"fp16 vs fp32 argmax agreement, {name}: n/a (fp32 on {self.device})")
            return
        images = self._varied_faces(self.args.agreement_images)
        tensors = torch.stack([original.transform(image) for image in images])
        reference = np.concatenate([original.predict_batch(chunk) for chunk in tensors.split(64)])
        fast = [r.age for r in ours.predict(images)]
        same = float(np.mean(np.asarray(fast) == np.asarray(AGES)[reference]))
        self.sections.append(
            f"fp16 vs fp32 argmax agreement, {name}: {same:.1%} of {len(images)} images "
            "(same random-init weights)"
        )

    def faces(self, name: str, ours: AgeEstimator) -> None:
        if not self.args.detector.is_file():
            self.sections.append(f"Faces, {name}: skipped, no YuNet model at {self.args.detector}")
            return
        detector = FaceDetector(self.args.detector)
        canvas = Image.new("RGB", (1920, 1080), (120, 120, 120))
        canvas.paste(Image.open(EXAMPLES / "astronaut.png").convert("RGB"), (700, 280))
        path = self.workdir / "group.jpg"
        canvas.save(path, quality=90)
        photo = Image.open(path).convert("RGB")

        def request(with_faces: bool) -> object:
            prepared = pipeline.prepare(path, ours.input_spec, detector if with_faces else None)
            return ours.predict_pixels(prepared.pixels)

        detect = median_ms(
            lambda: detector.detect(photo, pipeline.DEFAULT_MIN_FACE_SIZE, 10), self.args.repeats
        )
        whole = median_ms(lambda: request(False), self.args.repeats)
        with_faces = median_ms(lambda: request(True), self.args.repeats)
        self._table(
            f"Faces, 1920x1080 JPEG with one face: {name}",
            ["step", "median ms"],
            [
                ["YuNet detection alone (CPU)", f"{detect:.1f}"],
                ["request, whole photo", f"{whole:.1f}"],
                ["request, detect_faces", f"{with_faces:.1f}"],
                ["added by detect_faces", f"{with_faces - whole:.1f}"],
            ],
        )

    def bulk(self, name: str, ours: AgeEstimator) -> None:
        folder = self.workdir / "bulk"
        if not folder.is_dir():
            folder.mkdir()
            data = Path(self.photos["256 px face JPEG"]).read_bytes()
            for index in range(self.args.bulk):
                (folder / f"face{index:05d}.jpg").write_bytes(data)
        sink = io.StringIO()
        cli.predict(ours, [str(folder)], sink, batch_size=256, workers=self.args.workers)  # warm-up
        started = time.perf_counter()
        cli.predict(ours, [str(folder)], io.StringIO(), batch_size=256, workers=self.args.workers)
        seconds = time.perf_counter() - started
        self.sections.append(
            f"Bulk `clip-age predict` over {self.args.bulk} 256 px face JPEGs, {name}: "
            f"{rate(self.args.bulk / seconds)} images/s ({self.args.workers} decode workers, batch 256)"
        )

    def setup_time(self, name: str, spec: str) -> None:
        started = time.perf_counter()
        with LocalCogServer({"CLIP_MODEL": spec}) as server:
            health = server.wait_until_ready()
            seconds = time.perf_counter() - started
        assert health["status"] == "READY", server.log()
        self.sections.append(
            f"Setup, process start to READY (Cog server, weights on local disk), {name}: {seconds:.1f} s"
        )

    def http(self, name: str, spec: str, in_process_ms: float) -> None:
        face = Path(self.photos["256 px face JPEG"]).read_bytes()
        uri = "data:image/jpeg;base64," + __import__("base64").b64encode(face).decode()
        rows = []
        rates = {}
        with LocalCogServer({"CLIP_MODEL": spec}) as server:
            server.wait_until_ready()
            for clients in self.args.clients:
                count = self.args.http_requests * max(1, clients // 4)
                latencies, seconds = self._load(server, uri, clients, count)
                rates[clients] = count / seconds
                rows.append(
                    [
                        str(clients),
                        str(count),
                        f"{percentile(latencies, 50):.1f}",
                        f"{percentile(latencies, 90):.1f}",
                        f"{percentile(latencies, 99):.1f}",
                        rate(rates[clients]),
                        f"{rates[clients] / rates[self.args.clients[0]]:.1f}x",
                    ]
                )
                if clients == 1:
                    one_client_p50 = percentile(latencies, 50)
        self._table(
            f"HTTP through the Cog server, 256 px face JPEG: {name}",
            ["clients", "requests", "p50 ms", "p90 ms", "p99 ms", "requests/s", "vs 1 client"],
            rows,
        )
        if 1 in self.args.clients:
            self.sections.append(
                f"HTTP overhead, {name}: one-client p50 {one_client_p50:.1f} ms vs in-process "
                f"{in_process_ms:.1f} ms: +{one_client_p50 - in_process_ms:.1f} ms"
            )

    def _load(self, server: LocalCogServer, uri: str, clients: int, count: int) -> tuple[list[float], float]:
        for _ in range(5):
            server.predict({"image": uri})

        def one(_: int) -> float:
            started = time.perf_counter()
            prediction, _ = server.predict({"image": uri})
            assert prediction["status"] == "succeeded", prediction
            return (time.perf_counter() - started) * 1000

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            latencies = list(pool.map(one, range(count)))
        return latencies, time.perf_counter() - started

    def _photos(self) -> dict[str, str]:
        photos = {}
        for label, size in PHOTO_SIZES.items():
            path = self.workdir / f"{label.split()[0]}.jpg"
            if size is None:
                path.write_bytes((EXAMPLES / "astronaut_face.jpg").read_bytes())
            else:
                path.write_bytes(phone_photo(*size))
            photos[label] = str(path)
        return photos

    def _varied_faces(self, count: int) -> list[Image.Image]:
        base = Image.open(EXAMPLES / "astronaut.png").convert("RGB")
        rng = np.random.default_rng(0)
        faces = []
        for _ in range(count):
            left, top = rng.integers(0, 200, 2)
            side = int(rng.integers(200, 312))
            faces.append(base.crop((left, top, left + side, top + side)).rotate(float(rng.uniform(-20, 20))))
        return faces

    def _model_dir(self, name: str) -> Path:
        folder = self.workdir / name
        if name == "tiny":
            return build_tiny_model(folder)
        return build_random_model(name, folder)

    def _table(self, title: str, header: list[str], rows: list[list[str]]) -> None:
        lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        self.sections.append("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, few repeats (CI)")
    parser.add_argument("--http", action="store_true", help="also benchmark through the Cog server")
    parser.add_argument("--models", nargs="+", help="open_clip architectures (default: ViT-B-32 ViT-L-14)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--repeats", type=int, help="timed runs per median (default 20, quick 3)")
    parser.add_argument("--batch", type=int, help="batch size for throughput (default 256, quick 16)")
    parser.add_argument("--bulk", type=int, help="photos for the bulk CLI run (default 4096, quick 32)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(16, os.cpu_count() or 1),
        help="decode workers for the bulk run (default: one per core, up to 16)",
    )
    parser.add_argument("--clients", type=int, nargs="+", help="HTTP client counts (default 1 32)")
    parser.add_argument("--http-requests", type=int, help="HTTP requests per 4 clients (default 200)")
    parser.add_argument("--agreement-images", type=int, default=1000)
    parser.add_argument(
        "--detector",
        type=Path,
        default=Settings.from_env().face_detector_model,
        help="YuNet model for the faces rows (default: FACE_DETECTOR_MODEL)",
    )
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    quick = args.quick
    args.models = args.models or (["tiny"] if quick else ["ViT-B-32", "ViT-L-14"])
    args.repeats = args.repeats or (3 if quick else 20)
    args.batch = args.batch or (16 if quick else 256)
    args.bulk = args.bulk or (32 if quick else 4096)
    args.clients = args.clients or ([1, 4] if quick else [1, 32])
    args.http_requests = args.http_requests or (8 if quick else 200)
    if quick:
        args.workers = min(args.workers, 2)

    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        bench = Bench(args, Path(workdir))
        device = (
            torch.cuda.get_device_name()
            if bench.device == "cuda"
            else f"CPU ({torch.get_num_threads()} threads)"
        )
        header = (
            f"# bench.py on {device}, {date.today().isoformat()}\n\n"
            f"`python -m tools.bench {' '.join(argv if argv is not None else sys.argv[1:])}` "
            f"(torch {torch.__version__}, open_clip {open_clip.__version__})"
        )
        report = header + "\n\n" + bench.run() + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
