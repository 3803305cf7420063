"""How Cog turns a request's `image` into a file, bounded and worded for a public endpoint.

Cog, not the predictor, parses a data URI or fetches a URL and writes the file before run() is
called, one request at a time in the model's process. As shipped (cog 0.23.1) that step decodes
a data URI twice through urllib (seconds and about 9 copies of a 100 MB one) and keeps it
in CPython's URL-parse cache for good, reads a URL's answer with no size or time limit, and fails
with library words that tell a closed port from an open one ("Connection refused", a service's
first line). harden() changes exactly those things, in the model's process, at setup: a base64
data URI is decoded once, in pieces, straight into the file, after its length is checked.
"""

import binascii
import io
import logging
import tempfile
import time
import urllib.parse
from pathlib import Path

import cog.types

log = logging.getLogger(__name__)

UNUSABLE = (
    "The image could not be read as sent. Send a data URI (data:image/jpeg;base64,... with valid "
    "base64) or an http(s) URL that answers with the photo."
)
FILE_PREFIX = "clip-age-upload-"
_CHUNK = 1 << 20
# Decoded a piece at a time: a whole 100 MB URI sliced at once would be one more copy of it.
_BASE64_PIECE = 4 << 20


class UploadRefused(ValueError):
    """The image input cannot become a file; the message is for the client."""


def harden(max_bytes: int, timeout_s: float) -> None:
    """Make Cog's handling of file inputs bounded (max_bytes, timeout_s) and plainly worded."""
    _stop_caching_parsed_urls()
    validate = cog.types.Path.validate.__func__

    def checked_validate(cls, value):
        if isinstance(value, str) and value[:5].lower() == "data:":
            return _data_uri_file(value, max_bytes)
        try:
            return validate(cls, value)
        except Exception as error:
            log.info("Refused an image input Cog could not parse: %s", type(error).__name__)
            raise UploadRefused(UNUSABLE) from None

    def bounded_convert(self) -> cog.types.Path:
        if self._path is None:
            self._path = _copy_bounded(self.fileobj, self.filename, max_bytes, timeout_s)
        return self._path

    cog.types.Path.validate = classmethod(checked_validate)
    cog.types.URLPath.convert = bounded_convert


def _data_uri_file(uri: str, max_bytes: int) -> cog.types.URLPath:
    """The bytes of a base64 data URI, in a file that Cog deletes after the prediction as it does
    its own. The length is checked before anything is decoded; the base64 must be strict."""
    comma = uri.find(",", 0, 256)
    if comma < 0 or not uri[:comma].lower().endswith(";base64"):
        raise UploadRefused(UNUSABLE)
    encoded = len(uri) - comma - 1
    if encoded // 4 * 3 > max_bytes + 3:
        raise UploadRefused(_too_large(max_bytes))
    with tempfile.NamedTemporaryFile(prefix=FILE_PREFIX, delete=False) as target:
        try:
            for start in range(comma + 1, len(uri), _BASE64_PIECE):
                target.write(binascii.a2b_base64(uri[start : start + _BASE64_PIECE], strict_mode=True))
        except (binascii.Error, ValueError):
            Path(target.name).unlink(missing_ok=True)
            raise UploadRefused(UNUSABLE) from None
    upload = cog.types.URLPath(source=uri[:comma] + ",...", filename="upload", fileobj=io.BytesIO())
    upload._path = cog.types.Path(target.name)
    return upload


def _copy_bounded(source, suffix: str, max_bytes: int, timeout_s: float) -> cog.types.Path:
    """Copy a data URI's bytes or a URL's answer into a file, refusing past max_bytes or
    timeout_s (the fetch's own timeout is per read: a server that drips a byte at a time would
    otherwise never end)."""
    started = time.monotonic()
    with tempfile.NamedTemporaryFile(prefix=FILE_PREFIX, suffix=suffix, delete=False) as target:
        # Cog's own Path type: the predictor tells a file Cog made from any other string by it.
        path = cog.types.Path(target.name)
        try:
            copied = 0
            while chunk := source.read(_CHUNK):
                copied += len(chunk)
                if copied > max_bytes:
                    raise UploadRefused(_too_large(max_bytes))
                if time.monotonic() - started > timeout_s:
                    raise UploadRefused(
                        f"The photo took longer than {timeout_s:g} s to arrive, the limit "
                        "(DECODE_TIMEOUT_S). Send it as a data URI, or from a faster server."
                    )
                target.write(chunk)
        except UploadRefused:
            path.unlink(missing_ok=True)
            raise
        except Exception as error:
            path.unlink(missing_ok=True)
            log.info("Refused an image input that could not be fetched: %s", type(error).__name__)
            raise UploadRefused(UNUSABLE) from None
    return path


def _too_large(max_bytes: int) -> str:
    return (
        f"The photo is larger than {max_bytes / 1e6:g} MB, the limit (MAX_UPLOAD_MB). Send a smaller photo."
    )


def _stop_caching_parsed_urls() -> None:
    """Cog parses every data URI with urllib.parse.urlparse, and CPython keeps the last 128
    results of urlsplit (the whole URI and a copy of it): each distinct 100 MB upload would stay
    in this process for good. Parsing is cheap next to a prediction, so the cache goes."""
    cached = urllib.parse.urlsplit
    if hasattr(cached, "cache_clear"):
        cached.cache_clear()
        urllib.parse.urlsplit = cached.__wrapped__
