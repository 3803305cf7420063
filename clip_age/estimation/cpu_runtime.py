"""CLIP's image tower in a runtime built for CPUs, exported once, chosen by measurement, and
checked against fp32 torch before it serves.

With the `cpu` extra installed (OpenVINO and ONNX Runtime), the image tower is exported to ONNX
once and cached under CLIP_EXPORT_DIR, keyed by the weights' hash and the versions that made
each file. On the first setup for a machine each contender (torch in the serving precision,
OpenVINO in bf16, ONNX Runtime with int8 weights) is timed at batch 1 and batch 8, interleaved,
and the one with the least time per photo serves every batch; the choice is cached beside the
export. The chosen runtime is checked against fp32 on the probe photos once per machine; later
setups check that it reproduces what was checked. The text tower stays in torch: it runs once,
at setup.
"""

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import math
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clip_age.estimation import gpu_path, library_logs
from clip_age.estimation.weights import CHECKPOINT_SUFFIXES, ModelSpec

log = logging.getLogger(__name__)

Tower = Callable[[torch.Tensor], torch.Tensor]  # normalised float32 (batch, 3, H, W) -> features

# The runtimes, in the order they are tried; each is one optional package of the `cpu` extra.
OPENVINO, ONNXRUNTIME = "OpenVINO bf16", "ONNX Runtime int8"
RUNTIME_PACKAGES = {OPENVINO: "openvino", ONNXRUNTIME: "onnxruntime"}
# Batch shapes timed for the choice: a request alone, and a batch as bulk runs and busy servers
# send.
TIMED_BATCHES = (1, 8)
SETTLE_S = 0.05
# The dynamo exporter at opset 18 handles open_clip's attention; a batch-2 example keeps the
# batch dimension dynamic in the graph.
OPSET = 18
# Agreement with fp32 torch, on the probe. bf16 and int8 keep about 3 significant digits, like
# the GPU's fp16 (gpu_path.py), so the same tolerances apply to the answers; the embeddings
# themselves must stay within this cosine of fp32's.
MIN_COSINE = 0.999
EXPECTED_AGE_YEARS = 1.0
NEAR_TIE = 0.02  # an fp32 probability within this of the top counts as a tie
# A runtime gives the same numbers for the same input on the same machine and threads; this
# leaves room for the last bits of a float32 sum, far inside MIN_COSINE.
REPRODUCED = 1e-5
# What np.load raises for a kept array that is missing or damaged: EOFError for an empty file,
# as a crash between the rename and the data reaching the disk can leave one.
UNREADABLE = (OSError, ValueError, EOFError)
# One batch of probe photos: the examples, then synthetic ones (gpu_path.probe_images).
PROBE_PHOTOS = 8
EXAMPLES = Path(str(resources.files("clip_age") / "example_photos"))  # package data: also in a wheel


@dataclass(frozen=True)
class Fault:
    """A deliberately wrong image tower, for the tests that force each step down. `paths` names
    the towers it breaks: a runtime's name, or a torch precision ("bf16", "int8", "fp32")."""

    paths: frozenset[str]
    distort: Callable[[torch.Tensor], torch.Tensor]

    def wrap(self, name: str, tower: Tower) -> Tower:
        return (lambda x: self.distort(tower(x))) if name in self.paths else tower


