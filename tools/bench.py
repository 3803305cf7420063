"""Benchmark this model against the original clip-age-predictor approach, in one run.

    python -m tools.bench                  ViT-B-32 and ViT-L-14, every precision this machine
                                           serves, HTTP included (random init: speed does not
                                           depend on weight values)
    python -m tools.bench --quick          a tiny model and a few repeats: what CI runs

The original approach, as the old Replicate model did it: PIL decodes the whole photo,
open_clip's torchvision transform resizes it, CLIP runs in fp32 one image at a time and the
argmax comes back with .item(). Ours: strict DCT-scaled JPEG decoding, one resize of the
cropped region, normalisation in the model's step, the CPU precision chosen at setup (or fp16
and CUDA graphs on a GPU), batching of what is queued.
"""

import argparse
import base64
import importlib.util
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from clip_age import cli, pipeline
from clip_age.decoding.decode_pool import DecodePool
from clip_age.decoding.faces import FaceDetector
from clip_age.decoding.upload_limits import DecodeLimits, PoolLimits
from clip_age.dev.photos import phone_photo
from clip_age.dev.tiny_models import build_random_model, build_tiny_model
from clip_age.estimation import cpu_runtime, device_choice
from clip_age.estimation.estimator import AgeEstimator
from clip_age.request_options import FaceRequest
from clip_age.settings import Settings
from prompts import AGES, PROMPTS
from tests.cog_server import LocalCogServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ORIGINAL = "original"
RUNTIME = "cpu runtime"  # column of the image tower in OpenVINO / ONNX Runtime, as auto chose
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


