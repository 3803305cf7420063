"""The image tower in a CPU runtime (the `cpu` extra): exported once, served where it agrees
with fp32 torch, stepping down where it does not. Tiny models; the real-size agreement is in
test_cpu_precision.py.

Each step down is forced by a Fault: the real runtime's output, broken on purpose after it ran.
"""

import json
import logging
import os
import shutil
import time

import numpy as np
import pytest
import torch

from clip_age.estimation import cpu_runtime, device_choice, open_clip_model, weights
from clip_age.estimation.estimator import AgeEstimator

pytestmark = pytest.mark.skipif(not cpu_runtime.installed(), reason="the cpu extra is not installed")

RUNTIMES = {"openvino": cpu_runtime.OPENVINO, "onnxruntime": cpu_runtime.ONNXRUNTIME}
TORCH = f"torch {device_choice.cpu_precision('auto').name}"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="module")
def fp32(tiny_model_dir):
    return AgeEstimator(f"local-dir:{tiny_model_dir}", device="cpu", cpu_precision="fp32")


@pytest.fixture(scope="module")
def pixels(fp32):
    return cpu_runtime.probe_photos(224, fp32.preprocess)[:4]


def load(tiny_model_dir, export_dir, setting="auto", fault=None):
    return AgeEstimator(
        f"local-dir:{tiny_model_dir}",
        device="cpu",
        cpu_precision="auto",
        cpu_runtime_setting=setting,
        export_dir=export_dir,
        fault=fault,
    )


def scramble(features: torch.Tensor) -> torch.Tensor:
    """Features in the wrong order, as a miscompiled graph could give them."""
    return features.flip(-1)


def break_with(*paths: str) -> cpu_runtime.Fault:
    return cpu_runtime.Fault(frozenset(paths), scramble)


@pytest.mark.parametrize("setting", ["openvino", "onnxruntime"])
def test_each_runtime_serves_with_embeddings_within_a_cosine_of_0_999_of_fp32(
    tiny_model_dir, export_dir, fp32, pixels, setting
):
    estimator = load(tiny_model_dir, export_dir, setting)
    assert estimator.serving.startswith(f"the image tower in {RUNTIMES[setting]} on the CPU"), (
        estimator.serving
    )
    assert "was not used" not in estimator.serving
    cosine = (estimator.encode_pixels(pixels) * fp32.encode_pixels(pixels)).sum(-1)
    assert float(cosine.min()) >= 0.999
    ours, reference = estimator.predict_pixels(pixels), fp32.predict_pixels(pixels)
    assert max(abs(a.expected_age - r.expected_age) for a, r in zip(ours, reference, strict=True)) < 1.0


def test_auto_times_each_contender_once_and_keeps_the_export(tiny_model_dir, export_dir, caplog):
    with caplog.at_level(logging.INFO, logger="clip_age.estimation.cpu_runtime"):
        first = load(tiny_model_dir, export_dir)
    timed = [
        record.message for record in caplog.records if record.message.startswith("Timed the image tower")
    ]
    assert len(timed) == 1 and TORCH in timed[0] and all(name in timed[0] for name in RUNTIMES.values())
    [folder] = export_dir.glob("*/choice-*.json")
    folder = folder.parent
    exported = {path: path.stat().st_mtime_ns for path in folder.rglob("*.onnx")}
    assert len(exported) == 2  # fp32 and int8
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clip_age.estimation.cpu_runtime"):
        second = load(tiny_model_dir, export_dir)
    assert not [
        record for record in caplog.records if "Exported" in record.message or "Timed" in record.message
    ]
    assert {path: path.stat().st_mtime_ns for path in folder.rglob("*.onnx")} == exported
    assert second.serving == first.serving


def test_a_choice_file_in_an_older_form_is_timed_again(tiny_model_dir, export_dir, caplog):
    load(tiny_model_dir, export_dir)  # the export and its choice file exist
    [choice] = export_dir.glob("*/choice-*.json")
    kept = json.loads(choice.read_text())
    # The form an earlier release wrote: a runtime per batch shape.
    choice.write_text(
        json.dumps({**kept, "chosen": [[1, cpu_runtime.ONNXRUNTIME], [8, cpu_runtime.OPENVINO]]})
    )
    with caplog.at_level(logging.INFO, logger="clip_age.estimation.cpu_runtime"):
        estimator = load(tiny_model_dir, export_dir)
    assert any(record.message.startswith("Timed the image tower") for record in caplog.records)
    assert isinstance(json.loads(choice.read_text())["chosen"], str)
    assert estimator.serving.startswith("the image tower in") or "timed slower" in estimator.serving