def installed() -> list[str]:
    """The runtimes whose package is importable here, in the order they are tried."""
    return [name for name, package in RUNTIME_PACKAGES.items() if importlib.util.find_spec(package)]


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (v2's
    cpu.max, v1's cfs quota), as containers set them. os.cpu_count() sees the whole host."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    try:
        fields = (root / "cpu.max").read_text().split()
        if fields and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def weights_digest(spec: ModelSpec, cache: Path | None = None) -> str | None:
    """sha256 of what defines the image tower: the architecture's options and the weight and
    config files. None for random init, which has no files to key an export by. With a cache
    folder, each file's hash is kept there by the file's identity, for the next setup."""
    files: list[Path] = []
    name = spec.model_name
    if name.startswith("local-dir:"):
        folder = Path(name.removeprefix("local-dir:"))
        # Hidden files are not the model's (.gitattributes, an editor's), unless open_clip may
        # load one as the checkpoint.
        files = sorted(
            path
            for path in folder.iterdir()
            if path.is_file() and (not path.name.startswith(".") or path.suffix in CHECKPOINT_SUFFIXES)
        )
        name = "local-dir"
    elif spec.checkpoint:
        files = [spec.checkpoint]
    if not files:
        return None
    digest = hashlib.sha256(json.dumps([name, spec.quick_gelu]).encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(_file_sha256(path, cache))
    return digest.hexdigest()


def _file_sha256(path: Path, cache: Path | None) -> bytes:
    """A file's sha256, kept under cache by what identifies the file's content as git's index
    does (device, inode, size, modification and change times): hashing ViT-L-14's 1.7 GB takes
    1.2 s on 2 cores, a second of every setup. The change time is what no one can set back:
    weights rewritten in place with their modification time kept (cp -p, rsync -t, touch -r)
    have the same size when the architecture is the same."""
    status = path.stat()
    identity = (
        f"{path.resolve()}|{status.st_dev}|{status.st_ino}|{status.st_size}|{status.st_mtime_ns}"
        f"|{status.st_ctime_ns}"
    )
    kept = cache / "file-digests" / hashlib.sha256(identity.encode()).hexdigest()[:32] if cache else None
    if kept is not None:
        with contextlib.suppress(OSError, ValueError):
            if len(value := bytes.fromhex(kept.read_text())) == hashlib.sha256().digest_size:
                return value
    with path.open("rb") as handle:
        value = hashlib.file_digest(handle, "sha256").digest()
    if kept is not None:
        with contextlib.suppress(OSError):  # a cache that cannot be written costs the hashing again
            write_text(kept, value.hex())
    return value


@dataclass
class Served:
    """What serves the image tower, and why anything faster was not used."""

    name: str
    tower: Tower
    reasons: list[str] = field(default_factory=list)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.tower(x)


class Exports:
    """The cache folder of one set of weights: the ONNX export, the int8 model, OpenVINO's
    compiled blobs, the fp32 probe reference and the measured choice, each keyed by the
    versions that made it."""

    def __init__(self, export_dir: Path, digest: str) -> None:
        self.folder = export_dir / digest[:24]
        self.onnx = self.folder / f"image-tower-torch{torch.__version__.split('+')[0]}-opset{OPSET}.onnx"
        self.reference = self.folder / "fp32-probe-embeddings.npy"

    def int8(self) -> Path:
        return self.folder / f"onnxruntime-{_version('onnxruntime')}" / (self.onnx.stem + "-int8.onnx")

    def openvino_cache(self) -> Path:
        return self.folder / f"openvino-{_version('openvino')}"

    def choice(self, threads: int, runtimes: Sequence[str], torch_name: str) -> Path:
        versions = "-".join(
            f"{RUNTIME_PACKAGES[name]}{_version(RUNTIME_PACKAGES[name])}" for name in runtimes
        )
        return self.folder / f"choice-{_machine(threads, torch_name, versions)}.json"

    def checked(self, runtime: str, threads: int, probe: np.ndarray, model: "Model") -> Path:
        """Where a runtime's passed check on this machine is recorded, beside its files. The
        check reads answers against the prompts (other templates, another torch precision's
        text tower): a record holds for the prompts it was checked with."""
        folder = self.openvino_cache() if runtime == OPENVINO else self.int8().parent
        checked_on = hashlib.sha256(probe.tobytes())
        checked_on.update(model.prompts.float().cpu().numpy().tobytes())
        checked_on.update(repr(model.logit_scale).encode())
        return folder / f"checked-{_machine(threads, checked_on.hexdigest())}.npy"


def _machine(threads: int, *details: str) -> str:
    """A key for what a timing or a check depends on beyond the files: this CPU, what the
    hypervisor lets it use, and the threads the runtime runs on."""
    return hashlib.sha256("|".join([cpu_name(), cpu_flags(), str(threads), *details]).encode()).hexdigest()[
        :16
    ]


def export_onnx(visual: torch.nn.Module, size: int, target: Path) -> None:
    """The fp32 image tower as ONNX, with a dynamic batch dimension."""
    example = torch.zeros(2, 3, size, size)
    with (
        _writing(target) as partial,
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        library_logs.errors_only(),
    ):
        # The exporter narrates each step and warns about its own internals (onnxscript's
        # optimiser logs a warning per Split it does not fold, in a ResNet tower); neither is
        # the user's business.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _VisualOnly(visual).eval(),
            (example,),
            str(partial),
            dynamo=True,
            opset_version=OPSET,
            input_names=["pixels"],
            output_names=["features"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}},
            external_data=False,
        )


