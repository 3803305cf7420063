"""The Ray engine's output folder: Parquet files of one row per photo, written whole or not at all.

Each file is written under a temporary name and then renamed, and named after the photos it
holds, so a write task that Ray retries after a crash writes the same file again instead of a
second copy. A file is therefore either complete or absent, which is what makes --resume exact:
the paths in the folder's files are the photos done. A run also leaves its options in
RUN_FILE, so --resume refuses to mix answers of another model or other options into it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet

from clip_age.cli import UsageError
from clip_age.ray_cluster.sources import file_system, is_uri

# Leading "_" and ".": Parquet readers (pyarrow, pandas, Spark, Ray) skip such names in a folder.
RUN_FILE = "_clip-age-run.json"
PART_PREFIX, PART_SUFFIX, TEMPORARY = "part-", ".parquet", ".tmp"

FACE = pa.struct(
    [
        ("box", pa.list_(pa.int32())),
        ("score", pa.float64()),
        ("age", pa.int32()),
        ("expected_age", pa.float64()),
        ("age_low", pa.int32()),
        ("age_high", pa.int32()),
    ]
)


def schema(probabilities: bool) -> pa.Schema:
    """One row per photo: the answer as `clip-age predict` prints it in JSON, or its error."""
    fields = [
        ("path", pa.string()),
        ("age", pa.int32()),
        ("expected_age", pa.float64()),
        ("age_low", pa.int32()),
        ("age_high", pa.int32()),
        ("error", pa.string()),
        ("faces", pa.list_(FACE)),
    ]
    return pa.schema(fields + ([("probabilities", pa.list_(pa.float64()))] if probabilities else []))


@dataclass(frozen=True)
class OutputFolder:
    """--out: a local folder or a URI (s3://, gs://, ...) every node of the cluster can reach."""

    uri: str

    def _where(self) -> tuple[pyarrow.fs.FileSystem, str]:
        if is_uri(self.uri):
            return file_system(self.uri)
        return pyarrow.fs.LocalFileSystem(), str(Path(self.uri).resolve())

    def entries(self) -> list[pyarrow.fs.FileInfo]:
        filesystem, root = self._where()
        if filesystem.get_file_info(root).type == pyarrow.fs.FileType.NotFound:
            return []
        return filesystem.get_file_info(pyarrow.fs.FileSelector(root))

    def start(self, run: dict[str, Any], resume: bool) -> set[str]:
        """Check the folder against --resume and the run's options, record them, and return the
        paths of the photos already answered there (empty for a new run)."""
        entries = self.entries()
        if entries and not resume:
            raise UsageError(
                f"--out {self.uri} is not empty: add --resume to finish the run written there, "
                "or name a new or empty folder."
            )
        filesystem, root = self._where()
        names = {posix_name(entry.path) for entry in entries}
        if RUN_FILE in names:
            with filesystem.open_input_stream(f"{root}/{RUN_FILE}") as stream:
                before = json.loads(stream.read())
            if before != run:
                changed = ", ".join(
                    sorted(k for k in run.keys() | before.keys() if run.get(k) != before.get(k))
                )
                raise UsageError(
                    f"--resume: this run's options differ from the run in {self.uri} ({changed}). "
                    "Resume with the same options, or write to a new folder."
                )
        filesystem.create_dir(root, recursive=True)
        with filesystem.open_output_stream(f"{root}/{RUN_FILE}") as stream:
            stream.write(json.dumps(run, sort_keys=True).encode())
        done: set[str] = set()
        for entry in entries:
            name = posix_name(entry.path)
            if name.endswith(TEMPORARY):
                filesystem.delete_file(entry.path)  # a write cut short: its photos are redone
            elif name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX):
                with filesystem.open_input_file(entry.path) as file:
                    done.update(pyarrow.parquet.read_table(file, columns=["path"]).column("path").to_pylist())
        return done

    def write(self, table: pa.Table) -> str:
        """Write the rows as one Parquet file, whole or not at all; the name comes from the paths,
        so writing the same rows again replaces the file."""
        filesystem, root = self._where()
        digest = hashlib.sha256("\n".join(sorted(table.column("path").to_pylist())).encode()).hexdigest()
        name = f"{PART_PREFIX}{digest[:32]}{PART_SUFFIX}"
        temporary = f"{root}/.{name}.{uuid.uuid4().hex}{TEMPORARY}"
        with filesystem.open_output_stream(temporary) as stream:
            pyarrow.parquet.write_table(table, stream)
        filesystem.move(temporary, f"{root}/{name}")
        return name


def posix_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]