def test_a_later_setup_reads_no_torch_image_tower_and_checks_one_photo(
    tiny_model_dir, export_dir, pixels, caplog
):
    first = load(tiny_model_dir, export_dir, "onnxruntime")
    [record] = export_dir.glob("*/onnxruntime-*/checked-*.npy")
    with caplog.at_level(logging.INFO, logger="clip_age.estimation.cpu_runtime"):
        later = load(tiny_model_dir, export_dir, "onnxruntime")
    assert isinstance(later.model.visual, open_clip_model.ImageTowerElsewhere)
    assert any("reproduced" in record.message for record in caplog.records)
    # open_clip's warning that an architecture built without weights is random is not ours.
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    torch.testing.assert_close(later.encode_pixels(pixels), first.encode_pixels(pixels))
    # A record that the runtime does not reproduce (another machine's, a damaged file) sends
    # the setup through the whole check again, which records afresh.
    np.save(record, -np.load(record))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clip_age.estimation.cpu_runtime"):
        again = load(tiny_model_dir, export_dir, "onnxruntime")
    assert not any("reproduced" in record.message for record in caplog.records)
    assert again.serving == first.serving
    torch.testing.assert_close(
        torch.from_numpy(np.load(record)), first.encode_pixels(pixels[:1]), rtol=0, atol=1e-5
    )


def test_other_prompts_get_the_whole_check_which_reads_answers_against_them(
    tiny_model_dir, export_dir, caplog
):
    load(tiny_model_dir, export_dir, "onnxruntime")  # checked, and recorded, with our prompts
    with caplog.at_level(logging.INFO, logger="clip_age.estimation.cpu_runtime"):
        AgeEstimator(
            f"local-dir:{tiny_model_dir}",
            templates=["a photo of someone who is {age} years old."],
            device="cpu",
            cpu_runtime_setting="onnxruntime",
            export_dir=export_dir,
        )
    # The argmax and expected age the check compares depend on the prompts.
    assert not any("reproduced" in record.message for record in caplog.records)


@pytest.mark.parametrize("emptied", ["record", "reference"])
def test_an_empty_kept_array_is_computed_again_not_a_reason_to_step_down(
    tiny_model_dir, export_dir, pixels, emptied
):
    first = load(tiny_model_dir, export_dir, "onnxruntime")
    # The records of every set of prompts checked so far (other tests check other prompts).
    records = list(export_dir.glob("*/onnxruntime-*/checked-*.npy"))
    [reference] = export_dir.glob("*/fp32-probe-*.npy")
    # What a crash between the rename and the data reaching the disk leaves behind.
    for path in records if emptied == "record" else [reference]:
        path.write_bytes(b"")
    if emptied == "reference":
        for record in records:
            record.unlink()  # the whole check runs, and reads the fp32 reference
    later = load(tiny_model_dir, export_dir, "onnxruntime")
    assert later.serving == first.serving, later.serving
    torch.testing.assert_close(later.encode_pixels(pixels), first.encode_pixels(pixels))
    kept = [*export_dir.glob("*/onnxruntime-*/checked-*.npy"), reference]
    assert sum(path.stat().st_size > 0 for path in kept) == 2  # ours, and the reference, afresh


@pytest.mark.parametrize("setting", ["openvino", "onnxruntime"])
def test_an_empty_export_is_made_again_not_a_reason_to_step_down(tiny_model_dir, export_dir, pixels, setting):
    first = load(tiny_model_dir, export_dir, setting)
    spec = weights.ModelSpec(f"local-dir:{tiny_model_dir}", None)
    exports = cpu_runtime.Exports(export_dir, cpu_runtime.weights_digest(spec, export_dir))
    # What the runtime loads: OpenVINO the export, ONNX Runtime its int8 copy. Empty, as a crash
    # between the rename and the data reaching the disk leaves a file.
    loaded = exports.onnx if setting == "openvino" else exports.int8()
    loaded.write_bytes(b"")
    later = load(tiny_model_dir, export_dir, setting)
    assert later.serving == first.serving, later.serving
    torch.testing.assert_close(later.encode_pixels(pixels), first.encode_pixels(pixels))
    assert loaded.stat().st_size > 0