def quantize_int8(source: Path, target: Path) -> None:
    """int8 weights for the MatMuls, activations quantised on the fly (ONNX Runtime's dynamic
    quantisation, as torch's int8 path does it)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with (
        _writing(target) as partial,
        tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantising-") as own,
        warnings.catch_warnings(),
        library_logs.errors_only(),
    ):
        warnings.simplefilter("ignore")
        # The quantiser writes a shape-inferred copy beside the model it reads, then deletes it:
        # read through a link in a folder of our own, a setup quantising at the same time
        # neither overwrites nor deletes ours. A file system without links reads the export.
        model = Path(own) / source.name
        try:
            model.symlink_to(source.resolve())
        except OSError:
            model = source
        quantize_dynamic(str(model), str(partial), weight_type=QuantType.QInt8)


def openvino_tower(onnx: Path, cache: Path, threads: int) -> Tower:
    import openvino

    cache.mkdir(parents=True, exist_ok=True)
    compiled = openvino.Core().compile_model(
        str(onnx),
        "CPU",
        {
            # Where the CPU lacks native bf16, OpenVINO runs fp32 instead.
            "INFERENCE_PRECISION_HINT": "bf16",
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "CACHE_DIR": str(cache),  # the compiled model: later setups skip compiling
        },
    )
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        # The request reuses its output buffer: copy before the next call overwrites it.
        return torch.from_numpy(np.array(request.infer({0: x.numpy()})[0], copy=True))

    return run


def onnxruntime_tower(onnx: Path, threads: int) -> Tower:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"pixels": x.numpy()})[0])

    return run


def probe_photos(size: int, preprocess: Callable[[Image.Image], np.ndarray]) -> np.ndarray:
    """The photos the agreement gate checks: the example photos the package ships and synthetic
    ones, as model inputs (uint8 NHWC)."""
    photos = [
        preprocess(Image.open(path).convert("RGB"))
        for path in sorted(EXAMPLES.glob("*"))
        if path.suffix.lower() in (".png", ".jpg", ".jpeg")
    ]
    synthetic = gpu_path.probe_images(size, count=PROBE_PHOTOS - len(photos))
    return np.concatenate([np.stack(photos), synthetic]) if photos else synthetic


def measure(
    candidates: dict[str, Tower], size: int, batches: Sequence[int] = TIMED_BATCHES, rounds: int = 5
) -> dict[int, dict[str, float]]:
    """The fastest of a few runs, in ms per batch, of each candidate at each batch shape, the
    candidates taking turns round by round. A neighbour's burst only ever adds time, so the
    fastest run is the one it disturbed least: the choice stays right on a shared machine."""
    timings: dict[int, dict[str, float]] = {}
    with torch.inference_mode():
        for batch in batches:
            x = torch.randn(batch, 3, size, size)
            for tower in candidates.values():
                tower(x)  # warm-up: first calls allocate and compile
            samples: dict[str, list[float]] = {name: [] for name in candidates}
            for _ in range(rounds if batch == 1 else max(2, rounds // 2)):
                for name, tower in candidates.items():
                    # A runtime's threads spin for a while after a call; the next contender must
                    # not pay for that, as a request arriving at an idle server does not.
                    time.sleep(SETTLE_S)
                    started = time.perf_counter()
                    tower(x)
                    samples[name].append((time.perf_counter() - started) * 1000)
            timings[batch] = {name: min(times) for name, times in samples.items()}
    return timings


def fastest(timings: dict[int, dict[str, float]]) -> str:
    """The candidate with the least time per photo over the timed batch shapes together: one
    runtime serves every shape, so setup loads and checks one."""
    names = next(iter(timings.values()))
    return min(names, key=lambda name: sum(timings[batch][name] / batch for batch in timings))


def disagreement(
    embeddings: torch.Tensor, reference: torch.Tensor, prompts: torch.Tensor, logit_scale: float
) -> str | None:
    """Why these unit image embeddings' answers are not fp32's, within the tolerances above;
    None when they agree. Both go through the same prompt embeddings."""
    if not torch.isfinite(embeddings).all():
        return "it gave non-finite embeddings"
    cosine = float((embeddings * reference).sum(-1).min())
    if cosine < MIN_COSINE:
        return (
            f"its image embeddings are at a cosine of {cosine:.5f} from fp32's (at least {MIN_COSINE} needed)"
        )
    ages = torch.arange(1, prompts.shape[0] + 1, dtype=torch.float32)
    probabilities = (logit_scale * embeddings @ prompts.T).softmax(-1)
    ref_probabilities = (logit_scale * reference @ prompts.T).softmax(-1)
    chosen = ref_probabilities.gather(1, probabilities.argmax(-1, keepdim=True))[:, 0]
    flipped = int((ref_probabilities.max(-1).values - chosen > NEAR_TIE).sum())
    if flipped:
        return f"its argmax age differs from fp32's on {flipped} of {len(embeddings)} probe photos"
    worst = float(((probabilities - ref_probabilities) @ ages).abs().max())
    if worst > EXPECTED_AGE_YEARS:
        return f"its expected age differs from fp32's by up to {worst:.2f} years"
    return None


class RuntimeUnavailable(ValueError):
    """CLIP_CPU_RUNTIME names a runtime that is not installed; the message says how to install it."""


@dataclass
class Model:
    """What the choice needs from the estimator: the weights, the input, the tower torch serves
    with, how pixels become the tower's input, and the prompts answers are read against."""

    spec: ModelSpec
    size: int
    torch_name: str  # the torch tower's name, e.g. "torch bf16"
    torch_tower: Tower
    load_fp32: Callable[[], torch.nn.Module]  # fp32 CLIP, loaded only when something must be made
    normalise: Callable[[torch.Tensor], torch.Tensor]  # uint8 (batch, H, W, 3) -> the tower's input
    prompts: torch.Tensor
    logit_scale: float