def interleaved_ms(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median ms of each run, taking turns round by round: on a shared machine a neighbour's
    burst then slows every contender alike instead of whichever was running."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


@contextmanager
def one_core_busy() -> Iterator[None]:
    """Another process keeping one core busy, as a neighbour on a shared host does."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def bf16_gemm_gflops() -> float:
    """This CPU's bf16 matrix-multiply rate through torch (oneDNN): the roofline's ceiling."""
    a = torch.randn(2048, 2048, dtype=torch.bfloat16)
    ms = median_ms(lambda: a @ a, repeats=10)
    return 2 * 2048**3 / ms / 1e6


def image_tower_gflop(model: torch.nn.Module, size: int) -> float:
    """Floating-point operations of one image through the tower. For a ViT: two per weight per
    token (every linear layer and the patch embedding) plus the attention products; torch's
    flop counter misses the fused attention kernel."""
    visual = model.visual
    if hasattr(visual, "grid_size") and hasattr(visual, "transformer"):
        tokens = visual.grid_size[0] * visual.grid_size[1] + 1
        weights = sum(p.numel() for p in visual.parameters())
        attention = 4 * tokens**2 * visual.transformer.width * visual.transformer.layers
        return (2 * tokens * weights + attention) / 1e9
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.encode_image(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def rate(value: float) -> str:
    """Three significant figures at least, so a slow CPU's rates do not round to 0 or 1."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def ratio(before: float, after: float) -> str:
    return f"{before / after:.1f}x"


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.precisions = ["fp16"] if self.device == "cuda" else args.precisions
        # The image tower in a CPU runtime (the cpu extra), as CLIP_CPU_PRECISION=auto serves it.
        self.runtime = self.device == "cpu" and args.runtime and bool(cpu_runtime.installed())
        # A fresh folder by default, so that the first setup's export is part of the run.
        self.exports = Path(args.export_dir) if args.export_dir else workdir / "exports"
        self.photos = self._photos()
        self.sections: list[str] = []

    def run(self) -> str:
        for name in self.args.models:
            spec = f"local-dir:{self._model_dir(name)}"
            original = OriginalApproach(spec, self.device)
            ours = {precision: self._estimator(spec, precision) for precision in self.precisions}
            if self.runtime:
                started = time.perf_counter()
                ours[RUNTIME] = self._estimator(spec, "auto", runtime="auto")
                self._section(
                    f"CPU runtime, {name}: setup {time.perf_counter() - started:.0f} s (exporting, quantising and "
                    f"timing too if {self.exports} was empty); "
                    f"serves {ours[RUNTIME].serving}"
                )
            face_ms = self.per_request(name, original, ours)  # (original, ours), 256 px face
            if self.device == "cpu":
                self.per_request_under_load(name, original, ours)
            self.image_tower(name, original, ours)
            self.agreement(name, ours)
            self.bulk(name, original, ours)
            if name == self.args.models[0]:
                self.isolation(ours[self.precisions[-1]])
                self.faces(name, ours[self.precisions[-1]])
                if self.args.ray_photos:
                    self.ray_engine(name, spec, ours[self.precisions[-1]])
            del original, ours
            self.setup_time(name, spec)
            if self.args.http:
                self.http(name, spec, face_ms[0])
                if name == self.args.models[0] and (os.cpu_count() or 1) > 1:
                    # The threads rule: the same server with torch on one thread instead of one per core.
                    self.http(name, spec, face_ms[0], torch_threads=1)
        return "\n\n".join(self.sections)

    def per_request(
        self, name: str, original: OriginalApproach, ours: dict[str, AgeEstimator]
    ) -> tuple[float, float]:
        rows, face = [], (0.0, 0.0)
        for label, path in self.photos.items():
            times = interleaved_ms(self._requests(path, original, ours), self.args.repeats)
            before = times.pop(ORIGINAL)
            best = min(times, key=times.get)
            if label.startswith("256"):
                face = (before, times[best])
            rows.append(
                [
                    label,
                    f"{before:.1f}",
                    *(f"{times[p]:.1f}" for p in ours),
                    f"{ratio(before, times[best])} ({best})",
                ]
            )
        self._table(
            f"Per request, in process: {name} (median of {self.args.repeats}, ms)",
            ["photo", "original", *ours, "speed-up"],
            rows,
        )
        return face

    def per_request_under_load(
        self, name: str, original: OriginalApproach, ours: dict[str, AgeEstimator]
    ) -> None:
        """The 256 px face request again, with another process keeping one core busy."""
        path = self.photos["256 px face JPEG"]
        with one_core_busy():
            times = interleaved_ms(self._requests(path, original, ours), self.args.repeats)
        before = times.pop(ORIGINAL)
        best = min(times, key=times.get)
        self._table(
            f"Per request with one core busy with other work: {name}, 256 px face JPEG "
            f"(median of {self.args.repeats}, ms)",
            ["original", *ours, "speed-up"],
            [[f"{before:.1f}", *(f"{times[p]:.1f}" for p in ours), f"{ratio(before, times[best])} ({best})"]],
        )

    def _requests(
        self, path: str, original: OriginalApproach, ours: dict[str, AgeEstimator]
    ) -> dict[str, Callable[[], object]]:
        """One request for a photo, as the original ran it and as each of ours does."""

        def once(estimator: AgeEstimator) -> object:
            prepared = pipeline.prepare(path, estimator.input_spec)
            return estimator.predict_pixels(prepared.pixels)[0].age

        runs: dict[str, Callable[[], object]] = {ORIGINAL: lambda: original.predict(path)}
        for precision, estimator in ours.items():
            runs[precision] = lambda estimator=estimator: once(estimator)
        return runs

    def image_tower(self, name: str, original: OriginalApproach, ours: dict[str, AgeEstimator]) -> None:
        """CLIP's image tower alone, on ready pixels: the part of a request no decoding can shorten."""
        rows = []
        size = next(iter(ours.values())).input_spec.size
        gflop = image_tower_gflop(original.model, size)
        peak = bf16_gemm_gflops() if self.device == "cpu" else None
        for batch in (1, 8):
            pixels = np.zeros((batch, *next(iter(ours.values())).input_shape), np.uint8)
            inputs = torch.zeros(batch, 3, *pixels.shape[1:3], device=self.device)
            runs: dict[str, Callable[[], object]] = {
                ORIGINAL: lambda inputs=inputs: original.model.encode_image(inputs)
            }
            for precision, estimator in ours.items():
                runs[precision] = lambda e=estimator, p=pixels: e.encode_pixels(p)
            with torch.no_grad():
                times = interleaved_ms(runs, self.args.repeats)
            before = times.pop(ORIGINAL)
            best = min(times, key=times.get)
            floor = f"{gflop * batch / peak * 1000:.1f}" if peak else "n/a"
            rows.append([
                str(batch), f"{before:.1f}", *(f"{times[p]:.1f}" for p in ours),
                f"{ratio(before, times[best])} ({best})", floor,
                f"{float(floor) / times[best]:.0%}" if peak else "n/a",
            ])  # fmt: skip
        ceiling = f"; bf16 matrix multiply measured at {peak:.0f} GFLOP/s" if peak else ""
        self._table(
            f"CLIP image tower alone: {name}, {gflop:.3g} GFLOP per image (median of "
            f"{self.args.repeats}, ms per batch{ceiling})",
            ["batch", "original (fp32)", *ours, "speed-up", "bf16 floor ms", "fastest / floor"],
            rows,
        )

    def agreement(self, name: str, ours: dict[str, AgeEstimator]) -> None:
        if "fp32" not in ours or len(ours) == 1:
            return
        reference = ours["fp32"]
        images = self._varied_faces(self.args.agreement_images)
        pixels = np.stack([reference.preprocess(image) for image in images])
        ref_images = reference.encode_pixels(pixels)
        ref_texts = reference.encode_text(PROMPTS)
        ref_answers = reference.predict_pixels(pixels)
        rows = []
        for precision, estimator in ours.items():
            if precision == "fp32":
                continue
            image_cos = (estimator.encode_pixels(pixels) * ref_images).sum(-1).min()
            text_cos = (estimator.encode_text(PROMPTS) * ref_texts).sum(-1).min()
            answers = estimator.predict_pixels(pixels)
            same = np.mean([a.age == r.age for a, r in zip(answers, ref_answers, strict=True)])
            moved = max(
                abs(a.expected_age - r.expected_age) for a, r in zip(answers, ref_answers, strict=True)
            )
            rows.append(
                [
                    precision,
                    f"{float(image_cos):.5f}",
                    f"{float(text_cos):.5f}",
                    f"{same:.1%}",
                    f"{moved:.2f}",
                ]
            )
        self._table(
            f"Agreement with fp32, {name} (same random weights, {len(images)} photo crops)",
            [
                "precision",
                "min image cosine",
                "min text cosine",
                "argmax unchanged",
                "largest expected-age change (years)",
            ],
            rows,
        )

    def bulk(self, name: str, original: OriginalApproach, ours: dict[str, AgeEstimator]) -> None:
        folder = self.workdir / "bulk"
        if not folder.is_dir():
            folder.mkdir()
            data = Path(self.photos["256 px face JPEG"]).read_bytes()
            for index in range(self.args.bulk):
                (folder / f"face{index:05d}.jpg").write_bytes(data)
        files, names = cli.photo_files([str(folder)])

        def original_rate() -> float:
            started = time.perf_counter()
            for path in files:
                original.predict(path)
            return len(files) / (time.perf_counter() - started)

        before = original_rate()
        rows = [["original (one at a time)", "", rate(before), "1.0x"]]
        runs = [(precision, self.args.workers) for precision in ours]

        def our_rate(precision: str, workers: int | None) -> float:
            request = cli.PredictRequest(files=files, names=names, workers=workers)
            started = time.perf_counter()
            cli.run_predict_command(ours[precision], request, io.StringIO())
            return len(files) / (time.perf_counter() - started)

        def decode_workers(workers: int | None) -> str:
            return str(Settings.from_env().pool_limits.workers if workers is None else workers)

        for precision, workers in runs:
            our_rate(precision, workers)  # warm-up
            after = our_rate(precision, workers)
            used = decode_workers(workers)
            rows.append([f"clip-age predict, {precision}", used, rate(after), f"{after / before:.1f}x"])
        if self.device == "cpu":
            with one_core_busy():
                before = original_rate()
                rows.append(["original, one core busy", "", rate(before), "1.0x"])
                for precision in ours:
                    after = our_rate(precision, self.args.workers)
                    rows.append(
                        [
                            f"clip-age predict, {precision}, one core busy",
                            decode_workers(self.args.workers),
                            rate(after),
                            f"{after / before:.1f}x",
                        ]
                    )
        self._table(
            f"Bulk, {len(files)} 256 px face JPEGs: {name} (batch 64)",
            ["approach", "decode workers", "images/s", "ratio"],
            rows,
        )

    def ray_engine(self, name: str, spec: str, estimator: AgeEstimator) -> None:
        """The local engine and `--engine ray` on the same photos, in one run. Ray's start-up is
        apart; each Ray run also starts its actors (CLIP loads in each), so it runs on half the
        photos and on all of them: the difference gives the rate once running, the rest the
        run's fixed start."""
        import ray

        from clip_age.ray_cluster import engine

        folder = self.workdir / "ray-photos"
        data = Path(self.photos["256 px face JPEG"]).read_bytes()
        for index in range(self.args.ray_photos):
            (folder / f"part{index * 2 // self.args.ray_photos}").mkdir(parents=True, exist_ok=True)
            (folder / f"part{index * 2 // self.args.ray_photos}" / f"face{index:05d}.jpg").write_bytes(data)
        files, names = cli.photo_files([str(folder)])
        request = cli.PredictRequest(files=files, names=names)
        started = time.perf_counter()
        cli.run_predict_command(estimator, request, io.StringIO())
        local = len(files) / (time.perf_counter() - started)
        started = time.perf_counter()
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
        startup = time.perf_counter() - started
        precision = estimator.precision.name if self.device == "cpu" else "auto"
        model = engine.ModelChoice(spec, "", self.device, precision)
        seconds = {}
        try:
            for photos, sources in ((len(files) // 2, [str(folder / "part0")]), (len(files), [str(folder)])):
                job = engine.RayJob(sources, str(self.workdir / f"ray-out-{photos}"), None, False, model)
                started = time.perf_counter()
                engine.run(request, job)
                seconds[photos] = time.perf_counter() - started
        finally:
            ray.shutdown()
        half, whole = sorted(seconds)
        running = (whole - half) / (seconds[whole] - seconds[half])
        fixed = seconds[whole] - whole / running
        rows = [
            ["clip-age predict (local engine)", "", "", rate(local), ""],
            [
                "clip-age predict --engine ray",
                f"{startup:.1f}",
                f"{fixed:.1f}",
                rate(whole / seconds[whole]),
                rate(running),
            ],
        ]
        self._table(
            f"Engines, {len(files)} 256 px face JPEGs: {name} ({precision}, batch 64, one machine)",
            [
                "engine",
                "Ray start-up, s",
                "run start (actors load CLIP), s",
                "images/s, whole run",
                "images/s, running",
            ],
            rows,
        )

    def isolation(self, estimator: AgeEstimator) -> None:
        """What decoding in a worker process costs over decoding in the caller, per request."""
        path = self.photos["256 px face JPEG"]
        limits = PoolLimits(workers=1, timeout_s=10.0, memory_bytes=1_500_000_000)
        pool = DecodePool(estimator.input_spec, None, DecodeLimits(), limits)
        import asyncio

        loop = asyncio.new_event_loop()
        try:
            in_caller = median_ms(lambda: pipeline.prepare(path, estimator.input_spec), self.args.repeats * 5)
            in_worker = median_ms(
                lambda: loop.run_until_complete(pool.prepare(path, None)), self.args.repeats * 5
            )
        finally:
            pool.close()
            loop.close()
        self._section(
            f"Decode isolation, 256 px face JPEG: {in_caller:.2f} ms in the calling thread, {in_worker:.2f} ms "
            f"through a decode worker process: +{in_worker - in_caller:.2f} ms per request"
        )

    def faces(self, name: str, estimator: AgeEstimator) -> None:
        detector = FaceDetector(Settings.from_env().face_detector_model)
        canvas = Image.new("RGB", (1920, 1080), (120, 120, 120))
        canvas.paste(Image.open(EXAMPLES / "astronaut.png").convert("RGB"), (700, 280))
        path = self.workdir / "group.jpg"
        canvas.save(path, quality=90)
        photo = Image.open(path).convert("RGB")

        def request(with_faces: bool) -> object:
            prepared = pipeline.prepare(
                path, estimator.input_spec, detector if with_faces else None, FaceRequest()
            )
            return estimator.predict_pixels(prepared.pixels)

        detect = median_ms(lambda: detector.detect(photo, 32, 10), self.args.repeats)
        whole = median_ms(lambda: request(False), self.args.repeats)
        with_faces = median_ms(lambda: request(True), self.args.repeats)
        self._table(
            f"Faces, 1920x1080 JPEG with one face: {name}, {estimator.precision.name}",
            ["step", "median ms"],
            [
                ["YuNet detection alone (CPU)", f"{detect:.1f}"],
                ["request, whole photo", f"{whole:.1f}"],
                ["request, detect_faces", f"{with_faces:.1f}"],
                ["added by detect_faces", f"{with_faces - whole:.1f}"],
            ],
        )

    def setup_time(self, name: str, spec: str) -> None:
        """Process start to READY, each configuration in turn, round by round; with the cpu
        extra, the runtime's row comes after its first export (made by the in-process run
        above), as every later setup finds it."""
        runs = [("fp32", "torch"), ("auto", "torch")] if self.device == "cpu" else [("auto", "torch")]
        if self.runtime:
            runs.append(("auto", "auto"))
        seconds: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
        for _ in range(self.args.setup_rounds):
            for precision, runtime in runs:
                started = time.perf_counter()
                with LocalCogServer(self._server_env(spec, precision, runtime)) as server:
                    health = server.wait_until_ready()
                    seconds[precision, runtime].append(time.perf_counter() - started)
                assert health["status"] == "READY", server.log()
        today = statistics.median(seconds["auto", "torch"])
        rows = []
        for (precision, runtime), values in seconds.items():
            median = statistics.median(values)
            rows.append([
                precision, runtime, f"{median:.1f}", " ".join(f"{value:.1f}" for value in values),
                f"{median / today:.2f}",
            ])  # fmt: skip
        self._table(
            f"Setup, process start to READY (Cog server, weights on local disk, median of "
            f"{self.args.setup_rounds} taking turns): {name}",
            ["CLIP_CPU_PRECISION", "CLIP_CPU_RUNTIME", "seconds", "each run", "of auto with torch"],
            rows,
        )

    def _server_env(self, spec: str, precision: str, runtime: str) -> dict[str, str]:
        return {
            "CLIP_MODEL": spec,
            "CLIP_DEVICE": self.device,
            "CLIP_CPU_PRECISION": precision,
            "CLIP_CPU_RUNTIME": runtime,
            "CLIP_EXPORT_DIR": str(self.exports),
            **self._decoders,
        }

    def http(self, name: str, spec: str, original_ms: float, torch_threads: int | None = None) -> None:
        """The server under 1 and more clients. One client takes turns with the same request
        in this process, on a model set up the same way, so that the two are compared under
        the same conditions."""
        face = self.photos["256 px face JPEG"]
        uri = "data:image/jpeg;base64," + base64.b64encode(Path(face).read_bytes()).decode()
        runtime = "auto" if self.runtime else "torch"
        env = self._server_env(spec, "auto", runtime)
        if torch_threads is not None:
            env["OMP_NUM_THREADS"] = str(torch_threads)
        threads = f"torch on {torch_threads} thread" if torch_threads else "torch on one thread per core"
        in_process = self._estimator(spec, "auto", runtime=runtime)
        rows, stages, in_process_ms = [], [], 0.0
        with LocalCogServer(env) as server:
            server.wait_until_ready()
            for clients in self.args.clients:
                if clients == 1:
                    latencies, metrics, seconds, local = self._one_client(server, uri, face, in_process)
                    in_process_ms = statistics.median(local)
                else:
                    latencies, metrics, seconds = self._load(
                        server, uri, clients, self.args.http_requests * clients
                    )
                p50 = float(np.percentile(latencies, 50))
                rows.append([
                    str(clients), str(len(latencies)), f"{p50:.1f}", f"{np.percentile(latencies, 90):.1f}",
                    rate(len(latencies) / seconds), ratio(original_ms, p50),
                    f"{p50 / in_process_ms:.2f}" if in_process_ms else "",
                ])  # fmt: skip
                if clients == 1:
                    stages = self._stages(latencies, metrics, in_process_ms)
        del in_process
        self._table(
            f"HTTP through the Cog server, 256 px face JPEG: {name}, {threads}, {self._server_workers} decode "
            f"workers (original in process: {original_ms:.1f} ms; ours in process, taking turns with the "
            f"one client's requests: {in_process_ms:.1f} ms)",
            [
                "clients",
                "requests",
                "p50 ms",
                "p90 ms",
                "requests/s",
                "original in process / p50",
                "p50 / in process",
            ],
            rows,
        )
        if stages:
            self._table(
                f"Where one client's request goes over HTTP: {name}, {threads} (medians, ms)",
                ["stage", "ms"],
                stages,
            )

    def _one_client(
        self, server: LocalCogServer, uri: str, photo: str, estimator: AgeEstimator
    ) -> tuple[list[float], list[dict[str, float]], float, list[float]]:
        """One client's requests, each followed by the same request in process: latencies (ms),
        the predictions' metrics, the requests' wall time, and the in-process times (ms)."""

        def locally() -> object:
            return estimator.predict_pixels(pipeline.prepare(photo, estimator.input_spec).pixels)[0].age

        def over_http() -> dict[str, float]:
            prediction, _ = server.predict({"image": uri})
            assert prediction["status"] == "succeeded", prediction
            return prediction["metrics"]

        for _ in range(5):
            over_http(), locally()
        latencies, metrics, local, wall = [], [], [], 0.0
        for _ in range(self.args.http_requests):
            time.sleep(cpu_runtime.SETTLE_S)  # each starts on an idle machine, as a lone request does
            started = time.perf_counter()
            metrics.append(over_http())
            latencies.append((time.perf_counter() - started) * 1000)
            wall += latencies[-1] / 1000
            time.sleep(cpu_runtime.SETTLE_S)
            started = time.perf_counter()
            locally()
            local.append((time.perf_counter() - started) * 1000)
        return latencies, metrics, wall, local

    @staticmethod
    def _stages(
        latencies: list[float], metrics: list[dict[str, float]], in_process_ms: float
    ) -> list[list[str]]:
        """The request's time split by the server's own metrics: Cog's predict_time around the
        predictor, and within it the decode worker's part and the model's part."""

        def median_ms(key: str) -> float:
            return statistics.median(m[key] for m in metrics) * 1000

        whole, inside = statistics.median(latencies), median_ms("predict_time")
        decode, model = median_ms("decode_time"), median_ms("model_time")
        return [
            ["whole request, seen by the client", f"{whole:.1f}"],
            [
                "HTTP, Cog's queue and the hand-off to the model's process (whole - predict_time)",
                f"{whole - inside:.1f}",
            ],
            [
                "Cog's input handling: the data URI to a file (predict_time - decode - model)",
                f"{inside - decode - model:.1f}",
            ],
            ["a decode worker: waiting for one, reading and decoding the photo", f"{decode:.1f}"],
            ["the model: waiting for the batcher, CLIP and the answer's statistics", f"{model:.1f}"],
            [
                "the same request in process, taking turns (decode and model in one thread)",
                f"{in_process_ms:.1f}",
            ],
        ]

    @property
    def _server_workers(self) -> int:
        return self.args.workers or Settings.from_env().pool_limits.workers

    @property
    def _decoders(self) -> dict[str, str]:
        return {"DECODE_WORKERS": str(self._server_workers)}

    def _load(
        self, server: LocalCogServer, uri: str, clients: int, count: int
    ) -> tuple[list[float], list[dict[str, float]], float]:
        """Latencies (ms), each prediction's metrics and the wall time of count requests."""
        for _ in range(5):
            server.predict({"image": uri})

        def one(_: int) -> tuple[float, dict[str, float]]:
            started = time.perf_counter()
            prediction, _ = server.predict({"image": uri})
            assert prediction["status"] == "succeeded", prediction
            return (time.perf_counter() - started) * 1000, prediction["metrics"]

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(one, range(count)))
        return [ms for ms, _ in answers], [metrics for _, metrics in answers], time.perf_counter() - started

    def _estimator(self, spec: str, precision: str, runtime: str = "torch") -> AgeEstimator:
        if self.device == "cuda":
            return AgeEstimator(spec, device="cuda")
        return AgeEstimator(
            spec, device="cpu", cpu_precision=precision, cpu_runtime_setting=runtime, export_dir=self.exports
        )

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

    def _section(self, text: str) -> None:
        """Kept for the report, and printed now: a long run on a busy machine shows its progress."""
        self.sections.append(text)
        print(text, end="\n\n", flush=True)

    def _table(self, title: str, header: list[str], rows: list[list[str]]) -> None:
        lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        self._section("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, few repeats (CI)")
    parser.add_argument("--models", nargs="+", help="open_clip architectures (default: ViT-B-32 ViT-L-14)")
    parser.add_argument(
        "--precisions", nargs="+", help="CPU precisions (default: fp32 int8, and bf16 where native)"
    )
    parser.add_argument("--no-http", dest="http", action="store_false", help="skip the HTTP tables")
    parser.add_argument("--export-dir", help="the CPU runtime's export cache (default: a fresh one)")
    parser.add_argument(
        "--no-runtime", dest="runtime", action="store_false", help="skip the CPU runtime (the cpu extra)"
    )
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--repeats", type=int, help="timed runs per median (default 10, quick 3)")
    parser.add_argument("--bulk", type=int, help="photos for the bulk run (default 128, quick 16)")
    parser.add_argument(
        "--workers", type=int, help="decode workers for the bulk run (default: the command's own default)"
    )
    parser.add_argument(
        "--clients", type=int, nargs="+", default=[1, 4], help="HTTP client counts (default 1 4)"
    )
    parser.add_argument("--http-requests", type=int, help="HTTP requests per client (default 20, quick 4)")
    parser.add_argument(
        "--setup-rounds", type=int, help="server starts per setup configuration (default 3, quick 1)"
    )
    parser.add_argument(
        "--agreement-images", type=int, help="photo crops for the agreement table (default 64)"
    )
    parser.add_argument(
        "--ray-photos",
        type=int,
        help="photos for the local vs --engine ray row (default 512 when Ray is installed; 0 skips; quick: 0)",
    )
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)
    quick = args.quick
    args.models = args.models or (["tiny"] if quick else ["ViT-B-32", "ViT-L-14"])
    args.precisions = args.precisions or ["fp32", "int8", *(["bf16"] if device_choice.native_bf16() else [])]
    args.repeats = args.repeats or (3 if quick else 10)
    args.bulk = args.bulk or (16 if quick else 128)
    args.http_requests = args.http_requests or (4 if quick else 20)
    args.setup_rounds = args.setup_rounds or (1 if quick else 3)
    args.agreement_images = args.agreement_images or (16 if quick else 64)
    if args.ray_photos is None:
        args.ray_photos = 0 if quick or importlib.util.find_spec("ray") is None else 512

    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        bench = Bench(args, Path(workdir))
        if bench.device == "cuda":
            device = torch.cuda.get_device_name()
        else:
            native = "native bf16" if device_choice.native_bf16() else "no native bf16"
            device = f"{cpu_runtime.cpu_name()}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}, {native}"
        header = (
            f"# bench.py on {device}, {date.today().isoformat()}\n\n"
            f"`python -m tools.bench {' '.join(argv if argv is not None else sys.argv[1:])}` "
            f"(torch {torch.__version__}, open_clip {open_clip.__version__})"
        )
        print(header, end="\n\n", flush=True)  # then each section as it is measured
        report = header + "\n\n" + bench.run() + "\n"
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