@pytest.mark.parametrize("setting", ["auto", "onnxruntime"])
def test_where_the_export_cannot_be_written_torch_serves_checked_and_says_why(
    tiny_model_dir, tmp_path, pixels, setting
):
    # A CLIP_EXPORT_DIR that cannot be made, for any user (root included): as read-only or full.
    (tmp_path / "a-file").write_text("")
    estimator = load(tiny_model_dir, tmp_path / "a-file" / "exports", setting)
    assert estimator.serving.startswith(f"the image tower in {TORCH} on the CPU"), estimator.serving
    assert "the CPU runtimes were not used: the image tower could not be exported to" in estimator.serving
    torch_only = AgeEstimator(f"local-dir:{tiny_model_dir}", device="cpu", cpu_runtime_setting="torch")
    torch.testing.assert_close(estimator.encode_pixels(pixels), torch_only.encode_pixels(pixels))


@pytest.mark.parametrize("unwritable", ["choice", "reference"])
def test_a_kept_file_that_cannot_be_written_costs_its_work_again_and_the_runtime_serves(
    tiny_model_dir, export_dir, pixels, unwritable, caplog
):
    setting = "auto" if unwritable == "choice" else "onnxruntime"
    first = load(tiny_model_dir, export_dir, setting)
    [folder] = {path.parent for path in export_dir.glob("*/*.onnx")}
    # A folder in the file's place fails its write for any user, as a read-only volume would.
    if unwritable == "choice":
        [blocked] = folder.glob("choice-*.json")
    else:
        [blocked] = folder.glob("fp32-probe-*.npy")
        for record in folder.glob("*/checked-*.npy"):
            record.unlink()  # the whole check runs, and needs the fp32 reference
    blocked.unlink()
    blocked.mkdir()
    try:
        with caplog.at_level(logging.INFO):
            later = load(tiny_model_dir, export_dir, setting)
    finally:
        blocked.rmdir()
    assert "was not used" not in later.serving, later.serving
    if unwritable == "choice":
        # The timing itself may pick torch for a model this small: what matters is that setup
        # served what it timed fastest and said the timing was not kept.
        assert any("the next setup times again" in record.message for record in caplog.records)
    else:
        assert later.serving.startswith("the image tower in ONNX Runtime int8"), later.serving
        torch.testing.assert_close(later.encode_pixels(pixels), first.encode_pixels(pixels))


def test_the_weights_hash_is_kept_by_the_files_identity(tiny_model_dir, tmp_path, monkeypatch):
    spec = weights.ModelSpec(f"local-dir:{tiny_model_dir}", None)
    digest = cpu_runtime.weights_digest(spec, tmp_path)
    assert digest == cpu_runtime.weights_digest(spec)  # the same hash as without a cache
    hashed = []
    real = cpu_runtime.hashlib.file_digest
    monkeypatch.setattr(cpu_runtime.hashlib, "file_digest", lambda *a: hashed.append(1) or real(*a))
    assert cpu_runtime.weights_digest(spec, tmp_path) == digest and hashed == []
    # Rewritten in place with other numbers of the same size: a new modification time, a new hash.
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    spec = weights.ModelSpec(f"local-dir:{other}", None)
    assert cpu_runtime.weights_digest(spec, tmp_path) == digest
    weights_file = other / "open_clip_model.safetensors"
    data = bytearray(weights_file.read_bytes())
    data[-1] ^= 1
    weights_file.write_bytes(bytes(data))
    assert cpu_runtime.weights_digest(spec, tmp_path) != digest