def choose(
    model: Model,
    setting: str,
    export_dir: Path,
    make_probe: Callable[[], np.ndarray],
    fault: Fault | None = None,
    threads: int | None = None,
) -> Served | None:
    """What serves the image tower, or None when no runtime applies (none installed, or
    CLIP_CPU_RUNTIME=torch). setting "auto" serves the fastest contender, timed once per
    machine; a runtime's name serves that runtime. A runtime that disagrees with fp32 on the
    probe is dropped and torch serves; if torch's own tower disagrees too, fp32 serves
    (`"torch fp32"`, whose module the caller then serves with)."""
    runtimes = _requested(setting)
    if not runtimes:
        return None
    digest = weights_digest(model.spec, export_dir)
    if digest is None:
        log.info("Random-init weights have no files to key an export by: torch serves the image tower.")
        return None
    threads = threads or usable_cores()
    exports = Exports(export_dir, digest)
    probe = make_probe()  # only where a runtime applies: decoding them takes about 50 ms
    fp32: list[torch.nn.Module] = []

    def load_fp32() -> torch.nn.Module:
        if not fp32:
            fp32.append(model.load_fp32())
        return fp32[0]

    builders = {
        OPENVINO: lambda: openvino_tower(exports.onnx, exports.openvino_cache(), threads),
        ONNXRUNTIME: lambda: onnxruntime_tower(_int8(exports), threads),
    }
    wrap = fault.wrap if fault else (lambda _, tower: tower)
    torch_tower = wrap(model.torch_name, model.torch_tower)
    reasons: list[str] = []
    x = model.normalise(torch.from_numpy(probe))

    def reference() -> torch.Tensor:
        return _reference(exports, probe, model, load_fp32)

    def torch_or_fp32() -> Served:
        """After the runtime was ruled out: torch in its precision where it agrees with fp32."""
        problem = _attempt(lambda: _check(torch_tower, x, reference(), model))
        if not problem:
            return Served(model.torch_name, torch_tower, reasons)
        reasons.append(f"{model.torch_name} was not used: {problem}")
        return Served("torch fp32", wrap("torch fp32", lambda x: load_fp32().encode_image(x)), reasons)

    if not _made(exports.onnx):
        started = time.perf_counter()
        try:
            export_onnx(load_fp32().visual, model.size, exports.onnx)
        # A read-only or full CLIP_EXPORT_DIR: the runtimes load the export from there.
        except OSError as error:
            reasons.append(
                "the CPU runtimes were not used: the image tower could not be exported to "
                f"{export_dir} ({error.strerror or error})"
            )
            return torch_or_fp32()
        log.info(
            "Exported the image tower to %s in %.0f s (once for these weights).",
            exports.onnx,
            time.perf_counter() - started,
        )

    def build(name: str) -> Tower | None:
        try:
            return wrap(name, builders[name]())
        # A runtime that cannot load the export (an operation it lacks, a broken install) is
        # ruled out, as one that disagrees is.
        except Exception as error:
            reasons.append(f"{name} was not used: {_failed(error)}")
            return None

    choice_file = exports.choice(threads, runtimes, model.torch_name)
    # A runtime named in CLIP_CPU_RUNTIME serves; auto serves the fastest, timed once per machine.
    chosen = _cached_choice(choice_file, {model.torch_name, *runtimes}) if setting == "auto" else runtimes[0]
    tower = None
    if chosen is None:
        built = {name: build(name) for name in runtimes}
        if not any(built.values()):
            # Nothing to time, and nothing to keep: a later setup tries the runtimes again and
            # says again why they are not used, rather than that they were timed slower.
            return torch_or_fp32()
        candidates = {model.torch_name: torch_tower, **{name: t for name, t in built.items() if t}}
        timings = measure(candidates, model.size)
        chosen = fastest(timings)
        try:
            write_json(
                choice_file,
                {"threads": threads, "cpu": cpu_name(), "ms_per_batch": timings, "chosen": chosen},
            )
        except OSError as error:
            log.warning(
                "The timing could not be kept in %s (%s): the next setup times again.",
                export_dir,
                error.strerror or error,
            )
        log.info("Timed the image tower on %d threads (ms per batch): %s", threads, json.dumps(timings))
        tower = candidates[chosen]
        del built, candidates  # the runtimes not chosen free their memory
    elif chosen != model.torch_name:
        tower = build(chosen)
    if chosen == model.torch_name:
        # Timed fastest, torch serves as it would without the extra; where a runtime was ruled
        # out on the way, the setup says so, and says torch was checked: so it is.
        return torch_or_fp32() if reasons else Served(chosen, torch_tower, reasons)

    if tower is not None:
        record = exports.checked(chosen, threads, probe, model)
        problem = _attempt(lambda: _gate(tower, x, record, reference, model))
        if not problem:
            return Served(chosen, tower, reasons)
        reasons.append(f"{chosen} was not used: {problem}")
    return torch_or_fp32()


