"""`clip-age predict --engine ray` on a local Ray cluster (2 CPUs) with the tiny model: every row
equals the local engine's answer for that photo, whatever the source (folder, file:// URI,
webdataset shard, Parquet listing), and every photo is written exactly once, also after an
actor is killed mid-run and after an interrupted run is resumed."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from PIL import Image

from clip_age import cli
from tests.conftest import EXAMPLES, REPO

INSTALL_HINT = 'Ray is not installed: pip install -e ".[ray]"'
ACTOR_TITLE = b"ray::MapWorker(MapBatches(AgeModel))"


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray cluster for the module (starting Ray takes seconds): two CPUs, as CI has."""
    ray = pytest.importorskip("ray", reason=INSTALL_HINT)
    pytest.importorskip("ray.data", reason=INSTALL_HINT)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def model(tiny_model_dir, monkeypatch, yunet_model):
    monkeypatch.setenv("CLIP_MODEL", f"local-dir:{tiny_model_dir}")
    monkeypatch.setenv("CLIP_DEVICE", "cpu")
    monkeypatch.setenv("CLIP_CPU_PRECISION", "fp32")
    monkeypatch.setenv("FACE_DETECTOR_MODEL", str(yunet_model))
    return tiny_model_dir


@pytest.fixture
def folder(tmp_path):
    """Photos with one face, two faces and none, and files that cannot be read."""
    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    shutil.copy(EXAMPLES / "astronaut.png", photos / "astronaut.png")
    shutil.copy(EXAMPLES / "astronaut_face.jpg", photos / "nested" / "face.jpg")
    shutil.copy(EXAMPLES / "coffee.png", photos / "coffee.png")
    face = Image.open(EXAMPLES / "astronaut_face.jpg").convert("RGB")
    pair = Image.new("RGB", (face.width * 2 + 40, face.height + 40), "white")
    pair.paste(face, (0, 20))
    pair.paste(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (face.width + 40, 20))
    pair.save(photos / "nested" / "two_faces.png")
    (photos / "broken.jpg").write_bytes(b"%PDF-1.4 pretending")
    (photos / "empty.png").write_bytes(b"")
    (photos / "cut.jpg").write_bytes((EXAMPLES / "astronaut_face.jpg").read_bytes()[:2000])
    (photos / "notes.txt").write_text("not a photo suffix: not picked up")
    return photos


def local_answers(*args: str) -> dict[str, dict]:
    """The local engine's JSON lines, by path: the reference every Ray row must equal."""
    out = io.StringIO()
    cli.main(["predict", *args], out)
    return {record["path"]: record for record in map(json.loads, out.getvalue().splitlines())}


def ray_rows(out: Path) -> list[dict]:
    import pyarrow.parquet

    return pyarrow.parquet.read_table(out).to_pylist()


def assert_rows_equal(rows: list[dict], expected: dict[str, dict], probabilities: bool = False) -> None:
    """Exactly one row per expected photo, each equal to the local engine's record."""
    assert sorted(row["path"] for row in rows) == sorted(expected)
    for row in rows:
        record = expected[row["path"]]
        if "error" in record:
            assert row["error"] == record["error"]
            assert (row["age"], row["faces"]) == (None, [])
            continue
        fields = ["age", "expected_age", "age_low", "age_high", "faces"]
        assert row["error"] is None
        assert {field: row[field] for field in fields} == {field: record[field] for field in fields}
        if probabilities:
            # float32 sums over other batches: equal to the last bits, as between the CLI and the API
            assert row["probabilities"] == pytest.approx(record["probabilities"], abs=1e-6)


def run_ray(address: str, *args: str) -> int:
    return cli.main(["predict", "--engine", "ray", "--address", address, *args], io.StringIO())


@pytest.mark.slow
def test_a_folder_with_faces_and_unreadable_files_gets_the_local_engines_answers(
    ray_address, model, folder, tmp_path, capsys
):
    expected = local_answers("--faces", "--probabilities", str(folder))
    capsys.readouterr()
    out = tmp_path / "out"
    # Batches of 2 photos: faces of one photo and photos of one batch are split and put back.
    status = run_ray(
        ray_address, "--faces", "--probabilities", "--batch-size", "2", "--out", str(out), str(folder)
    )
    rows = ray_rows(out)
    assert_rows_equal(rows, expected, probabilities=True)
    assert len(next(row for row in rows if row["path"].endswith("two_faces.png"))["faces"]) == 2
    assert sum(row["error"] is not None for row in rows) == 3
    assert status == 1  # some photos failed, as with the local engine
    assert "4 photos answered, 3 failed, 0 skipped" in capsys.readouterr().err