def test_weights_rewritten_in_place_with_their_modification_time_kept_are_hashed_again(
    tiny_model_dir, tmp_path
):
    from clip_age.dev.tiny_models import build_tiny_model

    ours = tmp_path / "ours"
    shutil.copytree(tiny_model_dir, ours)
    weights_file = ours / "open_clip_model.safetensors"
    fine_tuned = build_tiny_model(tmp_path / "fine-tuned", seed=1) / "open_clip_model.safetensors"
    assert fine_tuned.stat().st_size == weights_file.stat().st_size  # the same architecture
    spec = weights.ModelSpec(f"local-dir:{ours}", None)
    before = cpu_runtime.weights_digest(spec, tmp_path / "exports")
    kept = weights_file.stat()
    time.sleep(0.05)  # past the file system's clock tick, as any later copy is
    # As `cp -p fine-tuned ours` does: the same file, other bytes, the source's modification time.
    weights_file.write_bytes(fine_tuned.read_bytes())
    os.utime(weights_file, ns=(kept.st_atime_ns, kept.st_mtime_ns))
    after = cpu_runtime.weights_digest(spec, tmp_path / "exports")
    assert after != before and after == cpu_runtime.weights_digest(spec)  # the files' own hash


def test_a_hidden_checkpoint_open_clip_loads_keys_the_export(tiny_model_dir, tmp_path, pixels):
    from clip_age.dev.tiny_models import build_tiny_model

    # open_clip takes the first checkpoint by name where none has a name it prefers: here the
    # hidden one (its glob matches names that start with a dot).
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "open_clip_config.json", folder)
    shutil.copy(tiny_model_dir / "open_clip_model.safetensors", folder / ".weights.safetensors")
    other = build_tiny_model(tmp_path / "other", seed=1) / "open_clip_model.safetensors"
    shutil.copy(other, folder / "weights.safetensors")
    model = f"local-dir:{folder}"
    AgeEstimator(model, device="cpu", cpu_runtime_setting="onnxruntime", export_dir=tmp_path / "exports")
    shutil.copy(other, folder / ".weights.safetensors")  # the weights open_clip loads change
    later = AgeEstimator(
        model, device="cpu", cpu_runtime_setting="onnxruntime", export_dir=tmp_path / "exports"
    )
    assert later.serving.startswith(f"the image tower in {RUNTIMES['onnxruntime']}"), later.serving
    torch_only = AgeEstimator(model, device="cpu", cpu_precision="fp32", cpu_runtime_setting="torch")
    cosine = (later.encode_pixels(pixels) * torch_only.encode_pixels(pixels)).sum(-1)
    assert float(cosine.min()) >= 0.999


def test_other_weights_get_their_own_export(tiny_model_dir, tmp_path, export_dir):
    from clip_age.dev.tiny_models import build_tiny_model

    other = build_tiny_model(tmp_path / "other", seed=1)  # the same files, other numbers in them
    load(tiny_model_dir, export_dir, "onnxruntime")
    before = set(export_dir.iterdir())
    load(other, export_dir, "onnxruntime")
    assert len(set(export_dir.iterdir()) - before) == 1


@pytest.fixture(params=["bf16", "int8"])
def torch_precision(request, monkeypatch):
    """The torch tower auto serves with: bf16 where the CPU has it natively, int8 elsewhere."""
    monkeypatch.setattr(device_choice, "native_bf16", lambda: request.param == "bf16")
    return f"torch {request.param}"


@pytest.mark.parametrize("setting", ["openvino", "onnxruntime"])
def test_a_runtime_that_disagrees_steps_down_to_torch(
    tiny_model_dir, export_dir, pixels, setting, torch_precision, caplog
):
    with caplog.at_level(logging.WARNING, logger="clip_age.estimation.estimator"):
        estimator = load(tiny_model_dir, export_dir, setting, break_with(RUNTIMES[setting]))
    reason = f"{RUNTIMES[setting]} was not used: its image embeddings are at a cosine of"
    assert estimator.serving.startswith(f"the image tower in {torch_precision} on the CPU"), estimator.serving
    assert reason in estimator.serving and any(reason in record.message for record in caplog.records)
    torch_only = AgeEstimator(f"local-dir:{tiny_model_dir}", device="cpu", cpu_runtime_setting="torch")
    torch.testing.assert_close(estimator.encode_pixels(pixels), torch_only.encode_pixels(pixels))