def expected(
    spec: ModelSpec, setting: str, export_dir: Path, torch_name: str, threads: int | None = None
) -> bool:
    """Whether a runtime is to serve without being timed: named by the setting, or chosen by
    the timing recorded on this machine. Setup then leaves torch's image tower unread unless
    the runtime fails its check."""
    runtimes = _requested(setting)
    digest = weights_digest(spec, export_dir) if runtimes else None
    if digest is None:
        return False
    if setting != "auto":
        return True
    choice = Exports(export_dir, digest).choice(threads or usable_cores(), runtimes, torch_name)
    return _cached_choice(choice, set(runtimes)) is not None


def _requested(setting: str) -> list[str]:
    if setting == "torch":
        return []
    available = installed()
    if setting == "auto":
        return available
    wanted = {"openvino": OPENVINO, "onnxruntime": ONNXRUNTIME}[setting]
    if wanted not in available:
        raise RuntimeUnavailable(
            f"CLIP_CPU_RUNTIME={setting}, but {RUNTIME_PACKAGES[wanted]} is not installed: install the "
            "cpu extra (pip install 'clip-age-predictor[cpu]'), or set CLIP_CPU_RUNTIME=auto or torch."
        )
    return [wanted]


def _int8(exports: Exports) -> Path:
    target = exports.int8()
    if not _made(target):
        started = time.perf_counter()
        quantize_int8(exports.onnx, target)
        log.info(
            "Quantised the image tower to int8 in %.0f s (once for these weights).",
            time.perf_counter() - started,
        )
    return target


