"""Break the core on purpose, one way at a time, and check the suite notices.

    python -m tests.mutation_check            every mutation (about 10 minutes on 2 cores)
    python -m tests.mutation_check --list     the mutations
    python -m tests.mutation_check bgr nearest

Each mutation edits one line of a copy of the repository (tracked files only) and runs the
tests named for it there; it is caught when at least one of them fails. First, as a control, the
same tests run on the copy without any change and must pass. The script exits 1 if any
mutation survives. Not part of CI's run: it is how to check that the tests can fail.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "tests/test_reference.py::test_in_process_answers_are_open_clips"
PRECISION = (
    "tests/test_cpu_precision.py::test_logits_and_softmax_are_computed_in_fp32_whatever_the_towers_run_in"
)


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation(
        "no-normalisation", "image normalisation removed", "clip_age/estimation/estimator.py",
        "x = pixels.permute(0, 3, 1, 2).float() * self._scale + self._shift",
        "x = pixels.permute(0, 3, 1, 2).float() / 255.0",
        (REFERENCE,),
    ),
    Mutation(
        "bgr", "RGB read as BGR", "clip_age/estimation/estimator.py",
        "x = pixels.permute(0, 3, 1, 2).float() * self._scale + self._shift",
        "x = pixels.flip(-1).permute(0, 3, 1, 2).float() * self._scale + self._shift",
        (REFERENCE,),
    ),
    Mutation(
        "height-width", "height and width of the model input swapped", "clip_age/estimation/estimator.py",
        "x = pixels.permute(0, 3, 1, 2).float() * self._scale + self._shift",
        "x = pixels.permute(0, 3, 2, 1).float() * self._scale + self._shift",
        (REFERENCE,),
    ),
    Mutation(
        "nearest", "nearest instead of bicubic", "clip_age/estimation/preprocess.py",
        '"bicubic": Image.Resampling.BICUBIC,', '"bicubic": Image.Resampling.NEAREST,',
        (REFERENCE,),
    ),
    Mutation(
        "prompt-order", "prompts in the wrong order", "prompts.py",
        "return [template.replace(\"{age}\", str(age)) for age in AGES]",
        "return [template.replace(\"{age}\", str(age)) for age in reversed(AGES)]",
        (REFERENCE, "tests/test_estimator.py"),
    ),
    Mutation(
        "off-by-one", "prompts off by one age", "prompts.py",
        "return [template.replace(\"{age}\", str(age)) for age in AGES]",
        "return [template.replace(\"{age}\", str(age + 1)) for age in AGES]",
        (REFERENCE, "tests/test_estimator.py"),
    ),
    Mutation(
        "expected-age", "expected age computed wrongly", "clip_age/estimation/estimator.py",
        "expected = probabilities @ ages", "expected = probabilities @ (ages - 1)",
        (REFERENCE, "tests/test_estimator.py"),
    ),
    Mutation(
        "percentiles", "percentiles computed wrongly", "clip_age/estimation/estimator.py",
        "bounds = torch.searchsorted(cdf, targets).clamp(max=len(ages) - 1)",
        "bounds = torch.searchsorted(cdf, targets, right=True).clamp(max=len(ages) - 1)",
        (REFERENCE, "tests/test_estimator.py"),
    ),
    Mutation(
        "exif", "EXIF orientation ignored", "clip_age/decoding/images.py",
        "    if orientation not in _UPRIGHT:\n        return image",
        "    if True:\n        return image",
        (REFERENCE, "tests/test_images.py"),
    ),
    Mutation(
        "quick-gelu", "QuickGELU dropped for an OpenAI tag", "clip_age/estimation/weights.py",
        'bool(tag.get("quick_gelu"))', "False",
        ("tests/test_weights.py",),
    ),
    Mutation(
        "tag-as-file", "a tag's file given to open_clip instead of the tag", "clip_age/estimation/weights.py",
        "ModelSpec(model, pretrained, checkpoint,", "ModelSpec(model, str(checkpoint), checkpoint,",
        ("tests/test_weights.py",),
    ),
    Mutation(
        "setup-online", "the Hub client left online while open_clip looks up weights", "clip_age/estimation/weights.py",
        "constants.HF_HUB_OFFLINE, True", "constants.HF_HUB_OFFLINE, False",
        ("tests/test_weights.py",),
    ),
    Mutation(
        "crop-shift", "face crop box shifted", "clip_age/decoding/faces.py",
        "left = min(max(round(x + w / 2 - side / 2), 0), width - side)",
        "left = min(max(round(x + w / 2 - side / 2) + 8, 0), width - side)",
        ("tests/test_faces.py", "tests/test_reference.py::test_face_crops_are_open_clips_answers_for_the_crops"),
    ),
    Mutation(
        "batch-order", "batch results returned in the wrong order", "clip_age/estimation/batcher.py",
        "split = split_batch(results, [len(request.rows) for request in batch])",
        "split = split_batch(results[::-1], [len(request.rows) for request in batch])",
        ("tests/test_batcher.py",),
    ),
    Mutation(
        "estimator-order", "an estimator batch answered in the wrong order", "clip_age/estimation/estimator.py",
        "return _unpack(torch.cat(rows).numpy()) if rows else []",
        "return _unpack(torch.cat(rows).flip(0).numpy()) if rows else []",
        ("tests/test_estimator.py",),
    ),
    Mutation(
        "score-threshold", "face detector's score threshold lowered to 0.5", "clip_age/decoding/faces.py",
        "SCORE_THRESHOLD = 0.8", "SCORE_THRESHOLD = 0.5",
        ("tests/test_faces.py",),
    ),
    Mutation(
        "faces-by-score", "faces ordered by score instead of area", "clip_age/decoding/faces.py",
        "faces.sort(key=lambda face: face.area, reverse=True)",
        "faces.sort(key=lambda face: face.score, reverse=True)",
        ("tests/test_faces.py",),
    ),
    Mutation(
        "bf16-logits", "bf16 logits before the softmax", "clip_age/estimation/estimator.py",
        "logits = self.logit_scale * self._embed(clip, pixels).float() @ prompts.T",
        "logits = (self.logit_scale * self._embed(clip, pixels).float() @ prompts.T).bfloat16().float()",
        (PRECISION,),
    ),
    Mutation(
        "bf16-logit-scale", "the logit scale rounded to bf16", "clip_age/estimation/estimator.py",
        "module.logit_scale.data = logit_scale", "module.logit_scale.data = logit_scale.bfloat16()",
        (PRECISION,),
    ),
    Mutation(
        "bug-as-mistake", "a bug's ValueError or OSError reported as the user's mistake", "clip_age/cli.py",
        "    return isinstance(error, UsageError) or any(",
        "    return isinstance(error, (UsageError, ValueError, OSError)) or any(",
        ("tests/test_cli.py::test_a_bug_exits_1_with_one_line_naming_debug",),
    ),
    Mutation(
        "torch-pinned", "the package asks for the image's torch, not a range", "pyproject.toml",
        '"torch>=2.13,<3",', '"torch>=2.14.1,<3",',
        ("tests/test_packaging.py::test_pip_install_keeps_a_compatible_torch_already_installed",),
    ),
    Mutation(
        "lock-outside-range", "the image's lock outside the library's ranges", "requirements.txt",
        "numpy==2.4.6", "numpy==1.26.4",
        ("tests/test_packaging.py::test_the_images_lock_satisfies_the_librarys_ranges",),
    ),
    Mutation(
        "detector-unchecked", "the face detector saved without its sha256 check", "clip_age/decoding/detector_file.py",
        "    if digest != SHA256:", "    if False:",
        ("tests/test_detector_file.py",),
    ),
    Mutation(
        "failed-file-offset", "a failed file advances the batch offset", "clip_age/estimation/batch_split.py",
        "ends = list(accumulate(rows))",
        "ends = list(accumulate(max(count, 1) for count in rows))",
        ("tests/test_batch_split.py::test_an_unreadable_file_mid_folder_leaves_every_other_line_as_its_photo_alone",),
    ),
    Mutation(
        "cli-default-limits", "the command ignores the MAX_* and DECODE_* settings", "clip_age/cli.py",
        "    settings = Settings.from_env()\n    writer = AnswerWriter(",
        "    settings = Settings()\n    writer = AnswerWriter(",
        ("tests/test_cli_bounds.py",),
    ),
    Mutation(
        "decode-beside-cpu-model", "photos decode while a CPU model runs", "clip_age/decoding/bulk_loader.py",
        'return model_device.type == "cuda"', "return True",
        ("tests/test_cli_bounds.py::test_with_clip_on_a_cpu_photos_decode_only_while_the_model_waits",),
    ),
    Mutation(
        "csv-formulas", "CSV cells a spreadsheet would run are written as they are", "clip_age/answers/safe_text.py",
        """return "'" + shown if text.startswith(FORMULA_STARTS) else shown""", "return shown",
        ("tests/test_safe_outputs.py",),
    ),
    Mutation(
        "draw-decodes-again", "--draw decodes each photo a second time to draw on it", "clip_age/answers/writers.py",
        "        target = self._folder / drawing_name(name)\n",
        "        from clip_age.decoding.images import load_image\n"
        "        from clip_age.pipeline import _kept\n\n"
        "        photo = _kept(load_image(path), 2048)\n"
        "        target = self._folder / drawing_name(name)\n",
        ("tests/test_cli.py::test_draw_draws_on_the_photo_decoded_for_the_model",),
    ),
    Mutation(
        "draw-boxes-unscaled", "--draw's face boxes not scaled with the photo", "clip_age/answers/writers.py",
        "if photo.scale != 1.0:", "if False:",
        ("tests/test_cli.py::test_draw_draws_on_the_photo_decoded_for_the_model",),
    ),
    Mutation(
        "draw-model-draft", "--draw keeps a photo decoded at the model's size", "clip_age/pipeline.py",
        "draft_side = spec.draft_side if keep_side is None else max(spec.draft_side, keep_side)",
        "draft_side = spec.draft_side",
        ("tests/test_cli.py::test_draw_draws_on_the_photo_decoded_for_the_model",),
    ),
    Mutation(
        "evaluate-columns", "evaluate ignores --path-column", "clip_age/cli.py",
        "        path_column=args.path_column,", "        path_column=None,",
        ("tests/test_cli.py::test_evaluate_reads_the_columns_named_and_names_the_model",),
    ),
    Mutation(
        "wheel-photos", "the dev photos read examples/ beside the package", "clip_age/dev/photos.py",
        'ASTRONAUT = resources.files("clip_age") / "example_photos" / "astronaut.jpg"',
        'ASTRONAUT = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples" / "astronaut.png"',
        ("tests/test_wheel.py",),
    ),
    Mutation(
        "api-workers-per-call", "the Python API starts decode workers for every call",
        "clip_age/decoding/bulk_loader.py",
        "        with _kept.use((spec, model_device, faces, settings)) as decoder:",
        "        with BulkDecoder(spec, model_device, None, faces, settings) as decoder:",
        ("tests/test_cli_bounds.py::test_the_api_keeps_its_decode_workers_from_one_call_to_the_next",),
    ),
]  # fmt: skip


def run(mutation: Mutation | None, tests: tuple[str, ...] = ()) -> tuple[bool, float]:
    """(failed, seconds): the mutation's tests on a scratch copy of the tracked files with that
    one change; with no mutation, the tests given on the copy as it is (the control)."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as scratch:
        copy = Path(scratch) / "repo"
        files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
        for name in files.stdout.splitlines():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
        # A repository of its own, as a checkout is: some tests list the tracked files.
        subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
        subprocess.run(["git", "add", "-A"], cwd=copy, check=True)
        if mutation is not None:
            target, tests = copy / mutation.file, mutation.tests
            source = target.read_text()
            if source.count(mutation.old) != 1:
                raise SystemExit(
                    f"{mutation.name}: the line to change is not in {mutation.file} exactly once"
                )
            target.write_text(source.replace(mutation.old, mutation.new))
        started = time.perf_counter()
        outcome = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
            cwd=copy, capture_output=True, text=True,
        )  # fmt: skip
        return outcome.returncode != 0, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    if args.list or not chosen:
        for mutation in MUTATIONS:
            print(f"{mutation.name:18} {mutation.what}")
        return 0 if args.list else 2
    # A failure only means "caught" if the same tests pass on the copy without the mutation.
    control = tuple(dict.fromkeys(test for mutation in chosen for test in mutation.tests))
    failed, seconds = run(None, control)
    if failed:
        print(f"The tests fail without any mutation ({seconds:.0f} s): fix that first.", file=sys.stderr)
        return 2
    survived = []
    print(f"Control: every named test passes unmutated ({seconds:.0f} s).\n")
    print("| mutation | caught | seconds | tests |\n|---|---|---|---|")
    for mutation in chosen:
        caught, seconds = run(mutation)
        print(
            f"| {mutation.what} | {'yes' if caught else 'NO'} | {seconds:.0f} | {', '.join(mutation.tests)} |",
            flush=True,
        )
        if not caught:
            survived.append(mutation.name)
    if survived:
        print(f"survived: {', '.join(survived)}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