@pytest.mark.parametrize("setting", ["openvino", "onnxruntime"])
def test_when_torch_disagrees_too_fp32_serves(
    tiny_model_dir, export_dir, fp32, pixels, setting, torch_precision
):
    estimator = load(tiny_model_dir, export_dir, setting, break_with(RUNTIMES[setting], torch_precision))
    assert estimator.serving.startswith("the image tower in torch fp32 on the CPU"), estimator.serving
    assert f"{torch_precision} was not used: its image embeddings" in estimator.serving
    assert estimator.precision.name == "fp32" and estimator.dtype == torch.float32
    torch.testing.assert_close(estimator.prompt_embeddings, fp32.prompt_embeddings)
    assert [a.probabilities.tolist() for a in estimator.predict_pixels(pixels)] == [
        a.probabilities.tolist() for a in fp32.predict_pixels(pixels)
    ]


def test_a_runtime_that_raises_is_not_used(tiny_model_dir, export_dir):
    def fails(features):
        raise RuntimeError("unsupported operation")

    fault = cpu_runtime.Fault(frozenset({cpu_runtime.OPENVINO}), fails)
    estimator = load(tiny_model_dir, export_dir, "openvino", fault)
    assert "OpenVINO bf16 was not used: it failed (RuntimeError: unsupported operation)" in estimator.serving


def test_a_runtime_that_cannot_load_the_export_is_not_used(tiny_model_dir, export_dir, monkeypatch, pixels):
    def cannot_load(*args, **kwargs):
        raise RuntimeError("unsupported operator in the graph")

    monkeypatch.setattr(cpu_runtime, "onnxruntime_tower", cannot_load)
    estimator = load(tiny_model_dir, export_dir, "onnxruntime")
    assert estimator.serving.startswith(f"the image tower in {TORCH} on the CPU"), estimator.serving
    assert (
        "ONNX Runtime int8 was not used: it failed (RuntimeError: unsupported operator in the graph)"
        in estimator.serving
    )
    assert len(estimator.predict_pixels(pixels)) == len(pixels)


def test_torch_timed_fastest_after_a_runtime_was_ruled_out_is_checked_as_the_log_says(
    tiny_model_dir, tmp_path, monkeypatch
):
    def cannot_load(*args, **kwargs):
        raise RuntimeError("unsupported operator in the graph")

    monkeypatch.setattr(cpu_runtime, "onnxruntime_tower", cannot_load)
    monkeypatch.setattr(cpu_runtime, "fastest", lambda timings: TORCH)  # torch wins the timing
    estimator = load(tiny_model_dir, tmp_path, "auto", break_with(TORCH))
    assert estimator.serving.startswith("the image tower in torch fp32 on the CPU"), estimator.serving
    assert "ONNX Runtime int8 was not used: it failed" in estimator.serving
    assert f"{TORCH} was not used: its image embeddings" in estimator.serving


def test_where_no_runtime_loads_nothing_is_kept_as_timed_and_a_repaired_export_is_timed(
    tiny_model_dir, tmp_path, caplog
):
    spec = weights.ModelSpec(f"local-dir:{tiny_model_dir}", None)
    export = cpu_runtime.Exports(tmp_path, cpu_runtime.weights_digest(spec, tmp_path)).onnx
    export.parent.mkdir(parents=True)
    export.write_bytes(b"not an ONNX model")  # neither runtime can load it
    for _ in range(2):  # the first setup, and a later one
        estimator = load(tiny_model_dir, tmp_path)
        assert estimator.serving.startswith(f"the image tower in {TORCH} on the CPU"), estimator.serving
        for name in RUNTIMES.values():
            assert f"{name} was not used: it failed" in estimator.serving
        # What each runtime said of the file, not where in its own source it said it.
        assert "OpenVINO bf16 was not used: it failed (RuntimeError: Unable to read the model" in (
            estimator.serving
        )
    export.unlink()  # exported again at the next setup
    with caplog.at_level(logging.INFO, logger="clip_age.estimation.cpu_runtime"):
        load(tiny_model_dir, tmp_path)
    timed = [record.message for record in caplog.records if record.message.startswith("Timed")]
    assert len(timed) == 1 and all(name in timed[0] for name in RUNTIMES.values())


