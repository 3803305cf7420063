"""Where the Ray engine's photos come from, and how one is read: local folders and files, URIs of
any file system pyarrow or fsspec knows (s3://, gs://, file://, ...), webdataset .tar shards, and
Parquet or CSV listings with a path column.

The driver only lists (resolve_sources); the bytes are read in the decode tasks (read_photo,
shard_members), with the upload size limit checked before a file is read: from the listing or the
tar header where it gives the size, else from the file system. Imports only pyarrow, which comes
with the `ray` extra.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pyarrow.fs
import pyarrow.parquet

from clip_age.cli import IMAGE_SUFFIXES, UsageError, photo_files
from clip_age.decoding.images import ACCEPTED_NAMES, InvalidImage, check_file_size
from clip_age.decoding.upload_limits import DecodeLimits

SHARD_SUFFIXES = (".tar",)
LISTING_SUFFIXES = (".parquet", ".csv")
# A listing's path column: the first of these it has (as `clip-age evaluate` reads label files).
PATH_COLUMNS = ("path", "url", "uri", "file", "file_name", "filename", "image")
SIZE_COLUMN = "size"  # optional, in bytes: lets a too large file be refused without a request


@dataclass(frozen=True)
class PhotoFile:
    """One photo: a local path or a URI, and its size in bytes when a listing gave it."""

    path: str
    size: int | None = None


@dataclass(frozen=True)
class Shard:
    """A webdataset .tar shard: each image member is a photo, named `<shard>/<member>`."""

    path: str


@dataclass(frozen=True)
class Sources:
    photos: list[PhotoFile]
    shards: list[Shard]


def resolve_sources(sources: list[str]) -> Sources:
    """Every photo file and shard the sources name, in order, each once."""
    photos: dict[str, PhotoFile] = {}
    shards: dict[str, Shard] = {}
    for source in sources:
        for found in _resolve(source):
            target = shards if isinstance(found, Shard) else photos
            target.setdefault(found.path, found)
    if not photos and not shards:
        raise UsageError(
            f"No photos in {', '.join(sources)}: give photo files, folders or URIs that hold "
            f"{', '.join(IMAGE_SUFFIXES)} files, webdataset .tar shards, or a .parquet or .csv "
            f"listing with a {' or '.join(PATH_COLUMNS[:2])} column."
        )
    return Sources(list(photos.values()), list(shards.values()))


def is_uri(path: str) -> bool:
    return "://" in path


def _resolve(source: str) -> Iterator[PhotoFile | Shard]:
    suffix = posixpath.splitext(source.rstrip("/"))[1].lower()
    if not is_uri(source):
        path = Path(source)
        if path.is_dir():
            # The local engine's rules, so both engines find the same photos.
            yield from (PhotoFile(file) for file in photo_files([source])[0])
        elif suffix in SHARD_SUFFIXES:
            yield Shard(source)
        elif suffix in LISTING_SUFFIXES and path.is_file():
            yield from _listing(source)
        else:
            yield PhotoFile(source)  # a missing file gets its error row, as in the local engine
        return
    filesystem, root = file_system(source)
    info = _info(filesystem, root, source)
    if info.type == pyarrow.fs.FileType.NotFound:
        raise UsageError(
            f"{source}: no such file or folder. Give a photo, a folder, a .tar shard or a listing."
        )
    if info.type == pyarrow.fs.FileType.Directory:
        found = filesystem.get_file_info(pyarrow.fs.FileSelector(root, recursive=True))
        files = sorted(
            (f for f in found if f.type == pyarrow.fs.FileType.File and _suffix(f.path) in IMAGE_SUFFIXES),
            key=lambda f: f.path,
        )
        base = source.rstrip("/")
        for file in files:
            yield PhotoFile(f"{base}/{posixpath.relpath(file.path, root)}", file.size)
    elif suffix in SHARD_SUFFIXES:
        yield Shard(source)
    elif suffix in LISTING_SUFFIXES:
        yield from _listing(source)
    else:
        yield PhotoFile(source, info.size)


def _listing(source: str) -> Iterator[PhotoFile]:
    """The photos a Parquet or CSV listing names; relative paths are below the listing's folder."""
    try:
        if is_uri(source):
            filesystem, path = file_system(source)
            with filesystem.open_input_file(path) as file:
                table = _read_table(file, source)
        else:
            table = _read_table(source, source)
    except (pa.ArrowException, OSError) as error:
        raise UsageError(f"{source}: not a readable Parquet or CSV listing ({_first_line(error)}).") from None
    column = next((name for name in PATH_COLUMNS if name in table.column_names), None)
    if column is None:
        raise UsageError(
            f"{source}: the listing has no path column. Name it one of {', '.join(PATH_COLUMNS)}; "
            f"an optional '{SIZE_COLUMN}' column gives each file's bytes."
        )
    paths = table.column(column).to_pylist()
    sizes = (
        table.column(SIZE_COLUMN).to_pylist() if SIZE_COLUMN in table.column_names else [None] * len(paths)
    )
    folder = source.rsplit("/", 1)[0] if "/" in source else "."
    for path, size in zip(paths, sizes, strict=True):
        if path is None or not str(path).strip():
            continue
        path = str(path)
        if not (is_uri(path) or posixpath.isabs(path)):
            path = f"{folder}/{path}"
        yield PhotoFile(path, None if size is None else int(size))