def _made(path: Path) -> bool:
    """Whether a file this module writes is there. An empty one, as a crash between the rename
    and the data reaching the disk left before writes were synced, is made again."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _cached_choice(path: Path, names: set[str]) -> str | None:
    try:
        chosen = json.loads(path.read_text())["chosen"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # An older file, or one edited by hand, holds something else: time again.
    return chosen if isinstance(chosen, str) and chosen in names else None


def _reference(
    exports: Exports, probe: np.ndarray, model: Model, load_fp32: Callable[[], torch.nn.Module]
) -> torch.Tensor:
    """fp32 torch's unit image embeddings of the probe, computed once for these weights."""
    path = exports.folder / f"fp32-probe-{hashlib.sha256(probe.tobytes()).hexdigest()[:16]}.npy"
    try:
        return torch.from_numpy(np.load(path))
    except UNREADABLE:
        pass
    with torch.inference_mode():
        embeddings = _unit(load_fp32().encode_image(model.normalise(torch.from_numpy(probe))))
    with contextlib.suppress(OSError):  # a cache that cannot be written costs this again
        save_array(path, embeddings.numpy())
    return embeddings


def _gate(
    tower: Tower, x: torch.Tensor, record: Path, reference: Callable[[], torch.Tensor], model: Model
) -> str | None:
    """Why a runtime may not serve, or None. The whole check against fp32 (every probe photo)
    runs once per machine and export, and records the runtime's embedding of the first photo;
    a later setup that gets that embedding again from the runtime knows it computes what was
    checked, at the cost of one photo (the first request would pay that warm-up anyway)."""
    with torch.inference_mode():
        first = _unit(tower(x[:1]))
    with contextlib.suppress(*UNREADABLE):
        recorded = torch.from_numpy(np.load(record))
        if recorded.shape == first.shape and torch.allclose(first, recorded, rtol=0, atol=REPRODUCED):
            log.info("The image tower's runtime reproduced the output its check against fp32 recorded.")
            return None
    problem = _check(tower, x, reference(), model)
    if problem is None:
        with contextlib.suppress(OSError):
            save_array(record, first.numpy())
    return problem


def _check(tower: Tower, x: torch.Tensor, reference: torch.Tensor, model: Model) -> str | None:
    with torch.inference_mode():
        embeddings = _unit(tower(x))
    return disagreement(embeddings, reference, model.prompts.float(), model.logit_scale)


def _unit(features: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(features.float(), dim=-1)


def _attempt(check: Callable[[], str | None]) -> str | None:
    try:
        return check()
    # Whatever a runtime raises (an unsupported op, a shape it cannot run) rules it out.
    except Exception as error:
        return _failed(error)


def _failed(error: Exception) -> str:
    # OpenVINO's messages open with a line per frame of its own source ("Exception from
    # src/inference/src/cpp/core.cpp:132:"); what went wrong comes after them.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith("Exception from src/")]
    return f"it failed ({type(error).__name__}: {(said or lines or [''])[0]})"


class _VisualOnly(torch.nn.Module):
    """The image tower alone, with an input name the exporter's dynamic shapes can refer to."""

    def __init__(self, visual: torch.nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


@contextlib.contextmanager
def _writing(target: Path):
    """A temporary file beside target, renamed onto it once complete and on the disk: another
    process starting at the same time never reads half a file, and a crash never leaves a
    complete name on a truncated file, which would rule its runtime out at every setup."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=".partial-", suffix=target.suffix)
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        synced = os.open(partial, os.O_RDONLY)
        try:
            os.fsync(synced)
        finally:
            os.close(synced)
        partial.chmod(0o644)  # mkstemp's owner-only mode would hide the cache from other users
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def write_json(target: Path, value: object) -> None:
    write_text(target, json.dumps(value, indent=2))


def write_text(target: Path, text: str) -> None:
    with _writing(target) as partial:
        partial.write_text(text)


def save_array(target: Path, value: np.ndarray) -> None:
    with _writing(target) as partial, partial.open("wb") as handle:
        np.save(handle, value)


def _version(package: str) -> str:
    return importlib.metadata.version(package)


def cpu_flags() -> str:
    """The instruction sets the CPU reports (Linux); a VM can hide some of a CPU model's."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line.split(":", 1)[1].strip()
    return ""


def cpu_name() -> str:
    """The CPU's model name: part of the key a timed choice is kept under, and the bench's header."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