@pytest.mark.slow
def test_shards_listings_and_uris_are_read_by_the_projects_decoder(
    ray_address, model, folder, tmp_path, capsys
):
    members = tmp_path / "members"
    shutil.copytree(folder, members)
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as archive:
        for file in sorted(members.rglob("*")):
            if file.is_file():
                archive.add(file, arcname=str(file.relative_to(members)))
    import pyarrow
    import pyarrow.parquet

    listed = tmp_path / "listed"
    listed.mkdir()
    shutil.copy(EXAMPLES / "coffee.png", listed / "coffee.png")
    shutil.copy(EXAMPLES / "astronaut.png", listed / "astronaut.png")
    listing = tmp_path / "listing.parquet"
    shutil.copy(EXAMPLES / "coffee.png", listed / "said_to_be_large.png")
    names = [
        "listed/coffee.png",
        str(listed / "astronaut.png"),
        "listed/missing.png",
        "listed/said_to_be_large.png",
    ]
    # A listing's size column refuses a file before it is read: this one is small, but listed at 1 GB.
    pyarrow.parquet.write_table(pyarrow.table({"path": names, "size": [None, None, None, 10**9]}), listing)
    # A CSV listing, by URL, naming one photo again (each photo is answered once).
    shutil.copy(EXAMPLES / "astronaut_face.jpg", listed / "from_csv.jpg")
    csv_listing = tmp_path / "listing.csv"
    csv_listing.write_text(f"url,label\nfile://{listed / 'from_csv.jpg'},7\n{listed / 'astronaut.png'},8\n")
    uri_folder = tmp_path / "by-uri"
    (uri_folder / "deep").mkdir(parents=True)
    shutil.copy(EXAMPLES / "astronaut_face.jpg", uri_folder / "deep" / "face.jpg")
    (uri_folder / "deep" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")

    out = tmp_path / "out"
    sources = [str(shard), str(listing), str(csv_listing), f"file://{uri_folder}"]
    status = run_ray(ray_address, "--faces", "--require-face", "--out", str(out), *sources)

    # The same photos through the local engine, named as the Ray engine names them.
    from_shard = local_answers("--faces", "--require-face", str(members))
    from_listing = local_answers(
        "--faces",
        "--require-face",
        str(listed / "coffee.png"),
        str(listed / "astronaut.png"),
    )
    from_uri = local_answers("--faces", "--require-face", str(uri_folder), str(listed / "from_csv.jpg"))
    expected = {f"{shard}/{Path(p).relative_to(members)}": r for p, r in from_shard.items()}
    expected |= {str(tmp_path / "listed" / Path(p).name): r for p, r in from_listing.items()}
    expected |= {f"file://{p}": r for p, r in from_uri.items()}
    # The local engine refuses a missing path before it starts; a listing's is an error row.
    expected[str(listed / "missing.png")] = {
        "error": "Could not read the file (No such file or directory). Upload a photo: JPEG, PNG, WebP, "
        "GIF, BMP, TIFF, HEIC/HEIF or AVIF."
    }
    large = str(listed / "said_to_be_large.png")
    expected[large] = {"error": "The file is 1000.0 MB; the limit is 64 MB (MAX_UPLOAD_MB). Upload a "
                       "smaller photo (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF or AVIF)."}  # fmt: skip
    assert_rows_equal(ray_rows(out), expected)
    assert status == 1
    # --require-face leaves out the photos without a face, as the local engine does
    assert (
        "6 photos answered, 6 failed, 2 skipped (no face), 0 skipped" in capsys.readouterr().err
    )  # 2 coffee.png


def photo_set(tmp_path: Path, copies: int) -> Path:
    """Enough photos for a run of some seconds: copies of three different photos."""
    photos = tmp_path / "many"
    for index in range(copies):
        part = photos / f"part{index % 4}"
        part.mkdir(parents=True, exist_ok=True)
        source = ("astronaut.png", "astronaut_face.jpg", "coffee.png")[index % 3]
        shutil.copy(EXAMPLES / source, part / f"{index:04d}{Path(source).suffix}")
    (photos / "part0" / "broken.jpg").write_bytes(b"%PDF-1.4 pretending")
    return photos


def start_cli(address: str, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "clip_age", "predict", "--engine", "ray", "--address", address, *args]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def rows_written(out: Path) -> int:
    import pyarrow.parquet

    return sum(pyarrow.parquet.read_metadata(part).num_rows for part in out.glob("part-*.parquet"))


def wait_for(condition, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run did not get there in time"
        time.sleep(0.02)


def model_actor_pids() -> list[int]:
    """The processes of this cluster's CLIP actors: the actor title, below this test's raylet."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes()
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            grandparent = int((Path("/proc") / str(parent) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if title.startswith(ACTOR_TITLE) and grandparent == os.getpid():
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_a_killed_actor_is_replaced_and_every_photo_is_written_exactly_once(ray_address, model, tmp_path):
    photos = photo_set(tmp_path, 80)
    expected = local_answers(str(photos))
    out = tmp_path / "out"
    process = start_cli(ray_address, "--batch-size", "2", "--out", str(out), str(photos))
    wait_for(lambda: model_actor_pids() and rows_written(out) > 0, process)
    [actor] = model_actor_pids()
    os.kill(actor, signal.SIGKILL)
    at_kill = rows_written(out)
    _, errors = process.communicate(timeout=120)
    assert at_kill < len(expected), "the run ended before the actor was killed"
    assert process.returncode == 1, errors  # the broken photo
    assert model_actor_pids() != [actor]  # a new actor finished the run
    assert_rows_equal(ray_rows(out), expected)
    assert "80 photos answered, 1 failed" in errors


@pytest.mark.slow
def test_an_interrupted_run_finishes_with_resume_without_duplicates(ray_address, model, tmp_path, capsys):
    photos = photo_set(tmp_path, 80)
    expected = local_answers(str(photos))
    capsys.readouterr()
    out = tmp_path / "out"
    process = start_cli(ray_address, "--batch-size", "2", "--out", str(out), str(photos))
    wait_for(lambda: rows_written(out) > 0, process)
    process.send_signal(signal.SIGKILL)  # the driver dies as in a crash
    process.communicate()
    before = rows_written(out)
    assert 0 < before < len(expected)

    assert run_ray(ray_address, "--batch-size", "2", "--out", str(out), str(photos)) == 2
    assert "is not empty: add --resume" in capsys.readouterr().err
    assert run_ray(ray_address, "--faces", "--resume", "--out", str(out), str(photos)) == 2
    assert "options differ from the run" in capsys.readouterr().err

    done = {row["path"] for row in ray_rows(out)}
    status = run_ray(ray_address, "--batch-size", "2", "--resume", "--out", str(out), str(photos))
    assert status == (0 if str(photos / "part0" / "broken.jpg") in done else 1)
    assert_rows_equal(ray_rows(out), expected)
    assert f"{before} skipped (already in --out)" in capsys.readouterr().err


def test_an_output_file_is_written_whole_once_and_a_cut_write_is_redone(tmp_path):
    pytest.importorskip("ray", reason=INSTALL_HINT)
    import pyarrow

    from clip_age.ray_cluster.output import OutputFolder, schema

    rows = [{"path": f"photo{i}.jpg", "age": i + 1, "faces": []} for i in range(3)]
    folder = OutputFolder(str(tmp_path / "out"))
    assert folder.start({"model": "m"}, resume=False) == set()
    table = pyarrow.Table.from_pylist(rows, schema=schema(False))
    first = folder.write(table)
    assert folder.write(table.slice(0, 3)) == first  # a retried write replaces its file
    assert folder.write(table.slice(0, 2)) != first
    (tmp_path / "out" / f".{first}.cut.tmp").write_bytes(b"PAR1 cut short")
    with pytest.raises(ValueError, match="is not empty: add --resume"):
        folder.start({"model": "m"}, resume=False)
    with pytest.raises(ValueError, match=r"options differ from the run in .* \(model\)"):
        folder.start({"model": "other"}, resume=True)
    assert folder.start({"model": "m"}, resume=True) == {"photo0.jpg", "photo1.jpg", "photo2.jpg"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")) == []


def test_the_decode_tasks_prepare_photos_for_the_models_own_input(estimator, tiny_model_dir):
    pytest.importorskip("ray", reason=INSTALL_HINT)
    from clip_age.ray_cluster.engine import ModelChoice, input_spec

    choice = ModelChoice(f"local-dir:{tiny_model_dir}", "", "cpu", "fp32")
    assert input_spec(choice) == estimator.input_spec


def test_missing_weights_stop_the_ray_engine_before_ray_starts(model, monkeypatch, tmp_path, capsys):
    pytest.importorskip("ray", reason=INSTALL_HINT)
    monkeypatch.setenv("CLIP_MODEL", f"local-dir:{tmp_path / 'nothing'}")
    assert (
        cli.main(["predict", "--engine", "ray", "--out", str(tmp_path / "out"), str(EXAMPLES)], io.StringIO())
        == 2
    )
    assert "no open_clip_config.json in" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_shard_gives_its_image_members_less_those_done_and_refuses_large_ones_unread(tmp_path):
    pytest.importorskip("ray", reason=INSTALL_HINT)
    from clip_age.decoding.images import InvalidImage
    from clip_age.decoding.upload_limits import DecodeLimits
    from clip_age.ray_cluster.sources import Shard, shard_members

    shard = tmp_path / "shard.tar"
    with tarfile.open(shard, "w") as archive:
        for name in ("000001.jpg", "000001.json", "sub/000002.png", "000003.png"):
            info = tarfile.TarInfo(name)
            data = (EXAMPLES / "coffee.png").read_bytes() if name.endswith(".png") else b"{}"
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    done = {f"{shard}/000001.jpg"}
    found = dict(shard_members(Shard(str(shard)), done, DecodeLimits()))
    assert list(found) == [f"{shard}/sub/000002.png", f"{shard}/000003.png"]
    assert found[f"{shard}/000003.png"] == (EXAMPLES / "coffee.png").read_bytes()
    small = DecodeLimits(max_upload_bytes=1000)
    [(_, refused), _] = shard_members(Shard(str(shard)), done, small)
    assert isinstance(refused, InvalidImage) and "(MAX_UPLOAD_MB)" in str(refused)
    (tmp_path / "cut.tar").write_bytes(shard.read_bytes()[:700])
    [(path, broken)] = [
        m for m in shard_members(Shard(str(tmp_path / "cut.tar")), set(), small) if m[0].endswith("cut.tar")
    ]
    assert "could not be read as a tar archive" in str(broken)


def test_stages_leave_room_for_the_tasks_on_any_cluster():
    pytest.importorskip("ray", reason=INSTALL_HINT)
    from clip_age.ray_cluster.engine import plan

    for cpus in (1, 2, 3, 8, 64):
        for gpus in (0, 1, 4):
            for nodes in (1, 2, 4):
                stages = plan(cpus, gpus, nodes)
                reserved = stages.actors * stages.actor_cpus
                assert reserved <= cpus / 2 and 0 < stages.task_cpus <= cpus - reserved
                assert stages.actors == (gpus if gpus else nodes)
                assert stages.actor_gpus == (1 if gpus else 0)


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "name their folder with --out DIR"),
        (["--out", "x", "--csv"], "--csv, --draw and --workers are for the local engine"),
        (["--out", "x", "--workers", "2"], "--csv, --draw and --workers are for the local engine"),
        (["--out", "x", "--max-faces", "0", "--faces"], "--max-faces must be a whole number from 1 to 50"),
    ],
)
def test_ray_engine_options_are_checked_before_anything_starts(model, args, message, capsys):
    assert cli.main(["predict", "--engine", "ray", *args, str(EXAMPLES)], io.StringIO()) == 2
    assert message in capsys.readouterr().err


def test_ray_options_with_the_local_engine_are_a_usage_error(model, capsys):
    assert cli.main(["predict", "--resume", str(EXAMPLES)], io.StringIO()) == 2
    assert "--out, --address and --resume are for --engine ray." in capsys.readouterr().err


def test_without_ray_the_ray_engine_says_how_to_install_it(model, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    monkeypatch.delitem(sys.modules, "clip_age.ray_cluster.engine", raising=False)
    monkeypatch.delattr("clip_age.ray_cluster.engine", raising=False)
    assert cli.main(["predict", "--engine", "ray", "--out", str(tmp_path), str(EXAMPLES)], io.StringIO()) == 2
    assert 'pip install -e ".[ray]"' in capsys.readouterr().err