def _read_table(file, source: str) -> pa.Table:
    if source.lower().endswith(".csv"):
        # Paths stay text even where they look like numbers (000123.jpg would not, 000123 would).
        return pyarrow.csv.read_csv(
            file, convert_options=pyarrow.csv.ConvertOptions(strings_can_be_null=True)
        )
    return pyarrow.parquet.read_table(file)


def read_photo(photo: PhotoFile, limits: DecodeLimits) -> bytes | str:
    """What pipeline.prepare reads: a local path as it is (the decoder checks its size and reads
    it, as in the local engine), or a URI's bytes, read only after its size passed the limit.
    A size from a listing is checked first, either way."""
    if photo.size is not None:
        check_file_size(photo.size, limits)
    if not is_uri(photo.path):
        return photo.path
    try:
        filesystem, path = file_system(photo.path)
        size = photo.size if photo.size is not None else filesystem.get_file_info(path).size
        if size is None:
            raise FileNotFoundError("no such file")
        check_file_size(size, limits)
        with filesystem.open_input_stream(path) as stream:
            data = stream.read(limits.max_upload_bytes + 1)
    except (OSError, pa.ArrowException) as error:
        raise InvalidImage(
            f"Could not read the file ({_first_line(error)}). Upload a photo: {ACCEPTED_NAMES}."
        ) from None
    check_file_size(len(data), limits)  # it may have grown since it was listed
    return data


def shard_members(
    shard: Shard, done: set[str], limits: DecodeLimits
) -> Iterator[tuple[str, bytes | InvalidImage]]:
    """(`<shard>/<member>`, its bytes or why it cannot be used) for each image member not in done,
    in the shard's order. Members over the size limit are refused from the tar header, unread.
    A shard that cannot be read gives one error under the shard's own path."""
    try:
        if is_uri(shard.path):
            filesystem, path = file_system(shard.path)
            stream = filesystem.open_input_stream(path)
        else:
            stream = open(shard.path, "rb")  # closed by the with below, as tarfile streams from it
        with stream, tarfile.open(fileobj=stream, mode="r|*") as archive:
            for member in archive:
                name = f"{shard.path}/{member.name}"
                if not member.isfile() or _suffix(member.name) not in IMAGE_SUFFIXES or name in done:
                    continue
                try:
                    check_file_size(member.size, limits)
                except InvalidImage as refused:
                    yield name, refused
                    continue
                yield name, archive.extractfile(member).read()
    except (OSError, tarfile.TarError, pa.ArrowException) as error:
        if shard.path not in done:
            yield (
                shard.path,
                InvalidImage(
                    f"The shard could not be read as a tar archive ({_first_line(error)}). "
                    "Give webdataset .tar shards."
                ),
            )


def file_system(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The file system and the path in it: pyarrow's own (local, S3, GCS, HDFS, with their
    standard credentials) where it knows the scheme, else fsspec's (any installed
    implementation). Cached per folder, as a worker reads many files of one folder."""
    folder, _, name = uri.rstrip("/").rpartition("/")
    if folder.endswith(":/") or folder.endswith("://"):  # the root of a bucket or host
        return _folder_file_system(uri)
    filesystem, folder_path = _folder_file_system(folder)
    return filesystem, f"{folder_path.rstrip('/')}/{name}"


@cache
def _folder_file_system(uri: str) -> tuple[pyarrow.fs.FileSystem, str]:
    try:
        return pyarrow.fs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import fsspec
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        try:
            filesystem, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as error:
            raise UsageError(f"{uri}: no file system for this address ({_first_line(error)}).") from None
        return PyFileSystem(FSSpecHandler(filesystem)), path


def _info(filesystem: pyarrow.fs.FileSystem, path: str, source: str) -> pyarrow.fs.FileInfo:
    try:
        return filesystem.get_file_info(path)
    except (OSError, pa.ArrowException) as error:
        raise UsageError(f"{source}: could not be listed ({_first_line(error)}).") from None


def _suffix(path: str) -> str:
    return posixpath.splitext(path)[1].lower()


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