def photo_between_ages_1_and_99(p_1: float) -> torch.Tensor:
    """A unit embedding whose distribution (one-hot prompts, CLIP's logit scale of 100) puts
    p_1 on age 1 and the rest on age 99."""
    delta = float(np.log(p_1 / (1 - p_1))) * 2**0.5 / 100  # the two logits are 100 / sqrt(2) apart per unit
    embedding = torch.zeros(1, 128)
    embedding[0, 0], embedding[0, 98] = 1 + delta, 1
    return torch.nn.functional.normalize(embedding, dim=-1)


@pytest.mark.parametrize(
    ("fp32_p1", "our_p1", "problem"),
    [
        (0.6, 0.6, None),
        (0.505, 0.5, None),  # expected age 0.49 years off: within the tolerance
        (0.505, 0.49, "its expected age differs from fp32's by up to 1.47 years"),  # argmax in a near tie
        (0.6, 0.4, "its argmax age differs from fp32's on 1 of 1 probe photos"),
    ],
)
def test_the_gate_reads_argmax_and_expected_age_against_fp32(fp32_p1, our_p1, problem):
    prompts = torch.eye(99, 128)
    ours, reference = photo_between_ages_1_and_99(our_p1), photo_between_ages_1_and_99(fp32_p1)
    assert float((ours * reference).sum()) > 0.9999  # the embeddings alone would pass
    assert cpu_runtime.disagreement(ours, reference, prompts, 100.0) == problem


def test_the_gate_reads_the_embeddings_cosine():
    reference = photo_between_ages_1_and_99(0.6)
    turned = torch.nn.functional.normalize(reference + 0.05 * torch.eye(128)[5:6], dim=-1)
    assert cpu_runtime.disagreement(turned, reference, torch.eye(99, 128), 100.0) == (
        "its image embeddings are at a cosine of 0.99875 from fp32's (at least 0.999 needed)"
    )
    assert "non-finite" in cpu_runtime.disagreement(
        reference * float("nan"), reference, torch.eye(99, 128), 100.0
    )


def test_without_the_extra_torch_serves_as_before(tiny_model_dir, export_dir, monkeypatch, pixels):
    before = AgeEstimator(f"local-dir:{tiny_model_dir}", device="cpu", cpu_runtime_setting="torch")
    for package in cpu_runtime.RUNTIME_PACKAGES.values():
        monkeypatch.setitem(__import__("sys").modules, package, None)  # as if not installed
    assert cpu_runtime.installed() == []
    without = load(tiny_model_dir, export_dir)
    assert without.serving == before.serving and "image tower" not in without.serving
    torch.testing.assert_close(without.encode_pixels(pixels), before.encode_pixels(pixels))
    with pytest.raises(
        cpu_runtime.RuntimeUnavailable, match=r"CLIP_CPU_RUNTIME=openvino, but openvino is not"
    ):
        load(tiny_model_dir, export_dir, "openvino")


def test_one_runtime_serves_every_shape_the_one_with_least_time_per_photo():
    # b is faster at batch 8 but a saves more per photo at batch 1, where a request waits alone.
    timings = {1: {"a": 30.0, "b": 40.0}, 8: {"a": 200.0, "b": 150.0}}
    assert cpu_runtime.fastest(timings) == "a"  # 30 + 25 ms per photo against 40 + 18.75
    timings[8]["b"] = 100.0
    assert cpu_runtime.fastest(timings) == "b"  # 40 + 12.5 against 30 + 25


def test_a_neighbours_burst_during_the_timing_does_not_decide_the_choice():
    calls = {"a": 0, "b": 0}

    def tower(name, ms, burst_ms=0.0):
        def run(x):
            calls[name] += 1
            # b's warm-up and most of its timed runs land in a neighbour's burst; a's never do.
            time.sleep((ms + (burst_ms if calls[name] % 5 != 0 else 0.0)) / 1000)
            return torch.zeros(len(x), 4)

        return run

    timings = cpu_runtime.measure({"a": tower("a", 8.0), "b": tower("b", 2.0, 20.0)}, size=8, batches=(1,))
    assert cpu_runtime.fastest(timings) == "b", timings


@pytest.mark.parametrize(
    ("files", "cores"),
    [
        ({"cpu.max": "150000 100000\n"}, 2),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ],
)
def test_runtime_threads_follow_the_cgroup_quota(tmp_path, files, cores):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    quota = cpu_runtime._cgroup_quota(tmp_path)
    assert (None if quota is None else int(np.ceil(quota))) == cores


@pytest.mark.slow
def test_a_later_server_start_with_the_export_kept_answers_as_the_first(tiny_model_dir, tmp_path):
    from tests.cog_server import LocalCogServer
    from tests.conftest import EXAMPLES, data_uri

    env = {
        "CLIP_MODEL": f"local-dir:{tiny_model_dir}",
        "CLIP_DEVICE": "cpu",
        "CLIP_CPU_RUNTIME": "onnxruntime",
        "CLIP_EXPORT_DIR": str(tmp_path),
    }
    photo = {"image": data_uri((EXAMPLES / "astronaut.png").read_bytes()), "return_probabilities": True}
    answers, logs, kept = [], [], []
    for _ in range(2):  # the first start exports and checks; the second loads and reproduces
        with LocalCogServer(env) as server:
            assert server.wait_until_ready()["status"] == "READY", server.log()
            prediction, _ = server.predict(photo)
            answers.append(prediction["output"])
            logs.append(server.log())
        kept.append({path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()})
    assert kept[1] == kept[0]  # nothing exported, checked or recorded again
    for log in logs:
        [ready] = [line for line in log.splitlines() if "Ready in" in line]
        assert "the image tower in ONNX Runtime int8 on the CPU" in ready and "not used" not in ready
    assert answers[1] == answers[0]


def test_quantising_writes_nothing_where_a_setup_starting_at_once_also_quantises(
    tiny_model_dir, export_dir, pixels
):
    first = load(tiny_model_dir, export_dir, "onnxruntime")
    spec = weights.ModelSpec(f"local-dir:{tiny_model_dir}", None)
    exports = cpu_runtime.Exports(export_dir, cpu_runtime.weights_digest(spec, export_dir))
    export = exports.onnx
    exports.int8().unlink()  # quantised again at the next setup
    # ONNX Runtime's quantiser writes the model's shape-inferred copy beside it under this name,
    # then deletes it: a setup quantising at the same time holds the name (a folder here, so
    # that the name stays taken).
    taken = export.with_name(f"{export.stem}-inferred.onnx")
    taken.mkdir()
    try:
        later = load(tiny_model_dir, export_dir, "onnxruntime")
    finally:
        taken.rmdir()
    assert later.serving == first.serving, later.serving
    torch.testing.assert_close(later.encode_pixels(pixels), first.encode_pixels(pixels))


def test_exporting_a_resnet_image_tower_logs_no_warning_of_the_exporters(tmp_path, caplog):
    import open_clip

    from clip_age.dev.tiny_models import TINY_CONFIG, save_model_dir

    # OpenAI's RN50 family, tiny: onnxscript's optimiser warns about each Split it leaves.
    config = {**TINY_CONFIG, "vision_cfg": {"image_size": 224, "layers": [1, 1, 1, 1], "width": 8}}
    torch.manual_seed(0)
    folder = save_model_dir(open_clip.model.CLIP(**config), config, tmp_path / "resnet")
    with caplog.at_level(logging.INFO):
        estimator = load(folder, tmp_path / "exports", "onnxruntime")
    assert estimator.serving.startswith(f"the image tower in {RUNTIMES['onnxruntime']}"), estimator.serving
    assert any(record.message.startswith("Exported the image tower") for record in caplog.records)
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_kept_file_reaches_the_disk_before_it_takes_its_name(tmp_path, monkeypatch):
    synced = []
    real_fsync = cpu_runtime.os.fsync

    def fsync(descriptor):
        # At the sync, the data is in the file and the complete name does not exist yet.
        synced.append((os.readlink(f"/proc/self/fd/{descriptor}"), (tmp_path / "kept.json").exists()))
        real_fsync(descriptor)

    monkeypatch.setattr(cpu_runtime.os, "fsync", fsync)
    cpu_runtime.write_json(tmp_path / "kept.json", {"chosen": "x"})
    [(path, named_yet)] = synced
    assert ".partial-" in path and not named_yet
    assert json.loads((tmp_path / "kept.json").read_text()) == {"chosen": "x"}
